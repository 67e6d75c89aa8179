"""Backfill and reconcile against DynamoDB Local (with its stream) and the embedded ClickHouse.

One DynamoDB table for the module (DynamoDB Local slows down when stream-enabled tables are
deleted); tests keep apart by activity type and, for reconcile, by a window of activity time of
their own. Each test gets a fresh ClickHouse database in the session's one chDB directory.
The stream is mirrored by driving `StreamRelay` by hand, as the embedded runner does.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from footfall import Activity, Settings, load_settings
from footfall._activity import EARLIEST
from footfall._clickhouse import ClickHouse
from footfall._compaction import compact_after_load
from footfall._dynamodb import DynamoDB
from footfall._errors import StoreUnavailable
from footfall._rollup import rollup_mismatches
from ingest import Tracker
from sync._backfill import BackfillReport, backfill, insert_rows
from sync._batch import dedup_token, rows_to_arrow
from sync._decode import Row
from sync._lineage import TrimmedRange
from sync._reconcile import reconcile
from sync._state import ClickHouseCheckpoints
from sync._streams import StreamRelay
from tests._clickhouse import active_parts, scratch_database

NOW = datetime.now(UTC).replace(microsecond=0)


class MemoryCheckpoints:
    """The relay's CheckpointStore, in memory."""

    def __init__(self) -> None:
        self.saved: dict[str, dict[str, str]] = {}
        self.drained: dict[str, set[str]] = {}
        self.trimmed: list[TrimmedRange] = []

    def load(self, stream_arn: str) -> dict[str, str]:
        return dict(self.saved.get(stream_arn, {}))

    def load_drained(self, stream_arn: str) -> set[str]:
        return set(self.drained.get(stream_arn, set()))

    def save(
        self, stream_arn: str, shard_id: str, sequence_number: str, *, drained: bool = False
    ) -> None:
        self.saved.setdefault(stream_arn, {})[shard_id] = sequence_number
        if drained:
            self.drained.setdefault(stream_arn, set()).add(shard_id)

    def record_trimmed(self, stream_arn: str, trimmed: TrimmedRange) -> None:
        self.trimmed.append(trimmed)


@pytest.fixture(scope="module")
def settings(dynamodb_endpoint: str, chdb_url: str) -> Settings:
    s = load_settings(
        dynamodb_endpoint=dynamodb_endpoint,
        table=f"footfall-repair-{uuid.uuid4().hex[:8]}",
        clickhouse_url=chdb_url,
        target_shards=2,
    )
    DynamoDB(s).ensure_table()
    return s


@pytest.fixture
def ch(chdb_url: str) -> Iterator[ClickHouse]:
    """A fresh database with every migration applied."""
    with scratch_database(load_settings(clickhouse_url=chdb_url), "footfall_repair") as handle:
        yield handle


@pytest.fixture
def kind() -> str:
    return f"rp-{uuid.uuid4().hex[:10]}"


def record(
    settings: Settings, kind: str, n: int, *, start: datetime | None = None, step_s: int = 60
) -> list[Activity]:
    """n activities of type `kind` by 4 actors, at `start` + i * step_s (default: now)."""
    at = start or NOW - timedelta(seconds=n * step_s)
    activities = [
        Activity(
            actor=f"{kind}-actor-{i % 4}",
            type=kind,
            target=f"/p/{i % 3}",
            ts=at + timedelta(seconds=i * step_s),
            attributes={"i": i, "v": "1"},
        )
        for i in range(n)
    ]
    assert Tracker(kind, settings).record_many(activities).written == n
    return activities


def mirror_stream(relay: StreamRelay, ch: ClickHouse) -> int:
    """Drain the relay into `activities` (checkpoint after the write); rows mirrored."""
    mirrored = 0
    for read in relay.drain():
        rows = [change.row for change in read.rows]
        if rows:
            positions = [change.position for change in read.rows]
            insert_rows(ch, rows, token=dedup_token("test-stream", rows, positions))
            mirrored += len(rows)
        relay.commit(read)
    return mirrored


