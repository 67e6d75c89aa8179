"""The Activity model and its validation rules (pure: no I/O, no drivers).

An activity is: `actor` did `type` on `target` at `ts`, with free `attributes`. `event_id` is its
identity (a ULID, time-ordered, generated unless the caller gives one). `actor, type, target, ts,
event_id` never change after creation; an update may change attributes only.

The limits follow from the DynamoDB layout (see `footfall._table`): a partition key holds at
most 2048 bytes and a sort key 1024, an item 400 KB.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, TypeAlias

from ulid import ULID

from ._errors import InvalidActivity

__all__ = [
    "MAX_ITEM_BYTES",
    "RESERVED_ATTRIBUTES",
    "Activity",
    "AttributeValue",
    "Attributes",
    "new_event_id",
    "to_utc",
]

# Plain data DynamoDB and JSON can both hold. Sets must be non-empty and of one kind.
AttributeValue: TypeAlias = (
    "str | int | float | Decimal | bool | list[AttributeValue]"
    " | dict[str, AttributeValue] | set[str] | set[int | float | Decimal] | None"
)
Attributes: TypeAlias = "dict[str, AttributeValue]"

MAX_KEY_PART_BYTES = 1024  # actor, target: each is part of a key
MAX_TYPE_CHARS = 128
MAX_EVENT_ID_CHARS = 128
MAX_ITEM_BYTES = 400 * 1024
MAX_DEPTH = 32  # DynamoDB's nesting limit for maps and lists
MAX_FUTURE = timedelta(days=1)  # tolerated clock skew of a producer
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)
# DynamoDB numbers: 38 significant digits, magnitude within 1e-130 .. 1e126
_NUMBER_MAX = Decimal("1e126")
_NUMBER_MIN = Decimal("1e-130")

_TYPE = re.compile(r"^[A-Za-z0-9_.:-]+$")
_EVENT_ID = re.compile(r"^[\x21-\x7e]+$")  # printable ASCII, no spaces

# Names footfall uses itself, in the DynamoDB item, the ClickHouse row or the query results.
RESERVED_ATTRIBUTES = frozenset(
    {
        "actor",
        "type",
        "target",
        "ts",
        "event_id",
        "attributes",
        "sk",
        "type_target",
        "actor_type",
        "expires_at",
        "version",
        "rev",
        "is_deleted",
        "source",
    }
)


def new_event_id() -> str:
    """A fresh, time-ordered event id (a ULID, 26 characters)."""
    return str(ULID())


def to_utc(value: datetime, field: str = "ts") -> datetime:
    """A timezone-aware datetime in UTC, truncated to milliseconds; naive ones are refused."""
    if not isinstance(value, datetime):
        raise InvalidActivity(field, value, "must be a datetime")
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidActivity(
            field, value, "must be timezone-aware; pass e.g. datetime.now(timezone.utc)"
        )
    try:
        utc = value.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00+01:00 lies before year 1 in UTC
        raise InvalidActivity(
            field, value, f"must lie in [{EARLIEST:%Y-%m-%d}, {LATEST:%Y-%m-%d}) UTC"
        ) from None
    return utc.replace(microsecond=utc.microsecond // 1000 * 1000)


class Activity:
    """One activity. Construct it with keyword arguments; it validates itself and is immutable.

    >>> a = Activity(actor="bob", type="store-pageviews", target="/store/products/goji",
    ...              attributes={"browser": "Chrome"})
    """

    __slots__ = ("_attributes", "actor", "event_id", "target", "ts", "type")

    actor: str
    type: str
    target: str
    ts: datetime
    event_id: str
    _attributes: Attributes

    def __init__(
        self,
        *,
        actor: str,
        type: str,
        target: str,
        ts: datetime | None = None,
        event_id: str | None = None,
        attributes: Mapping[str, Any] | None = None,
        now: datetime | None = None,
    ) -> None:
        _set = object.__setattr__
        _set(self, "actor", _key_part("actor", actor))
        _set(self, "type", _check_type(type))
        _set(self, "target", _key_part("target", target))
        _set(self, "ts", _check_ts(ts, now))
        _set(self, "event_id", new_event_id() if event_id is None else _check_event_id(event_id))
        _set(self, "_attributes", check_attributes(attributes))
        size = self.approximate_size()
        if size > MAX_ITEM_BYTES:
            raise InvalidActivity(
                "attributes",
                f"<{size} bytes>",
                f"the activity is {size} bytes, over DynamoDB's item limit of "
                f"{MAX_ITEM_BYTES} bytes (400 KB); store large payloads elsewhere "
                "and keep a reference",
            )

    @property
    def attributes(self) -> Attributes:
        """A copy of the attributes (the activity itself stays unchanged)."""
        copied: Attributes = _copy(self._attributes)
        return copied

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"Activity is immutable; use with_attributes() (tried to set {name})")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("Activity is immutable")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Activity):
            return NotImplemented
        return self._identity() == other._identity() and self._attributes == other._attributes

    def __hash__(self) -> int:
        return hash(self._identity())

    def __repr__(self) -> str:
        return (
            f"Activity(actor={self.actor!r}, type={self.type!r}, target={self.target!r}, "
            f"ts={self.ts.isoformat()!r}, event_id={self.event_id!r}, "
            f"attributes={self._attributes!r})"
        )

    def _identity(self) -> tuple[str, str, str, datetime, str]:
        return (self.actor, self.type, self.target, self.ts, self.event_id)

    @property
    def ts_ms(self) -> int:
        """`ts` as milliseconds since the Unix epoch."""
        return _epoch_ms(self.ts)

    def with_attributes(self, **changes: Any) -> Activity:
        """A copy with attributes changed (a value of None removes nothing: it stores null)."""
        merged = dict(self._attributes)
        merged.update(changes)
        return Activity(
            actor=self.actor,
            type=self.type,
            target=self.target,
            ts=self.ts,
            event_id=self.event_id,
            attributes=merged,
            now=LATEST,  # an activity already accepted stays acceptable
        )

    def to_json_dict(self) -> dict[str, Any]:
        """The wire form used on Kafka topics: JSON-safe, `ts` as ISO-8601 UTC with ms."""
        return {
            "event_id": self.event_id,
            "actor": self.actor,
            "type": self.type,
            "target": self.target,
            "ts": format_ts(self.ts),
            "attributes": _jsonable(self._attributes),
        }

    def to_json(self) -> bytes:
        return json.dumps(self.to_json_dict(), separators=(",", ":"), ensure_ascii=False).encode()

    def approximate_size(self) -> int:
        """An upper estimate of the stored DynamoDB item's size in bytes, keys included."""
        fixed = 3 * len(self.actor.encode()) + 2 * len(self.type) + len(self.target.encode())
        fixed += 3 * len(self.event_id) + 200  # key strings, numbers, attribute names
        return fixed + _size(self._attributes)


