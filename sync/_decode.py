"""Decode what the sources deliver into ClickHouse rows (pure: no I/O).

Three inputs, one output type (`Row`, the columns of the ClickHouse table `activities`):
- `decode_stream_record`: a DynamoDB Streams record as boto3's low-level `get_records` returns
  it → `RowChange` (INSERT/MODIFY upsert, or a user REMOVE as a tombstone), `Retention` (a TTL
  expiry: counted, never mirrored, never dead-lettered), `Skip` (an item that is no activity) or
  `Poison` (a malformed activity: the runner dead-letters it).
- `decode_event`: a raw Kafka event in the Activity wire form (`Activity.to_json()`) → `Row` with
  source 'kafka' and version 0, or `Poison`.
- `decode_cdc`: a `footfall.cdc` message written by `encode_cdc` → `RowChange` or `Poison`.

Bad input never raises: it becomes a `Poison` whose `reason` says what is wrong (it goes into the
DLQ record's headers). Every `Row` returned converts to Arrow (valid UTF-8, ts in [1970, 2100),
version within UInt64), so one bad record cannot fail a whole batch.

CDC wire format (topic `footfall.cdc`, key `cdc_key()` = the actor): one compact UTF-8 JSON
object per message, the stream position plus the decoded row (attributes already flattened, `ts`
in epoch ms; `v` is the format version, readers refuse others):

    {"v":1,"shard":"shardId-00000001-7d2c1a3b","seq":"000000000000000000042",
     "event_id":"01JD3...","actor":"bob","type":"store-pageviews","target":"/p/goji",
     "ts":1795971600123,"attributes":{"browser":"Chrome","n":"3"},
     "version":1795971600200,"is_deleted":0}
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Final, Literal, NamedTuple, TypeAlias

from boto3.dynamodb.types import TypeDeserializer  # the only boto3 import of sync

from footfall import Activity, ConfigError, InvalidActivity, StoreError
from footfall._activity import EARLIEST, LATEST
from footfall._table import from_dynamo, sort_key

from ._event_check import SCALAR_TEXT, future_limit, plain_event, plain_item

__all__ = [
    "MAX_EVENT_BYTES",
    "Change",
    "EventPosition",
    "Poison",
    "Retention",
    "Row",
    "RowChange",
    "Skip",
    "StreamPosition",
    "cdc_key",
    "decode_cdc",
    "decode_event",
    "decode_event_object",
    "decode_stream_record",
    "encode_cdc",
    "flatten_attributes",
]

MAX_EVENT_BYTES: Final = 1 << 20  # 1 MiB, checked before parsing
MAX_VERSION: Final = (1 << 64) - 1
TTL_PRINCIPAL: Final = "dynamodb.amazonaws.com"
DYNAMODB_LOCAL_EXPIRY: Final = "UNKNOWN_TO_SDK_VERSION"  # DynamoDB Local 3.3's TTL eventName
CDC_FORMAT: Final = 1
_MAX_TS_MS: Final = int((LATEST - EARLIEST).total_seconds()) * 1000  # exclusive
_STORED: Final = datetime.max.replace(tzinfo=UTC) - timedelta(days=2)  # no "future" check

_EVENT_FIELDS: Final = ("event_id", "actor", "type", "target", "ts")
_WIRE_FIELDS: Final = frozenset({*_EVENT_FIELDS, "attributes"})
_ITEM_FIELDS: Final = ("actor", "type", "target", "ts", "event_id", "rev")
_IMMUTABLE: Final = ("type", "target", "ts", "event_id")
_CDC_TEXT: Final = ("shard", "seq", "event_id", "actor", "type", "target")
_CDC_INTS: Final = ("ts", "version", "is_deleted")
_SORT_KEY: Final = re.compile(r"\d{13}#.+", re.DOTALL)
_SURROGATE_ESCAPE: Final = re.compile(rb"\\u[dD][89a-fA-F]")
_DESERIALIZER: Final = TypeDeserializer()


class Row(NamedTuple):
    """One row of ClickHouse `activities`, in column order (`ts_ms` feeds the `ts` column)."""

    event_id: str
    actor: str
    type: str
    target: str
    ts_ms: int
    attributes: dict[str, str]
    source: Literal["dynamodb", "kafka"]
    version: int
    is_deleted: int


class EventPosition(NamedTuple):
    """A Kafka message: its partition (the lane) and offset."""

    partition: int
    offset: int


class StreamPosition(NamedTuple):
    """A DynamoDB stream record: its shard (the lane) and sequence number (decimal digits)."""

    shard_id: str
    sequence_number: str


@dataclass(frozen=True, slots=True)
class RowChange:
    """An upsert (`row.is_deleted == 0`) or a tombstone (`1`) to mirror."""

    row: Row
    position: StreamPosition


@dataclass(frozen=True, slots=True)
class Retention:
    """A TTL expiry: analytics keep their history; count it and checkpoint past it."""

    position: StreamPosition


@dataclass(frozen=True, slots=True)
class Skip:
    """A change of an item that is no activity (e.g. a metadata item): nothing to mirror."""

    position: StreamPosition
    reason: str


@dataclass(frozen=True, slots=True)
class Poison:
    """A record that cannot be decoded; the runner sends it to `footfall.dlq` with `reason`."""

    position: EventPosition | StreamPosition
    reason: str

    def headers(self) -> list[tuple[str, bytes]]:
        """Kafka headers for the DLQ record: the reason and where the record came from."""
        where = "{}@{}".format(*self.position).encode("utf-8", "backslashreplace")
        return [
            ("footfall-reason", self.reason.encode("utf-8", "backslashreplace")),
            ("footfall-position", where),
        ]


Change: TypeAlias = RowChange | Retention | Skip | Poison


class _Bad(Exception):
    """Internal: the record is poison; the message is the reason."""


def _json_default(value: object) -> object:
    if isinstance(value, set | frozenset):
        return sorted(value)
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    raise TypeError(f"{type(value).__name__} is not JSON data")


_ENCODE: Final = json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":"), allow_nan=False, default=_json_default
).encode


def flatten_attributes(attributes: Mapping[str, Any]) -> dict[str, str]:
    """`Map(String, String)` values, keys sorted (the same map whichever source wrote it):
    strings as is, else compact JSON (sets as sorted lists, Decimals as int or float).
    Validates nothing: check the attributes with `Activity` first."""
    text = SCALAR_TEXT.get
    return {
        k: v if type(v) is str else text(type(v), _ENCODE)(v) for k, v in sorted(attributes.items())
    }


# -- Kafka events -----------------------------------------------------------------------------


def decode_event(
    value: bytes | None, *, partition: int, offset: int, now: datetime | None = None
) -> Row | Poison:
    """A raw event (`Activity.to_json()` form) → a row with source 'kafka', version 0.

    `Activity`'s rules apply (`now` pins the clock of the 1-day future limit). `attributes` may
    be omitted or null; unknown top-level fields are refused, so a misspelled field is not
    silently dropped.
    """
    try:
        data = _parse_object(value)
    except _Bad as exc:
        return Poison(EventPosition(partition, offset), str(exc))
    return decode_event_object(data, len(value or b""), partition=partition, offset=offset, now=now)


def decode_event_object(
    data: dict[str, Any], raw_bytes: int, *, partition: int, offset: int, now: datetime | None
) -> Row | Poison:
    """`decode_event` of an event already parsed from `raw_bytes` of JSON (a line of a pack)."""
    try:
        return _event_row(data, raw_bytes, now)
    except (_Bad, InvalidActivity) as exc:
        reason = str(exc)
    except (ValueError, OverflowError) as exc:  # datetime arithmetic at the edges of time
        reason = f"invalid ts: {exc}"
    return Poison(EventPosition(partition, offset), reason)


def _event_row(data: dict[str, Any], raw_bytes: int, now: datetime | None) -> Row:
    get = data.get
    if None in (get("event_id"), get("actor"), get("type"), get("target"), get("ts")):
        missing = ", ".join(f for f in _EVENT_FIELDS if get(f) is None)
        raise _Bad(f"missing field(s) {missing}; expected the Activity.to_json() form")
    if len(data) > 5 and not _WIRE_FIELDS.issuperset(data):
        unknown = ", ".join(sorted(set(data) - _WIRE_FIELDS))
        raise _Bad(f"unknown field(s) {unknown}; put free values into 'attributes'")
    ts_text = data["ts"]
    if type(ts_text) is not str:
        raise _Bad(f"ts must be an ISO-8601 string like 2026-11-29T17:00:00.123Z, not {ts_text!r}")
    try:
        ts = datetime.fromisoformat(ts_text)
    except ValueError:
        raise _Bad(f"invalid ts {ts_text[:40]!r}: expected e.g. 2026-11-29T17:00:00.123Z") from None
    event_id, actor, type_, target = data["event_id"], data["actor"], data["type"], data["target"]
    plain = plain_event(data, ts, future_limit(now), raw_bytes)
    if plain is not None:
        return Row(event_id, actor, type_, target, plain[0], plain[1], "kafka", 0, 0)
    # not plainly valid: Activity decides (and says why not)
    attributes = data.get("attributes")
    ts_ms = Activity(
        actor=actor,
        type=type_,
        target=target,
        ts=ts,
        event_id=event_id,
        attributes=attributes,
        now=now,
    ).ts_ms
    flat = flatten_attributes(attributes) if attributes else {}
    return Row(event_id, actor, type_, target, ts_ms, flat, "kafka", 0, 0)


def _parse_object(value: bytes | None) -> dict[str, Any]:
    if not value:
        raise _Bad("empty message value (a Kafka tombstone?); expected a JSON object")
    if len(value) > MAX_EVENT_BYTES:
        raise _Bad(f"message of {len(value)} bytes is over the {MAX_EVENT_BYTES}-byte limit")
    try:
        data = json.loads(str(value, "utf-8"))
    except UnicodeDecodeError as exc:
        raise _Bad(f"not valid UTF-8 (byte {exc.start}: {exc.reason})") from None
    except (ValueError, RecursionError) as exc:
        raise _Bad(f"not valid JSON: {exc}") from None
    if type(data) is not dict:
        raise _Bad(f"expected a JSON object, got {type(data).__name__}")
    return data


# -- DynamoDB stream records ------------------------------------------------------------------


def decode_stream_record(record: Mapping[str, Any], *, shard_id: str) -> Change:
    """Classify one record of `get_records(...)["Records"]` read from shard `shard_id`.

    Raises only `StoreError` for a record without a sequence number (a broken response, with no
    position to checkpoint or dead-letter) and `ConfigError` when the stream's view type is not
    `NEW_AND_OLD_IMAGES` (tombstones need the old image: fix the table).
    """
    stream = record.get("dynamodb") if isinstance(record, Mapping) else None
    stream = stream if isinstance(stream, Mapping) else {}
    seq = stream.get("SequenceNumber")
    if not isinstance(seq, str) or not seq.isdigit():
        problem = f"a stream record without a valid dynamodb.SequenceNumber ({seq!r})"
        raise StoreError("dynamodb-streams", problem, code="MalformedRecord")
    position = StreamPosition(shard_id, seq)
    if (view := stream.get("StreamViewType")) not in (None, "NEW_AND_OLD_IMAGES"):
        raise ConfigError("StreamViewType", view, "NEW_AND_OLD_IMAGES (see table_definition)")
    name = record.get("eventName")
    if _is_expiry(record, name, stream):
        return Retention(position)
    if name == "INSERT" or name == "MODIFY":
        wanted, bump = "NewImage", 0
    elif name == "REMOVE":
        wanted, bump = "OldImage", 1
    else:
        return Poison(position, f"unknown eventName {name!r}; expected INSERT, MODIFY or REMOVE")
    image = stream.get(wanted)
    if not isinstance(image, Mapping):
        return Poison(position, f"{name} record without a {wanted}")
    if name == "MODIFY" and isinstance(old := stream.get("OldImage"), Mapping):
        changed = [f for f in _IMMUTABLE if f in old and old.get(f) != image.get(f)]
        if changed:
            return Poison(position, f"MODIFY changed immutable field(s) {', '.join(changed)}")
    return _image_change(image, position, bump)


def _is_expiry(record: Mapping[str, Any], name: object, stream: Mapping[str, Any]) -> bool:
    if name == "REMOVE":
        who = record.get("userIdentity")
        if not isinstance(who, Mapping):
            return False
        kind = who.get("Type", who.get("type"))  # boto3 spells Type/PrincipalId, Lambda lower
        principal = who.get("PrincipalId", who.get("principalId"))
        return bool(kind == "Service" and principal == TTL_PRINCIPAL)
    return name == DYNAMODB_LOCAL_EXPIRY and "NewImage" not in stream


def _empty_maps(image: Mapping[str, Any]) -> dict[str, Any]:
    """DynamoDB Local 3.3 writes an empty map as `{}`, not `{"M": {}}`, in stream images."""
    return {k: _empty_map(v) for k, v in image.items()}


def _empty_map(value: Any) -> Any:
    if value == {}:
        return {"M": {}}
    if isinstance(value, dict) and len(value) == 1:
        if isinstance(nested := value.get("M"), dict):
            return {"M": _empty_maps(nested)}
        if isinstance(nested := value.get("L"), list):
            return {"L": [_empty_map(v) for v in nested]}
    return value


def _image_change(image: Mapping[str, Any], position: StreamPosition, bump: int) -> Change:
    """`bump` 0: the image's row as is; 1: its tombstone (version rev + 1, is_deleted 1)."""
    try:
        item = _DESERIALIZER.deserialize({"M": _empty_maps(image)})
    except Exception as exc:  # whatever the deserializer trips over in untrusted input
        return Poison(position, f"undecodable DynamoDB JSON: {type(exc).__name__}: {exc}")
    sk = item.get("sk")
    if not isinstance(sk, str) or not _SORT_KEY.fullmatch(sk):
        return Skip(position, f"not an activity: sort key {sk!r} is not <13-digit ms>#<event_id>")
    try:
        return RowChange(_item_row(item, sk, bump), position)
    except (_Bad, InvalidActivity) as exc:
        return Poison(position, str(exc))


