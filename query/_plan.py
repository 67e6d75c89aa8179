"""What a query becomes: its Route (store, index, reason) and, for DynamoDB, a PointRead.

Pure values: no I/O. `ACTIVITY_COLUMNS` are the columns both stores hold for an activity;
`SYNC_COLUMNS` are ClickHouse's own (which source wrote a row, its version, tombstone flag and
arrival time).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final, Literal

from ._params import parse_moment

__all__ = ["ACTIVITY_COLUMNS", "SYNC_COLUMNS", "Operand", "PointRead", "Route", "describe"]

ACTIVITY_COLUMNS: Final = ("event_id", "actor", "type", "target", "ts", "attributes")
SYNC_COLUMNS: Final = ("source", "version", "is_deleted", "ingested_at")
_MS: Final = timedelta(milliseconds=1)


@dataclass(frozen=True, slots=True)
class Route:
    """Which store answers a query, and why.

    `route` is 'dynamodb' or 'clickhouse'; `index` the DynamoDB table or index a point read
    uses ('table', 'by_actor_type', 'by_type_target'), None on ClickHouse; `reason` says why in
    words a user understands; `sql` is the text sent to ClickHouse (FINAL added), if it goes
    there.
    """

    route: Literal["dynamodb", "clickhouse"]
    reason: str
    index: str | None = None
    sql: str | None = None

    def __str__(self) -> str:
        where = f"{self.route} ({self.index})" if self.index else self.route
        return f"{where}: {self.reason}"


@dataclass(frozen=True, slots=True)
class Operand:
    """A value in the query: a literal, or a `{name:Type}` parameter bound at run time."""

    literal: object = None
    param: str | None = None
    type_text: str = ""

    def value(self, parameters: Mapping[str, Any]) -> Any:
        return self.literal if self.param is None else parameters.get(self.param)

    def __str__(self) -> str:
        return f"{{{self.param}:{self.type_text}}}" if self.param else repr(self.literal)


@dataclass(frozen=True, slots=True)
class PointRead:
    """A query the DynamoDB route answers: key values, time bounds, order, limit, columns."""

    actor: Operand | None
    activity_type: Operand | None
    target: Operand | None
    bounds: tuple[tuple[str, Operand], ...]  # (op, value): op in >=, >, <, <=, =
    newest_first: bool
    limit: Operand | None
    columns: tuple[tuple[str, str], ...]  # (column, output name)

    @property
    def index(self) -> str:
        if self.actor is None:
            return "by_type_target"
        return "by_actor_type" if self.activity_type is not None else "table"

    def time_range(self, parameters: Mapping[str, Any]) -> tuple[datetime | None, datetime | None]:
        """`[start, end)` from the bounds (None: open), at the millisecond like ClickHouse."""
        start: datetime | None = None
        end: datetime | None = None
        for op, operand in self.bounds:
            moment = _moment(operand.value(parameters))
            low = _ceil_ms(moment) if op in (">=", "=") else _floor_ms(moment) + _MS
            high = _ceil_ms(moment) if op == "<" else _floor_ms(moment) + _MS
            if op in (">=", ">", "="):
                start = low if start is None else max(start, low)
            if op in ("<", "<=", "="):
                end = high if end is None else min(end, high)
        return start, end


def describe(plan: PointRead, shards: int) -> str:
    if plan.actor is not None:
        pinned = f"actor {plan.actor}"
        if plan.activity_type is not None:
            pinned += f" and type {plan.activity_type}"
            where = "one DynamoDB Query on index by_actor_type"
        else:
            where = "one DynamoDB Query on the table"
    else:
        pinned = f"type {plan.activity_type} and target {plan.target}"
        where = (
            f"one DynamoDB Query per write shard ({shards}) on index by_type_target, merged by time"
        )
    extras = []
    if plan.bounds:
        extras.append("within a ts range")
    extras.append("newest first" if plan.newest_first else "oldest first")
    if plan.limit is not None:
        extras.append(f"LIMIT {plan.limit}")
    return f"pins {pinned} and aggregates nothing: {where} ({', '.join(extras)})"


def _moment(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    moment = parse_moment(str(value))
    if moment is None:  # literals were matched against _CH_TIME, parameters checked
        raise ValueError(f"not a time: {value!r}")
    return moment


def _floor_ms(moment: datetime) -> datetime:
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def _ceil_ms(moment: datetime) -> datetime:
    floor = _floor_ms(moment)
    return floor if floor == moment else floor + _MS
