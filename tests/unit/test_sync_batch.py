"""Batching by size and time, Arrow columns, dedup tokens and checkpoints after the write."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa  # type: ignore[import-untyped, unused-ignore]
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from footfall import ConfigError
from sync._batch import SCHEMA, Batcher, OffsetTracker, dedup_token, rows_to_arrow
from sync._decode import EventPosition, Row, StreamPosition

TS_MS = 1795971600123


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def row(n: int, *, version: int = 0, deleted: int = 0) -> Row:
    return Row(f"e{n}", "bob", "pv", "/p", TS_MS + n, {"n": str(n)}, "kafka", version, deleted)


def pos(partition: int, offset: int) -> EventPosition:
    return EventPosition(partition, offset)


# -- batching -------------------------------------------------------------------------------


def test_a_batch_is_cut_when_max_rows_is_reached() -> None:
    batcher: Batcher[EventPosition] = Batcher("kafka:t", max_rows=3, clock=Clock())
    assert batcher.add(row(0), pos(0, 0)) is None
    assert batcher.add(row(1), pos(0, 1)) is None
    batch = batcher.add(row(2), pos(0, 2))
    assert batch is not None
    assert batch.positions == (pos(0, 0), pos(0, 1), pos(0, 2))
    assert batch.table.column("event_id").to_pylist() == ["e0", "e1", "e2"]
    assert len(batcher) == 0
    assert batcher.add(row(3), pos(0, 3)) is None


def test_a_batch_is_cut_when_its_oldest_row_waited_max_wait() -> None:
    clock = Clock()
    batcher: Batcher[EventPosition] = Batcher("kafka:t", max_rows=100, max_wait_s=2.0, clock=clock)
    assert batcher.poll() is None
    assert batcher.due_in() is None
    batcher.add(row(0), pos(0, 0))
    clock.now += 1.5
    assert batcher.add(row(1), pos(0, 1)) is None
    assert batcher.due_in() == pytest.approx(0.5)
    assert batcher.poll() is None
    clock.now += 0.5
    assert batcher.due_in() == 0.0
    batch = batcher.poll()
    assert batch is not None
    assert len(batch) == 2
    assert batcher.poll() is None  # nothing pending: no empty batches


def test_a_late_add_cuts_the_overdue_batch_including_itself() -> None:
    clock = Clock()
    batcher: Batcher[EventPosition] = Batcher("kafka:t", max_rows=100, max_wait_s=1.0, clock=clock)
    batcher.add(row(0), pos(0, 0))
    clock.now += 5
    batch = batcher.add(row(1), pos(0, 1))
    assert batch is not None
    assert len(batch) == 2


def test_flush_cuts_what_is_pending_and_nothing_when_empty() -> None:
    batcher: Batcher[EventPosition] = Batcher("kafka:t", clock=Clock())
    assert batcher.flush() is None
    batcher.add(row(0), pos(0, 0))
    batch = batcher.flush()
    assert batch is not None
    assert batch.newest_ts_ms == TS_MS
    assert batcher.flush() is None


@pytest.mark.parametrize(("name", "value"), [("max_rows", 0), ("max_wait_s", 0.0)])
def test_batcher_refuses_nonsense_limits(name: str, value: float) -> None:
    with pytest.raises(ConfigError):
        Batcher("kafka:t", **{name: value})  # type: ignore[arg-type]


# -- Arrow ----------------------------------------------------------------------------------


def test_rows_become_arrow_columns_with_the_exact_clickhouse_types() -> None:
    rows = [
        Row("e1", "bob", "pv", "/p", TS_MS, {"a": "1", "b": "x"}, "dynamodb", (1 << 64) - 1, 1),
        Row("e2", "ann", "buy", "/q", 0, {}, "kafka", 0, 0),
    ]
    table = rows_to_arrow(rows)
    assert table.schema == SCHEMA
    assert dict(zip(table.schema.names, map(str, table.schema.types), strict=True)) == {
        "event_id": "string",
        "actor": "string",
        "type": "string",
        "target": "string",
        "ts": "timestamp[ms, tz=UTC]",
        "attributes": "map<string, string>",
        "source": "string",
        "version": "uint64",
        "is_deleted": "uint8",
    }
    assert not table.schema.field("attributes").type.item_field.nullable  # Map(String, String)
    assert not any(f.nullable for f in table.schema)
    assert table.to_pylist() == [
        {
            "event_id": "e1",
            "actor": "bob",
            "type": "pv",
            "target": "/p",
            "ts": datetime(2026, 11, 29, 17, 0, 0, 123000, tzinfo=UTC),
            "attributes": [("a", "1"), ("b", "x")],
            "source": "dynamodb",
            "version": (1 << 64) - 1,
            "is_deleted": 1,
        },
        {
            "event_id": "e2",
            "actor": "ann",
            "type": "buy",
            "target": "/q",
            "ts": datetime(1970, 1, 1, tzinfo=UTC),
            "attributes": [],
            "source": "kafka",
            "version": 0,
            "is_deleted": 0,
        },
    ]


def test_no_rows_make_an_empty_table_of_the_same_schema() -> None:
    table = rows_to_arrow([])
    assert table.num_rows == 0
    assert table.schema == SCHEMA
    assert isinstance(table, pa.Table)


# -- dedup tokens ---------------------------------------------------------------------------


def test_dedup_token_is_deterministic_for_the_same_positions() -> None:
    rows = [row(0), row(1), row(2)]
    positions = [pos(0, 10), pos(1, 4), pos(0, 11)]
    token = dedup_token("kafka:t", rows, positions)
    assert token == dedup_token("kafka:t", [row(0), row(1), row(2)], list(positions))
    assert token.startswith("ff1:kafka:t:0@10-11#2,1@4-4#1:")


def test_dedup_token_ignores_how_lanes_interleaved() -> None:
    a = dedup_token("k", [row(0), row(1), row(2)], [pos(0, 10), pos(1, 4), pos(0, 11)])
    b = dedup_token("k", [row(1), row(0), row(2)], [pos(1, 4), pos(0, 10), pos(0, 11)])
    assert a == b


@pytest.mark.parametrize(
    ("rows", "positions"),
    [
        ([row(0), row(1)], [pos(0, 10), pos(0, 12)]),  # another range
        ([row(0), row(1)], [pos(1, 10), pos(1, 11)]),  # another partition
        ([row(0)], [pos(0, 10)]),  # a prefix
        ([row(0), row(5)], [pos(0, 10), pos(0, 11)]),  # other records at the same offsets
        ([row(0), row(1, version=3)], [pos(0, 10), pos(0, 11)]),  # another version
        ([row(0), row(1, deleted=1)], [pos(0, 10), pos(0, 11)]),  # a tombstone
    ],
)
def test_dedup_token_differs_for_any_other_batch(rows: list[Row], positions: list[Any]) -> None:
    reference = dedup_token("k", [row(0), row(1)], [pos(0, 10), pos(0, 11)])
    assert dedup_token("k", rows, positions) != reference


def test_dedup_token_differs_per_scope_and_stays_short_with_many_lanes() -> None:
    rows = [row(n) for n in range(50)]
    positions = [StreamPosition(f"shardId-{n:020d}-abcdef", f"{n:021d}") for n in range(50)]
    token = dedup_token("dynamodb:activities", rows, positions)
    assert len(token) < 120
    assert token != dedup_token("dynamodb:other", rows, positions)
    assert token != dedup_token("dynamodb:activities", rows[:-1], positions[:-1])


# -- checkpoints ----------------------------------------------------------------------------


def test_checkpoint_waits_for_the_gap_then_jumps_over_everything_acked() -> None:
    tracker: OffsetTracker[EventPosition] = OffsetTracker()
    for offset in (5, 6, 9, 12):  # offsets need not be contiguous (compaction, markers)
        tracker.track(pos(0, offset))
    tracker.ack(pos(0, 9))
    tracker.ack(pos(0, 12))
    assert tracker.committable() == []
    assert tracker.safe(0) is None
    tracker.ack(pos(0, 6))
    assert tracker.committable() == []
    tracker.ack(pos(0, 5))
    assert tracker.committable() == [pos(0, 12)]
    assert tracker.committable() == []  # reported once
    assert tracker.pending() == 0


def test_lanes_are_independent() -> None:
    tracker: OffsetTracker[StreamPosition] = OffsetTracker()
    a1, a2, b1 = StreamPosition("a", "001"), StreamPosition("a", "002"), StreamPosition("b", "7")
    for position in (a1, b1, a2):
        tracker.track(position)
    tracker.ack_all([a2, b1])
    assert tracker.committable() == [b1]
    tracker.ack(a1)
    assert tracker.committable() == [a2]


def test_redeliveries_and_unknown_acks_are_ignored() -> None:
    tracker: OffsetTracker[EventPosition] = OffsetTracker()
    assert tracker.track(pos(0, 1))
    assert tracker.track(pos(0, 2))
    assert not tracker.track(pos(0, 1))  # already tracked: the first reading covers it
    assert not tracker.ack(pos(0, 3))  # never tracked
    assert not tracker.ack(pos(1, 0))  # unknown lane
    assert tracker.ack(pos(0, 1))
    assert not tracker.ack(pos(0, 1))  # already safe
    assert tracker.committable() == [pos(0, 1)]
    assert tracker.pending() == 1


def test_sequence_numbers_compare_as_numbers_not_text() -> None:
    tracker: OffsetTracker[StreamPosition] = OffsetTracker()
    assert tracker.track(StreamPosition("s", "9"))
    assert tracker.track(StreamPosition("s", "10"))  # "10" < "9" as text


def test_reset_forgets_a_revoked_lane() -> None:
    tracker: OffsetTracker[EventPosition] = OffsetTracker()
    tracker.track(pos(0, 1))
    tracker.reset(0)
    assert not tracker.ack(pos(0, 1))
    assert tracker.track(pos(0, 1))  # re-read from the checkpoint after a reassignment


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_random_ack_orders_never_commit_past_an_unacked_position(data: st.DataObject) -> None:
    offsets = data.draw(st.lists(st.integers(0, 10_000), min_size=1, max_size=40, unique=True))
    offsets.sort()
    tracker: OffsetTracker[EventPosition] = OffsetTracker()
    for offset in offsets:
        tracker.track(pos(0, offset))
    order = data.draw(st.permutations(offsets))
    acked: set[int] = set()
    committed: int | None = None
    for offset in order:
        tracker.ack(pos(0, offset))
        acked.add(offset)
        if moved := tracker.committable():
            (newest,) = moved
            committed = newest.offset
        if committed is not None:
            assert all(o in acked for o in offsets if o <= committed)
            expected = max(o for i, o in enumerate(offsets) if set(offsets[: i + 1]) <= acked)
            assert committed == expected
    assert committed == offsets[-1]


# -- the layers together: crashes, restarts and re-cut batches ------------------------------


class FakeActivities:
    """Insert deduplication by token, plus ReplacingMergeTree's FINAL view."""

    def __init__(self) -> None:
        self.tokens: set[str] = set()
        self.rows: list[dict[str, Any]] = []

    def insert(self, table: pa.Table, token: str) -> None:
        if token not in self.tokens:
            self.tokens.add(token)
            self.rows.extend(table.to_pylist())

    def final(self) -> dict[tuple[Any, ...], int]:
        out: dict[tuple[Any, ...], int] = {}
        for r in self.rows:
            key = (r["type"], r["target"], r["ts"], r["actor"], r["event_id"])
            out[key] = max(out.get(key, -1), r["version"])
        return out


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.integers(0, 2), min_size=1, max_size=60),  # partition of each message
    st.lists(st.tuples(st.integers(1, 8), st.integers(0, 80)), min_size=1, max_size=4),
)
def test_crashes_and_restarts_never_lose_or_double_count(
    partitions: list[int], runs: list[tuple[int, int]]
) -> None:
    log: dict[int, list[Row]] = {0: [], 1: [], 2: []}  # a topic: partition -> messages
    for n, partition in enumerate(partitions):
        log[partition].append(row(n))
    table = FakeActivities()
    committed: dict[int, int] = {}  # partition -> next offset to read
    for max_rows, crash_after in [*runs, (5, 10_000)]:  # the last run completes
        batcher: Batcher[EventPosition] = Batcher("kafka:t", max_rows=max_rows, clock=Clock())
        tracker: OffsetTracker[EventPosition] = OffsetTracker()
        stream = [
            (EventPosition(p, o), log[p][o])
            for o in range(max(len(m) for m in log.values()))
            for p in sorted(log)
            if committed.get(p, 0) <= o < len(log[p])
        ]
        steps = 0
        for position, message in stream:
            tracker.track(position)
            batch = batcher.add(message, position)
            if batch is not None:
                table.insert(batch.table, batch.dedup_token)
                steps += 1
                if steps == crash_after:
                    break  # crash after the insert, before the checkpoint
                tracker.ack_all(batch.positions)
                for done in tracker.committable():
                    committed[done.partition] = done.offset + 1
        else:
            batch = batcher.flush()
            if batch is not None:
                table.insert(batch.table, batch.dedup_token)
                tracker.ack_all(batch.positions)
                for done in tracker.committable():
                    committed[done.partition] = done.offset + 1
    assert len(table.final()) == len(partitions)
    assert {key[4] for key in table.final()} == {f"e{n}" for n in range(len(partitions))}