def _item_row(item: dict[str, Any], sk: str, bump: int) -> Row:
    missing = [f for f in _ITEM_FIELDS if f not in item]
    if missing:
        raise _Bad(f"activity item {sk!r} lacks field(s) {', '.join(missing)}")
    ts_ms = _whole("ts", item["ts"], _MAX_TS_MS - 1)
    version = _whole("rev", item["rev"], MAX_VERSION - bump) + bump
    attributes = item.get("attributes", {})
    if not isinstance(attributes, dict):
        raise _Bad(f"attributes must be a map, not {type(attributes).__name__}")
    try:
        plain = from_dynamo(attributes)
    except ArithmeticError:  # Infinity, sNaN
        raise _Bad("attributes hold a number that is not finite") from None
    actor, type_, target, event_id = item["actor"], item["type"], item["target"], item["event_id"]
    flat = plain_item(actor, type_, target, event_id, plain)
    if flat is None:  # not plainly valid: Activity decides (and says why not)
        Activity(
            actor=actor,
            type=type_,
            target=target,
            ts=EARLIEST + timedelta(milliseconds=ts_ms),
            event_id=event_id,
            attributes=plain,
            now=_STORED,  # a stored activity was accepted once
        )
        flat = flatten_attributes(plain)
    if sk != sort_key(ts_ms, event_id):
        raise _Bad(f"sort key {sk!r} does not match ts {ts_ms} and event_id {event_id!r}")
    return Row(event_id, actor, type_, target, ts_ms, flat, "dynamodb", version, bump)


