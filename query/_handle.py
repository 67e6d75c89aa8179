"""`query.connect()`: one handle for every read, routed to the store that answers it best.

Point reads (typed calls, and SQL the router recognises as one) are DynamoDB Query calls;
everything else runs on ClickHouse, read-only, with values bound server-side. Results are
polars frames (or Arrow tables) with the same schema whichever store answered.

Read-your-writes (`fresh=True`): ClickHouse lags DynamoDB by the sync delay. For a query scoped
to one actor, footfall reads that actor's DynamoDB items from shortly before the sync watermark
(the newest event time sync has written from DynamoDB, minus `fresh_lateness`) with one Query,
and the query reads `activities` as "ClickHouse's rows plus those items whose event id
ClickHouse has not seen". An activity recorded a moment ago is counted, and counted once when
sync catches up. Limits: an item recorded with a time older than the watermark minus
`fresh_lateness` is not added; updates and deletes that sync has not mirrored are not applied;
at most FRESH_LIMIT items are added (more raises FreshnessUnsupported).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, Literal

from footfall._activity import Activity
from footfall._dynamodb import DynamoDB
from footfall._errors import ConfigError, InvalidActivity, StoreError, StoreUnavailable
from footfall._reads import actor_items, target_items
from footfall._settings import Settings, load_settings

from ._diagnose import diagnose
from ._errors import FreshnessUnsupported, ParameterError, ScanRefused
from ._frames import items_to_arrow, items_to_polars, items_to_rows, to_polars
from ._named import named_query
from ._params import check_parameters
from ._plan import Operand, PointRead, Route
from ._rewrite import fresh_parameters, with_final, with_fresh
from ._router import actor_scope, clickhouse_route, decide
from ._statement import Statement, parse_statement

if TYPE_CHECKING:
    import polars
    import pyarrow  # type: ignore[import-untyped, unused-ignore]  # no stubs yet

    from footfall._clickhouse import ClickHouse

__all__ = ["FRESH_LIMIT", "Footfall", "RouteChoice", "connect"]

log = logging.getLogger(__name__)

RouteChoice = Literal["auto", "dynamodb", "clickhouse"]
FRESH_LIMIT: Final = 10_000
_WATERMARK: Final = "SELECT max(ts) AS w FROM activities WHERE source = 'dynamodb'"


def connect(settings: Settings | None = None, *, database: str | None = None) -> Footfall:
    """A read handle on the stores `settings` name (default: read from the environment).

    `database` (keyword) names the ClickHouse database (default: the URL's). Nothing is
    opened until the first read that needs it.
    """
    return Footfall(settings or load_settings(), database=database)


class Footfall:
    """Reads activities: point reads from DynamoDB, SQL and named queries routed.

    >>> ff = connect()
    >>> ff.latest("bob", 10)
    >>> ff.sql("SELECT type, count() AS n FROM activities GROUP BY type")
    """

    fresh_lateness: timedelta = timedelta(minutes=5)

    def __init__(
        self,
        settings: Settings,
        *,
        database: str | None = None,
        dynamodb: DynamoDB | None = None,
        clickhouse: ClickHouse | None = None,
    ) -> None:
        if clickhouse is not None and not clickhouse.readonly:
            raise ConfigError(
                "clickhouse", clickhouse, "a read-only handle: connect(settings, readonly=True)"
            )
        self.settings = settings
        chosen = database or (clickhouse.database if clickhouse is not None else None)
        self.database: str = chosen or settings.clickhouse.database
        self._dynamodb = dynamodb
        self._clickhouse = clickhouse
        self._own_clickhouse = clickhouse is None

    @property
    def dynamodb(self) -> DynamoDB:
        if self._dynamodb is None:
            self._dynamodb = DynamoDB(self.settings)
        return self._dynamodb

    @property
    def clickhouse(self) -> ClickHouse:
        """The read-only ClickHouse handle (opened on first use)."""
        if self._clickhouse is None:
            from footfall._clickhouse import connect as connect_clickhouse

            self._clickhouse = connect_clickhouse(
                self.settings, database=self.database, readonly=True
            )
        return self._clickhouse

    # -- typed point reads (DynamoDB) ----------------------------------------------------------

    def latest(self, actor: str, n: int = 50, type: str | None = None) -> polars.DataFrame:
        """An actor's latest `n` activities (of one `type`, if given), newest first."""
        _check_count("n", n)
        _key(actor=actor, type=type)
        items = actor_items(self.dynamodb, actor, activity_type=type, limit=n)
        return items_to_polars(items)

    def actor_range(
        self,
        actor: str,
        start: datetime,
        end: datetime,
        type: str | None = None,
        *,
        limit: int | None = None,
    ) -> polars.DataFrame:
        """An actor's activities (of one `type`, if given) in `[start, end)`, newest first."""
        _check_count("limit", limit)
        _key(actor=actor, type=type)
        items = actor_items(
            self.dynamodb, actor, activity_type=type, start=start, end=end, limit=limit
        )
        return items_to_polars(items)

    def target_range(
        self, type: str, target: str, start: datetime, end: datetime, limit: int | None = None
    ) -> polars.DataFrame:
        """Activities of `type` on `target` in `[start, end)`, newest first: one Query per
        write shard of the target index, merged by time."""
        _check_count("limit", limit)
        _key(type=type, target=target)
        items = target_items(
            self.dynamodb,
            type,
            target,
            shards=self.settings.target_shards,
            start=start,
            end=end,
            limit=limit,
        )
        return items_to_polars(items)

    # -- SQL -----------------------------------------------------------------------------------

    def explain(self, text: str, parameters: Mapping[str, Any] | None = None) -> Route:
        """Where `text` would run and why (parameters, if given, are checked too)."""
        stmt = parse_statement(text)
        params = check_parameters(stmt.placeholders, parameters) if parameters else None
        route, _plan = self._decide(stmt, params)
        return route

    def sql(
        self,
        text: str,
        parameters: Mapping[str, Any] | None = None,
        *,
        route: RouteChoice = "auto",
        fresh: bool = False,
    ) -> polars.DataFrame:
        """Run one read-only SELECT on the store the router picks (or `route` forces)."""
        stmt, params, decided, plan = self._route(text, parameters, route)
        if plan is not None:
            return items_to_polars(self._point_items(plan, params), plan.columns)
        return to_polars(self._clickhouse_answer(stmt, params, decided, fresh))

    def sql_arrow(
        self,
        text: str,
        parameters: Mapping[str, Any] | None = None,
        *,
        route: RouteChoice = "auto",
        fresh: bool = False,
    ) -> pyarrow.Table:
        """`sql()` as an Arrow table."""
        stmt, params, decided, plan = self._route(text, parameters, route)
        if plan is not None:
            return items_to_arrow(self._point_items(plan, params), plan.columns)
        return self._clickhouse_answer(stmt, params, decided, fresh)

    def named(self, name: str, /, *, fresh: bool = False, **parameters: Any) -> polars.DataFrame:
        """Run the named query `name` (see `query.named_queries()`) on ClickHouse."""
        query = named_query(name)
        stmt = parse_statement(query.sql)
        params = check_parameters(stmt.placeholders, query.with_defaults(parameters))
        sql = with_final(stmt, self.database)
        if fresh:
            if "actor" not in params:
                raise FreshnessUnsupported(f"the named query {name!r} has no actor parameter")
            sql, params = self._freshen(stmt, sql, params, params["actor"])
        return to_polars(self._run(stmt, sql, params))

    # -- plumbing ------------------------------------------------------------------------------

    def _decide(
        self, stmt: Statement, params: Mapping[str, Any] | None
    ) -> tuple[Route, PointRead | None]:
        return decide(
            stmt,
            database=self.database,
            shards=self.settings.target_shards,
            ttl_days=self.settings.ttl_days,
            parameters=params,
        )

    def _route(
        self, text: str, parameters: Mapping[str, Any] | None, route: RouteChoice
    ) -> tuple[Statement, dict[str, Any], Route, PointRead | None]:
        """The statement, its checked parameters, where it runs and, for DynamoDB, the plan."""
        if route not in ("auto", "dynamodb", "clickhouse"):
            raise ParameterError("route", "auto|dynamodb|clickhouse", route, "unknown route")
        stmt = parse_statement(text)
        params = check_parameters(stmt.placeholders, parameters)
        decided, plan = self._decide(stmt, params)
        if route == "dynamodb" and plan is None:
            raise ScanRefused(decided.reason)
        if route == "clickhouse" and plan is not None:
            decided, plan = clickhouse_route(stmt, self.database, "route='clickhouse' asked"), None
        if plan is not None:
            log.debug("dynamodb route (%s): %s", decided.index, decided.reason)
        else:
            log.debug("clickhouse route: %s", decided.reason)
        return stmt, params, decided, plan

    def _clickhouse_answer(
        self, stmt: Statement, params: dict[str, Any], decided: Route, fresh: bool
    ) -> pyarrow.Table:
        sql = decided.sql or with_final(stmt, self.database)
        if fresh:
            actor = actor_scope(stmt, self.database)
            if actor is None:
                raise FreshnessUnsupported("the query is not scoped to one actor")
            sql, params = self._freshen(stmt, sql, params, actor.value(params))
        return self._run(stmt, sql, params)

    def _point_items(self, plan: PointRead, params: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The items a point read's plan selects: one Query (per write shard)."""
        start, end = plan.time_range(params)
        limit = None if plan.limit is None else int(plan.limit.value(params))
        actor, kind, target = (
            _value(o, params) for o in (plan.actor, plan.activity_type, plan.target)
        )
        if not _matchable(actor=actor, type=kind, target=target):
            items: list[dict[str, Any]] = []  # no stored activity can have such a key
        elif actor is not None:
            items = actor_items(
                self.dynamodb,
                actor,
                activity_type=kind,
                start=start,
                end=end,
                newest_first=plan.newest_first,
                limit=limit,
            )
        else:
            assert kind is not None and target is not None  # the router pinned both
            items = target_items(
                self.dynamodb,
                kind,
                target,
                shards=self.settings.target_shards,
                start=start,
                end=end,
                newest_first=plan.newest_first,
                limit=limit,
            )
        return items

    def _freshen(
        self, stmt: Statement, sql: str, params: dict[str, Any], actor: str
    ) -> tuple[str, dict[str, Any]]:
        """The query reading `activities` plus the actor's items sync has not mirrored yet."""
        watermark = self._run(stmt, _WATERMARK, {}).column("w")[0].as_py()
        start = watermark - self.fresh_lateness if isinstance(watermark, datetime) else None
        items = actor_items(self.dynamodb, actor, start=start, limit=FRESH_LIMIT + 1)
        if len(items) > FRESH_LIMIT:
            raise FreshnessUnsupported(
                f"more than {FRESH_LIMIT} of the actor's items are newer than the sync "
                "watermark (sync is far behind)"
            )
        rows = items_to_rows(items)
        log.debug("fresh: %d item(s) of %s since %s", len(rows), actor, start)
        if not rows:
            return sql, params
        return with_fresh(stmt, self.database), {**params, **fresh_parameters(actor, rows)}

    def _run(self, stmt: Statement, sql: str, params: Mapping[str, Any]) -> pyarrow.Table:
        try:
            return self.clickhouse.query_arrow(sql, params)
        except StoreUnavailable:
            raise
        except StoreError as exc:
            raise diagnose(exc, stmt, self.clickhouse, self.database) from exc

    def close(self) -> None:
        """Release the ClickHouse handle (if this handle opened it)."""
        if self._clickhouse is not None and self._own_clickhouse:
            self._clickhouse.close()
            self._clickhouse = None

    def __enter__(self) -> Footfall:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Footfall(table={self.settings.table!r}, clickhouse={self.settings.clickhouse!r})"


def _value(operand: Operand | None, params: Mapping[str, Any]) -> str | None:
    return None if operand is None else str(operand.value(params))


def _matchable(**keys: str | None) -> bool:
    """Whether stored activities can have these key values (else a Query would be refused)."""
    try:
        _key(**keys)
    except InvalidActivity:
        return False
    return True


def _key(*, actor: str | None = None, type: str | None = None, target: str | None = None) -> None:
    """Validate key values with the Activity model's own rules (InvalidActivity)."""
    Activity(
        actor="-" if actor is None else actor,
        type="x" if type is None else type,
        target="-" if target is None else target,
    )


def _check_count(name: str, value: int | None) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise ParameterError(name, "a count >= 0", value, "expected a whole number >= 0")
