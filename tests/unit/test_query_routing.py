"""Routing decisions, the FINAL rewrite, parameters and named-query headers (no services)."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest

import query
from query import ParameterError, UnknownName
from query._named import named_queries, named_query
from query._params import check_parameters
from query._rewrite import with_final, with_fresh
from query._router import actor_scope, decide
from query._statement import parse_statement

DB = "default"
D, C = "dynamodb", "clickhouse"

# SQL text -> (route, DynamoDB index or None)
ROUTES: dict[str, tuple[str, str | None]] = {
    # pinned actor, pinned actor + type, pinned type + target
    "SELECT ts, target FROM activities WHERE actor = 'bob'": (D, "table"),
    "SELECT ts FROM activities WHERE actor = 'bob' AND type = 'view'": (D, "by_actor_type"),
    "SELECT ts FROM activities WHERE type = 'view' AND target = '/x'": (D, "by_type_target"),
    "SELECT actor FROM activities WHERE target = '/x' AND type = 'view' LIMIT 5": (
        D,
        "by_type_target",
    ),
    # time ranges, order, limit
    "SELECT ts FROM activities WHERE actor = 'bob' AND ts >= '2026-01-01' AND ts < '2026-02-01'": (
        D,
        "table",
    ),
    "SELECT ts FROM activities WHERE actor = 'bob' AND ts BETWEEN '2026-01-01 00:00:00' AND "
    "'2026-01-02 00:00:00.5'": (D, "table"),
    "SELECT ts FROM activities WHERE actor = 'bob' ORDER BY ts DESC LIMIT 10": (D, "table"),
    "SELECT ts FROM activities WHERE actor = 'bob' ORDER BY ts ASC, event_id ASC": (D, "table"),
    "SELECT ts AS t FROM activities WHERE actor = 'bob' ORDER BY t DESC": (D, "table"),
    # parameters
    "SELECT ts FROM activities WHERE actor = {a:String} AND ts >= {s:DateTime64(3, 'UTC')} "
    "LIMIT {n:UInt32}": (D, "table"),
    "SELECT ts FROM activities WHERE type = {t:LowCardinality(String)} AND target = {x:String}": (
        D,
        "by_type_target",
    ),
    # odd quoting, case, comments, aliases, reversed comparisons
    "select `ts`, `target` from `activities` final where `actor` = 'bob'": (D, "table"),
    "SeLeCt ts FrOm activities WhErE actor = 'bob'": (D, "table"),
    "SELECT ts /* count(*) GROUP BY */ FROM activities -- JOIN x\nWHERE actor = 'bob'": (
        D,
        "table",
    ),
    "SELECT ts FROM activities WHERE actor = 'GROUP BY; DROP TABLE x'": (D, "table"),
    "SELECT ts FROM activities WHERE 'bob' = actor AND '2026-01-01' <= ts": (D, "table"),
    "SELECT a.ts FROM default.activities AS a FINAL WHERE a.actor = 'bob'": (D, "table"),
    "SELECT ts FROM activities WHERE ((actor = 'bob') AND (ts >= '2026-01-01'))": (D, "table"),
    'SELECT "ts" FROM "activities" WHERE "actor" = \'bob\'': (D, "table"),
    # ClickHouse identifiers are case-sensitive: ACTIVITIES is another table
    "SELECT TS FROM ACTIVITIES WHERE ACTOR = 'bob'": (C, None),
    # aggregates, groups, windows, DISTINCT
    "SELECT count() FROM activities WHERE actor = 'bob'": (C, None),
    "SELECT COUNT(*) FROM activities WHERE actor = 'bob'": (C, None),
    "SELECT uniqExact(target) FROM activities WHERE actor = 'bob'": (C, None),
    "SELECT type, count() FROM activities WHERE actor = 'bob' GROUP BY type": (C, None),
    "SELECT ts, row_number() OVER (ORDER BY ts) FROM activities WHERE actor = 'bob'": (C, None),
    "SELECT DISTINCT target FROM activities WHERE actor = 'bob'": (C, None),
    # joins, subqueries, CTEs, UNION
    "SELECT a.ts FROM activities AS a JOIN activities AS b USING event_id WHERE a.actor = 'x'": (
        C,
        None,
    ),
    "SELECT ts FROM activities ARRAY JOIN mapKeys(attributes) AS k WHERE actor = 'bob'": (C, None),
    "SELECT ts FROM activities WHERE actor IN (SELECT actor FROM activities LIMIT 1)": (C, None),
    "SELECT ts FROM (SELECT * FROM activities) WHERE actor = 'bob'": (C, None),
    "WITH b AS (SELECT 'bob' AS a) SELECT ts FROM activities WHERE actor = 'bob'": (C, None),
    "SELECT ts FROM activities WHERE actor = 'a' UNION ALL SELECT ts FROM activities "
    "WHERE actor = 'b'": (C, None),
    # not a key lookup
    "SELECT * FROM activities WHERE actor = 'bob'": (C, None),
    "SELECT ts FROM activities": (C, None),
    "SELECT ts FROM activities WHERE type = 'view'": (C, None),
    "SELECT ts FROM activities WHERE target = '/x'": (C, None),
    "SELECT ts FROM activities WHERE actor = 'bob' AND target = '/x'": (C, None),
    "SELECT ts FROM activities WHERE actor = 'bob' OR actor = 'alice'": (C, None),
    "SELECT ts FROM activities WHERE actor IN ('bob', 'alice')": (C, None),
    "SELECT ts FROM activities WHERE actor LIKE 'b%'": (C, None),
    "SELECT ts FROM activities WHERE actor = 'bob' AND attributes['browser'] = 'Lynx'": (C, None),
    "SELECT ts FROM activities WHERE actor = 42": (C, None),
    "SELECT ts FROM activities WHERE actor = 'bob' AND ts > now() - INTERVAL 1 DAY": (C, None),
    "SELECT ts FROM activities WHERE actor = 'bob' AND ts >= '2026-01-01T00:00:00Z'": (C, None),
    "SELECT ts FROM activities WHERE actor = {a:UInt64}": (C, None),
    "SELECT ts FROM activities WHERE actor = 'bob' ORDER BY target": (C, None),
    "SELECT ts FROM activities WHERE actor = 'bob' LIMIT 5 OFFSET 5": (C, None),
    "SELECT ts FROM activities WHERE actor = 'bob' LIMIT 1 BY type": (C, None),
    "SELECT lower(target) FROM activities WHERE actor = 'bob'": (C, None),
    "SELECT version FROM activities WHERE actor = 'bob'": (C, None),
    "SELECT ts FROM activities PREWHERE actor = 'bob'": (C, None),
    "SELECT ts FROM other.activities WHERE actor = 'bob'": (C, None),
    "SELECT day FROM activities_daily WHERE type = 'view' AND target = '/x'": (C, None),
    "SELECT number FROM numbers(3)": (C, None),
    "SELECT 1": (C, None),
}


@pytest.mark.parametrize("sql", ROUTES, ids=range(len(ROUTES)))
def test_each_query_takes_the_expected_route(sql: str) -> None:
    route, plan = decide(parse_statement(sql), database=DB, shards=4)
    assert (route.route, route.index) == ROUTES[sql], route.reason
    assert (plan is not None) == (route.route == D)
    assert route.reason


def test_reasons_are_written_for_users() -> None:
    def reason(sql: str) -> str:
        return decide(parse_statement(sql), database=DB, shards=4)[0].reason

    assert reason("SELECT ts FROM activities WHERE actor = 'bob'").startswith(
        "pins actor 'bob' and aggregates nothing: one DynamoDB Query on the table"
    )
    assert "by_type_target" in reason("SELECT ts FROM activities WHERE type='v' AND target='x'")
    assert reason("SELECT type FROM activities GROUP BY type") == (
        "GROUP BY: analytics go to ClickHouse"
    )
    assert "Scan" in reason("SELECT ts FROM activities WHERE type = 'v'")
    assert "{a:String}" in reason("SELECT ts FROM activities WHERE actor = {a:String}")


def test_clickhouse_sql_reads_activities_final_everywhere() -> None:
    sql = (
        "WITH x AS (SELECT actor FROM activities) "
        "SELECT a.actor FROM activities AS a JOIN activities b FINAL ON a.actor = b.actor "
        "WHERE a.actor IN (SELECT actor FROM x) "
        "AND a.actor IN (SELECT actor FROM `activities`)"
    )
    rewritten = with_final(parse_statement(sql), DB)
    assert rewritten == (
        "WITH x AS (SELECT actor FROM activities FINAL) "
        "SELECT a.actor FROM activities AS a FINAL JOIN activities b FINAL ON a.actor = b.actor "
        "WHERE a.actor IN (SELECT actor FROM x) "
        "AND a.actor IN (SELECT actor FROM `activities` FINAL)"
    )


def test_final_is_not_added_to_other_tables_or_a_cte_named_activities() -> None:
    sql = "WITH activities AS (SELECT 1 AS n) SELECT n FROM activities, other.activities"
    assert with_final(parse_statement(sql), DB) == sql


def test_fresh_rewrite_keeps_the_alias_and_drops_the_users_final() -> None:
    stmt = parse_statement("SELECT count() FROM activities AS a FINAL WHERE a.actor = 'bob'")
    text = with_fresh(stmt, DB)
    assert text.startswith("SELECT count() FROM (SELECT event_id")
    assert text.endswith(") AS a WHERE a.actor = 'bob'")
    assert "{__ff_event_id:Array(String)}" in text


def test_the_scope_of_a_query_is_its_pinned_actor() -> None:
    def scope(sql: str) -> str | None:
        operand = actor_scope(parse_statement(sql), DB)
        return None if operand is None else str(operand)

    assert scope("SELECT count() FROM activities WHERE actor = 'bob' AND type = 'v'") == "'bob'"
    assert scope("SELECT uniq(target) FROM activities WHERE actor = {a:String}") == "{a:String}"
    assert scope("SELECT count() FROM activities WHERE actor = 'a' OR actor = 'b'") is None
    assert scope("SELECT count() FROM activities") is None
    assert scope("SELECT count() FROM activities AS a JOIN t USING actor WHERE actor='a'") is None


def test_time_bounds_match_clickhouse_at_the_millisecond() -> None:
    sql = (
        "SELECT ts FROM activities WHERE actor = 'bob' AND ts > {a:DateTime64(6, 'UTC')} "
        "AND ts <= '2026-01-02 00:00:00.250'"
    )
    _route, plan = decide(parse_statement(sql), database=DB, shards=4)
    assert plan is not None
    start, end = plan.time_range({"a": datetime(2026, 1, 1, 0, 0, 0, 1500, tzinfo=UTC)})
    assert start == datetime(2026, 1, 1, 0, 0, 0, 2000, tzinfo=UTC)  # > .0015 -> >= .002
    assert end == datetime(2026, 1, 2, 0, 0, 0, 251000, tzinfo=UTC)  # <= .250 -> < .251
    between = (
        "SELECT ts FROM activities WHERE actor='b' AND ts BETWEEN '2026-01-01' AND '2026-01-02'"
    )
    _route, plan = decide(parse_statement(between), database=DB, shards=4)
    assert plan is not None
    assert plan.time_range({}) == (
        datetime(2026, 1, 1, tzinfo=UTC),
        datetime(2026, 1, 2, 0, 0, 0, 1000, tzinfo=UTC),
    )


def test_point_reads_past_retention_go_to_clickhouse() -> None:
    now = datetime(2026, 11, 29, tzinfo=UTC)
    recent = "SELECT ts FROM activities WHERE actor = 'bob' AND ts >= {s:DateTime64(3, 'UTC')}"
    stmt = parse_statement(recent)
    within = {"s": now - timedelta(days=3)}
    past = {"s": now - timedelta(days=40)}
    assert decide(stmt, database=DB, shards=4, ttl_days=30, parameters=within, now=now)[1]
    route, plan = decide(stmt, database=DB, shards=4, ttl_days=30, parameters=past, now=now)
    assert plan is None and "retention" in route.reason
    unbounded = parse_statement("SELECT ts FROM activities WHERE actor = 'bob' LIMIT 5")
    assert decide(unbounded, database=DB, shards=4, ttl_days=30, now=now)[1] is None
    assert decide(unbounded, database=DB, shards=4, ttl_days=None, now=now)[1] is not None


def test_an_unknown_column_in_a_point_read_is_a_typed_error() -> None:
    with pytest.raises(UnknownName) as caught:
        decide(
            parse_statement("SELECT nope FROM activities WHERE actor = 'b'"), database=DB, shards=4
        )
    assert (caught.value.kind, caught.value.name) == ("column", "nope")


def test_parameters_are_checked_against_their_types() -> None:
    declared = {"a": "String", "n": "UInt32", "s": "DateTime64(3, 'UTC')", "l": "Array(String)"}
    good = check_parameters(
        declared, {"a": "bob", "n": "5", "s": "2026-01-01T10:00:00+02:00", "l": ("x", "y")}
    )
    assert good == {
        "a": "bob",
        "n": 5,
        "s": datetime(2026, 1, 1, 8, tzinfo=UTC),
        "l": ["x", "y"],
    }
    bad = [
        {"a": 1, "n": 5, "s": "2026-01-01", "l": []},
        {"a": "bob", "n": "five", "s": "2026-01-01", "l": []},
        {"a": "bob", "n": -1, "s": "2026-01-01", "l": []},
        {"a": "bob", "n": True, "s": "2026-01-01", "l": []},
        {"a": "bob", "n": 5, "s": "yesterday", "l": []},
        {"a": "bob", "n": 5, "s": "2026-01-01", "l": "x,y"},
        {"a": "bob", "n": 5, "s": "2026-01-01"},  # missing
        {"a": "bob", "n": 5, "s": "2026-01-01", "l": [], "extra": 1},  # unused
        {"a": "bob", "n": 5, "s": "2026-01-01", "l": [], "__ff_actor": "x"},  # reserved
    ]
    for values in bad:
        with pytest.raises(ParameterError):
            check_parameters(declared, values)


def test_every_named_query_documents_exactly_the_parameters_it_binds() -> None:
    queries = named_queries()
    names = {q.name for q in queries}
    assert {"top_targets", "daily_unique_actors", "funnel", "retention", "sessions"} <= names
    for q in queries:
        assert q.description, q.name
        stmt = parse_statement(q.sql)  # also: named queries pass the read-only wall
        assert {p.name: p.type for p in q.parameters} == stmt.placeholders, q.name
        assert all(p.doc for p in q.parameters), q.name


def test_named_query_headers_give_defaults_and_bounds() -> None:
    sessions = {p.name: p for p in named_query("sessions").parameters}
    assert sessions["gap_minutes"].default == "30"
    assert sessions["start"].default == "1970-01-01 00:00:00"
    assert sessions["actor"].default is None
    assert named_query("retention").with_defaults({})["type"] == ""
    with pytest.raises(ParameterError):
        named_query("funnel").with_defaults({"steps": ["only-one"]})
    with pytest.raises(UnknownName):
        named_query("no_such_query")
    with pytest.raises(UnknownName):
        named_query("../migrations/0001_activities")


def test_the_public_surface_is_pinned() -> None:
    assert set(query.__all__) == {
        "Footfall",
        "FreshnessUnsupported",
        "NamedParameter",
        "NamedQuery",
        "ParameterError",
        "QueryError",
        "QueryRefused",
        "ResultNotTabular",
        "Route",
        "RouteChoice",
        "ScanRefused",
        "UnknownName",
        "activity_schema",
        "connect",
        "named_queries",
    }
    for name in query.__all__:
        assert getattr(query, name) is not None
    for error in (
        query.QueryRefused,
        query.ParameterError,
        query.UnknownName,
        query.ScanRefused,
        query.ResultNotTabular,
    ):
        assert issubclass(error, query.QueryError)


def test_importing_query_does_not_import_faust_or_kafka_clients() -> None:
    code = (
        "import query, sys\n"
        "assert 'faust' not in sys.modules\n"
        "assert 'aiokafka' not in sys.modules\n"
        "assert 'sync' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
