"""sync throughput and freshness: the Faust worker (`footfall sync worker`, a child process)
between real Kafka, DynamoDB Local and the ClickHouse HTTP server over chDB.

sync throughput: N events are published to a fresh `<prefix>.events` topic first; then one
worker (relay off: this case is the Kafka path) drains it into ClickHouse. Its rate comes from
its own /metrics, polled every 250 ms: from the first poll that shows events read (t0, e0 of
them) to the first that shows all N rows written (t1): (N - e0) / (t1 - t0), so start-up and
the consumer group's join do not count. The baseline reads the same topic with a bare aiokafka
consumer (started, partitions assigned, no group), timed from its first `getmany` (up to 50,000
records each) through the decode to the end of ONE clickhouse-connect `insert_arrow` into a
table of the same schema: N / elapsed. Tuned: one insert is ClickHouse's best case; the decode
is the lean `json.loads` + column lists + Arrow casts a competent user writes (no validation).

freshness: `Tracker.record_activity` at a steady 200 writes/s; each activity's latency is from
the moment the call returned to the moment a poller (every 20 ms, on the ClickHouse server)
first saw its row. The poll interval makes it an upper bound by up to ~20 ms + a query.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
import uuid
from typing import Any

import clickhouse_connect
import pyarrow as pa  # type: ignore[import-untyped, unused-ignore]  # no stubs yet
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from footfall import Activity, Settings
from footfall._kafka import KafkaBridge, partition_of
from footfall._synthetic import synthetic_activities
from footfall._wire import EVENT_HEADERS, PACK_HEADERS, pack_lines
from ingest import Tracker
from sync._batch import SCHEMA

from ._context import REPETITIONS, Bench
from ._harness import CaseResult, Goal, Side, alternate, percentile, repeat
from ._services import Worker, open_clickhouse, settings_for

__all__ = ["create_topics", "fill_topic", "run_freshness", "run_sync_throughput", "wait_visible"]

log = logging.getLogger(__name__)

POLL_S = 0.25  # /metrics polls cost the worker CPU: not too often


def create_topics(settings: Settings) -> None:
    """`<prefix>.events`, `.cdc` and `.dlq`, with the settings' partition count."""
    assert settings.kafka is not None
    bridge = KafkaBridge(settings.kafka, client_id="bench-admin")
    try:
        names = [settings.topic("events"), settings.topic("cdc"), settings.topic("dlq")]
        bridge.ensure_topics(names, partitions=settings.topic_partitions)
    finally:
        bridge.close()


def fill_topic(settings: Settings, activities: list[Activity], *, packed: bool = True) -> None:
    """Write activities to `<prefix>.events` as `EventPublisher.publish_many` would (packs of
    one partition's activities, each placed by its actor key; or with `packed=False` one message
    per activity, as `publish` sends them), but in whole record batches per partition: set-up
    for the throughput case, where publishing speed is not measured."""
    assert settings.kafka is not None
    create_topics(settings)
    topic = settings.topic("events")
    partitions = list(range(settings.topic_partitions))
    by_partition: dict[int, list[Activity]] = {}
    for activity in activities:
        by_partition.setdefault(partition_of(activity.actor.encode(), partitions), []).append(
            activity
        )
    records: dict[int, list[tuple[bytes | None, bytes]]] = {}
    for partition, placed in by_partition.items():
        forms = [activity.to_json() for activity in placed]
        if packed:
            records[partition] = [(None, value) for value, _ in pack_lines(forms)]
        else:
            records[partition] = [(a.actor.encode(), f) for a, f in zip(placed, forms, strict=True)]
    headers = list(PACK_HEADERS if packed else EVENT_HEADERS)
    producer_bridge = KafkaBridge(settings.kafka, client_id="bench-fill")

    async def send_all() -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=settings.kafka.bootstrap,  # type: ignore[union-attr]
            acks="all",
            max_request_size=8 << 20,
        )
        await producer.start()
        try:
            sent = []
            for partition, pairs in records.items():
                batch = producer.create_batch()
                for key, value in pairs:
                    if batch.append(key=key, value=value, timestamp=None, headers=headers) is None:
                        sent.append(await producer.send_batch(batch, topic, partition=partition))
                        batch = producer.create_batch()
                        batch.append(key=key, value=value, timestamp=None, headers=headers)
                sent.append(await producer.send_batch(batch, topic, partition=partition))
            await asyncio.gather(*sent)
        finally:
            await producer.stop()

    try:
        producer_bridge.run(send_all(), timeout=600)
    finally:
        producer_bridge.close()