def _whole(field: str, value: object, high: int) -> int:
    if isinstance(value, Decimal) and value.is_finite() and 0 <= value <= high:
        number = int(value)
        if number == value:
            return number
    raise _Bad(f"{field} must be a whole number in [0, {high}], not {value!r}")


# -- footfall.cdc -----------------------------------------------------------------------------


def encode_cdc(change: RowChange) -> bytes:
    """The `footfall.cdc` message value for a change (format: see the module docstring)."""
    shard, seq = change.position
    message: dict[str, object] = {"v": CDC_FORMAT, "shard": shard, "seq": seq}
    message.update(zip(Row._fields, change.row, strict=True))
    message["ts"] = message.pop("ts_ms")
    del message["source"]
    return _ENCODE(message).encode()


def cdc_key(change: RowChange) -> bytes:
    """The `footfall.cdc` message key: the actor (the item's partition key)."""
    return change.row.actor.encode()


def decode_cdc(value: bytes | None, *, partition: int, offset: int) -> RowChange | Poison:
    """A `footfall.cdc` message → the change it carries, or `Poison` (wrong shape or types)."""
    try:
        change = _cdc_change(_parse_object(value))
        if value and _SURROGATE_ESCAPE.search(value):
            _ENCODE(change.row).encode()  # lone surrogates (Arrow cannot encode them) raise
    except _Bad as exc:
        return Poison(EventPosition(partition, offset), str(exc))
    except UnicodeEncodeError:
        return Poison(EventPosition(partition, offset), "a string holds a lone surrogate")
    return change


