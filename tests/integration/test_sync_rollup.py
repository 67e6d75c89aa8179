"""The daily rollup refreshed off the sink's critical path: exact when flushed, crash-safe."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from footfall import load_settings
from footfall._clickhouse import ClickHouse
from footfall._rollup import rollup_mismatches
from sync._batch import Batcher
from sync._decode import EventPosition, Row
from sync._rollup import RollupKeeper
from sync._sink import Sink
from tests._clickhouse import scratch_database

DAY = datetime(2026, 11, 20, 12, tzinfo=UTC)


@pytest.fixture
def ch(chdb_url: str) -> Iterator[ClickHouse]:
    with scratch_database(load_settings(clickhouse_url=chdb_url), "rollup") as handle:
        yield handle


def batch(first: int, n: int, day: datetime) -> object:
    batcher: Batcher[EventPosition] = Batcher("kafka:rollup-test", max_rows=n)
    out = None
    for i in range(first, first + n):
        row = Row(f"e{i}", f"actor{i % 3}", "views", f"/t{i % 2}", _ms(day) + i, {}, "kafka", 0, 0)
        out = batcher.add(row, EventPosition(0, i))
    assert out is not None
    return out


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def test_a_batch_is_acknowledged_before_the_rollup_and_flush_catches_it_up(
    ch: ClickHouse,
) -> None:
    keeper = RollupKeeper(ch)
    sink = Sink(ch, rollup=keeper)
    sink.write(batch(0, 10, DAY), "kafka")  # type: ignore[arg-type]
    assert keeper.dirty and keeper.refreshes == 0  # the write did not wait for the rollup
    assert rollup_mismatches(ch).num_rows > 0
    keeper.flush()
    assert rollup_mismatches(ch).num_rows == 0
    assert not keeper.dirty


def test_a_runner_killed_before_its_refresh_leaves_the_work_to_the_next_start(
    ch: ClickHouse,
) -> None:
    first = RollupKeeper(ch)
    Sink(ch, rollup=first).write(batch(0, 10, DAY), "kafka")  # type: ignore[arg-type]
    first.flush()  # a watermark is persisted
    later = DAY - timedelta(days=3)  # a late day the first refresh did not touch
    Sink(ch, rollup=first).write(batch(10, 10, later), "kafka")  # type: ignore[arg-type]
    # killed here: acknowledged, never refreshed
    assert rollup_mismatches(ch).num_rows > 0

    restarted = RollupKeeper(ch)  # knows nothing of what the first one wrote
    restarted.flush()
    assert rollup_mismatches(ch).num_rows == 0
    assert restarted.watermark is not None and restarted.watermark >= first.watermark  # type: ignore[operator]


def test_a_refresh_covers_rows_other_writers_inserted(ch: ClickHouse) -> None:
    mine = RollupKeeper(ch)
    mine.flush()  # an empty table: a watermark to start from
    Sink(ch).write(batch(0, 5, DAY), "kafka")  # type: ignore[arg-type]  # another worker's rows
    Sink(ch, rollup=mine).write(batch(5, 5, DAY + timedelta(days=1)), "kafka")  # type: ignore[arg-type]
    mine.flush()
    assert rollup_mismatches(ch).num_rows == 0
