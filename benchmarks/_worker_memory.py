"""worker memory: RSS of one sync worker through a sustained load on both of its inputs.

Load: DynamoDB writes through `Tracker.record_many` (100 activities every 0.25 s: 400/s, read
back by the worker's Streams relay and carried through `<prefix>.cdc`) and raw events through
`EventPublisher` (500 every 0.5 s: 1,000/s) for DURATION seconds; the worker's RSS (VmRSS of
its process) is sampled every second. The first WARM_UP share of the run is warm-up; the rest is
cut into 5 windows (the repetitions).

- peak: the highest RSS of each window (goal ≤ 400 MB);
- growth: median RSS of the last window minus that of the first window after warm-up
  ("flat": at most 5 % of the warm RSS, or 10 MB, whichever is larger).
"""

from __future__ import annotations

import statistics
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable

from footfall import Activity
from footfall._synthetic import synthetic_activities
from ingest import EventPublisher, Tracker

from ._context import REPETITIONS, Bench
from ._harness import CaseResult, Goal, Side
from ._services import Worker, read_rss_mb, settings_for
from ._sync import create_topics

__all__ = ["run_worker_memory"]

WARM_UP = 0.2
LIMIT_MB = 400.0


def run_worker_memory(bench: Bench) -> list[CaseResult]:
    services = bench.services
    endpoint = services.fresh_dynamodb()
    url = services.database("bench_memory")
    name = f"m{uuid.uuid4().hex[:6]}"
    settings = settings_for(services, dynamodb=endpoint, clickhouse_url=url, name=name)
    Tracker("x", settings).ensure_table()
    create_topics(settings)  # before the worker subscribes
    duration = bench.size(300.0, 20.0)
    stop = threading.Event()
    errors: list[BaseException] = []
    samples: list[tuple[float, float]] = []  # (seconds since start, RSS MB)
    sent = {"dynamodb": 0, "kafka": 0}  # what the load generators wrote
    try:
        with Worker(settings, bench.work / "logs" / "memory-worker.log") as worker:
            worker.wait_ready()
            bench.step(f"worker memory: {duration:.0f} s of sustained load")

            def load_dynamodb() -> None:
                trackers: dict[str, Tracker] = {}
                seed = 5000
                while not stop.is_set():
                    seed += 1
                    by_type: dict[str, list[Activity]] = defaultdict(list)
                    for a in synthetic_activities(100, seed=seed, days=0.01):
                        by_type[a.type].append(a)
                    for kind, items in by_type.items():
                        tracker = trackers.get(kind) or trackers.setdefault(
                            kind, Tracker(kind, settings)
                        )
                        tracker.record_many(items, skip_existing=False)
                        sent["dynamodb"] += len(items)
                    stop.wait(0.25)

            def load_kafka() -> None:
                seed = 9000
                with EventPublisher(settings) as publisher:
                    while not stop.is_set():
                        seed += 1
                        publisher.publish_many(list(synthetic_activities(500, seed=seed)))
                        sent["kafka"] += 500
                        stop.wait(0.5)

            def guarded(target: Callable[[], None]) -> threading.Thread:
                def body() -> None:
                    try:
                        target()
                    except BaseException as exc:
                        errors.append(exc)
                        stop.set()

                thread = threading.Thread(target=body, daemon=True)
                thread.start()
                return thread

            loaders = [guarded(load_dynamodb), guarded(load_kafka)]
            started = time.monotonic()
            try:
                while (elapsed := time.monotonic() - started) < duration and not stop.is_set():
                    rss = read_rss_mb(worker.pid)
                    if rss is None or not worker.alive():
                        raise RuntimeError(f"the worker died; see {worker.log_path}")
                    samples.append((elapsed, rss))
                    time.sleep(1.0)
            finally:
                stop.set()
                for thread in loaders:
                    thread.join(60)
            cdc = worker.counter("footfall_sync_rows_written_total", "dynamodb")
            events = worker.counter("footfall_sync_rows_written_total", "kafka")
            bench.step(
                f"worker memory: load wrote {sent['dynamodb']:,} DynamoDB items and published "
                f"{sent['kafka']:,} events in {duration:.0f} s; the worker wrote {cdc:,.0f} "
                f"CDC rows and {events:,.0f} event rows to ClickHouse meanwhile"
            )
    finally:
        services.drop_database(url)
    if errors:
        raise RuntimeError("the load generator failed") from errors[0]
    return memory_results(samples, duration)


def memory_results(samples: list[tuple[float, float]], duration: float) -> list[CaseResult]:
    """The peak and growth rows from `(seconds, RSS MB)` samples of one sustained run."""
    warm = [rss for t, rss in samples if t >= duration * WARM_UP]
    if len(warm) < REPETITIONS:
        raise RuntimeError(f"only {len(warm)} RSS samples after warm-up")
    size = len(warm) // REPETITIONS
    windows = [warm[i * size : (i + 1) * size] for i in range(REPETITIONS)]
    peaks = tuple(max(w) for w in windows)
    first, last = statistics.median(windows[0]), statistics.median(windows[-1])
    allowed = max(10.0, 0.05 * first)
    product = "footfall sync worker RSS"
    return [
        CaseResult(
            "worker memory (peak)",
            "MB",
            Side(product, peaks),
            Goal("value_at_most", LIMIT_MB, f"≤ {LIMIT_MB:.0f} MB"),
        ),
        CaseResult(
            "worker memory (growth)",
            "MB",
            Side(product, (last - first,)),
            Goal("value_at_most", allowed, f"flat after warm-up (≤ {allowed:.0f} MB)"),
        ),
    ]