def _cdc_change(data: dict[str, Any]) -> RowChange:
    if data.get("v") != CDC_FORMAT:
        raise _Bad(f"unknown CDC format version {data.get('v')!r}; this reader knows 1")
    texts: list[Any] = [data.get(f) for f in _CDC_TEXT]
    if not all(type(s) is str and s for s in texts):
        raise _Bad(f"{', '.join(_CDC_TEXT)} must be non-empty strings")
    ints: list[Any] = [data.get(f) for f in _CDC_INTS]
    if not all(type(n) is int for n in ints):
        raise _Bad(f"{', '.join(_CDC_INTS)} must be integers")
    shard, seq, event_id, actor, type_, target = texts
    ts_ms, version, deleted = ints
    if not (0 <= ts_ms < _MAX_TS_MS and 0 <= version <= MAX_VERSION and deleted in (0, 1)):
        raise _Bad(f"out of range: ts={ts_ms}, version={version}, is_deleted={deleted}")
    attributes = data.get("attributes")
    if type(attributes) is not dict or not all(type(v) is str for v in attributes.values()):
        raise _Bad("attributes must be an object of string values")
    if not seq.isdigit():
        raise _Bad(f"seq {seq[:40]!r} is not a sequence number")
    row = Row(event_id, actor, type_, target, ts_ms, attributes, "dynamodb", version, deleted)
    return RowChange(row, StreamPosition(shard, seq))