def run_sync_throughput(bench: Bench) -> list[CaseResult]:
    """Packs, as `publish_many` sends them; then one event per message, as `publish` and other
    producers send them (Faust's cost per message bounds that one), held to the same goal."""
    return [
        _throughput(bench, bench.size(200_000, 20_000), packed=True, name="sync throughput"),
        _throughput(
            bench,
            bench.size(50_000, 5_000),
            packed=False,
            name="sync throughput (one event per message)",
        ),
    ]


def _throughput(bench: Bench, n: int, *, packed: bool, name: str) -> CaseResult:
    services = bench.services
    bench.step(f"{name}: {n:,} events per round")
    events = list(synthetic_activities(n, seed=31, end=bench.now))
    topics: dict[int, Settings] = {}

    def prepared(round_: int) -> Settings:
        """Each round's own topic, filled once, read by both sides."""
        if round_ not in topics:
            name = f"t{uuid.uuid4().hex[:6]}"
            settings = settings_for(
                services, dynamodb=None, clickhouse_url=services.clickhouse, name=name
            )
            fill_topic(settings, events, packed=packed)
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
    return CaseResult(
        name,
        "events/s",
        Side("footfall sync worker (1 process)", tuple(products)),
        Goal("ratio_at_least", 0.5, "≥ 50 % of bare"),
        Side("bare aiokafka + one clickhouse-connect insert", tuple(baselines)),
    )


def _worker_rate(worker: Worker, n: int, timeout: float = 600.0) -> float:
    """(n - e0) / (t1 - t0): t0 is the first /metrics poll that shows events read (e0 of
    them), t1 the first that shows all `n` rows written; start-up and group join not counted."""
    deadline = time.monotonic() + timeout
    first: tuple[float, float] | None = None
    while time.monotonic() < deadline:
        if not worker.alive():
            raise RuntimeError(f"the worker died; see {worker.log_path}")
        samples = worker.metrics()
        polled = time.perf_counter()
        read = samples.get('footfall_sync_events_in_total{source="kafka"}', 0.0)
        written = samples.get('footfall_sync_rows_written_total{source="kafka"}', 0.0)
        if first is None and read > 0:
            first = (polled, read)
        if first is not None and written >= n:
            if first[1] >= n:
                raise RuntimeError("all events were read before the first poll: raise N")
            return (n - first[1]) / (polled - first[0])
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
    return n / (time.perf_counter() - started)


async def _consume(settings: Settings, n: int) -> tuple[list[bytes], float]:
    """All `n` values of the topic, and when the first fetch was asked for (perf_counter)."""
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
        started = time.perf_counter()
        events = 0
        while events < n:
            batch = await consumer.getmany(timeout_ms=1000, max_records=50_000)
            for records in batch.values():
                for record in records:
                    values.append(record.value)
                    events += 1 + record.value.count(b"\n")  # a pack: one event per line
        return values, started
    finally:
        await consumer.stop()


def _columns(values: list[bytes]) -> pa.Table:
    """JSON events (a message each, or packs of lines) to the `activities` columns: the lean
    path, no validation."""
    names = ("event_id", "actor", "type", "target", "ts")
    columns: dict[str, list[Any]] = {name: [] for name in names}
    attributes: list[list[tuple[str, str]]] = []
    for event in (json.loads(line) for value in values for line in value.split(b"\n")):
        for name in names:
            columns[name].append(event[name])
        attributes.append(
            [
                (k, v if isinstance(v, str) else json.dumps(v))
                for k, v in event["attributes"].items()
            ]
        )
    n = len(attributes)
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
        achieved = len(sample) / (time.perf_counter() - start)
        if achieved < 0.95 * rate:
            log.warning("freshness: wrote %.0f/s, below the %.0f/s asked for", achieved, rate)
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
