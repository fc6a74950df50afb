"""The chart and the examples as the end-to-end tests use them: hack/demo_support.py, shared with `make demo`.

hack/ is no package, so it is put at the end of sys.path (after everything else, so it shadows nothing).
"""

from __future__ import annotations

import sys
from pathlib import Path

_HACK = str(Path(__file__).resolve().parents[2] / "hack")
if _HACK not in sys.path:
    sys.path.append(_HACK)

from demo_support import (  # noqa: E402
    CHART,
    ToolError,
    local_examples,
    local_values,
    namespaced_rbac_settings,
    operator_rbac,
    render_chart,
    run_build,
    service_account_name,
)

__all__ = [
    "CHART",
    "ToolError",
    "local_examples",
    "local_values",
    "namespaced_rbac_settings",
    "operator_rbac",
    "render_chart",
    "run_build",
    "service_account_name",
]