def format_ts(ts: datetime) -> str:
    """ISO-8601 in UTC with milliseconds and a `Z`: `2026-11-29T17:00:00.123Z`."""
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


def _epoch_ms(ts: datetime) -> int:
    delta = ts - EARLIEST
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def _text(field: str, value: object) -> str:
    if not isinstance(value, str):
        raise InvalidActivity(field, value, f"must be a string, not {type(value).__name__}")
    if not value.strip():
        raise InvalidActivity(field, value, "must not be empty or only whitespace")
    return value


def _utf8_len(field: str, value: str) -> int:
    try:
        return len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidActivity(
            field, value, "must be valid Unicode text (it holds a lone surrogate)"
        ) from None


def _key_part(field: str, value: object) -> str:
    text = _text(field, value)
    if _utf8_len(field, text) > MAX_KEY_PART_BYTES:
        raise InvalidActivity(
            field,
            text,
            f"must be at most {MAX_KEY_PART_BYTES} UTF-8 bytes (it is part of a DynamoDB key); "
            "use a shorter identifier",
        )
    return text


def _check_type(value: object) -> str:
    text = _text("type", value)
    if len(text) > MAX_TYPE_CHARS or not _TYPE.match(text):
        raise InvalidActivity(
            "type",
            text,
            f"must be 1-{MAX_TYPE_CHARS} characters of A-Z a-z 0-9 _ . : - "
            "(a tracker name such as 'store-pageviews')",
        )
    return text


def _check_event_id(value: object) -> str:
    text = _text("event_id", value)
    if len(text) > MAX_EVENT_ID_CHARS or not _EVENT_ID.match(text):
        raise InvalidActivity(
            "event_id",
            text,
            f"must be 1-{MAX_EVENT_ID_CHARS} printable ASCII characters without spaces "
            "(omit it to get a generated ULID)",
        )
    return text


