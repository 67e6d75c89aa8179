"""ingest: activities/s into DynamoDB through `Tracker.record_many`, against two baselines.

- (a) cctv-style: one PutItem per activity, sequential, with a plain boto3 client — what the
  original tracker did. Honest as it is: it is the API's natural use, nothing slows it down.
- (b) the raw limit: a bare boto3 BatchWriteItem loop (25 items a call, UnprocessedItems
  re-sent) over a thread pool. Tuned: before measuring, each thread count of THREADS writes a
  tuning set and the fastest is kept, as a competent user tuning for throughput would.

Every side builds and serializes its own items from the same kind of synthetic activities
inside the timed part (the items are DynamoDB's, laid out by `footfall._table` for all sides);
each round writes activities no side wrote before (a fresh seed), so the product's
existence check (`skip_existing`, on by default) finds nothing and every item is written.
"""

from __future__ import annotations

import itertools
import time
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from boto3.dynamodb.types import TypeSerializer

from footfall import Activity, Settings, load_settings
from footfall._dynamodb import DynamoDB
from footfall._synthetic import synthetic_activities
from footfall._table import activity_to_item
from ingest import Tracker

from ._context import REPETITIONS, Bench
from ._harness import CaseResult, Goal, Side, alternate
from ._services import bare_dynamodb_client

__all__ = ["run_ingest"]

THREADS = (1, 2, 4, 8, 16, 32)
SHARDS = 4  # the product's default write shards of the target index


def run_ingest(bench: Bench) -> list[CaseResult]:
    endpoint = bench.services.fresh_dynamodb()
    settings = load_settings(
        dynamodb_endpoint=endpoint, table="bench-ingest", home=bench.work / "ingest"
    )
    DynamoDB(settings).ensure_table()
    client = bare_dynamodb_client(settings)
    seeds = itertools.count(1000)
    n_batch = bench.size(10_000, 400)
    n_single = bench.size(2_000, 100)

    def fresh(n: int) -> list[Activity]:
        return list(synthetic_activities(n, seed=next(seeds), end=bench.now))

    trackers: dict[str, Tracker] = {}

    def product(_round: int) -> float:
        activities = fresh(n_batch)
        by_type: dict[str, list[Activity]] = defaultdict(list)
        for a in activities:
            by_type[a.type].append(a)
        started = time.perf_counter()
        for kind, items in by_type.items():
            tracker = trackers.get(kind) or trackers.setdefault(kind, Tracker(kind, settings))
            report = tracker.record_many(items)
            if report.written != len(items):
                raise RuntimeError(f"record_many wrote {report.written} of {len(items)}")
        return len(activities) / (time.perf_counter() - started)

    def sequential(_round: int) -> float:
        return put_items_sequentially(client, settings, fresh(n_single))

    bench.step("ingest: tuning the thread count of the bare BatchWriteItem loop")
    tuning = {t: batch_write(client, settings, fresh(n_batch // 4), t) for t in THREADS}
    threads = max(tuning, key=lambda t: tuning[t])
    bench.step(
        "ingest: items/s by threads "
        + ", ".join(f"{t}: {rate:,.0f}" for t, rate in tuning.items())
        + f" -> {threads}"
    )

    def bare(_round: int) -> float:
        return batch_write(client, settings, fresh(n_batch), threads)

    bench.step("ingest: record_many vs sequential PutItem")
    p_a, b_a = alternate(product, sequential, repetitions=REPETITIONS)
    bench.step("ingest: record_many vs bare BatchWriteItem")
    p_b, b_b = alternate(product, bare, repetitions=REPETITIONS)
    unit = "activities/s"
    return [
        CaseResult(
            "ingest (a)",
            unit,
            Side("Tracker.record_many", tuple(p_a)),
            Goal("ratio_at_least", 5.0, "≥ 5x (a)"),
            Side("cctv-style sequential PutItem", tuple(b_a)),
        ),
        CaseResult(
            "ingest (b)",
            unit,
            Side("Tracker.record_many", tuple(p_b)),
            Goal("ratio_at_least", 0.9, "≥ 90 % of (b)"),
            Side(f"bare BatchWriteItem loop, {threads} threads (best)", tuple(b_b)),
        ),
    ]


def _items(settings: Settings, activities: Sequence[Activity]) -> list[dict[str, Any]]:
    rev = time.time_ns() // 1_000_000
    return [activity_to_item(a, shards=SHARDS, rev=rev) for a in activities]


def put_items_sequentially(client: Any, settings: Settings, activities: list[Activity]) -> float:
    """cctv-style: one PutItem per activity, one after the other; items/s."""
    serialize = TypeSerializer().serialize
    started = time.perf_counter()
    for item in _items(settings, activities):
        client.put_item(TableName=settings.table, Item={k: serialize(v) for k, v in item.items()})
    return len(activities) / (time.perf_counter() - started)


def batch_write(client: Any, settings: Settings, activities: list[Activity], threads: int) -> float:
    """A bare BatchWriteItem loop: 25 items a call over `threads` threads; items/s."""
    serialize = TypeSerializer().serialize
    table = settings.table

    def write(chunk: list[dict[str, Any]]) -> None:
        pending: list[Any] = [
            {"PutRequest": {"Item": {k: serialize(v) for k, v in item.items()}}} for item in chunk
        ]
        attempt = 0
        while pending:
            response = client.batch_write_item(RequestItems={table: pending})
            pending = list(response.get("UnprocessedItems", {}).get(table, []))
            if pending:  # back off briefly, as the AWS SDK guidance says
                attempt += 1
                time.sleep(min(1.0, 0.05 * 2**attempt))

    started = time.perf_counter()
    items = _items(settings, activities)
    chunks = [items[i : i + 25] for i in range(0, len(items), 25)]
    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(write, chunks))
    return len(activities) / (time.perf_counter() - started)
