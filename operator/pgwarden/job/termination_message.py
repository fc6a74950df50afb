"""The compact report a Job leaves in its termination message: at most 4,096 bytes of UTF-8, whatever its text.

The kubelet cuts a longer message, and a cut JSON document is no report at all. So lists give way first
(capped, failed checks kept, with a `<name>Total`), then every text is clipped to fewer bytes, and in the
end only the outcome, the rollback's outcome and as much of the error as fits remain. Sizes are counted in
encoded bytes, never in characters: a Cyrillic letter is two bytes, an emoji four.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from pgwarden.api.task import TERMINATION_LOG, TERMINATION_LOG_ENV, TERMINATION_MESSAGE_LIMIT
from pgwarden.redact import redact_obj

log = logging.getLogger("pgwarden.job.runner")
Report = dict[str, Any]
ELLIPSIS = "…"
_ELLIPSIS_BYTES = len(ELLIPSIS.encode())
# (longest list kept, bytes kept of each text), from the richest form to the leanest.
_ATTEMPTS: tuple[tuple[int | None, int], ...] = (
    (None, 2000),
    *((cap, 600) for cap in (50, 20, 10, 5)),
    *((cap, 200) for cap in (5, 3, 1)),
    *((cap, 80) for cap in (3, 1, 0)),
)
_SHORT_TEXT = 64  # bytes of the outcome, version and rollback words in the last resort


def compact(report: Report, limit: int = TERMINATION_MESSAGE_LIMIT) -> str:
    """The report, redacted, as JSON of at most `limit` UTF-8 bytes: lists capped (with totals), texts clipped."""
    safe = redact_obj(report)
    assert isinstance(safe, dict)
    error = safe.get("error")
    for cap, text_bytes in _ATTEMPTS:
        data = _shrunk(safe, cap, text_bytes)
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            data["error"]["message"] = clip(error["message"], 2 * text_bytes)  # why it failed comes first
        text = _dumps(data)
        if _size(text) <= limit:
            return text
    return _last_resort(safe, limit)


def write_termination_message(text: str) -> None:
    """Write the message as UTF-8 (whatever the pod's locale) where the kubelet reads it."""
    path = Path(os.environ.get(TERMINATION_LOG_ENV, TERMINATION_LOG))
    try:
        path.write_bytes(text.encode("utf-8"))
    except OSError as exc:  # outside a pod: the report is still on stdout
        log.warning("could not write the termination message to %s: %s", path, exc)


def clip(text: str, limit: int) -> str:
    """At most `limit` bytes of UTF-8: cut on a character boundary and marked with `…` when cut.

    Lone surrogates (no UTF-8 at all) become `?`, so the result always encodes."""
    data = text.encode("utf-8", "replace")
    if len(data) <= limit:
        return data.decode("utf-8")
    return data[: max(limit - _ELLIPSIS_BYTES, 0)].decode("utf-8", "ignore") + ELLIPSIS


def _shrunk(value: object, cap: int | None, text_bytes: int) -> Any:
    """A copy with every list longer than `cap` cut (its total beside it) and every text clipped."""
    if isinstance(value, dict):
        shrunk: Report = {}
        for key, item in value.items():
            name = clip(str(key), text_bytes)
            total = len(item) if isinstance(item, list) and cap is not None and len(item) > cap else None
            if total is not None and name == "checks":  # failed checks are the ones worth keeping
                item = sorted(item, key=lambda c: bool(isinstance(c, dict) and c.get("passed")))
            shrunk[name] = _shrunk(item, cap, text_bytes)
            if total is not None:
                shrunk[f"{name}Total"] = total
        return shrunk
    if isinstance(value, list | tuple):
        items = list(value) if cap is None else list(value)[:cap]
        return [_shrunk(item, cap, text_bytes) for item in items]
    if value is None or isinstance(value, bool | int | float):
        return value
    return clip(str(value), text_bytes)


def _last_resort(report: Report, limit: int) -> str:
    """Outcome, version and rollback outcome, and as much of the error message as fits in `limit`."""
    core: Report = {"outcome": clip(str(report.get("outcome") or "Failed"), _SHORT_TEXT), "truncated": True}
    if isinstance(report.get("currentVersion"), str):
        core["currentVersion"] = clip(report["currentVersion"], _SHORT_TEXT)
    rollback = report.get("rollback")
    if isinstance(rollback, dict):
        core["rollback"] = {
            key: clip(str(rollback[key]), _SHORT_TEXT) for key in ("strategy", "outcome") if key in rollback
        }
    recovered = report.get("recovered")
    if isinstance(recovered, dict) and "state" in recovered:
        core["recovered"] = {"state": clip(str(recovered["state"]), _SHORT_TEXT)}
    error = report.get("error")
    message = str(error.get("message") or "") if isinstance(error, dict) else ""
    budget = limit
    while message and budget > 0:
        text = _dumps({**core, "error": {"message": clip(message, budget)}})
        overflow = _size(text) - limit
        if overflow <= 0:
            return text
        budget -= overflow  # each byte cut from the text takes at least one byte off the JSON
    return _dumps(core)


def _dumps(data: object) -> str:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def _size(text: str) -> int:
    return len(text.encode("utf-8"))
