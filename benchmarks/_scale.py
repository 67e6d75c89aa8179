"""analytics at scale and hand-off, on the embedded engine (chDB, `chdb:///dir`) in this process.

Rows go straight into ClickHouse as Arrow (no DynamoDB, no sync): `synthetic_table`, the
columnar fast path of the shared generator (same distributions as the demo's activities), in
chunks of 1,000,000, over 30 days and 250,000 actors at full size.

analytics at scale: the load is a bulk load, so it ends as footfall's bulk loads end, with
`compact_after_load` (every month merged into one part; without it FINAL merges the load's
overlapping parts again at every read). Before that step each named query runs once on the
parts as the inserts left them; those times are logged, not rows of the table (a bulk load
does not end there). Then each of the five named queries through
`query.connect().named(...)`; a round's sample is one query's wall time in ms. No baseline; the
goal is ≤ 1 s each.

hand-off: 1,000,000 rows (the activity columns) into polars through `query.connect().sql()`
against the bare path: a clickhouse-connect client of its own on the same chDB directory,
`query_arrow` of the same SQL the product sends (with FINAL, which the product adds to every
`activities` read so that replaced versions never show) and `polars.from_arrow`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import clickhouse_connect
import polars as pl
import pyarrow as pa  # type: ignore[import-untyped, unused-ignore]  # no stubs yet

import query
from footfall import Settings, load_settings
from footfall._clickhouse import ClickHouse, connect
from footfall._compaction import compact_after_load
from footfall._migrate import migrate
from footfall._synthetic import synthetic_table
from sync._batch import SCHEMA

from ._context import REPETITIONS, Bench
from ._harness import CaseResult, Goal, Side, alternate, repeat

__all__ = ["SCALE_QUERIES", "load_rows", "run_at_scale", "run_hand_off"]

SCALE_QUERIES = ("top_targets", "daily_unique_actors", "funnel", "retention", "sessions")
CHUNK = 1_000_000
COLUMNS = "event_id, actor, type, target, ts, attributes"


def _embedded(bench: Bench) -> Settings:
    return load_settings(clickhouse_url=f"chdb://{bench.work / 'chdb'}", table="bench-scale")


def load_rows(ch: ClickHouse, count: int, *, seed: int, actors: int, bench: Bench) -> None:
    """`count` synthetic activities into `activities` of the handle's database, as Arrow."""
    migrate(ch)
    loaded = 0
    started = time.perf_counter()
    while loaded < count:
        n = min(CHUNK, count - loaded)
        table = synthetic_table(
            n, seed=seed + loaded // CHUNK, actors=actors, days=30, end=bench.now
        )
        table = table.append_column("source", pa.array(["dynamodb"] * n, pa.string()))
        table = table.append_column("version", pa.array([1] * n, pa.uint64()))
        table = table.append_column("is_deleted", pa.array([0] * n, pa.uint8()))
        ch.insert_arrow("activities", table.cast(SCHEMA), dedup_token=None)
        loaded += n
    rate = count / (time.perf_counter() - started)
    bench.step(f"loaded {count:,} rows into {ch.database} ({rate:,.0f} rows/s with generation)")


def run_at_scale(bench: Bench) -> list[CaseResult]:
    settings = _embedded(bench)
    count = bench.size(10_000_000, 200_000)
    actors = max(10, count // 40)
    with connect(settings) as admin:
        admin.command("CREATE DATABASE IF NOT EXISTS scale")
    with connect(settings, database="scale") as ch:
        load_rows(ch, count, seed=100, actors=actors, bench=bench)
        end, week = bench.now, timedelta(days=7)
        parameters: dict[str, dict[str, Any]] = {
            "top_targets": {"type": "store-pageviews", "start": end - week, "end": end},
            "daily_unique_actors": {"start": end - week, "end": end},
            "funnel": {
                "steps": ["store-pageviews", "add-to-cart", "purchase"],
                "start": end - week,
                "end": end,
            },
            "retention": {"start": end - 2 * week, "end": end - week, "days": 7},
            "sessions": {"actor": "user-000042"},
        }
        results = []
        with query.connect(settings, database="scale") as ff:

            def timed(name: str) -> float:
                started = time.perf_counter()
                frame = ff.named(name, **parameters[name])
                elapsed = (time.perf_counter() - started) * 1000
                if frame.is_empty():
                    raise RuntimeError(f"{name} returned no rows")
                return elapsed

            as_loaded = {name: timed(name) for name in SCALE_QUERIES}
            bench.step(
                f"analytics at scale: {_parts(ch)} active parts as loaded, one run each: "
                + ", ".join(f"{name} {ms:,.0f} ms" for name, ms in as_loaded.items())
            )
            started = time.perf_counter()
            compacted = compact_after_load(ch)
            bench.step(
                f"analytics at scale: compact_after_load merged {len(compacted)} partitions in "
                f"{time.perf_counter() - started:,.1f} s; {_parts(ch)} active parts"
            )
            for name in SCALE_QUERIES:
                samples = repeat(lambda _round: timed(name), repetitions=REPETITIONS)  # noqa: B023
                bench.step(f"analytics at scale: {name} {sorted(samples)[2]:,.0f} ms (median)")
                results.append(
                    CaseResult(
                        f"analytics at scale ({name})",
                        "ms",
                        Side(f"named query {name} on {count:,} rows (chDB)", tuple(samples)),
                        Goal("value_at_most", 1000, "≤ 1 s"),
                    )
                )
    return results


def run_hand_off(bench: Bench) -> list[CaseResult]:
    settings = _embedded(bench)
    count = bench.size(1_000_000, 50_000)
    with connect(settings) as admin:
        admin.command("CREATE DATABASE IF NOT EXISTS handoff")
    with connect(settings, database="handoff") as ch:
        load_rows(ch, count, seed=300, actors=max(10, count // 40), bench=bench)
        path = str(settings.clickhouse.path)
        bare_client = clickhouse_connect.get_client(dsn="chdb://", path=path, database="handoff")
        try:
            with query.connect(settings, database="handoff") as ff:
                sql = f"SELECT {COLUMNS} FROM activities"
                bare_sql = f"SELECT {COLUMNS} FROM handoff.activities FINAL"

                def product(_round: int) -> float:
                    return _timed(lambda: ff.sql(sql), count)

                def baseline(_round: int) -> float:
                    return _timed(
                        lambda: pl.from_arrow(bare_client.query_arrow(bare_sql, use_strings=True)),
                        count,
                    )

                products, baselines = alternate(product, baseline, repetitions=REPETITIONS)
        finally:
            bare_client.close()
    return [
        CaseResult(
            "hand-off",
            "s",
            Side(f"query.connect().sql() → polars, {count:,} rows", tuple(products)),
            Goal("ratio_at_most", 1.2, "≤ 1.2x bare"),
            Side("bare clickhouse-connect query_arrow → polars.from_arrow", tuple(baselines)),
        )
    ]


def _parts(ch: ClickHouse) -> int:
    found = ch.query_arrow(
        "SELECT count() AS n FROM system.parts WHERE database = currentDatabase() "
        "AND table = 'activities' AND active"
    )
    return int(found.column("n")[0].as_py())


def _timed(read: Callable[[], Any], count: int) -> float:
    started = time.perf_counter()
    frame = read()
    elapsed = time.perf_counter() - started
    if not isinstance(frame, pl.DataFrame) or frame.height != count:
        raise RuntimeError(f"expected {count} rows, got {getattr(frame, 'height', frame)}")
    return elapsed
