"""One real prune: retention keeps the newest and the newest verified backup, deletes the rest."""

from __future__ import annotations

import json

from backup_support import BackupPlace, run_cli

from pgwarden.engine.backup.backup import take_backup
from pgwarden.engine.backup.options import BackupOptions
from pgwarden.engine.restore.verify import verify_backup
from pgwarden.storage.manifest import list_backups


def test_prune_keeps_the_newest_and_the_newest_verified_backup(shop_db: str, place: BackupPlace) -> None:
    verified = take_backup(shop_db, place.open(), BackupOptions(verify=verify_backup)).backup
    middle = take_backup(shop_db, place.open()).backup
    newest = take_backup(shop_db, place.open()).backup
    assert verified and middle and newest

    dry = run_cli("prune", place.uri, "--keep-last", "1", "--dry-run", "--json", env=place.env)
    assert [d["id"] for d in json.loads(dry.stdout)["deleted"]] == [middle.id]
    assert len(list_backups(place.open())) == 3

    done = run_cli("prune", place.uri, "--keep-last", "1", "--json", env=place.env)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert {item["id"]: item["reason"] for item in report["kept"]} == {
        newest.id: "newest complete backup; among the 1 newest",
        verified.id: "newest verified backup",
    }
    assert [d["id"] for d in report["deleted"]] == [middle.id]
    assert [b.id for b in list_backups(place.open())] == [newest.id, verified.id]
    assert not [obj for obj in place.open().list_objects() if obj.key.startswith(middle.id)]

    again = run_cli("prune", place.uri, "--max-age", "1h", "--json", env=place.env)
    assert json.loads(again.stdout)["deleted"] == []
