"""A directory-format backup stopped while its files are being handed to the upload workers: no file may be
stored after the upload has given up, or the failed backup leaves an object nobody deletes (the flaky
faults test `uploading-directory-files` under SIGTERM found one at its final key)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from pgwarden.engine.backup import dump_files
from pgwarden.engine.backup.compression import parse_compression
from pgwarden.engine.backup.dump_files import DirectoryUpload
from pgwarden.errors import Terminated
from pgwarden.storage.filesystem import FilesystemStorage


def test_a_stop_between_two_submissions_leaves_no_file_stored_that_committed_does_not_list(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dump = tmp_path / "dump"
    dump.mkdir()
    for name in ("3001.dat", "3002.dat", "toc.dat"):
        (dump / name).write_bytes(name.encode() * 1000)
    storage = FilesystemStorage(tmp_path / "store")
    upload = DirectoryUpload(storage, "dump", parse_compression("none"))

    real_upload = upload._upload

    def slow_upload(path: Path) -> Any:
        time.sleep(0.3)  # the first file is still being written when the stop arrives
        return real_upload(path)

    monkeypatch.setattr(upload, "_upload", slow_upload)
    real_submit = dump_files.HelperPool.submit
    submitted = []

    def submit_then_stop(self: Any, fn: Any, *args: Any) -> Any:
        if submitted:  # SIGTERM's handler runs in the main thread between two submissions
            raise Terminated
        submitted.append(fn)
        return real_submit(self, fn, *args)

    monkeypatch.setattr(dump_files.HelperPool, "submit", submit_then_stop)

    with pytest.raises(Terminated):
        upload.run(dump, 2)
    to_delete = sorted(upload.committed)  # what the failing backup's cleanup deletes, as run() returns
    time.sleep(0.6)  # long enough for a worker the stop did not wait for to store its file

    stored = sorted(obj.key for obj in storage.list_objects())
    assert set(stored) <= set(to_delete), "every stored file is one the cleanup knew to delete"
