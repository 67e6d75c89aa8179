"""The demo's questions, asked through `query.connect()`: routed SQL and named queries.

Each answer keeps the question as a user would type it, the polars frame, how long it took
and, for SQL, the route `explain` gives. No output here: the CLI renders the answers.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, TypeVar

from ._settings import Settings

if TYPE_CHECKING:
    import polars

    from query import Footfall, Route

__all__ = ["Answer", "Findings", "ask"]

T = TypeVar("T")

COUNT_RUN: Final = "SELECT count() AS n FROM activities WHERE startsWith(event_id, {run:String})"
BY_TYPE: Final = (
    "SELECT type, count() AS activities, uniqExact(actor) AS actors "
    "FROM activities GROUP BY type ORDER BY activities DESC"
)
BUSIEST: Final = (
    "SELECT actor, count() AS activities FROM activities "
    "GROUP BY actor ORDER BY activities DESC, actor LIMIT 1"
)
LATEST: Final = (
    "SELECT ts, type, target FROM activities WHERE actor = {actor:String} ORDER BY ts DESC LIMIT 5"
)
ON_TARGET: Final = (
    "SELECT ts, actor FROM activities WHERE type = 'store-pageviews' AND target = "
    "{target:String} AND ts >= {since:DateTime64(3, 'UTC')} ORDER BY ts DESC LIMIT 5"
)
PER_HOUR: Final = (
    "SELECT toDateTime64(toStartOfHour(ts), 3, 'UTC') AS hour, type, count() AS activities "
    "FROM activities "
    "WHERE ts >= {start:DateTime64(3, 'UTC')} AND ts < {end:DateTime64(3, 'UTC')} "
    "GROUP BY hour, type ORDER BY hour, type"
)
FUNNEL: Final = ["store-pageviews", "add-to-cart", "purchase"]


@dataclass(frozen=True, slots=True)
class Answer:
    """One question and its answer."""

    title: str
    question: str  # the SQL, or the named query call
    frame: polars.DataFrame
    ms: float
    route: Route | None = None
    columns: tuple[str, ...] = ()  # the columns a report shows (default: all)

    def shown(self, *columns: str) -> Answer:
        """The same answer, showing only these columns."""
        return Answer(self.title, self.question, self.frame, self.ms, self.route, columns)


@dataclass(frozen=True, slots=True)
class Findings:
    """What the demo asked and learnt."""

    in_clickhouse: int  # this run's activities in ClickHouse (FINAL)
    same_answer: bool  # the point read gave the same rows from both stores
    routed: list[Answer]  # SQL through the router, with its route
    named: list[Answer]  # named queries (ClickHouse)
    top_targets: polars.DataFrame  # `target`, `activities`, most active first
    per_hour: polars.DataFrame  # `hour`, `type`, `activities`


def ask(settings: Settings, *, run: str, start: datetime, end: datetime) -> Findings:
    """Ask the demo's questions of the stores `settings` name, about `[start, end)`;
    `run` is the event-id prefix of this run's activities."""
    import query

    window = {"start": start, "end": end}
    with query.connect(settings) as ff:
        ff.dynamodb.client.describe_table(TableName=settings.table)  # clients made, not timed
        count = _sql(ff, "this run's activities in ClickHouse", COUNT_RUN, {"run": run})
        by_type = _sql(ff, "activities by type", BY_TYPE)
        busiest = _sql(ff, "the busiest actor", BUSIEST)
        actor = str(busiest.frame["actor"][0])
        latest = _sql(ff, f"latest of {actor}", LATEST, {"actor": actor})
        again = _sql(ff, "the same from ClickHouse", LATEST, {"actor": actor}, route="clickhouse")
        top = _named(ff, "top targets", "top_targets", type="store-pageviews", limit=10, **window)
        hot = {"target": str(top.frame["target"][0]), "since": end - timedelta(days=1)}
        on_target = _sql(ff, "pageviews of the hottest product", ON_TARGET, hot)
        named = [
            top,
            _named(ff, "daily unique actors", "daily_unique_actors", **window),
            _named(ff, "funnel", "funnel", steps=FUNNEL, **window),
            _named(ff, "day-N retention", "retention", days=2, **window),
            _named(ff, f"sessions of {actor}", "sessions", actor=actor).shown(
                "session", "started", "duration_seconds", "activities", "targets"
            ),
        ]
        per_hour = ff.sql(PER_HOUR, window)
    return Findings(
        in_clickhouse=int(count.frame["n"][0]),
        same_answer=latest.frame.equals(again.frame),
        routed=[by_type, busiest, latest, again, on_target],
        named=named,
        top_targets=top.frame,
        per_hour=per_hour,
    )


def _sql(
    ff: Footfall,
    title: str,
    text: str,
    parameters: Mapping[str, Any] | None = None,
    *,
    route: query.RouteChoice = "auto",
) -> Answer:
    chosen = ff.explain(text, parameters)
    if route == "clickhouse" and chosen.route != "clickhouse":
        from query import Route

        chosen = Route("clickhouse", "route='clickhouse' asked: the same query, run on ClickHouse")
    frame, ms = _timed(lambda: ff.sql(text, parameters, route=route))
    return Answer(title, text, frame, ms, chosen)


def _named(ff: Footfall, title: str, name: str, **parameters: Any) -> Answer:
    shown = ", ".join(f"{k}={_short(v)}" for k, v in parameters.items())
    frame, ms = _timed(lambda: ff.named(name, **parameters))
    return Answer(title, f"named({name!r}, {shown})", frame, ms)


def _short(value: Any) -> str:
    if isinstance(value, datetime):
        return value.strftime("'%Y-%m-%d %H:%M'")
    return repr(value)


def _timed(call: Callable[[], T]) -> tuple[T, float]:
    started = time.perf_counter()
    result = call()
    return result, (time.perf_counter() - started) * 1000


if TYPE_CHECKING:
    import query