def test_a_batch_re_read_with_the_same_cut_after_a_crash_is_dropped_by_its_token() -> None:
    table = FakeActivities()
    messages = [(pos(0, n), row(n)) for n in range(6)]
    for crash in (True, False):
        batcher: Batcher[EventPosition] = Batcher("kafka:t", max_rows=3, clock=Clock())
        for position, message in messages:  # nothing was committed: re-read from the start
            batch = batcher.add(message, position)
            if batch is not None:
                table.insert(batch.table, batch.dedup_token)
                if crash:
                    break
    assert len(table.rows) == 6  # no duplicate rows at all, not only under FINAL


def test_after_the_warm_up_a_batch_imports_nothing() -> None:
    """The worker warms pyarrow at start: its first batch must not stall the event loop on
    pyarrow's lazy imports (a fresh interpreter, so earlier tests cannot have warmed it)."""
    probe = (
        "import sys\n"
        "from sync._batch import rows_to_arrow, warm_up_arrow\n"
        "from sync._decode import Row\n"
        "warm_up_arrow()\n"
        "before = set(sys.modules)\n"
        "rows_to_arrow([Row('e', 'bob', 'view', '/p', 1, {'browser': 'x'}, 'kafka', 0, 0)])\n"
        "print(sorted(set(sys.modules) - before))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
