"""The embedded runner (relay + sink in this process) against DynamoDB Local and chDB."""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import botocore.exceptions
import pytest

from footfall import Activity, ConfigError, Settings, load_settings
from footfall._clickhouse import ClickHouse
from footfall._migrate import migrate
from footfall._synthetic import synthetic_activities
from ingest import Tracker
from sync import EmbeddedSync
from sync._lineage import TrimmedRange
from sync._state import ClickHouseCheckpoints
from tests._clickhouse import scratch_database

NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture(scope="module")
def table_settings(dynamodb_endpoint: str, chdb_url: str) -> Settings:
    s = load_settings(
        dynamodb_endpoint=dynamodb_endpoint,
        clickhouse_url=chdb_url,
        table=f"embedded-{uuid.uuid4().hex[:8]}",
    )
    Tracker("x", s).ensure_table()
    return s


@pytest.fixture
def ch(table_settings: Settings) -> Iterator[ClickHouse]:
    """A fresh database per test: its own checkpoints, so each test reads the whole stream."""
    with scratch_database(table_settings, "emb", migrated=False) as handle:
        yield handle


def count(ch: ClickHouse, sql: str = "SELECT count() AS n FROM activities FINAL") -> int:
    return int(ch.query_arrow(sql).to_pylist()[0]["n"])


def test_mirrors_records_updates_and_deletes_exactly(
    table_settings: Settings, ch: ClickHouse
) -> None:
    views = Tracker("emb-views", table_settings)
    acts = [
        Activity(
            actor=a.actor,
            type="emb-views",
            target=a.target,
            ts=a.ts,
            event_id=a.event_id,
            attributes=a.attributes,
        )
        for a in synthetic_activities(1500, seed=31, end=NOW, days=1)
    ]
    views.record_many(acts)
    views.update(acts[0], browser="Lynx")
    views.delete(acts[1])
    with EmbeddedSync(table_settings, ch) as runner:
        runner.catch_up()
    assert count(ch, "SELECT count() AS n FROM activities FINAL WHERE type = 'emb-views'") == 1499
    browser = ch.query_arrow(
        "SELECT attributes['browser'] AS b FROM activities FINAL WHERE event_id = {e:String}",
        {"e": acts[0].event_id},
    ).to_pylist()
    assert browser == [{"b": "Lynx"}]
    mismatches = ch.query_arrow(
        "SELECT count() AS n FROM (SELECT type, target, toDate(ts) AS day, count() AS c "
        "FROM activities FINAL GROUP BY type, target, day) AS a FULL OUTER JOIN "
        "activities_daily AS r ON a.type = r.type AND a.target = r.target AND a.day = r.day "
        "WHERE a.c != r.activities"
    ).to_pylist()
    assert mismatches == [{"n": 0}]  # the rollup equals the aggregate over FINAL


def test_a_restart_resumes_from_the_checkpoint_without_rereading(
    table_settings: Settings, ch: ClickHouse
) -> None:
    with EmbeddedSync(table_settings, ch) as runner:
        runner.catch_up()
    raw_rows = count(ch, "SELECT count() AS n FROM activities")
    Tracker("emb-restart", table_settings).record_activity("r1", "/x")
    with EmbeddedSync(table_settings, ch) as again:
        handled = again.catch_up()
    assert handled == 1  # only the new record: the old ones were checkpointed
    assert count(ch, "SELECT count() AS n FROM activities") == raw_rows + 1


class FailingSave(ClickHouseCheckpoints):
    """Crashes between the write and the checkpoint, once."""

    failed = False

    def save(
        self, stream_arn: str, shard_id: str, sequence_number: str, *, drained: bool = False
    ) -> None:
        if not FailingSave.failed:
            FailingSave.failed = True
            raise RuntimeError("crash after the write, before the checkpoint")
        super().save(stream_arn, shard_id, sequence_number, drained=drained)


def test_a_crash_between_write_and_checkpoint_duplicates_nothing(
    table_settings: Settings, ch: ClickHouse
) -> None:
    tracker = Tracker("emb-crash", table_settings)
    tracker.record_many([{"actor": f"c{i}", "target": "/c"} for i in range(300)])
    runner = EmbeddedSync(table_settings, ch)
    runner.relay.checkpoints = FailingSave(ch)
    with pytest.raises(RuntimeError, match="before the checkpoint"):
        runner.catch_up()
    runner.close()
    with EmbeddedSync(table_settings, ch) as restarted:  # reads the same records again
        restarted.catch_up()
    expected = Counter({"emb-crash": 300})
    got = ch.query_arrow(
        "SELECT type, count() AS n FROM activities FINAL WHERE type = 'emb-crash' GROUP BY type"
    ).to_pylist()
    assert {r["type"]: r["n"] for r in got} == dict(expected)


