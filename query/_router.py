"""Where a query runs: DynamoDB for point reads, ClickHouse for everything else.

A query goes to DynamoDB when it is one SELECT over `activities` that

- pins one actor (`actor = ...`, optionally with `type = ...`), or one `type` and `target`,
- filters otherwise only on `ts` (`>=`, `>`, `<`, `<=`, `=`, `BETWEEN`), ANDed together,
- selects plain activity columns (event_id, actor, type, target, ts, attributes; aliases ok),
- orders, if at all, by `ts` (then `event_id`) in one direction, and has at most a LIMIT,

and aggregates, groups, joins, windows, subqueries, CTEs, DISTINCT and UNION nothing. Values
may be string literals or `{name:Type}` parameters. Everything else goes to ClickHouse: it
answers every query (the DynamoDB route is an optimisation with the same columns and types).
With retention (FOOTFALL_TTL_DAYS) a point read reaching back past it goes to ClickHouse,
which keeps the full history. Events published straight to Kafka (`EventPublisher`) are never
in DynamoDB: a point read sees what was recorded through the Tracker; `route="clickhouse"`
sees both sources.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any, Final

from sqlglot import exp

from ._errors import UnknownName
from ._params import split_type
from ._plan import ACTIVITY_COLUMNS, SYNC_COLUMNS, Operand, PointRead, Route, describe
from ._rewrite import TABLE, is_activities, with_final
from ._statement import STATEMENT_CACHE, Statement

__all__ = ["actor_scope", "clickhouse_route", "decide"]

_KEYS: Final = ("actor", "type", "target")
_TEXT_TYPES: Final = frozenset({"String", "LowCardinality", "FixedString"})
_TIME_TYPES: Final = frozenset({"DateTime", "DateTime64", "Date", "Date32"})
_INT_TYPE: Final = re.compile(r"^U?Int(8|16|32|64)$")
# the forms ClickHouse itself parses when it compares a DateTime64 with a string
_CH_TIME: Final = re.compile(r"^\d{4}-\d{2}-\d{2}( \d{2}:\d{2}:\d{2}(\.\d{1,3})?)?$")


class _ToClickHouse(Exception):
    """Internal: the query is not a point read; the message is the reason."""


def decide(
    stmt: Statement,
    *,
    database: str,
    shards: int,
    ttl_days: int | None = None,
    parameters: Mapping[str, Any] | None = None,
    now: datetime | None = None,
) -> tuple[Route, PointRead | None]:
    """The route of a checked statement, and the point read when it is DynamoDB's.

    `parameters` (checked values) let the retention rule see parameter time bounds; without
    them such a bound counts as within retention. UnknownName for a column `activities` lacks
    in a query shaped as a point read.
    """
    route, plan = _decided(_ByText(stmt), database, shards)
    if plan is not None and ttl_days is not None:
        try:
            _check_retention(plan, ttl_days, parameters, now or datetime.now(UTC))
        except _ToClickHouse as exc:
            return clickhouse_route(stmt, database, str(exc)), None
    return route, plan


class _ByText:
    """A statement as a cache key: equal when the texts are (a text parses to one tree)."""

    __slots__ = ("stmt",)

    def __init__(self, stmt: Statement) -> None:
        self.stmt = stmt

    def __hash__(self) -> int:
        return hash(self.stmt.text)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _ByText) and other.stmt.text == self.stmt.text


@lru_cache(maxsize=STATEMENT_CACHE)
def _decided(key: _ByText, database: str, shards: int) -> tuple[Route, PointRead | None]:
    """The route of a statement, cached by its text like its parse (the last STATEMENT_CACHE
    texts): it depends on the text alone, never on parameter values, which the PointRead looks
    up when it runs (`Operand.value`). Retention, which does depend on them and on the time,
    is checked per call by `decide`. Route and PointRead are immutable: callers share them."""
    stmt = key.stmt
    try:
        plan = _point_read(stmt, database)
    except _ToClickHouse as exc:
        return clickhouse_route(stmt, database, str(exc)), None
    return Route("dynamodb", describe(plan, shards), plan.index, None), plan


def clickhouse_route(stmt: Statement, database: str, reason: str) -> Route:
    return Route("clickhouse", reason, None, with_final(stmt, database))


def _point_read(stmt: Statement, database: str) -> PointRead:
    tree = stmt.tree
    if isinstance(tree, exp.Union):
        raise _ToClickHouse("UNION combines queries: ClickHouse answers it")
    if isinstance(tree, exp.Intersect | exp.Except):
        raise _ToClickHouse(f"{tree.key.upper()} combines queries: ClickHouse answers it")
    if not isinstance(tree, exp.Select):
        raise _ToClickHouse("a parenthesized or compound query: ClickHouse answers it")
    if tree.args.get("with_"):
        raise _ToClickHouse("WITH (a common table expression): ClickHouse answers it")
    aliases = _from_activities(tree, database)
    _refuse_analytics(tree)
    columns = _columns(tree, aliases)
    outputs = {out: name for name, out in columns}
    pins, bounds = _conditions(tree.args.get("where"), aliases, outputs)
    for clause, label in (("prewhere", "PREWHERE"), ("offset", "OFFSET"), ("sample", "SAMPLE")):
        if tree.args.get(clause):
            raise _ToClickHouse(f"{label}: ClickHouse answers it")
    newest_first = _order(tree, aliases, outputs)
    limit = _limit(tree)
    actor, kind, target = (pins.get(k) for k in _KEYS)
    if actor is not None and target is not None:
        raise _ToClickHouse("pins actor and target together: no DynamoDB key covers both")
    if actor is None and not (kind is not None and target is not None):
        if target is not None:
            raise _ToClickHouse(
                "pins target but not its type: DynamoDB's target index is keyed on type and "
                "target, so it would need a Scan; ClickHouse answers it"
            )
        pinned = "only type" if kind is not None else "no actor (nor type and target)"
        raise _ToClickHouse(f"pins {pinned}: DynamoDB would need a Scan; ClickHouse answers it")
    return PointRead(actor, kind, target, tuple(bounds), newest_first, limit, columns)


def _from_activities(tree: exp.Select, database: str) -> set[str]:
    """The names columns may be qualified with; the query must read `activities` alone."""
    source = tree.args.get("from_")
    if source is None:
        raise _ToClickHouse("reads no table: ClickHouse computes it")
    if tree.args.get("joins"):
        kind = (
            "ARRAY JOIN"
            if any(j.args.get("kind") == "ARRAY" for j in tree.args["joins"])
            else "JOIN"
        )
        raise _ToClickHouse(f"{kind}: combining rows goes to ClickHouse")
    table = source.this.this if isinstance(source.this, exp.Final) else source.this
    if isinstance(table, exp.Subquery):
        raise _ToClickHouse("reads from a subquery: ClickHouse answers it")
    if not isinstance(table, exp.Table) or not isinstance(table.this, exp.Identifier):
        raise _ToClickHouse("reads a table function: ClickHouse answers it")
    if not is_activities(table, database, frozenset()):
        raise _ToClickHouse(
            f"reads table {table.sql('clickhouse')}, not activities: ClickHouse holds it"
        )
    if table.args.get("sample"):
        raise _ToClickHouse("SAMPLE: ClickHouse answers it")
    names = {TABLE, f"{table.db}.{TABLE}" if table.db else TABLE}
    if table.alias:
        names.add(table.alias)
    return names


def _refuse_analytics(tree: exp.Select) -> None:
    if tree.args.get("distinct"):
        raise _ToClickHouse("DISTINCT: ClickHouse answers it")
    for clause, label in (("group", "GROUP BY"), ("having", "HAVING"), ("qualify", "QUALIFY")):
        if tree.args.get(clause):
            raise _ToClickHouse(f"{label}: analytics go to ClickHouse")
    if next(tree.find_all(exp.Window), None) is not None:
        raise _ToClickHouse("window functions: analytics go to ClickHouse")
    aggregate = next(tree.find_all(exp.AggFunc), None)
    if aggregate is not None:
        raise _ToClickHouse(
            f"aggregates ({aggregate.sql('clickhouse')}): analytics go to ClickHouse"
        )
    for node in tree.find_all(exp.Subquery, exp.Select):
        if node is not tree:
            raise _ToClickHouse("a subquery: ClickHouse answers it")
    limit = tree.args.get("limit")
    if isinstance(limit, exp.Limit) and limit.expressions:
        raise _ToClickHouse("LIMIT BY: ClickHouse answers it")


def _column(
    node: exp.Expr, aliases: set[str], outputs: Mapping[str, str] | None = None
) -> str | None:
    """The activities column a node names (directly, or through a SELECT alias in `outputs`),
    None if it is no plain column reference."""
    if not isinstance(node, exp.Column) or not isinstance(node.this, exp.Identifier):
        return None
    qualifier = ".".join(p for p in (node.db, node.table) if p)
    if qualifier and qualifier not in aliases:
        raise _ToClickHouse(f"qualifies {node.name} with {qualifier}: ClickHouse resolves it")
    name = node.name
    if not qualifier and outputs and name in outputs:
        return outputs[name]
    if name not in ACTIVITY_COLUMNS and name not in SYNC_COLUMNS:
        raise UnknownName(
            "column", name, f"activities has {', '.join(ACTIVITY_COLUMNS + SYNC_COLUMNS)}"
        )
    return name


def _columns(tree: exp.Select, aliases: set[str]) -> tuple[tuple[str, str], ...]:
    out = []
    for item in tree.expressions:
        node = item.this if isinstance(item, exp.Alias) else item
        if isinstance(node, exp.Star) or (isinstance(node, exp.Column) and node.is_star):
            raise _ToClickHouse(
                "SELECT * includes the sync columns (source, version, is_deleted, ingested_at) "
                "only ClickHouse holds; name the columns (event_id, actor, type, target, ts, "
                "attributes) to read from DynamoDB"
            )
        name = _column(node, aliases)
        if name is None:
            raise _ToClickHouse(
                f"computes {node.sql('clickhouse')} in SELECT: ClickHouse answers it"
            )
        if name in SYNC_COLUMNS:
            raise _ToClickHouse(f"reads the sync column {name}, which only ClickHouse holds")
        output = item.alias if isinstance(item, exp.Alias) else name
        if output != name and output in ACTIVITY_COLUMNS + SYNC_COLUMNS:
            raise _ToClickHouse(f"the alias {output} shadows a column: ClickHouse resolves it")
        out.append((name, output))
    return tuple(out)


def _conditions(
    where: exp.Where | None, aliases: set[str], outputs: Mapping[str, str]
) -> tuple[dict[str, Operand], list[tuple[str, Operand]]]:
    pins: dict[str, Operand] = {}
    bounds: list[tuple[str, Operand]] = []
    if where is None:
        return pins, bounds
    for cond in _conjuncts(where.this):
        if isinstance(cond, exp.Between):
            if _column(cond.this, aliases, outputs) != "ts":
                raise _ToClickHouse(f"filters with {cond.sql('clickhouse')}: ClickHouse answers it")
            bounds += [(">=", _time(cond.args["low"])), ("<=", _time(cond.args["high"]))]
            continue
        op = _COMPARISONS.get(type(cond))
        if op is None:
            raise _ToClickHouse(
                f"filters with {cond.sql('clickhouse')}, which DynamoDB's keys cannot serve: "
                "ClickHouse answers it"
            )
        left, right = cond.this, cond.expression
        name = _column(left, aliases, outputs)
        if name is None:
            name, left, right, op = _column(right, aliases, outputs), right, left, _FLIPPED[op]
        if name == "ts":
            bounds.append((op, _time(right)))
        elif name in _KEYS and op == "=":
            if name in pins:
                raise _ToClickHouse(f"pins {name} twice: ClickHouse answers it")
            pins[name] = _text(right, name)
        else:
            raise _ToClickHouse(
                f"filters on {name or cond.sql('clickhouse')}, which is not a DynamoDB key: "
                "ClickHouse answers it"
            )
    return pins, bounds


_COMPARISONS: Final[dict[type, str]] = {
    exp.EQ: "=",
    exp.GTE: ">=",
    exp.GT: ">",
    exp.LT: "<",
    exp.LTE: "<=",
}
_FLIPPED: Final = {"=": "=", ">=": "<=", ">": "<", "<": ">", "<=": ">="}


def _conjuncts(node: exp.Expr) -> list[exp.Expr]:
    while isinstance(node, exp.Paren):
        node = node.this
    if isinstance(node, exp.And):
        return _conjuncts(node.this) + _conjuncts(node.expression)
    return [node]


def _text(node: exp.Expr, column: str) -> Operand:
    if isinstance(node, exp.Literal) and node.is_string:
        return Operand(literal=node.this)
    if isinstance(node, exp.Placeholder) and split_type(_type(node))[0] in _TEXT_TYPES:
        return Operand(param=node.name, type_text=_type(node))
    raise _ToClickHouse(
        f"compares {column} with {node.sql('clickhouse')}, not a string: ClickHouse answers it"
    )


def _time(node: exp.Expr) -> Operand:
    if isinstance(node, exp.Literal) and node.is_string and _CH_TIME.match(node.this):
        return Operand(literal=node.this)
    if isinstance(node, exp.Placeholder) and split_type(_type(node))[0] in _TIME_TYPES:
        return Operand(param=node.name, type_text=_type(node))
    raise _ToClickHouse(
        f"bounds ts with {node.sql('clickhouse')}; the DynamoDB route takes 'YYYY-MM-DD "
        "hh:mm:ss[.fff]' strings or {name:DateTime64(3, 'UTC')} parameters: ClickHouse answers it"
    )


def _type(node: exp.Placeholder) -> str:
    kind = node.args.get("kind")
    return kind.sql("clickhouse") if isinstance(kind, exp.Expr) else str(kind)


def _order(tree: exp.Select, aliases: set[str], outputs: Mapping[str, str]) -> bool:
    order = tree.args.get("order")
    if order is None:
        return True
    keys = [
        (_column(o.this, aliases, outputs), bool(o.args.get("desc"))) for o in order.expressions
    ]
    names = [k for k, _ in keys]
    if names not in (["ts"], ["ts", "event_id"]) or len({d for _, d in keys}) != 1:
        raise _ToClickHouse(
            f"{order.sql('clickhouse').strip()}: DynamoDB returns rows by time only"
        )
    return keys[0][1]


def _limit(tree: exp.Select) -> Operand | None:
    limit = tree.args.get("limit")
    if limit is None:
        return None
    value = limit.expression
    if isinstance(value, exp.Literal) and not value.is_string and value.this.isdigit():
        return Operand(literal=int(value.this))
    if isinstance(value, exp.Placeholder) and _INT_TYPE.match(_type(value)):
        return Operand(param=value.name, type_text=_type(value))
    raise _ToClickHouse(f"LIMIT {value.sql('clickhouse')}: ClickHouse answers it")


def _check_retention(
    plan: PointRead, ttl_days: int, parameters: Mapping[str, Any] | None, now: datetime
) -> None:
    horizon = now - timedelta(days=ttl_days)
    if any(
        op.param and (parameters is None or op.param not in parameters) for _, op in plan.bounds
    ):
        return  # decided when the values are known
    start, _end = plan.time_range(parameters or {})
    if start is None or start < horizon:
        raise _ToClickHouse(
            f"reaches back past DynamoDB's {ttl_days}-day retention (FOOTFALL_TTL_DAYS); "
            "ClickHouse keeps the full history"
        )


def actor_scope(stmt: Statement, database: str) -> Operand | None:
    """The actor a query is scoped to: an `actor = ...` conjunct of the outermost WHERE of a
    SELECT that reads `activities` alone; None otherwise."""
    tree = stmt.tree
    if not isinstance(tree, exp.Select) or tree.args.get("where") is None:
        return None
    try:
        aliases = _from_activities(tree, database)
    except _ToClickHouse:
        return None
    for cond in _conjuncts(tree.args["where"].this):
        if not isinstance(cond, exp.EQ):
            continue
        for column, value in ((cond.this, cond.expression), (cond.expression, cond.this)):
            try:
                if _column(column, aliases) == "actor":
                    return _text(value, "actor")
            except (_ToClickHouse, UnknownName):
                continue
    return None
