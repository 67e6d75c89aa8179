"""The fast acceptance check of a Kafka event: the plainly valid event without building an Activity.

`decode_event` holds every event to footfall's `Activity` rules. Constructing an `Activity` per
event cost over a third of the sink agent's time, for events that are almost all plainly valid:
ASCII identifiers and flat attributes of strings, small numbers, booleans and nulls.
`plain_event_ts_ms` checks conditions that are *sufficient* for `Activity` to accept such an
event and returns its `ts` in epoch ms; for anything else (non-ASCII text, nested attributes,
numbers near DynamoDB's limits, a ts at the edges of time ...) it returns None and the caller
builds the `Activity`, which decides and words the reason. So the fast path accepts nothing that
`Activity` refuses, and rejects nothing by itself: the accepted and rejected inputs are exactly
the same (`tests/unit/test_sync_event_check.py` checks that with generated inputs).

Pure: no I/O.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Any, Final

from footfall._activity import (
    EARLIEST,
    LATEST,
    MAX_EVENT_ID_CHARS,
    MAX_FUTURE,
    MAX_ITEM_BYTES,
    MAX_KEY_PART_BYTES,
    MAX_TYPE_CHARS,
    RESERVED_ATTRIBUTES,
)

__all__ = ["plain_event_ts_ms", "plain_item"]

# fullmatch, unlike Activity's `^...$` (which also lets a trailing newline through): stricter
_EVENT_ID: Final = re.compile(rf"[\x21-\x7e]{{1,{MAX_EVENT_ID_CHARS}}}")
_TYPE: Final = re.compile(rf"[A-Za-z0-9_.:-]{{1,{MAX_TYPE_CHARS}}}")
_INT_LIMIT: Final = 10**38  # fewer than 38 digits: within DynamoDB's precision and magnitude
_FLOAT_LOW: Final = 1e-125  # well inside DynamoDB's 1e-130 .. 1e126 magnitudes
_FLOAT_HIGH: Final = 1e125
# approximate_size() counts actor and event_id thrice, type twice, every other string once
# (UTF-8 bytes; each appears in the raw JSON with at least that many), 200 + 3 bytes of
# overhead, and per attribute 1 byte plus at most 21 for its value: see _fits()
_SIZE_OVERHEAD: Final = 203
_PER_ATTRIBUTE: Final = 22


def plain_event_ts_ms(
    data: dict[str, Any], ts: datetime, now: datetime | None, raw_bytes: int
) -> int | None:
    """`ts` in epoch ms if `Activity` certainly accepts the event, else None (ask Activity).

    `data` is the parsed event (its fields present, none unknown), `ts` its parsed `ts`, `now`
    the clock of the 1-day future limit (None: the current time) and `raw_bytes` the size of the
    JSON message it was parsed from.
    """
    if not _plain_identity(data["event_id"], data["type"], data["actor"], data["target"]):
        return None
    attributes = data.get("attributes")
    if attributes is not None and not (type(attributes) is dict and _plain(attributes)):
        return None
    count = len(attributes) if attributes else 0
    if 3 * raw_bytes + _SIZE_OVERHEAD + _PER_ATTRIBUTE * count > MAX_ITEM_BYTES:
        return None
    return _ts_ms(ts, now)


def plain_item(
    actor: object, type_: object, target: object, event_id: object, attributes: object
) -> bool:
    """True if `Activity` certainly accepts a stored item's fields (`attributes` as plain
    Python values, `from_dynamo`'s output); False: build the Activity, which decides.

    The point reads of `query` turn every item they read into a row this way; the item's `ts`
    is checked by the caller (a whole number of ms within Activity's range).
    """
    if not (
        _plain_identity(event_id, type_, actor, target)
        and type(attributes) is dict
        and _plain(attributes)
    ):
        return False
    # Activity.approximate_size() exactly, for ASCII text (characters are bytes)
    size = 3 * len(actor) + 2 * len(type_) + len(target) + 3 * len(event_id) + 200  # type: ignore[arg-type]
    size += 3 + sum(len(name) + 1 + _scalar_size(value) for name, value in attributes.items())
    return size < MAX_ITEM_BYTES


def _scalar_size(value: object) -> int:
    if type(value) is str:
        return len(value)
    return 1 if value is None or type(value) is bool else 21


def _plain_identity(event_id: object, type_: object, actor: object, target: object) -> bool:
    """ASCII identifiers that Activity's event_id, type and key rules certainly accept."""
    return (
        type(event_id) is str
        and _EVENT_ID.fullmatch(event_id) is not None
        and type(type_) is str
        and _TYPE.fullmatch(type_) is not None
        and _plain_key_part(actor)
        and _plain_key_part(target)
    )


def _plain_key_part(value: object) -> bool:
    """A non-blank ASCII string short enough for a DynamoDB key (ASCII: chars = bytes)."""
    return (
        type(value) is str
        and 0 < len(value) <= MAX_KEY_PART_BYTES
        and value.isascii()
        and not value.isspace()
    )


def _plain(attributes: dict[Any, Any]) -> bool:
    """Flat attributes with ASCII names and plainly storable scalar values."""
    for name, value in attributes.items():
        if not (type(name) is str and name and name.isascii() and name not in RESERVED_ATTRIBUTES):
            return False
        kind = type(value)
        if kind is str:
            if not value.isascii():
                return False  # may hold a lone surrogate: let Activity look
        elif kind is int:
            if not -_INT_LIMIT < value < _INT_LIMIT:
                return False
        elif kind is float:
            if not (
                value == 0.0 or (math.isfinite(value) and _FLOAT_LOW < abs(value) < _FLOAT_HIGH)
            ):
                return False
        elif not (value is None or kind is bool):
            return False  # lists, maps, sets: Activity checks their depth and contents
    return True


def _ts_ms(ts: datetime, now: datetime | None) -> int | None:
    """Activity's ts rules on a plain UTC timestamp; None for anything unusual."""
    if ts.tzinfo is not UTC:
        return None  # other offsets, naive values: Activity converts or refuses them
    ts = ts.replace(microsecond=ts.microsecond // 1000 * 1000)
    if not EARLIEST <= ts < LATEST:
        return None
    limit = (datetime.now(UTC) if now is None else now) + MAX_FUTURE
    if ts > limit:
        return None
    delta = ts - EARLIEST
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000
