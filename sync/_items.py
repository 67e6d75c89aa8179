"""A stored DynamoDB item (as a Scan returns it) → the ClickHouse row the stream would give it.

The backfill and reconcile paths read items with a Scan instead of stream images; they must
build exactly the row the stream decoder builds for an INSERT/MODIFY image of the same item
(same columns, source 'dynamodb', version = the item's `rev`, is_deleted 0), or a scanned row
and a streamed row of one item state would differ. So this reuses the decoder's own functions;
it lives beside `_decode` only to keep that module small.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from footfall import InvalidActivity

from ._decode import _SORT_KEY, Row, _Bad, _item_row

__all__ = ["row_from_item"]


def row_from_item(item: Mapping[str, Any]) -> Row | None:
    """The row of an activity item deserialized by boto3 (the `DynamoDB.scan` form).

    None for an item that is no activity (its sort key is not `<13-digit ms>#<event_id>`, the
    stream decoder's `Skip`); InvalidActivity for an activity item that is malformed (the stream
    decoder's `Poison`), with the decoder's reason as `.rule`.
    """
    sk = item.get("sk")
    if not isinstance(sk, str) or not _SORT_KEY.fullmatch(sk):
        return None
    try:
        return _item_row(dict(item), sk, 0)
    except _Bad as exc:
        raise InvalidActivity("item", sk, str(exc)) from None
