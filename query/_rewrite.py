"""Edits to the SQL text sent to ClickHouse, made at the positions the parser recorded.

The user's text is kept as written (no regeneration through sqlglot, which could change the
meaning of ClickHouse-specific syntax); only the references to `activities` are edited:

- `with_final`: every reference to `activities` reads `activities FINAL`, the deduplicated
  view (ReplacingMergeTree keeps superseded versions and tombstones until merges run);
- `with_fresh`: every reference reads a subquery instead: `activities FINAL` plus the given
  DynamoDB rows whose event id ClickHouse has not seen yet (read-your-writes). The rows travel
  as array parameters, never in the text.

A reference is a table named `activities` (in the connection's database) that is not the name
of a WITH clause.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import sqlglot
from sqlglot import exp

from ._errors import QueryError
from ._params import RESERVED_PREFIX
from ._statement import DIALECT, Statement

__all__ = [
    "FRESH_VIEW",
    "TableRef",
    "activities_refs",
    "fresh_parameters",
    "with_final",
    "with_fresh",
]

TABLE: Final = "activities"
P: Final = RESERVED_PREFIX
# The rows of `activities FINAL` plus fresh rows of one actor that sync has not mirrored yet.
FRESH_VIEW: Final = f"""SELECT event_id, actor, type, target, ts, attributes, source, version, \
is_deleted, ingested_at FROM {TABLE} FINAL
UNION ALL
SELECT tupleElement(f, 1) AS event_id, {{{P}actor:String}} AS actor,
    tupleElement(f, 2) AS type, tupleElement(f, 3) AS target,
    fromUnixTimestamp64Milli(tupleElement(f, 4), 'UTC') AS ts,
    mapFromArrays(tupleElement(f, 5), tupleElement(f, 6)) AS attributes,
    'dynamodb' AS source, tupleElement(f, 7) AS version, toUInt8(0) AS is_deleted,
    now64(3, 'UTC') AS ingested_at
FROM (SELECT arrayJoin(arrayZip({{{P}event_id:Array(String)}}, {{{P}type:Array(String)}},
    {{{P}target:Array(String)}}, {{{P}ts:Array(Int64)}}, {{{P}keys:Array(Array(String))}},
    {{{P}values:Array(Array(String))}}, {{{P}version:Array(UInt64)}})) AS f)
WHERE tupleElement(f, 1) NOT IN (SELECT event_id FROM {TABLE} WHERE actor = {{{P}actor:String}})"""


@dataclass(frozen=True, slots=True)
class TableRef:
    """Where one reference to `activities` sits in the text: `[start, end)` covers the table
    name, its alias and a FINAL that follows; `alias` is the alias as written, if any."""

    start: int
    end: int
    alias: str | None
    final: bool
    name_end: int  # end of the name and alias, before any FINAL


def activities_refs(stmt: Statement, database: str) -> list[TableRef]:
    """The references to `activities` of the connection's `database`, in text order."""
    tokens = list(sqlglot.tokenize(stmt.text, read=DIALECT))
    refs: list[TableRef] = []
    for table in stmt.tree.find_all(exp.Table):
        if not is_activities(table, database, stmt.cte_names):
            continue
        parts = [table.this, table.args.get("db"), table.args.get("catalog")]
        alias_node = table.args.get("alias")
        alias_ident = alias_node.this if isinstance(alias_node, exp.TableAlias) else None
        if isinstance(alias_ident, exp.Identifier):
            parts.append(alias_ident)
        metas = [p.meta for p in parts if isinstance(p, exp.Identifier)]
        if not metas or not all("start" in m and "end" in m for m in metas):
            raise QueryError("footfall could not locate the table in the query text")
        start = min(int(m["start"]) for m in metas)
        name_end = max(int(m["end"]) for m in metas) + 1
        end = name_end
        final = isinstance(table.parent, exp.Final)
        if final:
            following = [t for t in tokens if t.start >= name_end]
            if not following or following[0].text.upper() != "FINAL":
                raise QueryError("footfall could not locate FINAL in the query text")
            end = following[0].end + 1
        alias = (
            stmt.text[alias_ident.meta["start"] : alias_ident.meta["end"] + 1]
            if (isinstance(alias_ident, exp.Identifier))
            else None
        )
        refs.append(TableRef(start, end, alias, final, name_end))
    return sorted(refs, key=lambda r: r.start)


def is_activities(table: exp.Table, database: str, cte_names: frozenset[str]) -> bool:
    """Whether a table node names footfall's `activities` table (not a CTE of that name)."""
    if not isinstance(table.this, exp.Identifier) or table.name != TABLE:
        return False
    if table.args.get("catalog"):
        return False
    db = table.db
    return db == database if db else TABLE not in cte_names


def with_final(stmt: Statement, database: str) -> str:
    """The text with FINAL after every reference to `activities` that lacks it."""
    text = stmt.text
    for ref in reversed(activities_refs(stmt, database)):
        if not ref.final:
            text = text[: ref.name_end] + " FINAL" + text[ref.name_end :]
    return text


def with_fresh(stmt: Statement, database: str) -> str:
    """The text with every reference to `activities` reading FRESH_VIEW (same alias)."""
    text = stmt.text
    for ref in reversed(activities_refs(stmt, database)):
        alias = ref.alias or TABLE
        text = f"{text[: ref.start]}({FRESH_VIEW}) AS {alias}{text[ref.end :]}"
    return text


def fresh_parameters(actor: str, rows: Sequence[Any]) -> dict[str, Any]:
    """FRESH_VIEW's parameters for sync `Row`s of one actor (see `sync._decode.Row`)."""
    return {
        f"{P}actor": actor,
        f"{P}event_id": [r.event_id for r in rows],
        f"{P}type": [r.type for r in rows],
        f"{P}target": [r.target for r in rows],
        f"{P}ts": [r.ts_ms for r in rows],
        f"{P}keys": [list(r.attributes) for r in rows],
        f"{P}values": [list(r.attributes.values()) for r in rows],
        f"{P}version": [r.version for r in rows],
    }
