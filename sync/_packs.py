"""Decode a pack from `<prefix>.events`: one activity per line (`footfall._wire`).

Each line is held to exactly the rules of a single-activity message (`decode_event`); a bad line
becomes a dead letter of its own, the good lines of the pack are written. Pure: no I/O.

An ASCII line that is one JSON object (what `Activity.to_json()` writes for plainly valid
events) is parsed by the JSON scanner `json.loads` uses, without its per-call work (encoding
detection, whitespace); a line it would treat differently (whitespace around the object, other
JSON, a parse error, non-ASCII text) goes through `decode_event`, which words the reason. One
clock serves the whole pack.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Final

from ._decode import MAX_EVENT_BYTES, EventPosition, Poison, Row, decode_event, decode_event_object

__all__ = ["decode_pack"]

# json.loads(text) is this scanner at index 0, after and before whitespace (json.decoder)
_SCAN: Final[Callable[[str, int], tuple[Any, int]]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


def decode_pack(
    value: bytes | None, *, partition: int, offset: int, now: datetime | None = None
) -> tuple[list[Row], list[tuple[bytes, Poison]]]:
    """The pack's rows, and its bad lines (the line, and why) for the DLQ. A pack without a
    single activity is one poison: an empty pack is a producer's mistake worth seeing."""
    rows: list[Row] = []
    poisons: list[tuple[bytes, Poison]] = []
    now = datetime.now(UTC) if now is None else now
    value = value or b""
    for number, line in enumerate(value.split(b"\n"), start=1):
        decoded = _scanned(line, partition, offset, now)
        if decoded is None:
            if not line.strip():
                continue
            decoded = decode_event(line, partition=partition, offset=offset, now=now)
        if type(decoded) is Row:
            rows.append(decoded)
        else:
            assert isinstance(decoded, Poison)
            poisons.append((line, Poison(decoded.position, f"line {number}: {decoded.reason}")))
    if not rows and not poisons:
        reason = "empty pack: expected one Activity.to_json() form per line"
        poisons.append((value, Poison(EventPosition(partition, offset), reason)))
    return rows, poisons


def _scanned(line: bytes, partition: int, offset: int, now: datetime) -> Row | Poison | None:
    """The line decoded as `decode_event` would, if it is exactly one JSON object of ASCII text
    (no whitespace around it, within the size limit); None: let `decode_event` take it."""
    if not (line.startswith(b"{") and line.endswith(b"}") and line.isascii()):
        return None
    if len(line) > MAX_EVENT_BYTES:
        return None
    text = line.decode("ascii")
    try:
        data, end = _SCAN(text, 0)
    except (StopIteration, ValueError, RecursionError):
        return None
    if end != len(text) or type(data) is not dict:
        return None
    return decode_event_object(data, len(line), partition=partition, offset=offset, now=now)
