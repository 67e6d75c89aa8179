"""The fast acceptance check of a Kafka event: the plainly valid event without building an Activity.

`decode_event` holds every event to footfall's `Activity` rules. Constructing an `Activity` per
event cost over a third of the sink agent's time, for events that are almost all plainly valid:
ASCII identifiers and flat attributes of strings, small numbers, booleans and nulls.
`plain_event` checks conditions that are *sufficient* for `Activity` to accept such an event and
returns its `ts` in epoch ms and its attributes flattened (checked and flattened in one pass);
for anything else (non-ASCII text, nested attributes, numbers near DynamoDB's limits, a ts at the
edges of time ...) it returns None and the caller builds the `Activity`, which decides and words
the reason. So the fast path accepts nothing that `Activity` refuses, and rejects nothing by
itself: the accepted and rejected inputs are exactly the same, and the rows the same
(`tests/unit/test_sync_event_check.py` checks that with generated inputs).

Pure: no I/O.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
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

__all__ = ["SCALAR_TEXT", "future_limit", "plain_event", "plain_item"]

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
_MS: Final = timedelta(milliseconds=1)
# the `Map(String, String)` text of a scalar attribute value: what json.dumps writes for it,
# without its overhead (strings are stored as they are)
SCALAR_TEXT: Final[dict[type, Callable[[Any], str]]] = {
    int: int.__repr__,
    float: float.__repr__,
    bool: lambda b: "true" if b else "false",
    type(None): lambda _: "null",
}


def future_limit(now: datetime | None) -> datetime:
    """The latest `ts` Activity accepts at `now` (None: the current time)."""
    return (datetime.now(UTC) if now is None else now) + MAX_FUTURE


def plain_event(
    data: dict[str, Any], ts: datetime, limit: datetime, raw_bytes: int
) -> tuple[int, dict[str, str]] | None:
    """(`ts` in epoch ms, the attributes flattened as `flatten_attributes` does) if `Activity`
    certainly accepts the event, else None (ask Activity).

    `data` is the parsed event (its fields present, none unknown), `ts` its parsed `ts`, `limit`
    the latest acceptable ts (`future_limit`) and `raw_bytes` the size of the JSON it was parsed
    from.
    """
    if not _plain_identity(data["event_id"], data["type"], data["actor"], data["target"]):
        return None
    attributes = data.get("attributes")
    if attributes is None:
        flat: dict[str, str] = {}
    elif type(attributes) is dict and (plain := _plain_flat(attributes)) is not None:
        flat = plain
    else:
        return None
    if 3 * raw_bytes + _SIZE_OVERHEAD + _PER_ATTRIBUTE * len(flat) > MAX_ITEM_BYTES:
        return None
    ts_ms = _ts_ms(ts, limit)
    return None if ts_ms is None else (ts_ms, flat)


def plain_item(
    actor: object, type_: object, target: object, event_id: object, attributes: object
) -> dict[str, str] | None:
    """The attributes flattened (as `flatten_attributes` does) if `Activity` certainly accepts
    a stored item's fields (`attributes` as plain Python values, `from_dynamo`'s output); None:
    build the Activity, which decides.

    The point reads of `query` turn every item they read into a row this way; the item's `ts`
    is checked by the caller (a whole number of ms within Activity's range).
    """
    if not (_plain_identity(event_id, type_, actor, target) and type(attributes) is dict):
        return None
    flat = _plain_flat(attributes)
    if flat is None:
        return None
    # Activity.approximate_size() exactly, for ASCII text (characters are bytes)
    size = 3 * len(actor) + 2 * len(type_) + len(target) + 3 * len(event_id) + 200  # type: ignore[arg-type]
    size += 3 + sum(len(name) + 1 + _scalar_size(value) for name, value in attributes.items())
    return flat if size < MAX_ITEM_BYTES else None


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


def _plain_flat(attributes: dict[Any, Any]) -> dict[str, str] | None:
    """The attributes flattened (names sorted, values as text), if their names are ASCII and
    their values plainly storable scalars; else None."""
    flat: dict[str, str] = {}
    for name, value in attributes.items():
        if not (type(name) is str and name and name.isascii() and name not in RESERVED_ATTRIBUTES):
            return None
        kind = type(value)
        if kind is str:
            if not value.isascii():
                return None  # may hold a lone surrogate: let Activity look
            flat[name] = value
            continue
        if kind is int:
            if not -_INT_LIMIT < value < _INT_LIMIT:
                return None
        elif kind is float:
            if not (
                value == 0.0 or (math.isfinite(value) and _FLOAT_LOW < abs(value) < _FLOAT_HIGH)
            ):
                return None
        elif not (value is None or kind is bool):
            return None  # lists, maps, sets: Activity checks their depth and contents
        flat[name] = SCALAR_TEXT[kind](value)
    if len(flat) < 2:
        return flat
    return {name: flat[name] for name in sorted(flat)}


def _ts_ms(ts: datetime, limit: datetime) -> int | None:
    """Activity's ts rules on a plain UTC timestamp; None for anything unusual."""
    if ts.tzinfo is not UTC:
        return None  # other offsets, naive values: Activity converts or refuses them
    # Activity truncates to the ms first: the bounds are whole ms, and a ts within the ms after
    # `limit` is left to Activity, so comparing the exact ts decides the same
    if not (EARLIEST <= ts < LATEST and ts <= limit):
        return None
    return (ts - EARLIEST) // _MS  # floored: the truncated ms
