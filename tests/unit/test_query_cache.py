"""Parsed statements and routes are cached by their text; values stay per call.

A point read's SQL text repeats (values travel as `{name:Type}` parameters), so the parse and
the route are made once per text. What depends on the values (the keys read, the retention
rule) is still decided per call, and the ClickHouse text keeps its placeholders.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import query._statement as statement
from query._router import _decided, decide
from query._statement import STATEMENT_CACHE, parse_statement

DB = "default"
LATEST = "SELECT event_id, ts FROM activities WHERE actor = {actor:String} ORDER BY ts DESC LIMIT 5"
SINCE = (
    "SELECT event_id FROM activities WHERE actor = {actor:String} "
    "AND ts >= {since:DateTime64(3, 'UTC')}"
)


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The texts sqlglot parses from now on (caches emptied first)."""
    statement._parse.cache_clear()
    _decided.cache_clear()
    seen: list[str] = []
    real = statement.sqlglot.parse

    def counting(sql: str, **kwargs: Any) -> Any:
        seen.append(sql)
        return real(sql, **kwargs)

    monkeypatch.setattr(statement.sqlglot, "parse", counting)
    return seen


def test_a_repeated_text_is_parsed_and_routed_once(parses: list[str]) -> None:
    for _ in range(3):
        route, plan = decide(parse_statement(LATEST), database=DB, shards=4)
    assert parses == [LATEST]
    assert route.route == "dynamodb" and plan is not None
    assert parse_statement(LATEST) is parse_statement(LATEST)


def test_the_cached_plan_reads_each_calls_values(parses: list[str]) -> None:
    _, first = decide(parse_statement(LATEST), database=DB, shards=4)
    _, again = decide(parse_statement(LATEST), database=DB, shards=4)
    assert first is again and first is not None and first.actor is not None
    assert first.actor.value({"actor": "ann"}) == "ann"
    assert again.actor.value({"actor": "bob"}) == "bob"


def test_the_clickhouse_text_keeps_its_placeholders(parses: list[str]) -> None:
    sql = "SELECT count() FROM activities WHERE actor = {actor:String}"
    route, plan = decide(parse_statement(sql), database=DB, shards=4)
    assert plan is None and route.sql is not None
    assert "{actor:String}" in route.sql and "FINAL" in route.sql


def test_retention_is_decided_per_call_on_the_cached_plan(parses: list[str]) -> None:
    now = datetime(2026, 11, 29, tzinfo=UTC)
    stmt = parse_statement(SINCE)
    recent = {"actor": "a", "since": now - timedelta(days=1)}
    old = {"actor": "a", "since": now - timedelta(days=90)}
    routes = [
        decide(stmt, database=DB, shards=4, ttl_days=30, parameters=p, now=now)[0].route
        for p in (recent, old, recent)
    ]
    assert routes == ["dynamodb", "clickhouse", "dynamodb"]
    assert parses == [SINCE]


def test_the_cache_is_bounded(parses: list[str]) -> None:
    texts = [f"SELECT {i} FROM activities" for i in range(STATEMENT_CACHE + 1)]
    for text in texts:
        decide(parse_statement(text), database=DB, shards=4)
    assert statement._parse.cache_info().currsize == STATEMENT_CACHE
    assert _decided.cache_info().currsize == STATEMENT_CACHE
    parse_statement(texts[0])  # the least recently used was dropped: parsed again
    assert parses.count(texts[0]) == 2


def test_refusals_are_not_cached(parses: list[str]) -> None:
    from query import QueryRefused

    for _ in range(2):
        with pytest.raises(QueryRefused):
            parse_statement("SELECT 1; SELECT 2")
    assert statement._parse.cache_info().currsize == 0


def test_the_statement_given_is_routed_not_a_parse_of_its_text(parses: list[str]) -> None:
    import sqlglot

    from query._statement import Statement

    tree = sqlglot.parse_one("SELECT event_id FROM activities WHERE actor = 'a'", read="clickhouse")
    stmt = Statement("SELECT count() FROM elsewhere_given_only_as_text", tree)  # type: ignore[arg-type]
    route, plan = decide(stmt, database=DB, shards=4)
    assert route.route == "dynamodb" and plan is not None
