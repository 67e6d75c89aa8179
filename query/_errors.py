"""The query package's errors: each says what was wrong and what to do instead."""

from __future__ import annotations

from typing import Literal

from footfall._errors import FootfallError

__all__ = [
    "FreshnessUnsupported",
    "ParameterError",
    "QueryError",
    "QueryRefused",
    "ResultNotTabular",
    "ScanRefused",
    "UnknownName",
]


class QueryError(FootfallError, ValueError):
    """A query that cannot run as written; nothing was executed."""


class QueryRefused(QueryError):
    """Ad-hoc SQL that is not a single read-only SELECT (or that footfall could not check).

    `.reason` says what was refused and why, in words a user understands.
    """

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(
            f"query refused: {reason}. footfall runs ad-hoc SQL read-only: one SELECT (or "
            "WITH ... SELECT) over tables, with values as {name:Type} parameters"
        )


class UnknownName(QueryError, LookupError):
    """The query names a table, column, function or named query that does not exist.

    `.kind` is what was unknown, `.name` its name when footfall could tell which one.
    """

    def __init__(
        self,
        kind: Literal["table", "column", "function", "named query"],
        name: str | None,
        hint: str = "",
    ) -> None:
        self.kind = kind
        self.name = name
        shown = f" {name!r}" if name is not None else " (one of the names the query uses)"
        super().__init__(f"unknown {kind}{shown}" + (f"; {hint}" if hint else ""))


class ParameterError(QueryError, TypeError):
    """A `{name:Type}` parameter is missing, unused, or has a value that is not of its type.

    `.name` is the parameter, `.expected` its declared type, `.value` the value given.
    """

    def __init__(self, name: str, expected: str, value: object, problem: str) -> None:
        self.name = name
        self.expected = expected
        self.value = value
        shown = repr(value)
        if len(shown) > 60:
            shown = shown[:57] + "..."
        super().__init__(f"parameter {name!r} ({expected}): {problem} (got {shown})")


class ScanRefused(QueryError):
    """`route="dynamodb"` was forced for a query DynamoDB cannot answer with Query calls.

    `.reason` says why; `.alternative` is how to run it instead (on ClickHouse).
    """

    def __init__(self, reason: str) -> None:
        self.reason = reason
        self.alternative = 'route="clickhouse" (or leave route="auto")'
        super().__init__(
            f"DynamoDB would need a Scan or client-side computation: {reason}. footfall never "
            f"scans DynamoDB for a query; run it on ClickHouse with {self.alternative}"
        )


class FreshnessUnsupported(QueryError):
    """`fresh=True` was asked of a query footfall cannot complete with DynamoDB's newest items.

    `.reason` says why.
    """

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(
            f"fresh=True is not possible here: {reason}. Read-your-writes covers queries over "
            "`activities` scoped to one actor (WHERE actor = ...; for named queries, an `actor` "
            "parameter); drop fresh=True to read what sync has mirrored so far"
        )


class ResultNotTabular(QueryError):
    """The answer has columns polars cannot hold (e.g. a Variant: `SELECT '' UNION ALL SELECT 1`
    gives one column of both strings and numbers).

    `.columns` names them.
    """

    def __init__(self, columns: list[str], detail: str) -> None:
        self.columns = columns
        super().__init__(
            f"the result's column(s) {', '.join(columns) or '?'} cannot become a polars frame "
            f"({detail}); give each column one type, e.g. CAST(x AS String) or toString(x)"
        )
