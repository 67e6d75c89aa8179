"""sync throughput and freshness: the Faust worker (`footfall sync worker`, a child process)
between real Kafka, DynamoDB Local and the ClickHouse HTTP server over chDB.

sync throughput: N events are published to a fresh `<prefix>.events` topic first; then one
worker (relay off: this case is the Kafka path) drains it into ClickHouse. Its rate is taken
from its own /metrics, polled every 50 ms: from the first poll that shows events read (t0, e0
read) to the poll that shows all N rows written, rate = (N - e0) / (t1 - t0), so the worker's
start-up does not count. The baseline reads the same topic with a bare aiokafka consumer
(assigned partitions, `getmany` of up to 50,000 records, no group), turns the JSON into columns
and inserts them with ONE clickhouse-connect `insert_arrow` into a table of the same schema;
timed the same way, from its first fetched batch (f records) to the end of the insert:
(N - f) / (t1 - t0). Tuned: one insert is ClickHouse's best case; the decode is the lean
`json.loads` + column lists + Arrow casts a competent user would write (no validation).

freshness: `Tracker.record_activity` at a steady 200 writes/s; each activity's latency is from
the moment the call returned to the moment a poller (every 20 ms, on the ClickHouse server)
first saw its row. The poll interval makes it an upper bound by up to ~20 ms + a query.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from typing import Any

import clickhouse_connect
import pyarrow as pa  # type: ignore[import-untyped, unused-ignore]  # no stubs yet
from aiokafka import AIOKafkaConsumer, TopicPartition

from footfall import Activity, Settings
from footfall._kafka import KafkaBridge
from footfall._synthetic import synthetic_activities
from ingest import EventPublisher, Tracker
from sync._batch import SCHEMA

from ._context import REPETITIONS, Bench
from ._harness import CaseResult, Goal, Side, alternate, percentile, repeat
from ._services import Worker, open_clickhouse, settings_for

__all__ = ["publish", "run_freshness", "run_sync_throughput", "wait_visible"]

POLL_S = 0.05


def publish(settings: Settings, activities: list[Activity], *, chunk: int = 5_000) -> None:
    """Publish to `<prefix>.events` (topics created first, with their partition count)."""
    assert settings.kafka is not None
    bridge = KafkaBridge(settings.kafka, client_id="bench-admin")
    try:
        names = [settings.topic("events"), settings.topic("cdc"), settings.topic("dlq")]
        bridge.ensure_topics(names, partitions=settings.topic_partitions)
    finally:
        bridge.close()
    with EventPublisher(settings) as publisher:
        for start in range(0, len(activities), chunk):
            publisher.publish_many(activities[start : start + chunk])


def run_sync_throughput(bench: Bench) -> list[CaseResult]:
    n = bench.size(200_000, 5_000)
    services = bench.services
    bench.step(f"sync throughput: {n:,} events per round")
    events = list(synthetic_activities(n, seed=31, end=bench.now))
    topics: dict[int, Settings] = {}

    def prepared(round_: int) -> Settings:
        """Each round's own topic, filled once, read by both sides."""
        if round_ not in topics:
            name = f"t{uuid.uuid4().hex[:6]}"
            settings = settings_for(
                services, dynamodb=None, clickhouse_url=services.clickhouse, name=name
            )
            publish(settings, events)
            topics[round_] = settings
        return topics[round_]

    def product(round_: int) -> float:
        url = services.database("bench_sync")
        settings = prepared(round_).model_copy(update={"clickhouse_url": url})
        try:
            with Worker(settings, bench.work / "logs" / "sync-worker.log", relay=False) as worker:
                return _worker_rate(worker, n)
        finally:
            services.drop_database(url)

    def baseline(round_: int) -> float:
        url = services.database("bench_bare")
        try:
            return bare_sync(prepared(round_), url, n)
        finally:
            services.drop_database(url)

    products, baselines = alternate(product, baseline, repetitions=REPETITIONS)
    return [
        CaseResult(
            "sync throughput",
            "events/s",
            Side("footfall sync worker (1 process)", tuple(products)),
            Goal("ratio_at_least", 0.5, "≥ 50 % of bare"),
            Side("bare aiokafka + one clickhouse-connect insert", tuple(baselines)),
        )
    ]


