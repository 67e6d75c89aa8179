"""Decode a pack from `<prefix>.events`: one activity per line (`footfall._wire`).

Each line is held to exactly the rules of a single-activity message (`decode_event`); a bad line
becomes a dead letter of its own, the good lines of the pack are written. Pure: no I/O.
"""

from __future__ import annotations

from datetime import datetime

from ._decode import EventPosition, Poison, Row, decode_event

__all__ = ["decode_pack"]


def decode_pack(
    value: bytes | None, *, partition: int, offset: int, now: datetime | None = None
) -> tuple[list[Row], list[tuple[bytes, Poison]]]:
    """The pack's rows, and its bad lines (the line, and why) for the DLQ. A pack without a
    single activity is one poison: an empty pack is a producer's mistake worth seeing."""
    rows: list[Row] = []
    poisons: list[tuple[bytes, Poison]] = []
    lines = (value or b"").split(b"\n")
    for number, line in enumerate(lines, start=1):
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
        poisons.append((value or b"", Poison(EventPosition(partition, offset), reason)))
    return rows, poisons
