"""The DynamoDB layout of activities (pure: plain Python values, no driver).

One table serves every access pattern of DESIGN.md with single Query calls:

- an actor's activities by time: the table, key `actor`, sort key
  `sk` = `<ts in ms, 13 digits>#<event_id>`;
- an actor's activities of one type: GSI `by_actor_type`, key `actor_type` = `<actor>#<type>`,
  sort key `sk`;
- activities of a type on a target: GSI `by_type_target`, key
  `type_target` = `<type>#<target>#<shard>`, sort key `sk`.

The target index is write-sharded: `shard` is a stable hash of `event_id` modulo the table's shard
count, so a hot target spreads over `target_shards` partitions and readers fan out and merge.
`type` cannot hold `#` and `shard` is digits, so the composite keys split unambiguously.

Every item also holds the plain fields (`type`, `target`, `ts` in ms, `event_id`), the
`attributes` map, `rev` (the change version, see below) and, with retention, `expires_at`.

`rev` orders the changes of one item: a put stores the write time in ms, each update adds 1, and a
delete is mirrored with the last `rev` + 1. ClickHouse keeps the row with the highest `rev`, so
the later change wins whatever order the stream records arrive in.
"""

from __future__ import annotations

import zlib
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Final

from ._activity import EARLIEST, Activity

__all__ = [
    "ACTOR_TYPE_INDEX",
    "TYPE_TARGET_INDEX",
    "activity_to_item",
    "actor_type_key",
    "from_dynamo",
    "item_key",
    "item_to_activity",
    "shard_of",
    "sort_key",
    "sort_range",
    "table_definition",
    "type_target_key",
]

TYPE_TARGET_INDEX: Final = "by_type_target"
ACTOR_TYPE_INDEX: Final = "by_actor_type"
TTL_ATTRIBUTE: Final = "expires_at"
META_FIELDS: Final = frozenset(
    {
        "actor",
        "sk",
        "type",
        "target",
        "ts",
        "event_id",
        "attributes",
        "rev",
        "type_target",
        "actor_type",
        TTL_ATTRIBUTE,
    }
)


def shard_of(event_id: str, shards: int) -> int:
    """The write shard of an activity: stable across processes and Python versions."""
    return zlib.crc32(event_id.encode()) % shards


def sort_key(ts_ms: int, event_id: str) -> str:
    return f"{ts_ms:013d}#{event_id}"


def sort_range(start: datetime, end: datetime) -> tuple[str, str]:
    """Inclusive sort-key bounds that select exactly the timestamps in `[start, end)`."""
    low = _ms(start)
    high = _ms(end) - 1
    # '$' sorts right after '#', so "<high>$" is above every "<high>#<event_id>".
    return f"{max(low, 0):013d}", f"{max(high, 0):013d}$"


def type_target_key(activity_type: str, target: str, shard: int) -> str:
    return f"{activity_type}#{target}#{shard}"


def actor_type_key(actor: str, activity_type: str) -> str:
    return f"{actor}#{activity_type}"


def item_key(activity: Activity) -> dict[str, str]:
    return {"actor": activity.actor, "sk": sort_key(activity.ts_ms, activity.event_id)}


def activity_to_item(
    activity: Activity,
    *,
    shards: int,
    rev: int,
    ttl_days: int | None = None,
) -> dict[str, Any]:
    """The item to put for an activity (plain values; numbers as int/Decimal)."""
    ts_ms = activity.ts_ms
    item: dict[str, Any] = {
        "actor": activity.actor,
        "sk": sort_key(ts_ms, activity.event_id),
        "type": activity.type,
        "target": activity.target,
        "ts": ts_ms,
        "event_id": activity.event_id,
        "attributes": to_dynamo(activity.attributes),
        "rev": rev,
        "type_target": type_target_key(
            activity.type, activity.target, shard_of(activity.event_id, shards)
        ),
        "actor_type": actor_type_key(activity.actor, activity.type),
    }
    if ttl_days is not None:
        expires = activity.ts + timedelta(days=ttl_days)
        item[TTL_ATTRIBUTE] = int(expires.timestamp())
    return item


def item_to_activity(item: dict[str, Any]) -> Activity:
    """The Activity an item (deserialized by boto3's TypeDeserializer) holds."""
    return Activity(
        actor=item["actor"],
        type=item["type"],
        target=item["target"],
        ts=EARLIEST + timedelta(milliseconds=int(item["ts"])),
        event_id=item["event_id"],
        attributes=from_dynamo(item.get("attributes") or {}),
        now=datetime.max.replace(tzinfo=UTC) - timedelta(days=2),  # stored is accepted
    )


def to_dynamo(value: Any) -> Any:
    """Plain attribute values as DynamoDB accepts them: floats become Decimals."""
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, dict):
        return {k: to_dynamo(v) for k, v in value.items()}
    if isinstance(value, list):
        return [to_dynamo(v) for v in value]
    if isinstance(value, set | frozenset):
        return {to_dynamo(v) for v in value}
    return value


def from_dynamo(value: Any) -> Any:
    """Values as boto3 deserializes them, back to plain Python: Decimals become int or float."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: from_dynamo(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_dynamo(v) for v in value]
    if isinstance(value, set | frozenset):
        return {from_dynamo(v) for v in value}
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    return value


def table_definition(table: str) -> dict[str, Any]:
    """CreateTable arguments: on-demand billing, both GSIs, Streams with both images."""
    projection = {"ProjectionType": "ALL"}
    return {
        "TableName": table,
        "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": [
            {"AttributeName": name, "AttributeType": "S"}
            for name in ("actor", "sk", "type_target", "actor_type")
        ],
        "KeySchema": [
            {"AttributeName": "actor", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ],
        "GlobalSecondaryIndexes": [
            {
                "IndexName": TYPE_TARGET_INDEX,
                "KeySchema": [
                    {"AttributeName": "type_target", "KeyType": "HASH"},
                    {"AttributeName": "sk", "KeyType": "RANGE"},
                ],
                "Projection": projection,
            },
            {
                "IndexName": ACTOR_TYPE_INDEX,
                "KeySchema": [
                    {"AttributeName": "actor_type", "KeyType": "HASH"},
                    {"AttributeName": "sk", "KeyType": "RANGE"},
                ],
                "Projection": projection,
            },
        ],
        "StreamSpecification": {"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    }


def _ms(ts: datetime) -> int:
    delta = ts.astimezone(UTC) - EARLIEST
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000
