"""The migration run: files, plan, run, history, verification, lint, rollback, rehearsal, progress and locks.

The top room: it may import `restore` (the rehearsal's scratch copy, the restore rollback), `backup`,
`postgres`, storage and api; no room imports it."""
