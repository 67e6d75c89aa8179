"""`query` against DynamoDB Local and ClickHouse, embedded (chDB) and server (HTTP) mode.

One DynamoDB table for the module, mirrored by the embedded sync runner into a fresh database
of each ClickHouse mode; every test runs in both modes unless it says otherwise.
"""

from __future__ import annotations

import itertools
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import polars as pl
import pytest
import sqlglot
from polars.testing import assert_frame_equal
from typer.testing import CliRunner

import query
from footfall import Activity, Settings, StoreUnavailable, load_settings
from footfall._clickhouse import ClickHouse, connect
from footfall._synthetic import synthetic_activities
from footfall.services import free_port
from ingest import Tracker
from query import (
    FreshnessUnsupported,
    ParameterError,
    QueryRefused,
    ScanRefused,
    UnknownName,
)
from query._statement import Statement
from sync import EmbeddedSync

NOW = datetime.now(UTC).replace(microsecond=0)
START = NOW - timedelta(days=3)
COLUMNS = "event_id, actor, type, target, ts, attributes"
FRESH_TYPE = "fresh-views"  # recorded by the read-your-writes test only
INSERT_MALLORY = (
    "INSERT INTO activities (event_id, actor, type, target, ts) "
    "VALUES ('m', 'mallory', 't', 'x', now64())"
)
MAP = (  # how polars holds an Arrow map of strings: its Map type (polars 2), else entry lists
    pl.Map(pl.String, pl.String)
    if hasattr(pl, "Map")
    else pl.List(pl.Struct({"key": pl.String, "value": pl.String}))
)
SCHEMA = pl.Schema(
    {
        "event_id": pl.String,
        "actor": pl.String,
        "type": pl.String,
        "target": pl.String,
        "ts": pl.Datetime("ms", "UTC"),
        "attributes": MAP,
    }
)
RICH = {
    "n": 3,
    "f": 2.5,
    "ok": True,
    "none": None,
    "tags": ["a", "b"],
    "deep": {"x": [1, {"y": "z"}]},
}


@dataclass
class Recorded:
    activities: list[Activity]  # as stored now (updates applied, deletions gone)
    rich: Activity
    updated: Activity
    deleted: Activity

    def frame(self) -> pl.DataFrame:
        return pl.DataFrame(
            [
                {"actor": a.actor, "type": a.type, "target": a.target, "ts": a.ts}
                for a in self.activities
            ]
        )


@dataclass
class Env:
    mode: str
    settings: Settings
    writer: ClickHouse
    ff: query.Footfall

    def sync(self) -> None:
        with EmbeddedSync(self.settings, self.writer) as runner:
            runner.catch_up()

    def count(self) -> int:
        return int(
            self.writer.query_arrow("SELECT count() AS n FROM activities FINAL").to_pylist()[0]["n"]
        )


@pytest.fixture(scope="module")
def table_settings(dynamodb_endpoint: str, chdb_url: str) -> Settings:
    settings = load_settings(
        dynamodb_endpoint=dynamodb_endpoint,
        clickhouse_url=chdb_url,
        table=f"query-{uuid.uuid4().hex[:8]}",
    )
    Tracker("x", settings).ensure_table()
    return settings


@pytest.fixture(scope="module")
def recorded(table_settings: Settings) -> Recorded:
    acts = list(synthetic_activities(900, seed=11, end=NOW - timedelta(minutes=5), days=2.5))
    rich = Activity(
        actor="rich-actor",
        type="search",
        target="/rich",
        ts=NOW - timedelta(hours=1),
        attributes=RICH,
    )
    acts.append(rich)
    by_type: dict[str, list[Activity]] = {}
    for a in acts:
        by_type.setdefault(a.type, []).append(a)
    for kind, group in by_type.items():
        Tracker(kind, table_settings).record_many(group)
    updated, deleted = acts[0], acts[1]
    Tracker(updated.type, table_settings).update(updated, browser="Lynx")
    Tracker(deleted.type, table_settings).delete(deleted)
    updated = updated.with_attributes(browser="Lynx")
    stored = [updated if a.event_id == updated.event_id else a for a in acts if a is not deleted]
    return Recorded(stored, rich, updated, deleted)


