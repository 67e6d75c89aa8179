"""The sync worker end to end: DynamoDB Local + Kafka → Faust worker (a separate process) →
ClickHouse (footfall's HTTP server over chDB, shared by the worker and this test process).

Every assertion compares `activities FINAL` with what the sources hold, exactly.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from typer.testing import CliRunner

from footfall import Activity, Settings, load_settings
from footfall._clickhouse import ClickHouse, connect
from footfall._dynamodb import DynamoDB
from footfall._kafka import KafkaBridge
from footfall._synthetic import synthetic_activities
from footfall._wire import PACK_HEADERS
from footfall.cli import app
from footfall.services import free_port
from ingest import EventPublisher, Tracker
from sync._decode import Row, RowChange, StreamPosition, encode_cdc

NOW = datetime.now(UTC).replace(microsecond=0)


class Worker:
    """`footfall sync worker` as a child process of its own session, killed by PID."""

    def __init__(self, settings: Settings, home: Path, *options: str) -> None:
        self.env = {
            **os.environ,
            "FOOTFALL_DYNAMODB_ENDPOINT": str(settings.dynamodb_endpoint),
            "FOOTFALL_KAFKA_BROKER": str(settings.kafka_broker),
            "FOOTFALL_CLICKHOUSE_URL": settings.clickhouse_url,
            "FOOTFALL_TABLE": settings.table,
            "FOOTFALL_TOPIC_PREFIX": settings.topic_prefix,
            "FOOTFALL_TOPIC_PARTITIONS": str(settings.topic_partitions),
            "FOOTFALL_HOME": str(home),
            "FOOTFALL_TTL_DAYS": str(settings.ttl_days or ""),
        }
        self.home = home
        self.log = home / "worker.log"
        self.metrics_port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.options = list(options) or ["--max-wait", "0.1"]

    def start(self) -> None:
        self.starts += 1
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "footfall",
                    "sync",
                    "worker",
                    "--metrics-port",
                    str(self.metrics_port),
                    *self.options,
                    "--loglevel",
                    "warning",
                ],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as in a crash."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()
        self.process = None

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


def pipeline_settings(
    dynamodb_endpoint: str, kafka_broker: str, clickhouse_url: str, name: str
) -> Settings:
    return load_settings(
        dynamodb_endpoint=dynamodb_endpoint,
        kafka_broker=kafka_broker,
        clickhouse_url=clickhouse_url,
        table=f"sync-{name}",
        topic_prefix=f"sync{name}",
        topic_partitions=3,
        ttl_days=2,
    )


@pytest.fixture(scope="module")
def stack(
    dynamodb_endpoint: str,
    kafka_broker: str,
    clickhouse_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Settings, ClickHouse, Worker]]:
    name = uuid.uuid4().hex[:8]
    admin = connect(load_settings(clickhouse_url=clickhouse_url))
    database = f"sync_{name}"
    admin.command(f"CREATE DATABASE {database}")
    url = clickhouse_url.rsplit("/", 1)[0] + f"/{database}"
    settings = pipeline_settings(dynamodb_endpoint, kafka_broker, url, name)
    Tracker("x", settings).ensure_table()
    worker = Worker(settings, tmp_path_factory.mktemp("worker"))
    worker.start()
    ch = connect(settings)
    wait_for(lambda: table_exists(ch), "the worker to migrate ClickHouse", worker)
    try:
        yield settings, ch, worker
    finally:
        worker.stop()
        ch.close()
        admin.command(f"DROP DATABASE IF EXISTS {database} SYNC")
        admin.close()


def scalar(ch: ClickHouse, sql: str, **parameters: Any) -> Any:
    return next(iter(ch.query_arrow(sql, parameters or None).to_pylist()[0].values()))


def wait_for(
    check: Callable[[], bool],
    what: str,
    worker: Worker,
    timeout: float = 240,
    describe: Callable[[], str] | None = None,
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if worker.process is not None and not worker.alive():
            break
        time.sleep(0.25)
    log = worker.log.read_text()[-3000:] if worker.log.exists() else ""
    state = "the worker died" if not worker.alive() else "timed out"
    seen = describe() if describe else ""
    pytest.fail(f"{state} waiting for {what}; {seen}\nworker log tail:\n{log}")


def counts_by_type(ch: ClickHouse, where: str = "1", **parameters: Any) -> dict[str, int]:
    rows = ch.query_arrow(
        f"SELECT type, count() AS n FROM activities FINAL WHERE {where} GROUP BY type",
        parameters or None,
    ).to_pylist()
    return {r["type"]: r["n"] for r in rows}


def record(settings: Settings, activities: list[Activity]) -> None:
    by_type: dict[str, list[Activity]] = {}
    for a in activities:
        by_type.setdefault(a.type, []).append(a)
    for activity_type, items in by_type.items():
        assert Tracker(activity_type, settings).record_many(items).written == len(items)


def test_ten_thousand_each_way_arrive_exactly_with_updates_deletes_and_ttl(
    stack: tuple[Settings, ClickHouse, Worker],
) -> None:
    settings, ch, worker = stack
    views = Tracker("store-pageviews", settings)
    # Recorded 3 days ago with 2 days of retention: DynamoDB Local expires it (quickly while
    # the table is small; its TTL sweeper takes minutes once it holds thousands of items).
    expiring = views.record_activity("ttl-actor", "/old", at=NOW - timedelta(days=3))

    def expired_in_dynamodb() -> bool:
        return not list(DynamoDB(settings).query(key_name="actor", key_value="ttl-actor"))

    wait_for(expired_in_dynamodb, "DynamoDB Local to expire the TTL item", worker, timeout=120)

    stored = list(synthetic_activities(10_000, seed=11, end=NOW, days=1))
    events = list(synthetic_activities(10_000, seed=12, end=NOW, days=1))
    record(settings, stored)
    with EventPublisher(settings) as publisher:
        publisher.publish_many(events)
    updated = next(a for a in stored if a.type == "store-pageviews")
    views.update(updated, browser="Lynx", plan="pro")
    deleted = [a for a in stored if a.type == "store-pageviews"][1:4]
    for a in deleted:
        views.delete(a)

    expected = Counter(a.type for a in stored + events)
    expected["store-pageviews"] += 1 - len(deleted)  # the expired one stays, deleted ones go
    wait_for(
        lambda: counts_by_type(ch) == dict(expected),
        "exact counts",
        worker,
        describe=lambda: f"expected {dict(expected)}, have {counts_by_type(ch)}",
    )
    assert scalar(ch, "SELECT count() FROM activities FINAL") == 20_000 - len(deleted) + 1
    attributes = dict(
        scalar(
            ch,
            "SELECT attributes FROM activities FINAL WHERE event_id = {e:String}",
            e=updated.event_id,
        )
    )
    assert attributes["browser"] == "Lynx" and attributes["plan"] == "pro"
    # retention never deletes analytics history
    expired_row = ch.query_arrow(
        "SELECT is_deleted FROM activities FINAL WHERE event_id = {e:String}",
        {"e": expiring.event_id},
    ).to_pylist()
    assert expired_row == [{"is_deleted": 0}]


def test_late_activity_lands_in_its_own_day_and_in_the_rollup(
    stack: tuple[Settings, ClickHouse, Worker],
) -> None:
    settings, ch, worker = stack
    three_days_ago = NOW - timedelta(days=3)
    late = Activity(actor="late-actor", type="late-type", target="/late", ts=three_days_ago)
    with EventPublisher(settings) as publisher:
        publisher.publish(late)
    day = three_days_ago.date()

    def in_rollup() -> bool:
        rows = ch.query_arrow(
            "SELECT activities, actors FROM activities_daily WHERE type = 'late-type' "
            "AND day = {d:Date}",
            {"d": day},
        ).to_pylist()
        return rows == [{"activities": 1, "actors": 1}]

    wait_for(in_rollup, "the late activity in the rollup of its day", worker)
    assert (
        scalar(
            ch,
            "SELECT toDate(ts) FROM activities FINAL WHERE event_id = {e:String}",
            e=late.event_id,
        )
        == day
    )


def test_two_updates_delivered_out_of_order_leave_the_later_version(
    stack: tuple[Settings, ClickHouse, Worker],
) -> None:
    settings, ch, worker = stack
    base = Row(
        "ooo-1", "ooo-actor", "ooo-type", "/t", int(NOW.timestamp() * 1000), {}, "dynamodb", 10, 0
    )
    newer = RowChange(
        base._replace(version=12, attributes={"step": "second"}), StreamPosition("shard-x", "200")
    )
    older = RowChange(
        base._replace(version=11, attributes={"step": "first"}), StreamPosition("shard-x", "100")
    )
    assert settings.kafka is not None
    bridge = KafkaBridge(settings.kafka)
    producer = bridge.producer()

    marker = RowChange(base._replace(event_id="ooo-marker"), StreamPosition("shard-x", "300"))

    async def send() -> None:
        # the later change first; the marker after both, on the same partition (same key): once
        # it is visible, both changes were written (a partition is consumed in order)
        for change in (newer, older, marker):
            await (await producer.send(settings.topic("cdc"), encode_cdc(change), key=b"ooo"))

    try:
        bridge.run(send())
    finally:
        bridge.close()
    wait_for(
        lambda: scalar(ch, "SELECT count() FROM activities WHERE event_id = 'ooo-marker'") == 1,
        "both versions and the marker to arrive",
        worker,
    )
    assert (
        scalar(ch, "SELECT attributes['step'] FROM activities FINAL WHERE event_id = 'ooo-1'")
        == "second"
    )


def test_poison_goes_to_the_dlq_with_reasons_and_good_events_around_it_arrive(
    stack: tuple[Settings, ClickHouse, Worker],
) -> None:
    settings, ch, worker = stack
    good = [Activity(actor=f"p{i}", type="poison-neighbours", target="/g") for i in range(20)]
    huge = Activity(actor="h", type="x", target="/x").to_json_dict()
    huge["attributes"] = {"blob": "x" * 1_000_000}
    poison = [
        b"{not json",
        json.dumps({"actor": "a", "type": "t", "target": "x"}).encode(),  # missing fields
        json.dumps({**good[0].to_json_dict(), "actor": 42}).encode(),  # wrong type
        json.dumps(huge).encode(),  # ~1 MB, over the item limit
        b"\xff\xfe\xfd",
    ]
    assert settings.kafka is not None
    bridge = KafkaBridge(settings.kafka)
    producer = bridge.producer()

    async def send() -> None:
        topic = settings.topic("events")
        for i, g in enumerate(good):
            await (await producer.send(topic, g.to_json(), key=g.actor.encode()))
            if i < len(poison):
                await (await producer.send(topic, poison[i], key=b"poison"))

    try:
        bridge.run(send(), timeout=120)
    finally:
        bridge.close()
    wait_for(lambda: counts_by_type(ch).get("poison-neighbours") == 20, "good events", worker)
    letters = read_topic(settings, settings.topic("dlq"), len(poison))
    reasons = [dict(r.headers)["footfall-reason"].decode() for r in letters]
    assert len(letters) == len(poison)
    assert sorted(r.value for r in letters) == sorted(poison)
    assert all(reasons) and any("JSON" in r for r in reasons) and any("UTF-8" in r for r in reasons)


def test_a_pack_writes_its_good_lines_and_dead_letters_each_bad_one(
    stack: tuple[Settings, ClickHouse, Worker],
) -> None:
    settings, ch, worker = stack
    good = [Activity(actor=f"k{i}", type="pack-neighbours", target="/g") for i in range(30)]
    bad = [b"{not json in a pack", json.dumps({"actor": "in-a-pack"}).encode()]
    lines = [g.to_json() for g in good]
    pack = b"\n".join([*lines[:10], bad[0], *lines[10:20], bad[1], *lines[20:]])
    assert settings.kafka is not None
    bridge = KafkaBridge(settings.kafka)
    producer = bridge.producer()

    async def send() -> None:
        topic = settings.topic("events")
        for value in (pack, b""):  # and an empty pack
            await (await producer.send(topic, value, headers=list(PACK_HEADERS)))

    try:
        bridge.run(send(), timeout=120)
    finally:
        bridge.close()
    wait_for(lambda: counts_by_type(ch).get("pack-neighbours") == 30, "the pack's rows", worker)
    letters = read_topic(settings, settings.topic("dlq"), 100)
    ours = {
        r.value: dict(r.headers)["footfall-reason"].decode()
        for r in letters
        if r.value in bad or b"empty pack" in dict(r.headers)["footfall-reason"]
    }
    assert set(ours) == {*bad, b""}
    assert ours[bad[0]].startswith("line 11: not valid JSON")
    assert ours[bad[1]].startswith("line 22: missing field(s)")


def test_lag_and_freshness_are_observable(
    stack: tuple[Settings, ClickHouse, Worker], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings, ch, worker = stack
    with EventPublisher(settings) as publisher:
        publisher.publish(Activity(actor="obs", type="observed", target="/o"))
    wait_for(lambda: counts_by_type(ch).get("observed") == 1, "the observed event", worker)

    def metric(name: str, labels: str) -> float | None:
        url = f"http://127.0.0.1:{worker.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
        for line in text.splitlines():
            if line.startswith(f"{name}{{{labels}}} "):
                return float(line.rsplit(" ", 1)[1])
        return None

    assert (metric("footfall_sync_rows_written_total", 'source="kafka"') or 0) >= 1
    newest = metric("footfall_sync_newest_event_timestamp_seconds", 'source="kafka"')
    assert newest is not None and newest >= NOW.timestamp() - 2 * 86400
    wait_for(
        lambda: metric("footfall_sync_consumer_lag", f'topic="{settings.topic("events")}"') == 0,
        "the lag gauge to read 0",
        worker,
        timeout=30,
    )
    for name, value in {
        "FOOTFALL_DYNAMODB_ENDPOINT": str(settings.dynamodb_endpoint),
        "FOOTFALL_KAFKA_BROKER": str(settings.kafka_broker),
        "FOOTFALL_CLICKHOUSE_URL": settings.clickhouse_url,
        "FOOTFALL_TABLE": settings.table,
        "FOOTFALL_TOPIC_PREFIX": settings.topic_prefix,
    }.items():
        monkeypatch.setenv(name, value)
    result = CliRunner().invoke(app, ["sync", "status"])
    assert result.exit_code == 0, result.output
    assert "kafka" in result.output and "dynamodb" in result.output
    assert "consumer lag" in result.output


def read_topic(settings: Settings, topic: str, n: int) -> list[Any]:
    assert settings.kafka is not None
    bridge = KafkaBridge(settings.kafka)

    async def read() -> list[Any]:
        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=settings.kafka.bootstrap,  # type: ignore[union-attr]
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            max_partition_fetch_bytes=4 << 20,
        )
        await consumer.start()
        out: list[Any] = []
        try:
            while len(out) < n:
                batch = await consumer.getmany(timeout_ms=15_000)
                if not batch:
                    break
                for records in batch.values():
                    out.extend(records)
        finally:
            await consumer.stop()
        return out

    try:
        return bridge.run(read(), timeout=120)
    finally:
        bridge.close()


@contextmanager
def own_pipeline(
    dynamodb_endpoint: str, kafka_broker: str, clickhouse_url: str, prefix: str
) -> Iterator[tuple[Settings, ClickHouse]]:
    """Settings of a pipeline of its own (table, topics, ClickHouse database), and a handle on
    that database; the database is dropped afterwards."""
    name = uuid.uuid4().hex[:8]
    admin = connect(load_settings(clickhouse_url=clickhouse_url))
    admin.command(f"CREATE DATABASE {prefix}_{name}")
    url = clickhouse_url.rsplit("/", 1)[0] + f"/{prefix}_{name}"
    settings = pipeline_settings(dynamodb_endpoint, kafka_broker, url, f"{prefix[0]}{name}")
    ch = connect(settings)
    try:
        yield settings, ch
    finally:
        ch.close()
        admin.command(f"DROP DATABASE IF EXISTS {prefix}_{name} SYNC")
        admin.close()


def test_what_the_worker_caught_up_with_is_written_without_waiting_for_a_cut(
    dynamodb_endpoint: str,
    kafka_broker: str,
    clickhouse_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    # no age cut and no idle cut for two minutes: only "caught up, writer free" writes sooner
    slow = ["--max-wait", "120", "--idle-cut", "120", "--no-relay"]
    with own_pipeline(dynamodb_endpoint, kafka_broker, clickhouse_url, "quick") as (settings, ch):
        worker = Worker(settings, tmp_path_factory.mktemp("quick-worker"), *slow)
        try:
            worker.start()
            with EventPublisher(settings) as publisher:
                publisher.publish(Activity(actor="quick", type="caught-up", target="/q"))
            wait_for(
                lambda: table_exists(ch) and counts_by_type(ch).get("caught-up") == 1,
                "the event to be written",
                worker,
                timeout=90,
            )
        finally:
            worker.stop()


def test_worker_killed_three_times_mid_stream_loses_and_duplicates_nothing(
    dynamodb_endpoint: str,
    kafka_broker: str,
    clickhouse_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    stored = list(synthetic_activities(3_000, seed=21, end=NOW, days=1))
    events = list(synthetic_activities(6_000, seed=22, end=NOW, days=1))
    with own_pipeline(dynamodb_endpoint, kafka_broker, clickhouse_url, "crash") as (settings, ch):
        Tracker("x", settings).ensure_table()
        worker = Worker(settings, tmp_path_factory.mktemp("crash-worker"))
        try:
            worker.start()

            def produce() -> None:  # paced over about a minute: the kills land mid-stream
                with EventPublisher(settings) as publisher:
                    for i, start in enumerate(range(0, len(events), 75)):
                        publisher.publish_many(events[start : start + 75], pack=i % 2 == 0)
                        time.sleep(0.6)
                for start in range(0, len(stored), 250):
                    record(settings, stored[start : start + 250])
                    time.sleep(0.3)

            producer = threading.Thread(target=produce)
            producer.start()
            for _ in range(3):  # kill mid-stream, each time after it made some progress
                before = scalar(ch, "SELECT count() FROM activities") if table_exists(ch) else 0
                wait_for(  # (a machine slow to restart the worker may see the stream end first)
                    lambda b=before: (
                        not producer.is_alive()  # type: ignore[misc]
                        or (table_exists(ch) and scalar(ch, "SELECT count() FROM activities") > b)
                    ),
                    "progress",
                    worker,
                )
                worker.kill()
                worker.start()
            producer.join(300)
            expected = Counter(a.type for a in stored + events)
            wait_for(
                lambda: counts_by_type(ch) == dict(expected),
                "exact counts after crashes",
                worker,
                timeout=180,
            )
            assert worker.starts == 4
            assert scalar(ch, "SELECT count() FROM activities FINAL") == len(stored) + len(events)
        finally:
            worker.stop()


def table_exists(ch: ClickHouse) -> bool:
    return bool(
        scalar(
            ch,
            "SELECT count() FROM system.tables WHERE database = currentDatabase() "
            "AND name = 'activities'",
        )
    )