def test_the_checkpoint_store_keeps_which_shards_were_drained(ch: ClickHouse) -> None:
    migrate(ch)  # 0004 adds the flag to the table 0003 made
    state = ClickHouseCheckpoints(ch)
    stream = f"arn:drained:{uuid.uuid4().hex[:8]}"
    state.save(stream, "P", "2")
    state.save(stream, "P", "3", drained=True)  # the read that found P's end
    state.save(stream, "C", "5")
    state.save(f"{stream}:other", "C", "9", drained=True)
    assert state.load(stream) == {"P": "3", "C": "5"}
    assert state.load_drained(stream) == {"P"}


def test_an_idle_runner_polls_less_and_less_often(table_settings: Settings, ch: ClickHouse) -> None:
    runner = EmbeddedSync(table_settings, ch, poll_interval=0.01, poll_idle_max=0.04)
    waits: list[float] = []

    def wait(timeout: float) -> bool:  # stands in for the stop event's wait: no real sleep
        waits.append(timeout)
        if len(waits) == 5:
            runner._stop.set()
        return runner._stop.is_set()

    runner._stop.wait = wait  # type: ignore[method-assign]
    try:
        runner.run()  # earlier tests' records first (no wait), then idle rounds
    finally:
        runner.close()
    assert waits == [0.01, 0.02, 0.04, 0.04, 0.04]


def test_the_runner_refuses_a_first_wait_above_its_idle_cap(table_settings: Settings) -> None:
    with pytest.raises(ConfigError, match="at most poll_idle_max"):
        EmbeddedSync(table_settings, poll_interval=0.5, poll_idle_max=0.25)


class ScriptedStreams:
    """The real Streams client, with one scripted failure injected on the wire's answer."""

    def __init__(self, real: Any, operation: str, code: str) -> None:
        self.real, self.operation, self.code = real, operation, code
        self.injected = 0

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.real, name)
        if name != self.operation or self.injected:
            return method

        def fail_once(**kwargs: Any) -> Any:
            if self.operation == "get_shard_iterator" and "SequenceNumber" not in kwargs:
                return method(**kwargs)
            self.injected += 1
            raise botocore.exceptions.ClientError(
                {"Error": {"Code": self.code, "Message": "injected"}}, name
            )

        return fail_once


def test_an_expired_iterator_is_renewed_and_nothing_is_skipped(
    table_settings: Settings, ch: ClickHouse
) -> None:
    tracker = Tracker("emb-expiry", table_settings)
    tracker.record_many([{"actor": f"e{i}", "target": "/e"} for i in range(50)])
    with EmbeddedSync(table_settings, ch) as runner:
        runner.catch_up()
        tracker.record_many([{"actor": f"f{i}", "target": "/e"} for i in range(50)])
        scripted = ScriptedStreams(runner.relay.client, "get_records", "ExpiredIteratorException")
        runner.relay.client = scripted  # type: ignore[assignment]
        runner.catch_up()
    assert scripted.injected == 1
    assert count(ch, "SELECT count() AS n FROM activities FINAL WHERE type = 'emb-expiry'") == 100


def test_trimmed_data_is_reported_loudly_and_recorded_for_repair(
    table_settings: Settings, ch: ClickHouse, caplog: pytest.LogCaptureFixture
) -> None:
    tracker = Tracker("emb-trim", table_settings)
    tracker.record_activity("t1", "/t")
    with EmbeddedSync(table_settings, ch) as first:
        first.catch_up()
    tracker.record_activity("t2", "/t")
    with EmbeddedSync(table_settings, ch) as runner, caplog.at_level(logging.ERROR):
        scripted = ScriptedStreams(
            runner.relay.client, "get_shard_iterator", "TrimmedDataAccessException"
        )
        runner.relay.client = scripted  # type: ignore[assignment]
        runner.catch_up()
        trimmed: list[TrimmedRange] = runner.relay.stats.trimmed
    assert scripted.injected == 1 and len(trimmed) == 1
    assert "DATA LOSS IN THE STREAM" in caplog.text
    recorded = ch.query_arrow("SELECT shard, reason, repaired FROM sync_trimmed_ranges").to_pylist()
    assert recorded == [
        {"shard": trimmed[0].shard_id, "reason": "TrimmedDataAccessException", "repaired": 0}
    ]
    # reading resumed at TRIM_HORIZON: the newer record arrived too
    assert count(ch, "SELECT count() AS n FROM activities FINAL WHERE type = 'emb-trim'") == 2
