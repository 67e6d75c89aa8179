"""The DynamoDB read patterns of DESIGN.md, each a single Query (per write shard), no Scan.

Shared by `ingest.Tracker.view_activity` and the `query` package's point reads, so both read the
table the same way. Items come back as boto3 deserializes them (plain dicts, see
`footfall._table`); callers turn them into Activities or rows.

- `actor_items`: an actor's activities by time, on the table (or, for one type, on the
  `by_actor_type` index): the latest N, or those in `[start, end)`;
- `target_items`: activities of a type on a target in `[start, end)`, on the write-sharded
  `by_type_target` index: one Query per shard, run concurrently, merged by time.
"""

from __future__ import annotations

import heapq
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

from ._activity import EARLIEST, LATEST, to_utc
from ._dynamodb import DynamoDB
from ._table import ACTOR_TYPE_INDEX, TYPE_TARGET_INDEX, actor_type_key, sort_range, type_target_key

__all__ = ["actor_items", "sort_bounds", "target_items"]

MAX_SHARD_THREADS = 8


def sort_bounds(start: datetime | None, end: datetime | None) -> tuple[str, str] | None:
    """Sort-key bounds for `[start, end)` clamped to the storable times (either side may be
    open); None when the range is empty. Naive datetimes raise InvalidActivity."""
    low = EARLIEST if start is None else max(to_utc(start, "start"), EARLIEST)
    high = LATEST if end is None else min(to_utc(end, "end"), LATEST)
    if high <= low:
        return None
    return sort_range(low, high)


def actor_items(
    store: DynamoDB,
    actor: str,
    *,
    activity_type: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    newest_first: bool = True,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """An actor's items in `[start, end)` (open sides unbounded), newest first unless told
    otherwise, at most `limit`. One Query (paginated): on the table, or on `by_actor_type`
    when `activity_type` is given."""
    bounds = sort_bounds(start, end)
    if bounds is None or limit == 0:
        return []
    if activity_type is None:
        key_name, key_value, index = "actor", actor, None
    else:
        key_name, key_value = "actor_type", actor_type_key(actor, activity_type)
        index = ACTOR_TYPE_INDEX
    return list(
        store.query(
            key_name=key_name,
            key_value=key_value,
            sk_between=bounds,
            index=index,
            newest_first=newest_first,
            limit=limit,
        )
    )


def target_items(
    store: DynamoDB,
    activity_type: str,
    target: str,
    *,
    shards: int,
    start: datetime | None = None,
    end: datetime | None = None,
    newest_first: bool = True,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """Items of `activity_type` on `target` in `[start, end)`, merged by time (then event id and
    actor), newest first unless told otherwise, at most `limit`.

    One Query per write shard of `by_type_target` (each stops at `limit`), run concurrently.
    """
    bounds = sort_bounds(start, end)
    if bounds is None or limit == 0:
        return []

    def one_shard(shard: int) -> list[dict[str, Any]]:
        return list(
            store.query(
                key_name="type_target",
                key_value=type_target_key(activity_type, target, shard),
                sk_between=bounds,
                index=TYPE_TARGET_INDEX,
                newest_first=newest_first,
                limit=limit,
            )
        )

    with ThreadPoolExecutor(max_workers=min(shards, MAX_SHARD_THREADS)) as pool:
        per_shard = list(pool.map(one_shard, range(shards)))
    merged = heapq.merge(
        *per_shard, key=lambda item: (item["sk"], item["actor"]), reverse=newest_first
    )
    out: list[dict[str, Any]] = []
    for item in merged:
        out.append(item)
        if limit is not None and len(out) >= limit:
            break
    return out
