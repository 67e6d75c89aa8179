"""record_many's write path: existence checks and writes in units on one pool, overlapping.

The client is a scripted stand-in for the wire (no emulation of DynamoDB): it answers
BatchGetItem from a set of stored keys and BatchWriteItem by storing, so what record_many asks
and writes is visible call by call. The same paths run against DynamoDB Local in
tests/integration/test_ingest.py and under injected throttling in tests/faults.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import botocore.exceptions
import pytest
from boto3.dynamodb.types import TypeSerializer

from footfall import load_settings
from footfall._dynamodb import BATCH_GET_LIMIT, DynamoDB
from ingest import Activity, BatchWriteError, Tracker
from ingest._tracker import unit_size

NOW = datetime(2026, 11, 29, 12, tzinfo=UTC)


class WireClient:
    """BatchGetItem and BatchWriteItem over an in-memory set of keys; thread-safe. `hold_gets`
    makes every BatchGetItem but the first wait until some BatchWriteItem has arrived."""

    def __init__(self, *, hold_gets: bool = False, get_error: Exception | None = None) -> None:
        self.lock = threading.Lock()
        self.stored: dict[tuple[str, str], dict[str, Any]] = {}
        self.calls: list[tuple[str, int]] = []
        self.hold_gets = hold_gets
        self.get_error = get_error
        self.a_write_arrived = threading.Event()
        self.held_too_long = False

    def batch_get_item(self, RequestItems: dict[str, Any]) -> dict[str, Any]:
        ((table, request),) = RequestItems.items()
        with self.lock:
            self.calls.append(("get", len(request["Keys"])))
            first = sum(1 for kind, _ in self.calls if kind == "get") == 1
        if self.get_error is not None:
            raise self.get_error
        if self.hold_gets and not first and not self.a_write_arrived.wait(timeout=10):
            self.held_too_long = True  # every check ran before any write
        keys = [(k["actor"]["S"], k["sk"]["S"]) for k in request["Keys"]]
        with self.lock:
            found = [self.stored[k] for k in keys if k in self.stored]
        return {"Responses": {table: found}, "UnprocessedKeys": {}}

    def batch_write_item(self, RequestItems: dict[str, list[Any]]) -> dict[str, Any]:
        ((_table, requests),) = RequestItems.items()
        with self.lock:
            self.calls.append(("write", len(requests)))
            for r in requests:
                item = r["PutRequest"]["Item"]
                self.stored[(item["actor"]["S"], item["sk"]["S"])] = item
        self.a_write_arrived.set()
        return {"UnprocessedItems": {}}


def tracker(client: WireClient, concurrency: int = 4) -> Tracker:
    settings = load_settings(table="tbl", write_concurrency=concurrency)
    store = DynamoDB(settings, client=client)  # type: ignore[arg-type]
    return Tracker("views", settings, store=store)


def activities(n: int, prefix: str = "e") -> list[Activity]:
    return [
        Activity(
            actor=f"a{i % 7}",
            type="views",
            target=f"/p/{i}",
            ts=NOW - timedelta(seconds=i),
            event_id=f"{prefix}{i:06d}",
            attributes={"n": i, "price": 1.5, "tags": ["x", "y"], "ok": True},
            now=NOW,
        )
        for i in range(n)
    ]


def test_existence_checks_overlap_the_writes_of_other_units() -> None:
    """A unit's BatchGetItem does not wait for every other check: some unit writes while
    another still checks (the check no longer runs over the whole batch before any write)."""
    client = WireClient(hold_gets=True)
    report = tracker(client, concurrency=4).record_many(activities(400))
    assert not client.held_too_long
    assert (report.written, report.duplicates, report.failed) == (400, 0, [])


def test_each_unit_checks_once_and_writes_only_what_is_missing() -> None:
    client = WireClient()
    t = tracker(client, concurrency=2)
    first = activities(150)
    t.record_many(first[:60])
    client.calls.clear()
    report = t.record_many(first)
    assert (report.written, report.duplicates) == (90, 60)
    gets = [n for kind, n in client.calls if kind == "get"]
    writes = [n for kind, n in client.calls if kind == "write"]
    assert sum(gets) == 150 and all(n <= BATCH_GET_LIMIT for n in gets)
    assert sum(writes) == 90 and all(n <= 25 for n in writes)
    assert len(client.stored) == 150


def test_without_skip_existing_nothing_is_checked() -> None:
    client = WireClient()
    report = tracker(client).record_many(activities(60), skip_existing=False)
    assert report.written == 60
    assert {kind for kind, _ in client.calls} == {"write"}


def test_a_failing_existence_check_names_its_items_and_writes_none_of_them() -> None:
    error = botocore.exceptions.ClientError(
        {"Error": {"Code": "ValidationException", "Message": "m"}}, "BatchGetItem"
    )
    client = WireClient(get_error=error)
    with pytest.raises(BatchWriteError) as caught:
        tracker(client).record_many(activities(30))
    assert [i for i, _ in caught.value.failed] == list(range(30))
    assert "existence check failed" in caught.value.failed[0][1]
    assert caught.value.written == 0 and not client.stored


@pytest.mark.parametrize(
    ("items", "workers", "size"),
    [(0, 8, 25), (10, 8, 25), (300, 16, 25), (300, 4, 75), (1_000, 8, 100), (10_000, 16, 100)],
)
def test_units_are_whole_write_chunks_that_feed_every_worker(
    items: int, workers: int, size: int
) -> None:
    assert unit_size(items, workers) == size


@pytest.mark.parametrize(
    "item",
    [
        {"actor": "a", "sk": "0000000000001#e", "ts": 1, "rev": 1_764_000_000_000},
        {"attributes": {"s": "", "n": -7, "d": Decimal("1.5"), "b": True, "none": None}},
        {"attributes": {"deep": {"l": [1, "x", {"m": 2}], "ss": {"a", "b"}, "ns": {1, 2}}}},
        {"big": 10**37, "bytes": b"\x00\x01", "flag": False, "dec": Decimal("1e125")},
    ],
)
def test_items_are_serialized_as_boto3_would(item: dict[str, Any]) -> None:
    store = DynamoDB(load_settings(table="tbl"), client=WireClient())  # type: ignore[arg-type]
    serialize = TypeSerializer().serialize
    assert store._wire(item) == {k: serialize(v) for k, v in item.items()}


def test_numbers_beyond_dynamodbs_precision_are_refused_as_boto3_refuses_them() -> None:
    store = DynamoDB(load_settings(table="tbl"), client=WireClient())  # type: ignore[arg-type]
    with pytest.raises(Exception) as ours:
        store._wire({"n": 10**40 + 1})
    with pytest.raises(Exception) as boto:
        TypeSerializer().serialize(10**40 + 1)
    assert type(ours.value) is type(boto.value)