def final(ch: ClickHouse, kind: str) -> dict[str, dict[str, Any]]:
    """event_id → {version, attributes} of the live rows of one type."""
    rows = ch.query_arrow(
        "SELECT event_id, version, attributes FROM activities FINAL WHERE type = {t:String}",
        {"t": kind},
    ).to_pylist()
    return {r["event_id"]: {"version": r["version"], "v": dict(r["attributes"])["v"]} for r in rows}


def stored(settings: Settings, kind: str) -> dict[str, dict[str, Any]]:
    """event_id → {version (rev), v} of the items of one type in DynamoDB."""
    store = DynamoDB(settings)
    out = {}
    for actor in range(4):
        for it in store.query(key_name="actor", key_value=f"{kind}-actor-{actor}"):
            out[it["event_id"]] = {"version": int(it["rev"]), "v": str(it["attributes"]["v"])}
    return out


def scalar(ch: ClickHouse, sql: str, parameters: dict[str, Any] | None = None) -> Any:
    return ch.query_arrow(sql, parameters).column(0)[0].as_py()


def run_backfill(settings: Settings, ch: ClickHouse, **options: Any) -> BackfillReport:
    options.setdefault("checkpoints", MemoryCheckpoints())
    return backfill(settings, ch, **options)


# -- backfill ------------------------------------------------------------------------------


def test_backfill_copies_every_item_once_and_a_second_run_changes_nothing(
    settings: Settings, ch: ClickHouse, kind: str
) -> None:
    record(settings, kind, 300)
    record(settings, kind + "-b", 120)
    DynamoDB(settings).put_new({"actor": f"{kind}-meta", "sk": "config#1", "note": "no activity"})
    calls: list[tuple[int, int]] = []
    lock = threading.Lock()

    def progress(segment: int, items: int) -> None:
        with lock:
            calls.append((segment, items))

    report = run_backfill(settings, ch, segments=4, batch_rows=100, progress=progress)

    counts = ch.query_arrow(
        "SELECT type, count() AS n FROM activities FINAL WHERE type IN {t:Array(String)} "
        "GROUP BY type",
        {"t": [kind, kind + "-b"]},
    ).to_pylist()
    assert {c["type"]: c["n"] for c in counts} == {kind: 300, kind + "-b": 120}
    assert final(ch, kind) == stored(settings, kind)  # versions are the items' revs
    everything = DynamoDB(settings).client.scan(TableName=settings.table, Select="COUNT")["Count"]
    assert report.items_scanned == everything
    assert report.skipped == 1 and report.invalid == 0
    assert report.rows_written == everything - 1
    assert scalar(ch, "SELECT count() FROM activities FINAL") == report.rows_written
    assert all(s.done for s in report.segments)
    assert report.handover.from_trim_horizon and report.handover.deadline is not None
    last = {segment: items for segment, items in calls}  # the final call of each segment
    assert last == {s.segment: s.items for s in report.segments}
    assert rollup_mismatches(ch).num_rows == 0

    raw_before = scalar(ch, "SELECT count() FROM activities")
    again = run_backfill(settings, ch, segments=4, batch_rows=100, page_size=37)  # many pages

    assert again.rows_written == report.rows_written
    assert scalar(ch, "SELECT count() FROM activities") == raw_before  # same tokens: dropped
    assert final(ch, kind) == stored(settings, kind)


