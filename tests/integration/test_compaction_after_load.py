"""`compact_after_load`: after a bulk load every month of `activities`, the current one too, is
one part, so FINAL reads no longer merge at read time, and `activities FINAL` answers the same."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from footfall import load_settings
from footfall._clickhouse import ClickHouse
from footfall._compaction import (
    Compacted,
    compact_after_load,
    compact_closed_partitions,
    compaction_candidates,
)
from sync._batch import rows_to_arrow
from sync._decode import Row
from tests._clickhouse import active_parts, scratch_database

# what the named queries' FINAL reads look like; the merge step's name in ClickHouse's plan
TOP = "SELECT target, count() AS n FROM activities FINAL GROUP BY target ORDER BY target"
MERGING = "ReplacingSorted"


@pytest.fixture
def ch(chdb_url: str) -> Iterator[ClickHouse]:
    with scratch_database(load_settings(clickhouse_url=chdb_url), "compaction_load") as handle:
        yield handle


def _row(n: int, ts: datetime, *, version: int = 1, deleted: int = 0) -> Row:
    ms = int(ts.timestamp() * 1000) - n * 60_000
    event_id, actor, target = f"e{ts:%Y%m}-{n}", f"a{n % 3}", f"/p{n % 4}"
    return Row(event_id, actor, "store-pageviews", target, ms, {}, "dynamodb", version, deleted)


def _load(ch: ClickHouse, when: datetime) -> None:
    """Three inserts into `when`'s month (rows up to 11 minutes before `when`): activities,
    replays, an update and a tombstone."""
    activities = [_row(n, when) for n in range(12)]
    replays = activities[:6]
    changes = [_row(1, when, version=2), _row(2, when, version=2, deleted=1)]
    for rows in (activities, replays, changes):
        ch.insert_arrow("activities", rows_to_arrow(rows), dedup_token=None)


def _plan(ch: ClickHouse) -> str:
    return "\n".join(ch.query_arrow(f"EXPLAIN PIPELINE {TOP}").column("explain").to_pylist())


def test_every_month_the_current_one_too_becomes_one_part_and_final_stops_merging(
    ch: ClickHouse,
) -> None:
    today = datetime.now(UTC)
    now = datetime(today.year, today.month, 15, 12, tzinfo=UTC)  # the current month
    closed = datetime(2001, 3, 15, 12, tzinfo=UTC)
    _load(ch, closed)
    _load(ch, now)
    current, old = f"{now:%Y%m}", "200103"
    before = ch.query_arrow(TOP).to_pylist()
    assert active_parts(ch) == {old: 3, current: 3}
    assert MERGING in _plan(ch)  # FINAL merges the overlapping parts at read time

    done = compact_after_load(ch)

    assert done == [Compacted(old, 3, 20), Compacted(current, 3, 20)]
    assert active_parts(ch) == {old: 1, current: 1}
    assert MERGING not in _plan(ch)  # one part per month: FINAL reads it without merging
    assert ch.query_arrow(TOP).to_pylist() == before
    assert sum(row["n"] for row in before) == 22  # 12 a month, one of them deleted
    assert compaction_candidates(ch, closed_only=False) == []
    assert compact_after_load(ch) == []


def test_the_scheduled_compaction_still_leaves_the_current_month_alone(ch: ClickHouse) -> None:
    today = datetime.now(UTC)
    now = datetime(today.year, today.month, 15, 12, tzinfo=UTC)
    _load(ch, now)
    assert compact_closed_partitions(ch) == []
    assert active_parts(ch) == {f"{now:%Y%m}": 3}
    assert [c.partition for c in compaction_candidates(ch, closed_only=False)] == [f"{now:%Y%m}"]