def _worker_rate(worker: Worker, n: int, timeout: float = 600.0) -> float:
    deadline = time.monotonic() + timeout
    first: tuple[float, float] | None = None
    while time.monotonic() < deadline:
        if not worker.alive():
            raise RuntimeError(f"the worker died; see {worker.log_path}")
        samples = worker.metrics()
        now = time.perf_counter()
        read = samples.get('footfall_sync_events_in_total{source="kafka"}', 0.0)
        written = samples.get('footfall_sync_rows_written_total{source="kafka"}', 0.0)
        if first is None and read > 0:
            first = (now, read)
        if first is not None and written >= n:
            return (n - first[1]) / (now - first[0])
        time.sleep(POLL_S)
    raise TimeoutError(f"the worker did not write {n} rows in {timeout}s")


def bare_sync(settings: Settings, clickhouse_url: str, n: int) -> float:
    """The baseline: consume the topic with aiokafka, one insert_arrow; events/s."""
    assert settings.kafka is not None
    bridge = KafkaBridge(settings.kafka, client_id="bench-bare")
    try:
        values, started = bridge.run(_consume(settings, n), timeout=600)
    finally:
        bridge.close()
    host, _, rest = clickhouse_url.removeprefix("http://").partition("/")
    address, _, port = host.partition(":")
    client = clickhouse_connect.get_client(host=address, port=int(port), database=rest)
    try:
        client.insert_arrow("activities", _columns(values))
    finally:
        client.close()
    return (n - started[1]) / (time.perf_counter() - started[0])


async def _consume(settings: Settings, n: int) -> tuple[list[bytes], tuple[float, int]]:
    assert settings.kafka is not None
    topic = settings.topic("events")
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka.bootstrap,
        enable_auto_commit=False,
        max_partition_fetch_bytes=8 << 20,
        fetch_max_bytes=64 << 20,
    )
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(settings.topic_partitions)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        values: list[bytes] = []
        started: tuple[float, int] | None = None
        while len(values) < n:
            batch = await consumer.getmany(timeout_ms=1000, max_records=50_000)
            for records in batch.values():
                values.extend(r.value for r in records)
            if started is None and values:
                started = (time.perf_counter(), len(values))
        assert started is not None
        return values, started
    finally:
        await consumer.stop()


def _columns(values: list[bytes]) -> pa.Table:
    """JSON events to the `activities` columns: the lean path, no validation."""
    names = ("event_id", "actor", "type", "target", "ts")
    columns: dict[str, list[Any]] = {name: [] for name in names}
    attributes: list[list[tuple[str, str]]] = []
    for value in values:
        event = json.loads(value)
        for name in names:
            columns[name].append(event[name])
        attributes.append(
            [
                (k, v if isinstance(v, str) else json.dumps(v))
                for k, v in event["attributes"].items()
            ]
        )
    n = len(values)
    arrays = [pa.array(columns[name], pa.string()) for name in names[:4]]
    arrays.append(pa.array(columns["ts"], pa.string()).cast(pa.timestamp("ms", tz="UTC")))
    arrays.append(pa.array(attributes, SCHEMA.field("attributes").type))
    arrays.append(pa.array(["kafka"] * n, pa.string()))
    arrays.append(pa.array([0] * n, pa.uint64()))
    arrays.append(pa.array([0] * n, pa.uint8()))
    return pa.Table.from_arrays(arrays, schema=SCHEMA)


