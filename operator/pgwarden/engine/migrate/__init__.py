"""The migration run: files, plan, run, history, verification, lint, rollback, rehearsal, progress and locks."""
