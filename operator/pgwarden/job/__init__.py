"""The in-Pod runner: the task in, the engine, the compact report out."""
