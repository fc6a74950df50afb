"""Crash-only runs: the journal every run keeps, and the settling of what a dead run left.

A Pod can die at any instruction. Before a run takes a step that can leave a database between two states it
records the step where the next run finds it: migration runs in the target's journal (`journal`, tables in
pgwarden's schema, written in the same transaction as what they record), the restore rollback's swap in the
database names (`engine.restore.swap`, the server's shared catalog, which no rename loses), scratch databases
under advisory locks (`engine.postgres.scratch`). `settle` reads all three and finishes or undoes what a dead
run left, before any command touches the database; `undo` is the one way a run is rolled back, by the run
itself or after its death, from the recipes the journal holds. `locks` keeps one migrator per database.

Imports restore, backup and postgres (never migrate, which imports it: migrate → recovery → restore →
backup → postgres).
"""
