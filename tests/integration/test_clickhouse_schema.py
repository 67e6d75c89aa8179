"""The ClickHouse schema, migrations, rollup and adapter against a real engine.

Runs twice: on the embedded engine (chDB in this process) and on a server (the chDB HTTP server,
`footfall.services._clickhouse_http`, in its own process), both through `footfall._clickhouse`.

chDB hosts one data directory per process at a time, so the embedded engine is session-scoped:
every test module of a pytest process must use the same directory while any handle is open
(`CHDB_URL` below; another directory can be opened only after every handle is closed). Each test
gets a fresh database in it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pytest

from footfall import StoreError, load_settings
from footfall._clickhouse import ClickHouse, connect
from footfall._migrate import MigrationChanged, load_migrations, migrate, sql_root
from footfall._rollup import days_of, refresh_rollup, rollup_mismatches

pytestmark = pytest.mark.integration

_TS = pa.timestamp("ms", tz="UTC")
_MAP = pa.map_(pa.string(), pa.field("value", pa.string(), nullable=False))
SCHEMA = pa.schema(  # the `activities` columns the sink inserts (ingested_at takes its default)
    [
        pa.field("event_id", pa.string(), nullable=False),
        pa.field("actor", pa.string(), nullable=False),
        pa.field("type", pa.string(), nullable=False),
        pa.field("target", pa.string(), nullable=False),
        pa.field("ts", _TS, nullable=False),
        pa.field("attributes", _MAP, nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("version", pa.uint64(), nullable=False),
        pa.field("is_deleted", pa.uint8(), nullable=False),
    ]
)
TODAY = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)


@dataclass(frozen=True)
class Row:
    event_id: str
    actor: str
    type: str = "store-pageviews"
    target: str = "/store/goji"
    ts: datetime = TODAY
    attributes: tuple[tuple[str, str], ...] = ()
    source: str = "dynamodb"
    version: int = 1
    is_deleted: int = 0

    def but(self, **changes: Any) -> Row:
        return Row(**{**self.__dict__, **changes})


def table(rows: list[Row], *, ingested_at: datetime | None = None) -> pa.Table:
    columns: dict[str, Any] = {
        name: [getattr(r, name) for r in rows] for name in SCHEMA.names if name != "attributes"
    }
    columns["attributes"] = [list(r.attributes) for r in rows]
    result = pa.table(columns, schema=SCHEMA)
    if ingested_at is not None:
        result = result.append_column(
            pa.field("ingested_at", _TS, nullable=False), pa.array([ingested_at] * len(rows), _TS)
        )
    return result


def scalar(ch: ClickHouse, sql: str, parameters: dict[str, Any] | None = None) -> Any:
    return ch.query_arrow(sql, parameters).column(0)[0].as_py()


# -- engines ---------------------------------------------------------------------------------


@dataclass
class Engine:
    mode: str
    url: str
    admin: ClickHouse  # keeps the engine open for the session; creates and drops databases

    def connect(self, database: str) -> ClickHouse:
        return connect(load_settings(clickhouse_url=self.url), database=database)


@pytest.fixture(scope="session", params=["embedded", "server"])
def engine(request: pytest.FixtureRequest, chdb_url: str) -> Iterator[Engine]:
    url = chdb_url if request.param == "embedded" else request.getfixturevalue("clickhouse_url")
    admin = connect(load_settings(clickhouse_url=url))
    try:
        yield Engine(request.param, url, admin)
    finally:
        admin.close()


@pytest.fixture
def blank(engine: Engine) -> Iterator[ClickHouse]:
    """A handle on a fresh, empty database."""
    name = f"footfall_test_{uuid.uuid4().hex[:12]}"
    engine.admin.command(f"CREATE DATABASE {name}")
    ch = engine.connect(name)
    try:
        yield ch
    finally:
        ch.close()
        engine.admin.command(f"DROP DATABASE IF EXISTS {name} SYNC")


@pytest.fixture
def ch(blank: ClickHouse) -> ClickHouse:
    """A handle on a fresh database with every migration applied."""
    migrate(blank)
    return blank


# -- migrations ------------------------------------------------------------------------------


def test_migrate_applies_every_file_once(blank: ClickHouse) -> None:
    files = load_migrations()
    assert migrate(blank) == [m.name for m in files]
    assert migrate(blank) == []
    recorded = blank.query_arrow(
        "SELECT name, sha256 FROM footfall_migrations FINAL ORDER BY name"
    ).to_pylist()
    assert recorded == [{"name": m.name, "sha256": m.sha256} for m in files]
    tables = blank.query_arrow(
        "SELECT name, engine FROM system.tables WHERE database = currentDatabase() ORDER BY name"
    ).to_pylist()
    assert {t["name"]: t["engine"] for t in tables} == {
        "activities": "ReplacingMergeTree",
        "activities_daily": "View",
        "activities_daily_rows": "ReplacingMergeTree",
        "footfall_migrations": "ReplacingMergeTree",
        "sync_checkpoints": "ReplacingMergeTree",
        "sync_dead_letters": "MergeTree",
        "sync_trimmed_ranges": "ReplacingMergeTree",
    }


def test_migrate_refuses_a_changed_applied_file(blank: ClickHouse, tmp_path: Path) -> None:
    folder = tmp_path / "migrations"
    shutil.copytree(sql_root() / "migrations", folder)
    migrate(blank, directory=folder)
    (folder / "9999_later.sql").write_text("CREATE TABLE later (x UInt8) ENGINE = Memory")
    first = sorted(folder.glob("*.sql"))[0]
    first.write_text(first.read_text() + "\n-- edited after it was applied\n")

    with pytest.raises(MigrationChanged) as refused:
        migrate(blank, directory=folder)

    assert refused.value.name == first.name
    assert "new migration file" in str(refused.value)
    assert (
        scalar(
            blank,
            "SELECT count() FROM system.tables WHERE name = 'later' "
            "AND database = currentDatabase()",
        )
        == 0
    )  # nothing was applied


def test_migrate_applies_only_a_new_file(blank: ClickHouse, tmp_path: Path) -> None:
    folder = tmp_path / "migrations"
    shutil.copytree(sql_root() / "migrations", folder)
    migrate(blank, directory=folder)
    (folder / "0099_later.sql").write_text(
        "-- two statements; a ';' inside a string does not split them\n"
        "CREATE TABLE IF NOT EXISTS later (x String) ENGINE = Memory;\n"
        "INSERT INTO later VALUES ('a;b');\n"
    )
    assert migrate(blank, directory=folder) == ["0099_later.sql"]
    assert scalar(blank, "SELECT x FROM later") == "a;b"


# -- activities: idempotent rows, versions, tombstones ---------------------------------------


def test_the_same_activity_twice_counts_once(ch: ClickHouse) -> None:
    row = Row("01J-dup", "alice", attributes=(("browser", "Chrome"),))
    ch.insert_arrow("activities", table([row]), dedup_token=None)
    ch.insert_arrow(
        "activities", table([row], ingested_at=TODAY + timedelta(minutes=5)), dedup_token=None
    )

    assert scalar(ch, "SELECT count() FROM activities") == 2  # both stored...
    assert scalar(ch, "SELECT count() FROM activities FINAL") == 1  # ...counted once


@pytest.mark.parametrize("order", [(1, 2), (2, 1)], ids=["in-order", "reversed"])
def test_the_higher_version_wins_whatever_the_insert_order(
    ch: ClickHouse, order: tuple[int, int]
) -> None:
    base = Row("01J-upd", "bob")
    versions = {
        1: base.but(attributes=(("step", "one"),)),
        2: base.but(version=2, attributes=(("step", "two"),)),
    }
    for version in order:
        ch.insert_arrow("activities", table([versions[version]]), dedup_token=None)

    result = ch.query_arrow("SELECT version, attributes FROM activities FINAL").to_pylist()
    assert result == [{"version": 2, "attributes": [("step", "two")]}]


def test_a_newer_tombstone_removes_the_activity(ch: ClickHouse) -> None:
    row = Row("01J-del", "carol", version=7)
    ch.insert_arrow("activities", table([row, row.but(version=8, is_deleted=1)]), dedup_token=None)

    assert scalar(ch, "SELECT count() FROM activities FINAL") == 0


def test_an_older_tombstone_does_not_delete(ch: ClickHouse) -> None:
    row = Row("01J-old", "dave", version=7)
    ch.insert_arrow("activities", table([row]), dedup_token=None)
    ch.insert_arrow("activities", table([row.but(version=6, is_deleted=1)]), dedup_token=None)

    assert ch.query_arrow("SELECT event_id, version FROM activities FINAL").to_pylist() == [
        {"event_id": "01J-old", "version": 7}
    ]


def test_a_replayed_batch_with_the_same_token_is_stored_once(ch: ClickHouse) -> None:
    # rows in two months: the insert becomes one block per partition, each deduplicated
    rows = [
        Row(f"01J-b{i}", f"actor{i}", ts=TODAY - timedelta(days=40 * (i % 2))) for i in range(6)
    ]
    batch = table(rows)
    for _ in range(2):
        ch.insert_arrow("activities", batch, dedup_token="ff1:test:p0@0-5")
    assert scalar(ch, "SELECT count() FROM activities") == 6  # raw rows, not FINAL

    ch.insert_arrow("activities", batch, dedup_token="ff1:test:p0@6-11")
    assert scalar(ch, "SELECT count() FROM activities") == 12  # another token is another batch


def test_skip_indexes_of_activities_are_on_sorting_key_columns(ch: ClickHouse) -> None:
    """footfall's queries run with `use_skip_indexes_if_final_exact_mode = 0`, which is exact
    only for skip indexes on immutable sorting-key columns (every version of an activity then
    sits in a granule the index keeps); an index on another column needs exact mode back."""
    key = scalar(
        ch,
        "SELECT sorting_key FROM system.tables "
        "WHERE database = currentDatabase() AND name = 'activities'",
    )
    indexes = ch.query_arrow(
        "SELECT name, expr FROM system.data_skipping_indices "
        "WHERE database = currentDatabase() AND table = 'activities'"
    ).to_pylist()
    columns = {c.strip() for c in key.split(",")}
    assert indexes, "the actor bloom filter is expected"
    assert all(index["expr"] in columns for index in indexes), (indexes, key)


# -- the daily rollup ------------------------------------------------------------------------


def expected_daily(rows: list[Row]) -> list[dict[str, Any]]:
    """The rollup computed in Python: latest version per identity, tombstones dropped."""
    latest: dict[tuple[str, str], Row] = {}
    for row in rows:  # ties: the later row wins, as in ReplacingMergeTree
        key = (row.actor, row.event_id)
        if key not in latest or row.version >= latest[key].version:
            latest[key] = row
    groups: dict[tuple[str, str, date], list[str]] = {}
    for row in latest.values():
        if not row.is_deleted:
            groups.setdefault((row.type, row.target, row.ts.date()), []).append(row.actor)
    return [
        {"type": t, "target": x, "day": d, "activities": len(a), "actors": len(set(a))}
        for (t, x, d), a in sorted(groups.items())
    ]


def rollup(ch: ClickHouse) -> list[dict[str, Any]]:
    return ch.query_arrow(
        "SELECT type, target, day, activities, actors FROM activities_daily "
        "ORDER BY type, target, day"
    ).to_pylist()


def aggregate_over_final(ch: ClickHouse) -> list[dict[str, Any]]:
    return ch.query_arrow(
        "SELECT type, target, toDate(ts) AS day, count() AS activities, "
        "uniqExact(actor) AS actors FROM activities FINAL "
        "GROUP BY type, target, day ORDER BY type, target, day"
    ).to_pylist()


def test_the_rollup_equals_the_aggregate_over_final(ch: ClickHouse) -> None:
    day0, day1, old = TODAY - timedelta(days=1), TODAY, TODAY - timedelta(days=3)
    home, shop = "/home", "/shop"
    first = [
        Row("e1", "ann", target=home, ts=day0),
        Row("e2", "ann", target=home, ts=day0 + timedelta(hours=1)),  # same actor twice
        Row("e3", "ben", target=home, ts=day0),
        Row("e4", "cid", target=shop, ts=day1),
        Row("e5", "dan", target=shop, ts=day1, type="store-checkout"),
        Row("e6", "eve", target=shop, ts=day1),
    ]
    stored = list(first)
    ch.insert_arrow("activities", table(first), dedup_token="first")
    refresh_rollup(ch, days_of(table(first)))
    assert rollup(ch) == expected_daily(stored) == aggregate_over_final(ch)

    second = [
        first[0],  # a replayed duplicate
        first[3].but(version=2, attributes=(("coupon", "x"),)),  # an update
        first[4].but(version=2, is_deleted=1),  # a user delete: its group vanishes
        first[2].but(version=2, is_deleted=1),  # ben's delete
        first[5].but(version=0, is_deleted=1),  # an older tombstone: no effect
        Row("e7", "fay", target=home, ts=old),  # late rows for a day three days ago
        Row("e8", "fay", target=home, ts=old + timedelta(minutes=1)),
        Row("e9", "gus", target=home, ts=old, source="kafka", version=0),
    ]
    stored += second
    ch.insert_arrow("activities", table(second), dedup_token="second")
    assert days_of(table(second)) == {old.date(), day0.date(), day1.date()}
    refresh_rollup(ch, days_of(table(second)))

    expected = expected_daily(stored)
    assert rollup(ch) == expected == aggregate_over_final(ch)
    assert {r["type"] for r in expected} == {"store-pageviews"}  # the checkout group is gone
    assert rollup_mismatches(ch).num_rows == 0

    refresh_rollup(ch, {day1.date()})  # refreshing again changes nothing
    refresh_rollup(ch, None)  # nor does a full rebuild
    assert rollup(ch) == expected


def test_a_full_rebuild_fills_an_empty_rollup(ch: ClickHouse) -> None:
    rows = [Row(f"r{i}", f"a{i % 3}", ts=TODAY - timedelta(days=i % 4)) for i in range(20)]
    ch.insert_arrow("activities", table(rows), dedup_token=None)
    assert rollup_mismatches(ch).num_rows > 0

    refresh_rollup(ch, None)

    assert rollup(ch) == expected_daily(rows)
    assert rollup_mismatches(ch).num_rows == 0


# -- the adapter -----------------------------------------------------------------------------


def test_an_unknown_table_is_a_terminal_store_error(ch: ClickHouse) -> None:
    with pytest.raises(StoreError) as failed:
        ch.query_arrow("SELECT * FROM no_such_table")
    assert type(failed.value) is StoreError
    assert failed.value.code == "60"
    assert not failed.value.transient
    assert failed.value.__cause__ is not None


def test_parameters_are_bound_server_side(ch: ClickHouse) -> None:
    tricky = "it's a '; DROP TABLE activities; --"
    assert scalar(ch, "SELECT {value:String}", {"value": tricky}) == tricky
    with pytest.raises(StoreError) as unbound:
        ch.query_arrow("SELECT %(value)s", {"value": tricky})
    assert unbound.value.code == "UNBOUND_PARAMETER"


def test_query_polars_keeps_the_column_types(ch: ClickHouse) -> None:
    row = Row("p1", "ann", attributes=(("browser", "Firefox"),))
    ch.insert_arrow("activities", table([row]), dedup_token=None)

    frame = ch.query_polars(
        "SELECT actor, ts, attributes['browser'] AS browser, version FROM activities "
        "WHERE actor = {actor:String}",
        {"actor": "ann"},
    )

    assert frame.schema == pl.Schema(
        {
            "actor": pl.String,
            "ts": pl.Datetime("ms", "UTC"),
            "browser": pl.String,
            "version": pl.UInt64,
        }
    )
    assert frame.row(0) == ("ann", TODAY, "Firefox", 1)


def test_embedded_handles_share_one_client_per_directory(chdb_url: str) -> None:
    first = connect(load_settings(clickhouse_url=chdb_url))
    second = connect(load_settings(clickhouse_url=chdb_url))
    try:
        assert second._client is first._client
        second.close()
        assert scalar(first, "SELECT 1") == 1  # the shared client outlives a closed handle
        with pytest.raises(StoreError) as closed:
            second.query_arrow("SELECT 1")
        assert closed.value.code == "CLOSED"

        with pytest.raises(StoreError) as refused:  # one chDB directory per process
            connect(load_settings(clickhouse_url=chdb_url + "-other"))
        assert refused.value.code == "CHDB_DIRECTORY_IN_USE"
    finally:
        first.close()


def test_a_second_process_on_the_directory_is_unavailable(chdb_url: str) -> None:
    holder = connect(load_settings(clickhouse_url=chdb_url))  # this process holds the directory
    script = textwrap.dedent(
        """
        import sys
        from footfall import StoreUnavailable, load_settings
        from footfall._clickhouse import connect
        try:
            connect(load_settings(clickhouse_url=sys.argv[1]))
        except StoreUnavailable as exc:
            print(exc.code, exc.transient, "|", exc)
        else:
            print("opened")
        """
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("FOOTFALL_")}
    try:
        result = subprocess.run(
            [sys.executable, "-c", script, chdb_url],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
            check=True,
        )
    finally:
        holder.close()
    code, _, message = result.stdout.strip().partition(" | ")
    assert code == "76 True", result.stdout + result.stderr
    assert "another process" in message
    assert "FOOTFALL_CLICKHOUSE_URL=http://" in message
