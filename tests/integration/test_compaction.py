"""`footfall._compaction`: closed months of `activities` merged into one part each, the answer
of `activities FINAL` unchanged, the current month left to ClickHouse's own merges."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime

import pytest

from footfall import load_settings
from footfall._clickhouse import ClickHouse, connect
from footfall._compaction import Compacted, compact_closed_partitions, compaction_candidates
from footfall._migrate import migrate
from sync._batch import rows_to_arrow
from sync._decode import Row
from tests._clickhouse import active_parts, scratch_database

TODAY = date(2026, 11, 20)


@pytest.fixture
def ch(chdb_url: str) -> Iterator[ClickHouse]:
    with scratch_database(load_settings(clickhouse_url=chdb_url), "compaction") as handle:
        yield handle


def _row(n: int, month: int, *, version: int = 1, deleted: int = 0) -> Row:
    ts = int(datetime(2026, month, 1 + n % 20, 12, tzinfo=UTC).timestamp() * 1000)
    return Row(
        f"e{month}-{n}", f"a{n % 3}", "store-pageviews", "/p", ts, {}, "dynamodb", version, deleted
    )


def _final(ch: ClickHouse) -> list[tuple[str, int]]:
    found = ch.query_arrow(
        "SELECT event_id, version FROM activities FINAL ORDER BY event_id"
    ).to_pylist()
    return [(row["event_id"], row["version"]) for row in found]


def test_closed_months_are_merged_into_one_part_each_with_the_same_answer(
    ch: ClickHouse,
) -> None:
    for month in (9, 10, 11):
        ch.insert_arrow(
            "activities", rows_to_arrow([_row(n, month) for n in range(10)]), dedup_token=None
        )
        ch.insert_arrow(
            "activities", rows_to_arrow([_row(n, month) for n in range(5)]), dedup_token=None
        )  # replays
        updates = [_row(1, month, version=2), _row(2, month, version=2, deleted=1)]
        ch.insert_arrow("activities", rows_to_arrow(updates), dedup_token=None)
    before = _final(ch)
    assert active_parts(ch) == {"202609": 3, "202610": 3, "202611": 3}

    done = compact_closed_partitions(ch, today=TODAY)

    assert done == [Compacted("202609", 3, 17), Compacted("202610", 3, 17)]
    assert active_parts(ch) == {
        "202609": 1,
        "202610": 1,
        "202611": 3,
    }  # the open month is left alone
    assert _final(ch) == before
    assert len(before) == 27  # 10 per month, one deleted
    assert compaction_candidates(ch, today=TODAY) == []
    assert compact_closed_partitions(ch, today=TODAY) == []


def test_cli_sync_compact_lists_then_compacts_closed_months(chdb_url: str) -> None:
    """`footfall sync compact [--dry-run]` on the configured ClickHouse (its default database)."""
    from typer.testing import CliRunner

    from footfall.cli import app

    settings = load_settings(clickhouse_url=chdb_url)
    with connect(settings) as ch:
        migrate(ch)
        march_2001 = int(datetime(2001, 3, 5, tzinfo=UTC).timestamp() * 1000)
        for part in range(2):  # two parts in March 2001, a month no other test writes
            rows = [
                _row(n, 3)._replace(event_id=f"cli-{part}-{n}", ts_ms=march_2001 + n)
                for n in range(4)
            ]
            ch.insert_arrow("activities", rows_to_arrow(rows), dedup_token=None)
    runner = CliRunner()
    environ = {"FOOTFALL_CLICKHOUSE_URL": chdb_url}

    listed = runner.invoke(app, ["sync", "compact", "--dry-run"], env=environ)
    assert listed.exit_code == 0, listed.output
    assert "200103" in listed.stdout and "would compact" in listed.stderr
    with connect(settings) as ch:
        assert active_parts(ch)["200103"] == 2

    done = runner.invoke(app, ["sync", "compact"], env=environ)
    assert done.exit_code == 0, done.output
    assert "200103" in done.stdout
    with connect(settings) as ch:
        assert active_parts(ch)["200103"] == 1


def test_cli_sync_compact_all_includes_the_current_month(chdb_url: str) -> None:
    """`footfall sync compact --all` merges the open month too, as a backfill does at its end."""
    from typer.testing import CliRunner

    from footfall.cli import app

    settings = load_settings(clickhouse_url=chdb_url)
    now = datetime.now(UTC)
    month = f"{now:%Y%m}"
    with connect(settings) as ch:
        migrate(ch)
        for part in range(2):
            rows = [
                _row(n, 3)._replace(
                    event_id=f"cli-all-{part}-{n}", ts_ms=int(now.timestamp() * 1000)
                )
                for n in range(3)
            ]
            ch.insert_arrow("activities", rows_to_arrow(rows), dedup_token=None)
    runner = CliRunner()
    environ = {"FOOTFALL_CLICKHOUSE_URL": chdb_url}

    listed = runner.invoke(app, ["sync", "compact", "--all", "--dry-run"], env=environ)
    assert listed.exit_code == 0, listed.output
    assert month in listed.stdout
    closed_only = runner.invoke(app, ["sync", "compact"], env=environ)
    assert closed_only.exit_code == 0, closed_only.output
    with connect(settings) as ch:
        assert active_parts(ch)[month] >= 2

    done = runner.invoke(app, ["sync", "compact", "--all"], env=environ)
    assert done.exit_code == 0, done.output
    assert month in done.stdout
    with connect(settings) as ch:
        assert active_parts(ch)[month] == 1
