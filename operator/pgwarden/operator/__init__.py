"""The kopf operator: watches the resources, runs Jobs, writes status. Never touches a database."""
