"""The DynamoDB item layout: keys, write shards, sort ranges, round trips."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from footfall import Activity
from footfall._table import (
    activity_to_item,
    item_to_activity,
    shard_of,
    sort_key,
    sort_range,
    table_definition,
)

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def test_item_holds_every_key_of_every_access_pattern() -> None:
    a = Activity(actor="bob", type="pv", target="/p", ts=T0, event_id="e1", attributes={"x": 1.5})
    item = activity_to_item(a, shards=4, rev=7, ttl_days=30)
    assert item["actor"] == "bob"
    assert item["sk"] == f"{a.ts_ms:013d}#e1"
    assert item["type_target"] == f"pv#/p#{shard_of('e1', 4)}"
    assert item["actor_type"] == "bob#pv"
    assert item["attributes"] == {"x": Decimal("1.5")}
    assert item["rev"] == 7
    assert item["expires_at"] == int((T0 + timedelta(days=30)).timestamp())
    assert "expires_at" not in activity_to_item(a, shards=4, rev=7)


def test_item_round_trips_to_the_same_activity() -> None:
    a = Activity(
        actor="ann", type="buy", target="/p/1", ts=T0, attributes={"n": 2, "f": 0.5, "s": {"a"}}
    )
    assert item_to_activity(activity_to_item(a, shards=8, rev=1)) == a


def test_shards_are_stable_and_spread() -> None:
    assert shard_of("01ABC", 8) == shard_of("01ABC", 8)  # crc32: no per-process hash seed
    spread = {shard_of(f"event-{i}", 8) for i in range(200)}
    assert spread == set(range(8))


def test_sort_keys_order_by_time_then_event_id() -> None:
    keys = [sort_key(1000, "b"), sort_key(999, "z"), sort_key(1000, "a"), sort_key(10**12, "a")]
    assert sorted(keys) == [
        sort_key(999, "z"),
        sort_key(1000, "a"),
        sort_key(1000, "b"),
        sort_key(10**12, "a"),
    ]


@given(
    start=st.integers(0, 4_000_000_000_000),
    width=st.integers(1, 10_000),
    probe=st.integers(-20_000, 20_000),
    event_id=st.text(alphabet="0123456789ABCDEFGHJKMNPQRSTVWXYZ~", min_size=1, max_size=30),
)
def test_sort_range_selects_exactly_start_inclusive_end_exclusive(
    start: int, width: int, probe: int, event_id: str
) -> None:
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    low, high = sort_range(
        epoch + timedelta(milliseconds=start), epoch + timedelta(milliseconds=start + width)
    )
    at = start + probe
    if at < 0:
        return
    inside = low <= sort_key(at, event_id) <= high
    assert inside == (start <= at < start + width)


def test_table_definition_has_streams_with_both_images_and_both_indexes() -> None:
    d = table_definition("acts")
    assert d["StreamSpecification"] == {
        "StreamEnabled": True,
        "StreamViewType": "NEW_AND_OLD_IMAGES",
    }
    assert {i["IndexName"] for i in d["GlobalSecondaryIndexes"]} == {
        "by_type_target",
        "by_actor_type",
    }
    assert d["BillingMode"] == "PAY_PER_REQUEST"
