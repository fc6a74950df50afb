"""The in-Pod runner (`pgwarden job KIND`): the task in, the engine, the compact report out.

It holds the runner, the Pod's inputs (keys and copy storages from the environment) and the termination
message. It may import the engine, storage, api and what every layer shares, never the command line (which
starts it) nor the operator (which reads what it writes)."""