def _check_ts(value: datetime | None, now: datetime | None) -> datetime:
    current = datetime.now(UTC) if now is None else now
    if value is None:
        return to_utc(current)
    ts = to_utc(value)
    if ts < EARLIEST or ts >= LATEST:
        raise InvalidActivity(
            "ts", value, f"must lie in [{EARLIEST:%Y-%m-%d}, {LATEST:%Y-%m-%d}) UTC"
        )
    if ts > current + MAX_FUTURE:
        raise InvalidActivity(
            "ts",
            value,
            f"lies more than {MAX_FUTURE} in the future; check the producer's clock",
        )
    return ts


def check_attributes(value: Mapping[str, Any] | None) -> Attributes:
    """Validate and copy free attributes; raises InvalidActivity naming the bad one."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidActivity("attributes", value, "must be a mapping of names to values")
    out: Attributes = {}
    for name, item in value.items():
        if not isinstance(name, str) or not name:
            raise InvalidActivity("attributes", name, "attribute names must be non-empty strings")
        _utf8_len(f"attributes.{name!r}", name)
        if name in RESERVED_ATTRIBUTES:
            raise InvalidActivity(
                f"attributes.{name}",
                item,
                f"{name!r} is one of footfall's own names "
                f"({', '.join(sorted(RESERVED_ATTRIBUTES))}); rename the attribute",
            )
        out[name] = _check_value(f"attributes.{name}", item, 1)
    return out


def _check_value(field: str, value: Any, depth: int) -> AttributeValue:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        _utf8_len(field, value)
        return value
    if isinstance(value, int | float | Decimal):
        _check_number(field, value)
        return value
    if depth > MAX_DEPTH:
        raise InvalidActivity(field, "...", f"nests deeper than {MAX_DEPTH} levels")
    if isinstance(value, Mapping):
        nested: dict[str, AttributeValue] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidActivity(field, key, "map keys must be strings")
            _utf8_len(field, key)
            nested[key] = _check_value(f"{field}.{key}", item, depth + 1)
        return nested
    if isinstance(value, list | tuple):
        return [_check_value(f"{field}[{i}]", item, depth + 1) for i, item in enumerate(value)]
    if isinstance(value, set | frozenset):
        return _check_set(field, value)
    raise InvalidActivity(
        field,
        value,
        f"values must be plain data (str, int, float, bool, None, list, dict, set), "
        f"not {type(value).__name__}; convert it first",
    )


def _check_number(field: str, value: int | float | Decimal) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidActivity(field, value, "NaN and infinite numbers cannot be stored")
    try:
        number = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    except (InvalidOperation, ValueError):
        raise InvalidActivity(field, value, "is not a number DynamoDB can store") from None
    if not number.is_finite():
        raise InvalidActivity(field, value, "NaN and infinite numbers cannot be stored")
    magnitude = abs(number)
    if magnitude and (magnitude >= _NUMBER_MAX or magnitude < _NUMBER_MIN):
        raise InvalidActivity(field, value, "numbers must lie within 1e-130 .. 1e126 in magnitude")
    digits = "".join(map(str, number.as_tuple().digits)).strip("0")  # no context rounding
    if len(digits) > 38:
        raise InvalidActivity(field, value, "numbers may have at most 38 significant digits")


def _check_set(field: str, value: set[Any] | frozenset[Any]) -> AttributeValue:
    if not value:
        raise InvalidActivity(field, value, "empty sets cannot be stored; use a list or omit it")
    if all(isinstance(v, str) for v in value):
        for v in value:
            _utf8_len(field, v)
        return set(value)
    if all(isinstance(v, int | float | Decimal) and not isinstance(v, bool) for v in value):
        for v in value:
            _check_number(field, v)
        return set(value)
    raise InvalidActivity(
        field, value, "a set must hold only strings or only numbers; use a list for mixed values"
    )


def _size(value: Any) -> int:
    """DynamoDB's size rules, rounded up: strings by UTF-8 bytes, numbers ~21 bytes max."""
    if isinstance(value, str):
        return len(value.encode())
    if value is None or isinstance(value, bool):
        return 1
    if isinstance(value, int | float | Decimal):
        return 21
    if isinstance(value, dict):
        return 3 + sum(len(k.encode()) + 1 + _size(v) for k, v in value.items())
    if isinstance(value, list | set | frozenset):
        return 3 + sum(1 + _size(v) for v in value)
    return 0


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    if isinstance(value, set | frozenset):
        return set(value)
    return value


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, set | frozenset):
        return sorted(_jsonable(v) for v in value)
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value
