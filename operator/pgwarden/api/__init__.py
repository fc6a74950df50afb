"""The resource API: pydantic models of specs, statuses and reports, and the CRDs generated from them."""
