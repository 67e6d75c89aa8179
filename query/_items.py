"""DynamoDB items → the activity columns of a point read, plainly valid items without a Row.

A point read turns every item it reads into the row sync writes for it (`row_from_item`: the
decoder's checks, then the row). Going through the decoder cost more than the DynamoDB Query's
own client-side work on top of botocore (~17 µs an item: a copy of the item, a regex on the sort
key, a Row per item, then nine columns of which a point read keeps six).

`plain_row` checks conditions that are *sufficient* for `row_from_item` to accept an item and
returns the same six values; for anything else (a missing field, a number that is not a whole
in range, a sort key that does not match, text or attributes that are not plainly valid, ...)
it returns None and the caller asks `row_from_item`, which decides, skips non-activities and says
why a malformed item is refused. So the fast path changes no result
(`tests/unit/test_query_items.py` checks that with generated items).

Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from functools import cache
from typing import TYPE_CHECKING, Any, Final

from footfall._activity import EARLIEST, LATEST
from footfall._table import from_dynamo

if TYPE_CHECKING:
    from sync._decode import Row

__all__ = ["ActivityColumns", "activity_columns", "plain_row"]

_MAX_TS_MS: Final = int((LATEST - EARLIEST).total_seconds()) * 1000  # exclusive, as sync's
_MAX_VERSION: Final = (1 << 64) - 1  # ClickHouse's UInt64 version, as sync's MAX_VERSION

PlainRow = tuple[str, str, str, str, int, dict[str, str]]
# event_id, actor, type, target, ts (ms), then the attributes as map offsets, keys and values
ActivityColumns = tuple[
    list[str], list[str], list[str], list[str], list[int], list[int], list[str], list[str]
]


def plain_row(item: Mapping[str, Any]) -> PlainRow | None:
    """`(event_id, actor, type, target, ts_ms, attributes)` of `row_from_item(item)` if that
    certainly accepts the item; None: ask `row_from_item`."""
    try:
        sk, ts, rev = item["sk"], item["ts"], item["rev"]
        actor, type_, target = item["actor"], item["type"], item["target"]
        event_id = item["event_id"]
    except KeyError:
        return None
    attributes = item.get("attributes", {})
    if not (
        type(ts) is Decimal
        and type(rev) is Decimal
        and type(event_id) is str
        and type(attributes) is dict
        and ts.is_finite()
        and rev.is_finite()
    ):
        return None
    ts_ms = int(ts)
    if ts_ms != ts or not 0 <= ts_ms < _MAX_TS_MS or not (0 <= rev <= _MAX_VERSION):
        return None
    if int(rev) != rev or sk != f"{ts_ms:013d}#{event_id}":  # footfall._table.sort_key
        return None
    try:
        plain = {k: v if type(v) is str else from_dynamo(v) for k, v in attributes.items()}
    except (ArithmeticError, ValueError):  # Infinity, sNaN: the decoder says why
        return None
    flat = _plain_item()(actor, type_, target, event_id, plain)
    if flat is None:
        return None
    return event_id, actor, type_, target, ts_ms, flat


@cache
def _plain_item() -> Callable[..., dict[str, str] | None]:
    """sync's fast acceptance check of stored items, which also flattens their attributes
    (imported on first use: `query` imports without sync's dependencies until a point read
    needs them)."""
    from sync._event_check import plain_item

    return plain_item


def activity_columns(
    items: Iterable[Mapping[str, Any]], checked_row: Callable[[Mapping[str, Any]], Row | None]
) -> ActivityColumns:
    """The six activity columns of these items, in their order: plainly valid items through
    `plain_row`, every other one through `checked_row` (`row_from_item`, or None to skip it)."""
    event_ids: list[str] = []
    actors: list[str] = []
    types: list[str] = []
    targets: list[str] = []
    stamps: list[int] = []
    offsets, keys, values = [0], list[str](), list[str]()
    for item in items:
        row = plain_row(item)
        if row is None:
            checked = checked_row(item)
            if checked is None:
                continue
            event_id, actor, type_, target, ts_ms, flat = checked[:6]
        else:
            event_id, actor, type_, target, ts_ms, flat = row
        event_ids.append(event_id)
        actors.append(actor)
        types.append(type_)
        targets.append(target)
        stamps.append(ts_ms)
        keys.extend(flat)
        values.extend(flat.values())
        offsets.append(len(keys))
    return event_ids, actors, types, targets, stamps, offsets, keys, values