@pytest.fixture(scope="module", params=["embedded", "server"])
def env(
    request: pytest.FixtureRequest, table_settings: Settings, recorded: Recorded
) -> Iterator[Env]:
    mode = request.param
    url = (
        table_settings.clickhouse_url
        if mode == "embedded"
        else request.getfixturevalue("clickhouse_url")
    )
    name = f"q_{uuid.uuid4().hex[:10]}"
    base = load_settings(
        dynamodb_endpoint=table_settings.dynamodb_endpoint,
        clickhouse_url=url,
        table=table_settings.table,
    )
    admin = connect(base)
    admin.command(f"CREATE DATABASE {name}")
    settings = (
        base
        if mode == "embedded"
        else load_settings(
            dynamodb_endpoint=base.dynamodb_endpoint,
            clickhouse_url=with_database(url, name),
            table=base.table,
        )
    )
    writer = connect(settings, database=name)
    env = Env(mode, settings, writer, query.connect(settings, database=name))
    env.sync()
    try:
        yield env
    finally:
        env.ff.close()
        writer.close()
        admin.command(f"DROP DATABASE IF EXISTS {name} SYNC")
        admin.close()


def with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{database}"))


def busiest(recorded: Recorded, *keys: str) -> tuple[Any, ...]:
    counts = Counter(tuple(getattr(a, k) for k in keys) for a in recorded.activities)
    return counts.most_common(1)[0][0]


def both_routes(
    ff: query.Footfall, sql: str, params: dict[str, Any] | None = None, *, ordered: bool = False
) -> pl.DataFrame:
    assert ff.explain(sql).route == "dynamodb", ff.explain(sql).reason
    from_dynamodb = ff.sql(sql, params)
    from_clickhouse = ff.sql(sql, params, route="clickhouse")
    if not ordered:
        keys = [n for n, t in from_dynamodb.schema.items() if not t.is_nested()]
        from_dynamodb, from_clickhouse = from_dynamodb.sort(keys), from_clickhouse.sort(keys)
    assert_same(from_dynamodb, from_clickhouse)
    return from_dynamodb


def assert_same(left: pl.DataFrame, right: pl.DataFrame) -> None:
    """Same schema and rows; maps compare as maps (the order of their keys carries no meaning:
    the DynamoDB route sorts them, ClickHouse keeps the order sync wrote)."""
    assert left.schema == right.schema
    assert left.to_dicts() == right.to_dicts()


# -- same answers from both routes -------------------------------------------------------------


def test_an_actors_activities_are_the_same_from_both_stores(env: Env, recorded: Recorded) -> None:
    (actor,) = busiest(recorded, "actor")
    frame = both_routes(
        env.ff, f"SELECT {COLUMNS} FROM activities WHERE actor = {{a:String}}", {"a": actor}
    )
    assert frame.schema == SCHEMA
    assert len(frame) == sum(a.actor == actor for a in recorded.activities)


def test_latest_n_in_order_are_the_same_from_both_stores(env: Env, recorded: Recorded) -> None:
    (actor,) = busiest(recorded, "actor")
    sql = (
        f"SELECT {COLUMNS} FROM activities WHERE actor = {{a:String}} "
        "ORDER BY ts DESC, event_id DESC LIMIT 7"
    )
    frame = both_routes(env.ff, sql, {"a": actor}, ordered=True)
    assert len(frame) == 7
    assert frame["ts"].is_sorted(descending=True)


def test_actor_and_type_in_a_literal_range_with_aliases(env: Env, recorded: Recorded) -> None:
    actor, kind = busiest(recorded, "actor", "type")
    low, high = (
        (NOW - timedelta(days=2)).strftime("%Y-%m-%d %H:%M:%S"),
        NOW.strftime("%Y-%m-%d %H:%M:%S"),
    )
    sql = (
        "SELECT ts AS t, `target`, attributes AS attrs FROM activities FINAL "
        f"WHERE actor = '{actor}' AND type = '{kind}' AND ts BETWEEN '{low}' AND '{high}'"
    )
    assert env.ff.explain(sql).index == "by_actor_type"
    frame = both_routes(env.ff, sql)
    assert frame.columns == ["t", "target", "attrs"]


