"""point read and analytics: reads through `query.connect()` against bare boto3.

point read: an actor's latest 50 activities, one read at a time (latency), through the typed
call `latest(actor, 50)` and through routed SQL (`SELECT <columns> FROM activities WHERE actor
= {actor:String} ORDER BY ts DESC LIMIT 50`, which the router serves with one DynamoDB Query),
both returning polars frames. Baseline: the same Query with a plain boto3 client (newest first,
Limit 50), items deserialized into dicts with boto3's TypeDeserializer — the least a caller needs
to use the values. A round reads READS random actors (the same ones on both sides); its sample
is the p50 latency in ms.

analytics: the top 10 targets of the last 7 days over the same activities in both stores
(recorded into DynamoDB with `record_many`, and written into ClickHouse as the sync sink writes
them, in large inserts: loading is set-up, not measured; being a bulk load, it ends with
`compact_after_load`, and the product's time on the parts as inserted is logged once before
that). Product: one routed SQL query (ClickHouse, FINAL). Baseline, cctv-style: a parallel
DynamoDB Scan (ProjectionExpression target + ts, FilterExpression on ts, raw attribute values
read without deserialization) and a Counter in Python. Tuned: before measuring, the segment
count doubles from 1 (one scan each) for as long as the scan gets faster, up to MAX_SEGMENTS;
the fastest is kept.
"""

from __future__ import annotations

import random
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

from boto3.dynamodb.types import TypeDeserializer

import query
from footfall import Activity, Settings
from footfall._clickhouse import ClickHouse
from footfall._compaction import compact_after_load
from footfall._synthetic import synthetic_activities
from ingest import Tracker
from sync._batch import rows_to_arrow
from sync._decode import Row, flatten_attributes

from ._context import REPETITIONS, Bench
from ._harness import CaseResult, Goal, Side, alternate, percentile
from ._services import bare_dynamodb_client, open_clickhouse, settings_for

__all__ = ["run_analytics", "run_point_read"]

MAX_SEGMENTS = 64
LATEST_SQL = (
    "SELECT event_id, actor, type, target, ts, attributes FROM activities "
    "WHERE actor = {actor:String} ORDER BY ts DESC LIMIT 50"
)
TOP_SQL = (
    "SELECT target, count() AS activities FROM activities "
    "WHERE ts >= {since:DateTime64(3, 'UTC')} GROUP BY target "
    "ORDER BY activities DESC, target LIMIT 10"
)


def record(settings: Settings, activities: list[Activity], chunk: int = 10_000) -> None:
    """Record through `Tracker.record_many`, per type, in chunks."""
    by_type: dict[str, list[Activity]] = defaultdict(list)
    for a in activities:
        by_type[a.type].append(a)
    for kind, items in by_type.items():
        tracker = Tracker(kind, settings)
        for start in range(0, len(items), chunk):
            tracker.record_many(items[start : start + chunk], skip_existing=False)


