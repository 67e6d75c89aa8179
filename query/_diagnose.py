"""ClickHouse's errors for a query, as footfall's typed errors (by error code, never by text).

For an unknown table, column or function the name is found by looking the query's names up in
ClickHouse's system tables (best effort: `.name` is None when that is unclear).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final, Literal

from sqlglot import exp

from footfall._errors import StoreError

from ._errors import ParameterError, QueryRefused, UnknownName
from ._statement import Statement, function_name

if TYPE_CHECKING:
    from footfall._clickhouse import ClickHouse

__all__ = ["diagnose"]

log = logging.getLogger(__name__)

_UNKNOWN_CODES: Final[dict[str, Literal["table", "column"]]] = {
    "60": "table",  # UNKNOWN_TABLE
    "81": "table",  # UNKNOWN_DATABASE
    "47": "column",  # UNKNOWN_IDENTIFIER
    "16": "column",  # NO_SUCH_COLUMN_IN_TABLE
}


def diagnose(exc: StoreError, stmt: Statement, ch: ClickHouse, database: str) -> Exception:
    """footfall's error for a ClickHouse error, by its code."""
    if exc.code == "164":  # READONLY
        return QueryRefused(f"ClickHouse's read-only mode (readonly=1) refused it: {exc}")
    if exc.code in _UNKNOWN_CODES:
        kind = _UNKNOWN_CODES[exc.code]
        return UnknownName(kind, _unknown_name(kind, stmt, ch, database), _hint(kind))
    if exc.code == "46":  # UNKNOWN_FUNCTION
        return UnknownName("function", _unknown_name("function", stmt, ch, database))
    if exc.code in ("456", "457"):  # UNKNOWN_QUERY_PARAMETER, BAD_QUERY_PARAMETER
        return ParameterError("?", "?", None, f"ClickHouse refused a parameter: {exc}")
    return exc


def _unknown_name(kind: str, stmt: Statement, ch: ClickHouse, database: str) -> str | None:
    """Which name the query uses that ClickHouse lacks (looked up; None if unclear)."""
    tree = stmt.tree
    tables = [
        (t.db or database, t.name)
        for t in tree.find_all(exp.Table)
        if isinstance(t.this, exp.Identifier) and (t.db or t.name not in stmt.cte_names)
    ]
    try:
        if kind == "table":
            known = _lookup(
                ch,
                "SELECT database AS a, name AS b FROM system.tables "
                "WHERE has({d:Array(String)}, database)",
                {"d": sorted({d for d, _ in tables})},
            )
            return next((n for d, n in tables if (d, n) not in known), None)
        if kind == "column":
            known = _lookup(
                ch,
                "SELECT name AS a, name AS b FROM system.columns "
                "WHERE has({t:Array(String)}, table) AND has({d:Array(String)}, database)",
                {"t": sorted({n for _, n in tables}), "d": sorted({d for d, _ in tables})},
            )
            aliases = {a.alias for a in tree.find_all(exp.Alias)} | set(stmt.cte_names)
            names = [
                c.name for c in tree.find_all(exp.Column) if isinstance(c.this, exp.Identifier)
            ]
            return next((n for n in names if (n, n) not in known and n not in aliases), None)
        names = [function_name(f) for f in tree.find_all(exp.Anonymous)]
        known = _lookup(
            ch,
            "SELECT lower(name) AS a, '' AS b FROM system.functions "
            "WHERE has({f:Array(String)}, lower(name))",
            {"f": names},
        )
        return next((n for n in names if (n, "") not in known), None)
    except StoreError:
        log.debug("could not look up the unknown %s", kind, exc_info=True)
        return None


def _lookup(ch: ClickHouse, sql: str, params: Mapping[str, Any]) -> set[tuple[str, str]]:
    rows = ch.query_arrow(sql, params).to_pylist()
    return {(str(r["a"]), str(r["b"])) for r in rows}


def _hint(kind: str) -> str:
    if kind == "table":
        return "footfall's tables are created by `footfall migrate` (activities, activities_daily)"
    return "activities has event_id, actor, type, target, ts, attributes and sync's columns"
