"""Server-side parameters: check each value against its `{name:Type}` placeholder's type.

A value travels to ClickHouse as a bound parameter (never in the SQL text) or, on the DynamoDB
route, into a key condition; either way it is checked here first, so both routes accept and
refuse the same values. Strings are accepted for numbers, booleans, dates and times when they
parse as such (the CLI's `--param k=v` gives strings); naive datetimes are taken as UTC.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Final

from ._errors import ParameterError

__all__ = ["RESERVED_PREFIX", "check_parameters", "coerce", "parse_moment", "split_type"]

RESERVED_PREFIX: Final = "__ff_"  # footfall's own parameters (read-your-writes)

_INT: Final = re.compile(r"^(U?)Int(8|16|32|64|128|256)$")
_TEXT: Final = frozenset({"String", "FixedString", "UUID", "IPv4", "IPv6"})
_FLOAT: Final = frozenset({"Float32", "Float64", "BFloat16"})
_DECIMAL: Final = re.compile(r"^Decimal(32|64|128|256)?$")
_TIME: Final = frozenset({"DateTime", "DateTime64"})
_DAY: Final = frozenset({"Date", "Date32"})
_WRAPPERS: Final = frozenset({"LowCardinality", "SimpleAggregateFunction"})


def check_parameters(
    declared: Mapping[str, str], given: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The values of `given`, each checked (and coerced) against its declared placeholder type.

    Raises ParameterError for a value of the wrong type, a placeholder without a value, a value
    without a placeholder, or a name in footfall's reserved `__ff_` namespace.
    """
    if given is not None and not isinstance(given, Mapping):
        raise ParameterError(
            "parameters",
            "a mapping",
            given,
            "pass the values as a dict of placeholder names, e.g. {'actor': 'bob'}",
        )
    values = dict(given or {})
    for name in values:
        if name.startswith(RESERVED_PREFIX):
            raise ParameterError(name, "-", values[name], "names starting __ff_ are footfall's own")
        if name not in declared:
            raise ParameterError(
                name,
                "-",
                values[name],
                f"the query has no {{{name}:Type}} placeholder for it; remove it or use it",
            )
    out: dict[str, Any] = {}
    for name, type_text in declared.items():
        if name not in values:
            raise ParameterError(
                name, type_text, None, f"no value given; pass parameters={{{name!r}: ...}}"
            )
        out[name] = coerce(name, type_text, values[name])
    return out


def coerce(name: str, type_text: str, value: Any) -> Any:
    """`value` as a value of ClickHouse type `type_text`, or ParameterError."""
    base, args = split_type(type_text)
    if base in _WRAPPERS and args:
        return coerce(name, args[-1], value)
    if base == "Nullable" and args:
        return None if value is None else coerce(name, args[0], value)
    if value is None:
        raise _wrong(name, type_text, value, "NULL is only allowed for Nullable(...) types")
    if base == "Array" and args:
        if isinstance(value, str | bytes) or not isinstance(value, list | tuple):
            raise _wrong(name, type_text, value, "expected a list")
        return [coerce(name, args[0], item) for item in value]
    if base in _TEXT or base.startswith("Enum"):
        if isinstance(value, uuid.UUID) and base == "UUID":
            return str(value)
        if not isinstance(value, str):
            raise _wrong(name, type_text, value, f"expected text, not {type(value).__name__}")
        return value
    if match := _INT.match(base):
        return _integer(name, type_text, value, unsigned=bool(match.group(1)), bits=match[2])
    if base in _FLOAT or _DECIMAL.match(base):
        return _number(name, type_text, value)
    if base == "Bool":
        return _boolean(name, type_text, value)
    if base in _TIME:
        return _moment(name, type_text, value)
    if base in _DAY:
        return _day(name, type_text, value)
    return value  # Map, Tuple, JSON, ...: ClickHouse checks them when it binds the value


def split_type(type_text: str) -> tuple[str, list[str]]:
    """`Array(Nullable(String))` -> ('Array', ['Nullable(String)']); top-level commas split."""
    text = type_text.strip()
    head, paren, rest = text.partition("(")
    if not paren:
        return text, []
    body = rest[: rest.rfind(")")] if ")" in rest else rest
    args: list[str] = []
    depth, start, quote = 0, 0, ""
    for i, ch in enumerate(body):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"`":
            quote = ch
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            args.append(body[start:i].strip())
            start = i + 1
    args.append(body[start:].strip())
    return head.strip(), [a for a in args if a]


def _wrong(name: str, type_text: str, value: object, problem: str) -> ParameterError:
    return ParameterError(name, type_text, value, problem)


def _integer(name: str, type_text: str, value: Any, *, unsigned: bool, bits: str) -> int:
    if isinstance(value, bool):
        raise _wrong(name, type_text, value, "expected an integer, not a boolean")
    if isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            raise _wrong(name, type_text, value, "expected an integer") from None
    if not isinstance(value, int):
        raise _wrong(name, type_text, value, f"expected an integer, not {type(value).__name__}")
    width = int(bits)
    low, high = (0, 2**width - 1) if unsigned else (-(2 ** (width - 1)), 2 ** (width - 1) - 1)
    if not low <= value <= high:
        raise _wrong(name, type_text, value, f"out of range [{low}, {high}]")
    return value


def _number(name: str, type_text: str, value: Any) -> int | float | Decimal:
    if isinstance(value, bool):
        raise _wrong(name, type_text, value, "expected a number, not a boolean")
    if isinstance(value, int | float | Decimal):
        return value
    if isinstance(value, str):
        try:
            return Decimal(value.strip()) if "Decimal" in type_text else float(value)
        except (ValueError, InvalidOperation):
            raise _wrong(name, type_text, value, "expected a number") from None
    raise _wrong(name, type_text, value, f"expected a number, not {type(value).__name__}")


def _boolean(name: str, type_text: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0"):
        return value.strip().lower() in ("true", "1")
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise _wrong(name, type_text, value, "expected true or false")


def parse_moment(text: str) -> datetime | None:
    """An ISO-8601 date or time as an aware UTC datetime (naive means UTC); None if not one."""
    try:
        moment = datetime.fromisoformat(text.strip())
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except (ValueError, OverflowError):  # not a time, or one outside years 1-9999 in UTC
        return None


def _moment(name: str, type_text: str, value: Any) -> datetime:
    if isinstance(value, datetime):
        try:
            return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        except OverflowError:
            raise _wrong(name, type_text, value, "outside years 1-9999 in UTC") from None
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    if isinstance(value, str) and (moment := parse_moment(value)) is not None:
        return moment
    raise _wrong(name, type_text, value, "expected a datetime or an ISO-8601 time")


def _day(name: str, type_text: str, value: Any) -> date:
    if isinstance(value, datetime):
        return _moment(name, type_text, value).date()
    if isinstance(value, date):
        return value
    if isinstance(value, str) and (moment := parse_moment(value)) is not None:
        return moment.date()
    raise _wrong(name, type_text, value, "expected a date or an ISO-8601 date")