def run_point_read(bench: Bench) -> list[CaseResult]:
    services = bench.services
    endpoint = services.fresh_dynamodb()
    settings = settings_for(
        services, dynamodb=endpoint, clickhouse_url=services.clickhouse, name="reads"
    )
    Tracker("x", settings).ensure_table()
    n = bench.size(20_000, 3_000)
    activities = list(synthetic_activities(n, seed=51, actors=n // 100, end=bench.now))
    bench.step(f"point read: recording {n:,} activities of {n // 100} actors")
    record(settings, activities)
    per_actor = Counter(a.actor for a in activities)
    actors = sorted(a for a, count in per_actor.items() if count >= 50)
    reads = bench.size(200, 40)
    client = bare_dynamodb_client(settings)
    deserialize = TypeDeserializer().deserialize
    ff = query.connect(settings)

    def typed(actor: str) -> object:
        return ff.latest(actor, 50)

    def routed(actor: str) -> object:
        return ff.sql(LATEST_SQL, {"actor": actor})

    def bare(actor: str) -> object:
        response = client.query(
            TableName=settings.table,
            KeyConditionExpression="actor = :a",
            ExpressionAttributeValues={":a": {"S": actor}},
            ScanIndexForward=False,
            Limit=50,
        )
        return [{k: deserialize(v) for k, v in item.items()} for item in response["Items"]]

    def p50(read: Callable[[str], object]) -> Callable[[int], float]:
        def one_round(round_: int) -> float:
            rng = random.Random(round_)
            latencies = []
            for _ in range(reads):
                actor = rng.choice(actors)
                started = time.perf_counter()
                read(actor)
                latencies.append((time.perf_counter() - started) * 1000)
            return percentile(latencies, 50)

        return one_round

    if len(ff.latest(actors[0], 50)) != 50 or len(ff.sql(LATEST_SQL, {"actor": actors[0]})) != 50:
        raise RuntimeError("the product did not return 50 activities")
    if ff.explain(LATEST_SQL).route != "dynamodb":
        raise RuntimeError("the routed SQL of the point read does not go to DynamoDB")
    bench.step(f"point read: typed vs bare, {reads} reads per round")
    p_typed, b_typed = alternate(p50(typed), p50(bare), repetitions=REPETITIONS)
    bench.step("point read: routed SQL vs bare")
    p_sql, b_sql = alternate(p50(routed), p50(bare), repetitions=REPETITIONS)
    ff.close()
    goal = Goal("ratio_at_most", 1.15, "p50 ≤ 1.15x bare")
    baseline = "bare boto3 Query (+ TypeDeserializer)"
    return [
        CaseResult(
            "point read (typed)",
            "ms (p50)",
            Side("query.connect().latest(actor, 50)", tuple(p_typed)),
            goal,
            Side(baseline, tuple(b_typed)),
        ),
        CaseResult(
            "point read (routed SQL)",
            "ms (p50)",
            Side("query.connect().sql(SELECT ... LIMIT 50)", tuple(p_sql)),
            goal,
            Side(baseline, tuple(b_sql)),
        ),
    ]


def run_analytics(bench: Bench) -> list[CaseResult]:
    services = bench.services
    endpoint = services.fresh_dynamodb()
    url = services.database("bench_analytics")
    settings = settings_for(services, dynamodb=endpoint, clickhouse_url=url, name="analytics")
    Tracker("x", settings).ensure_table()
    n = bench.size(200_000, 5_000)
    activities = list(synthetic_activities(n, seed=61, days=14, end=bench.now))
    bench.step(f"analytics: recording {n:,} activities into DynamoDB and ClickHouse")
    record(settings, activities)
    with open_clickhouse(url) as ch:
        mirror(ch, activities)
        mirrored = ch.query_arrow("SELECT count() AS n FROM activities FINAL").column("n")[0]
    if mirrored.as_py() != n:
        raise RuntimeError(f"ClickHouse holds {mirrored} of {n} activities")
    since = bench.now - timedelta(days=7)
    since_ms = int(since.timestamp() * 1000)
    client = bare_dynamodb_client(settings)
    ff = query.connect(settings)
    expected: dict[str, int] = {}
    as_loaded = sorted(_timed_top(ff, since) for _round in range(5))[2]
    with open_clickhouse(url) as ch:
        compacted = compact_after_load(ch)
    bench.step(
        f"analytics: {as_loaded:,.0f} ms (median of 5) on the parts as inserted; "
        f"compact_after_load merged {len(compacted)} partitions"
    )

    def product(_round: int) -> float:
        started = time.perf_counter()
        frame = ff.sql(TOP_SQL, {"since": since})
        elapsed = (time.perf_counter() - started) * 1000
        expected.update(zip(frame["target"].to_list(), frame["activities"].to_list(), strict=True))
        return elapsed

    def scanned(segments: int) -> float:
        started = time.perf_counter()
        top = scan_top_targets(client, settings.table, since_ms, segments)
        elapsed = (time.perf_counter() - started) * 1000
        if expected and dict(top) != expected:
            raise RuntimeError(f"the scan found {top}, ClickHouse {expected}")
        return elapsed

    product(-1)
    bench.step("analytics: tuning the Scan's segment count")
    tuning = {1: scanned(1)}
    while (more := 2 * max(tuning)) <= MAX_SEGMENTS:
        tuning[more] = scanned(more)
        if tuning[more] >= tuning[more // 2]:
            break
    segments = min(tuning, key=lambda s: tuning[s])
    bench.step(
        "analytics: ms by segments "
        + ", ".join(f"{s}: {ms:,.0f}" for s, ms in tuning.items())
        + f" -> {segments}"
    )
    products, baselines = alternate(
        product, lambda _r: scanned(segments), repetitions=REPETITIONS, warmup=0
    )
    ff.close()
    services.drop_database(url)
    return [
        CaseResult(
            "analytics",
            "ms",
            Side("query.connect().sql(top 10 targets, 7 days) on ClickHouse", tuple(products)),
            Goal("ratio_at_most", 0.001, "≥ 1000x faster"),
            Side(f"DynamoDB Scan ({segments} segments, best) + Python Counter", tuple(baselines)),
        )
    ]


def _timed_top(ff: query.Footfall, since: datetime) -> float:
    started = time.perf_counter()
    ff.sql(TOP_SQL, {"since": since})
    return (time.perf_counter() - started) * 1000


def mirror(ch: ClickHouse, activities: list[Activity], chunk: int = 50_000) -> None:
    """The activities into ClickHouse as sync writes them (the sink's rows and Arrow), in
    large inserts: loading the data is set-up here, not what is measured."""
    rev = time.time_ns() // 1_000_000
    for start in range(0, len(activities), chunk):
        rows = [
            Row(
                a.event_id,
                a.actor,
                a.type,
                a.target,
                a.ts_ms,
                flatten_attributes(a.attributes),
                "dynamodb",
                rev,
                0,
            )
            for a in activities[start : start + chunk]
        ]
        ch.insert_arrow("activities", rows_to_arrow(rows), dedup_token=None)


def scan_top_targets(
    client: Any, table: str, since_ms: int, segments: int
) -> list[tuple[str, int]]:
    """cctv-style analytics: Scan everything (in parallel segments), count in Python."""

    def segment(number: int) -> Counter[str]:
        counts: Counter[str] = Counter()
        request: dict[str, Any] = {
            "TableName": table,
            "Segment": number,
            "TotalSegments": segments,
            "ProjectionExpression": "target, ts",
            "FilterExpression": "ts >= :since",
            "ExpressionAttributeValues": {":since": {"N": str(since_ms)}},
        }
        while True:
            page = client.scan(**request)
            counts.update(item["target"]["S"] for item in page["Items"])
            if "LastEvaluatedKey" not in page:
                return counts
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    total: Counter[str] = Counter()
    with ThreadPoolExecutor(max_workers=segments) as pool:
        for counts in pool.map(segment, range(segments)):
            total.update(counts)
    return sorted(total.items(), key=lambda kv: (-kv[1], kv[0]))[:10]
