"""`kubectl pgwarden`: a kubectl plugin (the console script kubectl-pgwarden) to see and drive pgwarden's
resources the way kubectl users expect: status, approve, backup/drill now, restore, history, logs.

It reads the resources through `api` models and talks to the API server with the kubernetes client (imported
only where a command needs it, so `--help` starts fast). It never imports the engine, storage, psycopg or
boto3, and never reads a Secret: whatever it prints, no secret is in it.
"""