def test_a_backfill_ends_with_each_month_in_one_part_unless_told_not_to(
    settings: Settings, ch: ClickHouse, kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    record(settings, kind, 200)
    calls: list[ClickHouse] = []

    def spy(handle: ClickHouse) -> Any:
        calls.append(handle)
        return compact_after_load(handle)

    monkeypatch.setattr("sync._backfill.compact_after_load", spy)
    ch.command("SYSTEM STOP MERGES activities")  # keep the small parts apart until asked
    kept = run_backfill(settings, ch, segments=2, batch_rows=20, compact=False)
    assert kept.compacted == [] and calls == []
    assert max(active_parts(ch).values()) > 1  # many small inserts, many parts
    ch.command("SYSTEM START MERGES activities")

    report = run_backfill(settings, ch, segments=2, batch_rows=20)
    assert calls == [ch] and report.warnings == []  # (background merges may beat it to some)
    assert max(active_parts(ch).values()) == 1
    assert final(ch, kind) == stored(settings, kind)


def test_a_failed_compaction_after_a_backfill_is_a_warning_and_the_rows_stay(
    settings: Settings, ch: ClickHouse, kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    record(settings, kind, 30)

    def refuse(handle: ClickHouse) -> Any:
        raise StoreUnavailable("ClickHouse", "connection refused")

    monkeypatch.setattr("sync._backfill.compact_after_load", refuse)
    report = run_backfill(settings, ch, segments=2)
    assert len(report.warnings) == 1 and "footfall sync compact --all" in report.warnings[0]
    assert final(ch, kind) == stored(settings, kind)


def test_backfill_reads_the_relay_state_to_pin_the_hand_over(
    settings: Settings, ch: ClickHouse, kind: str
) -> None:
    record(settings, kind, 5)
    checkpoints = ClickHouseCheckpoints(ch)
    relay = StreamRelay(settings, checkpoints)
    mirror_stream(relay, ch)  # the relay has run: it holds checkpoints in ClickHouse

    report = run_backfill(settings, ch, checkpoints=checkpoints, segments=2)

    assert report.handover.stream_arn == relay.stream_arn
    assert report.handover.relay_shards == len(checkpoints.load(relay.stream_arn)) > 0
    assert not report.handover.from_trim_horizon and report.handover.deadline is None


def test_scan_first_then_changes_then_the_stream_gives_the_latest_state(
    settings: Settings, ch: ClickHouse, kind: str
) -> None:
    activities = record(settings, kind, 200)
    tracker = Tracker(kind, settings)
    relay = StreamRelay(settings, MemoryCheckpoints())  # no state: it reads from TRIM_HORIZON

    run_backfill(settings, ch, checkpoints=relay.checkpoints, segments=3)
    for a in activities[:20]:
        tracker.update(a, v="2")
    for a in activities[20:35]:
        tracker.delete(a)
    tracker.update(activities[0], v="3")
    mirror_stream(relay, ch)

    rows = final(ch, kind)
    assert len(rows) == 185
    assert rows == stored(settings, kind)
    assert rows[activities[0].event_id]["v"] == "3"
    assert {rows[a.event_id]["v"] for a in activities[1:20]} == {"2"}
    assert not {a.event_id for a in activities[20:35]} & rows.keys()
    assert rollup_mismatches(ch).num_rows == 0


def test_stream_first_then_the_scan_gives_the_latest_state(
    settings: Settings, ch: ClickHouse, kind: str
) -> None:
    activities = record(settings, kind, 200)
    tracker = Tracker(kind, settings)
    relay = StreamRelay(settings, MemoryCheckpoints())
    mirror_stream(relay, ch)  # the inserts
    for a in activities[:20]:
        tracker.update(a, v="2")
    for a in activities[20:35]:
        tracker.delete(a)
    mirror_stream(relay, ch)  # the changes, before the scan lands

    run_backfill(settings, ch, checkpoints=relay.checkpoints, segments=3)
    for a in activities[35:40]:  # changes after the scan, handed over by the stream
        tracker.update(a, v="4")
    mirror_stream(relay, ch)

    rows = final(ch, kind)
    assert len(rows) == 185
    assert rows == stored(settings, kind)
    assert {rows[a.event_id]["v"] for a in activities[35:40]} == {"4"}
    assert rollup_mismatches(ch).num_rows == 0


class InsertLog:
    """A ClickHouse handle that notes which (event_id, version) each insert carried, in order."""

    def __init__(self, ch: ClickHouse) -> None:
        self.ch = ch
        self.inserts: list[tuple[str, list[tuple[str, int]]]] = []
        self.phase = "scan"

    def insert_arrow(self, table: str, arrow: Any, *, dedup_token: str | None) -> None:
        if table == "activities":
            pairs = list(
                zip(arrow["event_id"].to_pylist(), arrow["version"].to_pylist(), strict=True)
            )
            self.inserts.append((self.phase, pairs))
        self.ch.insert_arrow(table, arrow, dedup_token=dedup_token)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.ch, name)


def test_older_scanned_rows_landing_after_newer_stream_rows_still_lose(
    settings: Settings, ch: ClickHouse, kind: str
) -> None:
    activities = record(settings, kind, 300)
    tracker = Tracker(kind, settings)
    relay = StreamRelay(settings, MemoryCheckpoints())
    spy = InsertLog(ch)
    changed = threading.Event()
    old = {eid: v["version"] for eid, v in stored(settings, kind).items()}

    def progress(segment: int, items: int) -> None:
        if changed.is_set():
            return
        changed.set()  # after the first batch: change every item, mirror it, then scan on
        for a in activities[:280]:
            tracker.update(a, v="2")
        for a in activities[280:]:
            tracker.delete(a)
        spy.phase = "stream"
        mirror_stream(relay, spy)  # type: ignore[arg-type]
        spy.phase = "late scan"

    run_backfill(settings, spy, checkpoints=relay.checkpoints, segments=1, batch_rows=50,
                 progress=progress)  # fmt: skip

    late = [(e, v) for phase, pairs in spy.inserts if phase == "late scan" for e, v in pairs]
    stale_late = [e for e, v in late if old.get(e) == v]
    assert stale_late, "no scanned row older than the stream's landed after it"
    rows = final(ch, kind)
    assert len(rows) == 280
    assert rows == stored(settings, kind)
    assert {r["v"] for r in rows.values()} == {"2"}


# -- reconcile -----------------------------------------------------------------------------


def window(days_ago: int) -> tuple[datetime, datetime]:
    """A 2-day window of activity time of its own, crossing one UTC midnight."""
    midnight = NOW.replace(hour=0, minute=0, second=0) - timedelta(days=days_ago)
    return midnight - timedelta(hours=12), midnight + timedelta(hours=12)


def test_reconcile_repairs_exactly_the_lost_the_stale_and_the_deleted(
    settings: Settings, ch: ClickHouse, kind: str
) -> None:
    since, until = window(days_ago=5)
    start = since + timedelta(hours=6)
    activities = record(settings, kind, 50, start=start, step_s=20 * 60)  # 6 pm to 10 am
    same_count = record(settings, kind + "-s", 3, start=start)  # one stale row, nothing else
    run_backfill(settings, ch, segments=2)
    tracker = Tracker(kind, settings)
    Tracker(kind + "-s", settings).update(same_count[1], v="2")
    # 2 lost before midnight (18:07, 22:07), 3 after; the changes are all before midnight
    lost = record(settings, kind, 5, start=start + timedelta(minutes=7), step_s=4 * 3600)
    for a in activities[:4]:
        tracker.update(a, v="2")
    for a in activities[10:13]:
        tracker.delete(a)

    report = reconcile(settings, ch, since=since, until=until, segments=3)

    assert (report.missing, report.stale, report.deleted) == (5, 4 + 1, 3)
    assert (report.retention_kept, report.ahead, report.still_there) == (0, 0, 0)
    assert report.scanned == 52 + 3 and report.trimmed_repaired == 0
    midnight = until - timedelta(hours=12)
    assert [(g.type, g.day, g.dynamodb, g.clickhouse, g.matched) for g in report.groups] == [
        (kind, midnight.date() - timedelta(days=1), 18 + 2 - 3, 18, False),
        (kind, midnight.date(), 32 + 3, 32, False),
        (kind + "-s", midnight.date() - timedelta(days=1), 3, 3, False),  # same count, versions
    ]
    assert final(ch, kind + "-s") == stored(settings, kind + "-s")
    rows = final(ch, kind)
    assert rows == stored(settings, kind)
    assert len(rows) == 52
    assert {a.event_id for a in lost} <= rows.keys()
    assert not {a.event_id for a in activities[10:13]} & rows.keys()
    assert rollup_mismatches(ch).num_rows == 0

    again = reconcile(settings, ch, since=since, until=until, segments=3)

    assert again.fixed == 0
    assert all(g.matched for g in again.groups)
    assert final(ch, kind) == rows


def test_reconcile_keeps_ttl_expired_history_and_tombstones_user_deletes(
    settings: Settings, ch: ClickHouse, kind: str
) -> None:
    ttl = load_settings(**{**settings.model_dump(), "ttl_days": 30})
    since, until = window(days_ago=40)
    kept = record(settings, kind, 4, start=since + timedelta(hours=1))
    run_backfill(settings, ch, segments=2)
    two_am = int((since + timedelta(hours=2) - EARLIEST).total_seconds()) * 1000
    expired = [  # rows mirrored long ago of items DynamoDB has since expired
        Row(f"{kind}-x{i}", "gone", kind, "/p/x", two_am + i, {"v": "1"}, "dynamodb", 1000 + i, 0)
        for i in range(6)
    ]
    ch.insert_arrow("activities", rows_to_arrow(expired), dedup_token=None)

    report = reconcile(ttl, ch, since=since, until=until, segments=2)

    assert report.retention_kept == 6
    assert report.fixed == 0
    rows = final(ch, kind)
    assert rows.keys() == {a.event_id for a in kept} | {r.event_id for r in expired}
    assert reconcile(ttl, ch, since=since, until=until).fixed == 0

    recent_since, recent_until = window(days_ago=10)
    deleted = record(settings, kind, 2, start=recent_since + timedelta(hours=1))
    run_backfill(settings, ch, segments=2)
    Tracker(kind, settings).delete(deleted[0])

    recent = reconcile(ttl, ch, since=recent_since, until=recent_until, segments=2)

    assert (recent.deleted, recent.retention_kept, recent.missing, recent.stale) == (1, 0, 0, 0)
    assert deleted[0].event_id not in final(ch, kind)
    tombstones = ch.query_arrow(
        "SELECT version, is_deleted FROM activities WHERE event_id = {e:String} ORDER BY version",
        {"e": deleted[0].event_id},
    ).to_pylist()
    assert tombstones[-1]["is_deleted"] == 1
    assert tombstones[-1]["version"] == tombstones[0]["version"] + 1


def test_only_a_reconcile_over_all_time_marks_lost_stream_ranges_repaired(
    settings: Settings, ch: ClickHouse
) -> None:
    arn = DynamoDB(settings).describe()["LatestStreamArn"]
    other = "arn:aws:dynamodb:ddblocal:000000000000:table/another/stream/2026-01-01T00:00:00.000"
    state = ClickHouseCheckpoints(ch)
    detected = NOW - timedelta(hours=1)
    state.record_trimmed(arn, TrimmedRange("shardId-1", "100", detected))
    state.record_trimmed(other, TrimmedRange("shardId-2", "200", detected))
    repaired_sql = "SELECT stream, repaired FROM sync_trimmed_ranges FINAL ORDER BY stream"

    windowed = reconcile(settings, ch, since=NOW - timedelta(days=1))

    assert windowed.trimmed_repaired == 0
    assert {r["repaired"] for r in ch.query_arrow(repaired_sql).to_pylist()} == {0}

    full = reconcile(settings, ch, since=EARLIEST)

    assert full.trimmed_repaired == 1
    assert {r["stream"]: r["repaired"] for r in ch.query_arrow(repaired_sql).to_pylist()} == {
        arn: 1,
        other: 0,
    }
    assert reconcile(settings, ch, since=EARLIEST).trimmed_repaired == 0