def test_a_target_fans_out_over_shards_and_merges_like_clickhouse_sorts(
    env: Env, recorded: Recorded
) -> None:
    kind, target = busiest(recorded, "type", "target")
    sql = (
        "SELECT actor, ts, event_id FROM activities WHERE type = {t:String} "
        "AND target = {x:String} AND ts >= {s:DateTime64(3, 'UTC')} "
        "AND ts < {e:DateTime64(3, 'UTC')} ORDER BY ts DESC, event_id DESC"
    )
    params = {"t": kind, "x": target, "s": START, "e": NOW}
    frame = both_routes(env.ff, sql, params, ordered=True)
    assert len(frame) == sum((a.type, a.target) == (kind, target) for a in recorded.activities)
    assert len(frame) > env.settings.target_shards  # spread over several shards


def test_range_edges_are_the_same_on_both_routes(env: Env, recorded: Recorded) -> None:
    (actor,) = busiest(recorded, "actor")
    times = sorted(a.ts for a in recorded.activities if a.actor == actor)
    edge = times[len(times) // 2]
    for op in (">", ">=", "<", "<="):
        sql = (
            "SELECT event_id, ts FROM activities WHERE actor = {a:String} "
            f"AND ts {op} {{x:DateTime64(3, 'UTC')}}"
        )
        frame = both_routes(env.ff, sql, {"a": actor, "x": edge})
        assert (edge in frame["ts"].to_list()) == ("=" in op)


def test_attributes_updates_and_deletes_agree(env: Env, recorded: Recorded) -> None:
    rich = both_routes(env.ff, "SELECT attributes FROM activities WHERE actor = 'rich-actor'")
    assert rich.to_dicts() == [{"attributes": {
        "n": "3", "f": "2.5", "ok": "true", "none": "null", "tags": '["a","b"]',
        "deep": '{"x":[1,{"y":"z"}]}',
    }}]  # fmt: skip
    gone = both_routes(
        env.ff,
        "SELECT event_id FROM activities WHERE actor = {a:String}",
        {"a": recorded.deleted.actor},
    )
    assert recorded.deleted.event_id not in gone["event_id"].to_list()
    changed = both_routes(
        env.ff,
        f"SELECT {COLUMNS} FROM activities WHERE actor = {{a:String}}",
        {"a": recorded.updated.actor},
    )
    row = changed.filter(pl.col("event_id") == recorded.updated.event_id).to_dicts()[0]
    assert row["attributes"]["browser"] == "Lynx"


def test_an_empty_answer_has_the_same_schema(env: Env) -> None:
    frame = both_routes(env.ff, f"SELECT {COLUMNS} FROM activities WHERE actor = 'nobody-at-all'")
    assert frame.is_empty() and frame.schema == SCHEMA


def test_typed_reads_have_the_canonical_schema_and_clickhouses_rows(
    env: Env, recorded: Recorded
) -> None:
    (actor,) = busiest(recorded, "actor")
    kind, target = busiest(recorded, "type", "target")
    latest = env.ff.latest(actor, 5)
    assert latest.schema == SCHEMA == query.activity_schema()
    order = "ORDER BY ts DESC, event_id DESC"
    expected = env.ff.sql(
        f"SELECT {COLUMNS} FROM activities WHERE actor = {{a:String}} {order} LIMIT 5",
        {"a": actor},
        route="clickhouse",
    )
    assert_same(latest, expected)
    ranged = env.ff.actor_range(actor, START, NOW, type=recorded.activities[0].type)
    assert set(ranged["type"]) <= {recorded.activities[0].type}
    on_target = env.ff.target_range(kind, target, START, NOW, limit=4)
    expected = env.ff.sql(
        f"SELECT {COLUMNS} FROM activities WHERE type = {{t:String}} "
        f"AND target = {{x:String}} {order} LIMIT 4",
        {"t": kind, "x": target},
        route="clickhouse",
    )
    assert_same(on_target, expected)


# -- read-only, in both modes --------------------------------------------------------------------


@pytest.mark.parametrize(
    "sql",
    [
        "DROP TABLE activities",
        INSERT_MALLORY,
        "ALTER TABLE activities DELETE WHERE 1",
        "SELECT count() FROM activities SETTINGS readonly = 0",
        "SELECT * FROM file('/etc/passwd', 'LineAsString')",
        "SELECT 1; DROP TABLE activities",
    ],
)
def test_writes_are_refused_before_they_reach_clickhouse(env: Env, sql: str) -> None:
    before = env.count()
    with pytest.raises(QueryRefused):
        env.ff.sql(sql)
    assert env.count() == before


@pytest.mark.parametrize(
    "sql",
    [
        INSERT_MALLORY,
        "CREATE TABLE sneaky (x UInt8) ENGINE = Memory",
        "SELECT * FROM file('/etc/passwd', 'LineAsString')",
        "SELECT 1 SETTINGS readonly = 0",
    ],
)
def test_clickhouse_readonly_is_a_second_wall(
    env: Env, sql: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the syntax check switched off, ClickHouse's readonly=1 still refuses."""
    permissive = Statement(sql, sqlglot.parse_one("SELECT 1", read="clickhouse"))  # type: ignore[arg-type]
    monkeypatch.setattr("query._handle.parse_statement", lambda text: permissive)
    before = env.count()
    with pytest.raises(QueryRefused) as caught:
        env.ff.sql(sql, route="clickhouse")
    assert "read-only" in caught.value.reason
    assert env.count() == before
    tables = env.writer.query_arrow(
        "SELECT name FROM system.tables WHERE database = currentDatabase()"
    )
    assert "sneaky" not in tables.column("name").to_pylist()
    env.writer.command("SELECT 1")  # the writers' connection is still writable
    env.writer.command("CREATE TABLE IF NOT EXISTS writable (x UInt8) ENGINE = Memory")
    env.writer.command("DROP TABLE writable")


# -- injection attempts execute nothing ------------------------------------------------------------


@pytest.mark.parametrize(
    "value", ["bob' OR '1'='1", "x'; DROP TABLE activities; --", "\\'; SELECT 1; --", "{a:String}"]
)
def test_parameter_values_are_data_on_both_routes(env: Env, value: str) -> None:
    before = env.count()
    sql = "SELECT event_id FROM activities WHERE actor = {a:String}"
    assert env.ff.sql(sql, {"a": value}).is_empty()
    assert env.ff.sql(sql, {"a": value}, route="clickhouse").is_empty()
    assert env.ff.named("top_targets", type=value, start=START, end=NOW).is_empty()
    assert env.count() == before


def test_identifier_injections_are_unknown_names_and_run_nothing(env: Env) -> None:
    before = env.count()
    with pytest.raises(UnknownName):
        env.ff.sql("SELECT ts FROM activities WHERE `actor'; DROP TABLE activities; --` = 'x'")
    with pytest.raises(UnknownName) as caught:
        env.ff.sql(
            "SELECT count() FROM activities WHERE `x') OR 1=1; DROP TABLE activities; --` = 1"
        )
    assert caught.value.kind == "column"
    with pytest.raises(QueryRefused):
        env.ff.sql("SELECT * FROM {t:Identifier}", {"t": "activities; DROP TABLE activities"})
    assert env.count() == before


# -- read-your-writes ----------------------------------------------------------------------------


def test_fresh_counts_an_actors_unsynced_activity_once(env: Env) -> None:
    actor = f"fresh-{env.mode}-{uuid.uuid4().hex[:6]}"
    tracker = Tracker(FRESH_TYPE, env.settings)
    for i in range(3):
        tracker.record_activity(actor, f"/fresh/{i}", at=NOW - timedelta(minutes=30 - i))
    env.sync()
    sql = (
        "SELECT count() AS n, uniqExact(target) AS targets FROM activities WHERE actor = {a:String}"
    )
    tracker.record_activity(actor, "/fresh/new-1")
    tracker.record_activity(actor, "/fresh/0")  # a target already counted
    stale = env.ff.sql(sql, {"a": actor}).to_dicts()[0]
    fresh = env.ff.sql(sql, {"a": actor}, fresh=True).to_dicts()[0]
    assert stale == {"n": 3, "targets": 3}
    assert fresh == {"n": 5, "targets": 4}
    sessions = env.ff.named("sessions", actor=actor, fresh=True)
    assert sessions["activities"].sum() == 5
    env.sync()  # sync catches up: nothing is counted twice
    assert env.ff.sql(sql, {"a": actor}).to_dicts()[0] == {"n": 5, "targets": 4}
    assert env.ff.sql(sql, {"a": actor}, fresh=True).to_dicts()[0] == {"n": 5, "targets": 4}


def test_fresh_needs_a_query_scoped_to_one_actor(env: Env) -> None:
    with pytest.raises(FreshnessUnsupported):
        env.ff.sql("SELECT type, count() FROM activities GROUP BY type", fresh=True)
    with pytest.raises(FreshnessUnsupported):
        env.ff.named("daily_unique_actors", start=START, end=NOW, fresh=True)


# -- named queries ---------------------------------------------------------------------------------


def test_top_targets_and_daily_unique_actors_match_the_data(env: Env, recorded: Recorded) -> None:
    data = recorded.frame().filter((pl.col("ts") >= START) & (pl.col("ts") < NOW))
    views = data.filter(pl.col("type") == "store-pageviews")
    expected = views.group_by("target").agg(
        pl.len().alias("n"), pl.col("actor").n_unique().alias("u")
    )
    expected = expected.sort(["n", "target"], descending=[True, False]).head(5)
    top = env.ff.named("top_targets", type="store-pageviews", start=START, end=NOW, limit=5)
    assert top["target"].to_list() == expected["target"].to_list()
    assert top["activities"].to_list() == expected["n"].to_list()
    assert top["actors"].to_list() == expected["u"].to_list()
    assert 0 < top["share"].sum() <= 1
    daily = env.ff.named("daily_unique_actors", start=START, end=NOW)
    per_day = data.group_by(pl.col("ts").dt.date().alias("day"), "type").agg(
        pl.col("actor").n_unique().alias("actors")
    )
    daily = daily.filter(pl.col("type") != FRESH_TYPE)  # the read-your-writes test's own
    assert_frame_equal(
        daily.select("day", "type", "actors").sort("day", "type"),
        per_day.sort("day", "type").with_columns(pl.col("actors").cast(pl.UInt64)),
    )


def test_funnel_retention_and_sessions_hold_their_invariants(env: Env, recorded: Recorded) -> None:
    steps = ["store-pageviews", "add-to-cart", "purchase"]
    funnel = env.ff.named("funnel", steps=steps, start=START, end=NOW)
    assert funnel["type"].to_list() == steps
    assert funnel["actors"].is_sorted(descending=True) and funnel["actors"][0] > 0
    first_step = recorded.frame().filter((pl.col("type") == steps[0]) & (pl.col("ts") >= START))
    assert funnel["actors"][0] == first_step["actor"].n_unique()
    assert funnel["conversion"][0] == 1.0
    retention = env.ff.named("retention", start=START, end=NOW, days=2)
    assert (
        retention.filter(pl.col("day_n") == 0)["retained"].to_list()
        == [1.0] * retention["cohort_day"].n_unique()
    )
    assert retention["day_n"].max() <= 2
    (actor,) = busiest(recorded, "actor")
    sessions = env.ff.named("sessions", actor=actor)
    times = sorted(a.ts for a in recorded.activities if a.actor == actor)
    gaps = sum(b - a > timedelta(minutes=30) for a, b in itertools.pairwise(times))
    assert len(sessions) == gaps + 1
    assert sessions["activities"].sum() == len(times)
    assert (sessions["duration_seconds"] >= 0).all()


def test_named_query_errors_are_typed(env: Env) -> None:
    with pytest.raises(UnknownName) as caught:
        env.ff.named("no_such_query")
    assert caught.value.kind == "named query" and "top_targets" in str(caught.value)
    with pytest.raises(ParameterError) as missing:
        env.ff.named("top_targets", start=START, end=NOW)
    assert missing.value.name == "type"
    with pytest.raises(ParameterError):
        env.ff.named("funnel", steps=["purchase"], start=START, end=NOW)
    with pytest.raises(ParameterError):
        env.ff.named("top_targets", type="x", start="last tuesday", end=NOW)


# -- typed errors --------------------------------------------------------------------------------


def test_unknown_names_and_bad_parameters_are_typed_errors(env: Env) -> None:
    with pytest.raises(UnknownName) as column:
        env.ff.sql("SELECT nope, count() FROM activities GROUP BY nope")
    assert (column.value.kind, column.value.name) == ("column", "nope")
    with pytest.raises(UnknownName) as table:
        env.ff.sql("SELECT count() FROM no_such_table")
    assert (table.value.kind, table.value.name) == ("table", "no_such_table")
    with pytest.raises(ParameterError) as wrong:
        env.ff.sql("SELECT ts FROM activities WHERE actor = 'b' LIMIT {n:UInt32}", {"n": "ten"})
    assert (wrong.value.name, wrong.value.expected) == ("n", "UInt32")


def test_forcing_dynamodb_for_a_scan_is_refused_with_the_alternative(env: Env) -> None:
    with pytest.raises(ScanRefused) as caught:
        env.ff.sql("SELECT type, count() FROM activities GROUP BY type", route="dynamodb")
    assert "clickhouse" in caught.value.alternative
    with pytest.raises(ScanRefused):
        env.ff.sql("SELECT ts FROM activities WHERE type = 'search'", route="dynamodb")


def test_unreachable_stores_raise_store_unavailable(table_settings: Settings) -> None:
    port = free_port()
    no_clickhouse = load_settings(
        dynamodb_endpoint=table_settings.dynamodb_endpoint,
        clickhouse_url=f"http://127.0.0.1:{port}/default",
        table=table_settings.table,
    )
    with query.connect(no_clickhouse) as ff, pytest.raises(StoreUnavailable):
        ff.sql("SELECT count() FROM activities")
    no_dynamodb = load_settings(
        dynamodb_endpoint=f"http://127.0.0.1:{port}",
        clickhouse_url=table_settings.clickhouse_url,
        table=table_settings.table,
    )
    with query.connect(no_dynamodb) as ff, pytest.raises(StoreUnavailable):
        ff.latest("bob")


# -- the CLI -------------------------------------------------------------------------------------


@pytest.mark.parametrize("env", ["server"], indirect=True)  # its URL names the database
def test_cli_query_explain_and_named(env: Env, recorded: Recorded) -> None:
    import typer

    from footfall._cli_query import register

    app = typer.Typer()
    register(app)
    environ = {
        "FOOTFALL_CLICKHOUSE_URL": env.settings.clickhouse_url,
        "FOOTFALL_DYNAMODB_ENDPOINT": env.settings.dynamodb_endpoint or "",
        "FOOTFALL_TABLE": env.settings.table,
    }
    runner = CliRunner()
    (actor,) = busiest(recorded, "actor")
    result = runner.invoke(
        app,
        [
            "query",
            "SELECT target, ts FROM activities WHERE actor = {a:String}",
            "--param",
            f"a={actor}",
            "--format",
            "csv",
        ],
        env=environ,
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert lines[0] == "target,ts" and len(lines) == 1 + sum(
        a.actor == actor for a in recorded.activities
    )
    result = runner.invoke(
        app, ["explain", "SELECT type, count() FROM activities GROUP BY type"], env=environ
    )
    assert "clickhouse" in result.stdout and "GROUP BY" in result.stdout
    result = runner.invoke(
        app,
        [
            "named",
            "top_targets",
            "-p",
            "type=store-pageviews",
            "-p",
            "start=3d",
            "-p",
            "end=2100-01-01",
            "-f",
            "json",
        ],
        env=environ,
    )
    assert result.exit_code == 0, result.output
    assert '"target"' in result.stdout
    result = runner.invoke(app, ["query", "DROP TABLE activities"], env=environ)
    assert result.exit_code == 1 and "refused" in result.output