def run_freshness(bench: Bench) -> list[CaseResult]:
    services = bench.services
    endpoint = services.fresh_dynamodb()
    url = services.database("bench_fresh")
    name = f"f{uuid.uuid4().hex[:6]}"
    settings = settings_for(services, dynamodb=endpoint, clickhouse_url=url, name=name)
    tracker = Tracker("store-pageviews", settings)
    tracker.ensure_table()
    seconds = bench.size(12.0, 2.0)  # per round; 5 rounds = 60 s in a full run
    rate = 200.0
    sample = list(synthetic_activities(int(rate * seconds), seed=41, end=bench.now))
    p99s: list[float] = []
    try:
        with Worker(settings, bench.work / "logs" / "fresh-worker.log") as worker:
            worker.wait_ready()
            ch = open_clickhouse(url)
            try:
                bench.step("freshness: waiting for the pipeline to carry a first activity")
                first = tracker.record_activity("warm-up", "/warm-up")
                wait_visible(ch, {first.event_id: time.time()}, timeout=180, worker=worker)

                def measure(round_: int) -> float:
                    latencies = steady_writes(tracker, ch, sample, rate, worker)
                    if round_ >= 0:
                        p99s.append(percentile(latencies, 99))
                    bench.step(
                        f"freshness round {round_}: p50 {percentile(latencies, 50):.0f} ms, "
                        f"p99 {percentile(latencies, 99):.0f} ms over {len(latencies)} writes"
                    )
                    return percentile(latencies, 50)

                p50s = repeat(measure, repetitions=REPETITIONS)
            finally:
                ch.close()
    finally:
        services.drop_database(url)
    product = f"record_activity → ClickHouse via the worker, {rate:.0f} writes/s"
    return [
        CaseResult(
            "freshness (p50)",
            "ms",
            Side(product, tuple(p50s)),
            Goal("value_at_most", 300, "≤ 300 ms"),
        ),
        CaseResult(
            "freshness (p99)",
            "ms",
            Side(product, tuple(p99s)),
            Goal("value_at_most", 1000, "≤ 1 s"),
        ),
    ]


def steady_writes(
    tracker: Tracker, ch: Any, sample: list[Activity], rate: float, worker: Worker
) -> list[float]:
    """Record `sample`'s actors and targets at `rate` per second while a watcher polls
    ClickHouse; latency in ms of each, from the call's return to its row first seen."""
    returned: dict[str, float] = {}
    interval = 1 / rate
    with Watcher(ch) as watcher:
        start = time.perf_counter()
        for i, activity in enumerate(sample):
            delay = start + i * interval - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            recorded = tracker.record_activity(activity.actor, activity.target, browser="bench")
            returned[recorded.event_id] = time.time()
        seen = watcher.wait_for(returned, timeout=120, worker=worker)
    return [(seen[e] - returned[e]) * 1000 for e in returned]


def wait_visible(ch: Any, returned: dict[str, float], *, timeout: float, worker: Worker) -> None:
    """Until every event id is in ClickHouse."""
    with Watcher(ch) as watcher:
        watcher.wait_for(returned, timeout=timeout, worker=worker)


class Watcher:
    """A thread polling `activities` every 20 ms; when each event id was first seen (epoch s)."""

    def __init__(self, ch: Any) -> None:
        self.ch = ch
        self.seen: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-watcher", daemon=True)
        self.error: BaseException | None = None

    def __enter__(self) -> Watcher:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def wait_for(
        self, ids: dict[str, float], *, timeout: float, worker: Worker
    ) -> dict[str, float]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.error is not None:
                raise self.error
            if all(e in self.seen for e in ids):
                return dict(self.seen)
            time.sleep(0.05)
        missing = sum(1 for e in ids if e not in self.seen)
        state = "alive" if worker.alive() else "dead"
        raise TimeoutError(f"{missing} activities not in ClickHouse after {timeout}s ({state})")

    def _run(self) -> None:
        since = "1970-01-01 00:00:00"
        try:
            while not self._stop.is_set():
                rows = self.ch.query_arrow(
                    "SELECT event_id, ingested_at FROM activities "
                    "WHERE ingested_at >= {since:DateTime64(3, 'UTC')} - INTERVAL 2 SECOND",
                    {"since": since},
                )
                now = time.time()
                for event_id in rows.column("event_id").to_pylist():
                    self.seen.setdefault(event_id, now)
                if rows.num_rows:
                    newest = max(rows.column("ingested_at").to_pylist())
                    since = newest.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
                self._stop.wait(0.02)
        except BaseException as exc:  # surfaced by wait_for
            self.error = exc
