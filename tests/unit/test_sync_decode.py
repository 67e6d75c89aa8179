"""Decoding stream records, Kafka events and CDC messages into ClickHouse rows.

The stream records below are written by hand in the shapes boto3's low-level
`dynamodbstreams.get_records` returns (DynamoDB JSON images), including both TTL shapes: real
AWS (`REMOVE` + a service `userIdentity`) and DynamoDB Local 3.3 (`UNKNOWN_TO_SDK_VERSION`).
"""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from boto3.dynamodb.types import TypeSerializer
from hypothesis import given, settings
from hypothesis import strategies as st

from footfall import Activity, ConfigError, FootfallError, StoreError
from footfall._table import activity_to_item
from sync._batch import rows_to_arrow
from sync._decode import (
    MAX_EVENT_BYTES,
    EventPosition,
    Poison,
    Retention,
    Row,
    RowChange,
    Skip,
    StreamPosition,
    cdc_key,
    decode_cdc,
    decode_event,
    decode_stream_record,
    encode_cdc,
    flatten_attributes,
)

TS_MS = 1795971600123  # 2026-11-29T17:00:00.123Z
NOW = datetime(2026, 11, 29, 18, 0, tzinfo=UTC)
SHARD = "shardId-00000001795971000000-5f1c2a7b"
EVENT_ID = "01JDXQ7ZK3M8N4P6R2S5T9V0WY"
SK = f"{TS_MS}#{EVENT_ID}"

IMAGE: dict[str, Any] = {
    "actor": {"S": "bob"},
    "sk": {"S": SK},
    "type": {"S": "store-pageviews"},
    "target": {"S": "/store/products/goji"},
    "ts": {"N": str(TS_MS)},
    "event_id": {"S": EVENT_ID},
    "rev": {"N": "1795971600200"},
    "type_target": {"S": "store-pageviews#/store/products/goji#3"},
    "actor_type": {"S": "bob#store-pageviews"},
    "attributes": {
        "M": {
            "browser": {"S": "Chrome"},
            "price": {"N": "12.5"},
            "qty": {"N": "2"},
            "gift": {"BOOL": False},
            "coupon": {"NULL": True},
            "tags": {"SS": ["sale", "new"]},
            "sizes": {"NS": ["42", "7.5"]},
            "path": {"L": [{"S": "/"}, {"N": "1"}]},
            "geo": {"M": {"country": {"S": "IT"}}},
        }
    },
}
FLAT = {
    "browser": "Chrome",
    "price": "12.5",
    "qty": "2",
    "gift": "false",
    "coupon": "null",
    "tags": '["new","sale"]',
    "sizes": "[7.5,42]",
    "path": '["/",1]',
    "geo": '{"country":"IT"}',
}
KEYS = {"actor": {"S": "bob"}, "sk": {"S": SK}}


def record(
    name: str,
    *,
    new: Any = None,
    old: Any = None,
    seq: str = "4421584500000000017450439091",
    **extra: Any,
) -> dict[str, Any]:
    stream: dict[str, Any] = {
        "ApproximateCreationDateTime": datetime(2026, 11, 29, 17, 0, 1, tzinfo=UTC),
        "Keys": KEYS,
        "SequenceNumber": seq,
        "SizeBytes": 412,
        "StreamViewType": "NEW_AND_OLD_IMAGES",
    }
    if new is not None:
        stream["NewImage"] = new
    if old is not None:
        stream["OldImage"] = old
    return {
        "eventID": "c81e728d9d4c2f636f067f89cc14862c",
        "eventName": name,
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "eu-west-1",
        "dynamodb": stream,
        **extra,
    }


def image(**changes: Any) -> dict[str, Any]:
    out = copy.deepcopy(IMAGE)
    for name, value in changes.items():
        if value is None:
            del out[name]
        else:
            out[name] = value
    return out


def row_of(change: object) -> Row:
    assert isinstance(change, RowChange), change
    return change.row


def poison_reason(change: object) -> str:
    assert isinstance(change, Poison), change
    return change.reason


# -- stream records: each event kind --------------------------------------------------------


def test_insert_becomes_an_upsert_row_with_rev_as_version_and_flattened_attributes() -> None:
    change = decode_stream_record(record("INSERT", new=IMAGE), shard_id=SHARD)
    assert change == RowChange(
        Row(
            EVENT_ID,
            "bob",
            "store-pageviews",
            "/store/products/goji",
            TS_MS,
            FLAT,
            "dynamodb",
            1795971600200,
            0,
        ),
        StreamPosition(SHARD, "4421584500000000017450439091"),
    )


def test_modify_mirrors_the_new_image_and_its_rev() -> None:
    new = image(rev={"N": "1795971600201"}, attributes={"M": {"browser": {"S": "Firefox"}}})
    row = row_of(decode_stream_record(record("MODIFY", new=new, old=IMAGE), shard_id=SHARD))
    assert (row.version, row.is_deleted, row.attributes) == (
        1795971600201,
        0,
        {"browser": "Firefox"},
    )


def test_user_remove_becomes_a_tombstone_of_the_old_image_with_rev_plus_one() -> None:
    change = decode_stream_record(record("REMOVE", old=IMAGE), shard_id=SHARD)
    row = row_of(change)
    assert (row.version, row.is_deleted) == (1795971600201, 1)
    assert (row.event_id, row.actor, row.ts_ms, row.attributes) == (EVENT_ID, "bob", TS_MS, FLAT)


def test_remove_by_a_user_principal_is_a_tombstone_not_retention() -> None:
    who = {"PrincipalId": "AIDAJDPLRKLG7UEXAMPLE", "Type": "User"}
    row = row_of(
        decode_stream_record(record("REMOVE", old=IMAGE, userIdentity=who), shard_id=SHARD)
    )
    assert row.is_deleted == 1


@pytest.mark.parametrize(
    "identity",
    [
        {"PrincipalId": "dynamodb.amazonaws.com", "Type": "Service"},  # boto3's spelling
        {"principalId": "dynamodb.amazonaws.com", "type": "Service"},  # Lambda's spelling
    ],
)
def test_aws_ttl_remove_is_retention_never_a_tombstone(identity: dict[str, str]) -> None:
    change = decode_stream_record(
        record("REMOVE", old=IMAGE, userIdentity=identity), shard_id=SHARD
    )
    assert change == Retention(StreamPosition(SHARD, "4421584500000000017450439091"))


def test_dynamodb_local_ttl_expiry_record_is_retention() -> None:
    rec = record("UNKNOWN_TO_SDK_VERSION", old=IMAGE, seq="000000000000000000042")
    rec["awsRegion"] = "ddblocal"
    change = decode_stream_record(rec, shard_id="shardId-00000001795970000000-3f9d")
    assert change == Retention(
        StreamPosition("shardId-00000001795970000000-3f9d", "000000000000000000042")
    )


def test_an_item_that_is_no_activity_is_skipped_with_a_reason() -> None:
    meta = {"actor": {"S": "_meta"}, "sk": {"S": "config#v1"}, "shards": {"N": "4"}}
    change = decode_stream_record(record("INSERT", new=meta), shard_id=SHARD)
    assert isinstance(change, Skip)
    assert "config#v1" in change.reason


def test_sequence_numbers_keep_their_zero_padding() -> None:
    change = decode_stream_record(
        record("INSERT", new=IMAGE, seq="000000000000000000007"), shard_id="s"
    )
    assert isinstance(change, RowChange)
    assert change.position.sequence_number == "000000000000000000007"


# -- stream records: poison -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("rec", "reason"),
    [
        (record("INSERT", new=image(target=None)), "lacks field(s) target"),
        (record("INSERT", new=image(rev=None)), "lacks field(s) rev"),
        (record("INSERT", new=image(ts={"N": "1795971600999"})), "does not match"),
        (record("INSERT", new=image(ts={"S": "yesterday"})), "ts must be a whole number"),
        (record("INSERT", new=image(rev={"N": "-1"})), "rev must be a whole number"),
        (record("INSERT", new=image(rev={"N": "1.5"})), "rev must be a whole number"),
        (record("INSERT", new=image(type={"S": "has space"})), "invalid type"),
        (record("INSERT", new=image(actor={"N": "5"})), "invalid actor"),
        (record("INSERT", new=image(attributes={"S": "x"})), "attributes must be a map"),
        (record("INSERT", new=image(attributes={"M": {"rev": {"N": "1"}}})), "footfall's own"),
        (record("INSERT", new=image(attributes={"M": {"b": {"B": b"\x00"}}})), "plain data"),
        (record("INSERT", new=image(attributes={"M": {"n": {"N": "abc"}}})), "NaN"),
        (record("INSERT", new=image(attributes={"M": {"n": {"N": "sNaN"}}})), "not finite"),
        (record("INSERT", new=image(attributes={"M": {"n": {"N": "-Infinity"}}})), "not finite"),
        (record("INSERT", new=image(attributes={"M": {"n": {"N": "1e-200"}}})), "undecodable"),
        (record("INSERT", new=image(attributes={"M": {"n": {"Q": "1"}}})), "undecodable"),
        (record("INSERT"), "INSERT record without a NewImage"),
        (record("REMOVE"), "REMOVE record without a OldImage"),
        (record("TRUNCATE", new=IMAGE), "unknown eventName 'TRUNCATE'"),
        (record("UNKNOWN_TO_SDK_VERSION", new=IMAGE, old=IMAGE), "unknown eventName"),
        (
            record("MODIFY", new=image(type={"S": "other"}), old=IMAGE),
            "changed immutable field(s) type",
        ),
    ],
)
def test_malformed_activity_records_are_poison_with_the_reason(
    rec: dict[str, Any], reason: str
) -> None:
    change = decode_stream_record(rec, shard_id=SHARD)
    assert reason in poison_reason(change)
    assert change.position == StreamPosition(SHARD, rec["dynamodb"]["SequenceNumber"])


def test_a_record_without_a_sequence_number_is_a_store_error() -> None:
    rec = record("INSERT", new=IMAGE)
    del rec["dynamodb"]["SequenceNumber"]
    with pytest.raises(StoreError):
        decode_stream_record(rec, shard_id=SHARD)


def test_a_stream_without_old_images_is_a_config_error() -> None:
    rec = record("INSERT", new=IMAGE)
    rec["dynamodb"]["StreamViewType"] = "NEW_IMAGE"
    with pytest.raises(ConfigError):
        decode_stream_record(rec, shard_id=SHARD)


def test_stream_and_kafka_paths_give_the_same_row_for_the_same_activity() -> None:
    activity = Activity(
        actor="ann",
        type="store-buy",
        target="/p/1",
        ts=NOW - timedelta(hours=1),
        attributes={"n": 3, "f": 0.25, "s": {"b", "a"}, "m": {"k": [1, "x"]}, "t": True},
    )
    item = activity_to_item(activity, shards=4, rev=9)
    new = TypeSerializer().serialize(item)["M"]
    from_stream = row_of(decode_stream_record(record("INSERT", new=new), shard_id=SHARD))
    from_kafka = decode_event(activity.to_json(), partition=0, offset=0, now=NOW)
    assert isinstance(from_kafka, Row)
    assert from_stream == from_kafka._replace(source="dynamodb", version=9)


# -- Kafka events ---------------------------------------------------------------------------


def event(**changes: Any) -> bytes:
    data: dict[str, Any] = {
        "event_id": EVENT_ID,
        "actor": "bob",
        "type": "store-pageviews",
        "target": "/store/products/goji",
        "ts": "2026-11-29T17:00:00.123Z",
        "attributes": {"browser": "Chrome", "n": 2, "tags": ["a", "b"], "ok": True, "x": None},
    }
    for name, value in changes.items():
        if value is ...:
            del data[name]
        else:
            data[name] = value
    return json.dumps(data).encode()


def test_an_event_becomes_a_kafka_row_with_version_zero() -> None:
    row = decode_event(event(), partition=3, offset=17, now=NOW)
    attributes = {"browser": "Chrome", "n": "2", "tags": '["a","b"]', "ok": "true", "x": "null"}
    assert row == Row(
        EVENT_ID, "bob", "store-pageviews", "/store/products/goji", TS_MS, attributes, "kafka", 0, 0
    )


def test_activity_to_json_round_trips_through_decode_event() -> None:
    activity = Activity(actor="ann", type="t", target="x", ts=NOW, attributes={"s": {"b", "a"}})
    row = decode_event(activity.to_json(), partition=0, offset=0, now=NOW)
    assert isinstance(row, Row)
    assert (row.event_id, row.ts_ms, row.attributes) == (
        activity.event_id,
        activity.ts_ms,
        {"s": '["a","b"]'},
    )


@pytest.mark.parametrize("attributes", [..., None, {}])
def test_attributes_may_be_omitted_null_or_empty(attributes: Any) -> None:
    row = decode_event(event(attributes=attributes), partition=0, offset=0, now=NOW)
    assert isinstance(row, Row)
    assert row.attributes == {}


def test_a_day_of_clock_skew_is_tolerated_more_is_poison() -> None:
    ahead = NOW + timedelta(hours=23)
    late = NOW + timedelta(hours=25)
    ok = decode_event(event(ts=ahead.isoformat()), partition=0, offset=0, now=NOW)
    bad = decode_event(event(ts=late.isoformat()), partition=0, offset=0, now=NOW)
    assert isinstance(ok, Row)
    assert "in the future" in poison_reason(bad)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"{not json", "not valid JSON"),
        (b'{"actor": "b\xff"}', "not valid UTF-8 (byte 12"),
        (b"[1, 2]", "expected a JSON object, got list"),
        (b"", "empty message value"),
        (None, "empty message value"),
        (b"[" * 100_000 + b"]" * 100_000, "not valid JSON"),
        (b'{"n": ' + b"9" * 5000 + b"}", "not valid JSON"),
        (event(actor=...), "missing field(s) actor"),
        (event(event_id=None), "missing field(s) event_id"),
        (event(actor=42), "invalid actor 42: must be a string"),
        (event(ts=1795971600123), "ts must be an ISO-8601 string"),
        (event(ts="yesterday"), "invalid ts 'yesterday'"),
        (event(ts="2026-11-29T17:00:00"), "must be timezone-aware"),
        (event(ts="1969-12-31T23:59:59.999Z"), "must lie in [1970-01-01"),
        (event(ts="0001-01-01T00:00:00+01:00"), "invalid ts"),
        (event(ts="3026-11-29T17:00:00Z"), "must lie in"),
        (event(type="no spaces allowed"), "invalid type"),
        (event(attributes=["a"]), "must be a mapping"),
        (event(attributes={"ts": 1}), "footfall's own names"),
        (event(attributes={"x": float("nan")}), "NaN"),
        (event(attributes={"x": "\ud800"}), "lone surrogate"),
        (event(version=3), "unknown field(s) version"),
        (event(attributes={"big": "x" * (401 * 1024)}), "over DynamoDB's item limit"),
    ],
)
def test_bad_events_are_poison_with_a_clear_reason(value: bytes | None, reason: str) -> None:
    result = decode_event(value, partition=2, offset=99, now=NOW)
    assert reason in poison_reason(result)
    assert isinstance(result, Poison)
    assert result.position == EventPosition(2, 99)


def test_oversize_payloads_are_refused_before_parsing() -> None:
    value = b"{" + b" " * MAX_EVENT_BYTES + b"broken"  # a parser would report invalid JSON
    reason = poison_reason(decode_event(value, partition=0, offset=0, now=NOW))
    assert "over the 1048576-byte limit" in reason


def test_poison_headers_carry_reason_and_position() -> None:
    result = decode_event(b"{", partition=4, offset=12, now=NOW)
    assert isinstance(result, Poison)
    headers = dict(result.headers())
    assert headers["footfall-position"] == b"4@12"
    assert headers["footfall-reason"].startswith(b"not valid JSON")


def test_flatten_keeps_strings_and_encodes_everything_else_compactly() -> None:
    from decimal import Decimal

    flat = flatten_attributes(
        {
            "s": "plain",
            "i": 1,
            "f": 0.5,
            "d": Decimal("2"),
            "e": Decimal("0.5"),
            "set": {3, 1},
            "u": ["é"],
        }
    )
    assert flat == {
        "s": "plain",
        "i": "1",
        "f": "0.5",
        "d": "2",
        "e": "0.5",
        "set": "[1,3]",
        "u": '["é"]',
    }


# -- footfall.cdc ---------------------------------------------------------------------------


def test_cdc_round_trips_a_change_and_keys_by_actor() -> None:
    change = decode_stream_record(record("REMOVE", old=IMAGE), shard_id=SHARD)
    assert isinstance(change, RowChange)
    value = encode_cdc(change)
    assert json.loads(value)["v"] == 1
    assert json.loads(value)["ts"] == TS_MS
    assert decode_cdc(value, partition=0, offset=5) == change
    assert cdc_key(change) == b"bob"


def cdc(**changes: Any) -> bytes:
    change = decode_stream_record(record("INSERT", new=IMAGE), shard_id=SHARD)
    assert isinstance(change, RowChange)
    data = json.loads(encode_cdc(change))
    data.update(changes)
    return json.dumps(data).encode()


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (cdc(v=2), "unknown CDC format version 2"),
        (cdc(actor=7), "must be non-empty strings"),
        (cdc(shard=""), "must be non-empty strings"),
        (cdc(ts="2026"), "must be integers"),
        (cdc(is_deleted=True), "must be integers"),
        (cdc(version=-1), "out of range"),
        (cdc(version=1 << 64), "out of range"),
        (cdc(ts=-5), "out of range"),
        (cdc(is_deleted=2), "out of range"),
        (cdc(attributes={"n": 1}), "string values"),
        (cdc(seq="abc"), "not a sequence number"),
        (cdc(actor="\ud800"), "lone surrogate"),
        (b"\x00\x01", "not valid JSON"),
    ],
)
def test_bad_cdc_messages_are_poison(value: bytes, reason: str) -> None:
    result = decode_cdc(value, partition=1, offset=8)
    assert reason in poison_reason(result)
    assert isinstance(result, Poison)
    assert result.position == EventPosition(1, 8)


# -- properties -----------------------------------------------------------------------------


def arrow_safe(results: list[object]) -> None:
    """Every row a decoder returns must convert to Arrow: one bad row would fail its batch."""
    rows = [r.row if isinstance(r, RowChange) else r for r in results]
    rows_to_arrow([r for r in rows if isinstance(r, Row)])


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
wire_like = st.fixed_dictionaries(
    {},
    optional={
        name: json_values | st.just("2026-11-29T17:00:00Z")
        for name in (
            "event_id",
            "actor",
            "type",
            "target",
            "ts",
            "attributes",
            "v",
            "shard",
            "seq",
            "version",
            "is_deleted",
        )
    },
)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300) | wire_like.map(lambda d: json.dumps(d).encode()))
def test_decoders_never_raise_on_arbitrary_bytes(value: bytes) -> None:
    event_result = decode_event(value, partition=0, offset=0)
    cdc_result = decode_cdc(value, partition=0, offset=0)
    assert isinstance(event_result, Row | Poison)
    assert isinstance(cdc_result, RowChange | Poison)
    arrow_safe([event_result, cdc_result])


dynamo_json = st.recursive(
    st.fixed_dictionaries({"S": st.text(max_size=5)})
    | st.fixed_dictionaries(
        {
            "N": st.sampled_from(
                ["1", "x", "1e999", "-0", "NaN", "sNaN", "Infinity", "1e-200", "2.5"]
            )
        }
    )
    | st.fixed_dictionaries({"BOOL": st.booleans()})
    | st.dictionaries(st.text(max_size=3), st.integers(), max_size=1),
    lambda inner: (
        st.fixed_dictionaries({"L": st.lists(inner, max_size=3)})
        | st.fixed_dictionaries({"M": st.dictionaries(st.text(max_size=4), inner, max_size=3)})
    ),
    max_leaves=6,
)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(["INSERT", "MODIFY", "REMOVE", "UNKNOWN_TO_SDK_VERSION", None, 3]),
    st.dictionaries(st.sampled_from(sorted(IMAGE)), dynamo_json, max_size=9),
    st.booleans(),
)
def test_stream_decoding_of_garbage_raises_nothing_but_footfall_errors(
    name: Any, garbage: dict[str, Any], mutate_valid: bool
) -> None:
    base = {**IMAGE, **garbage} if mutate_valid else garbage
    rec = record("x", new=base, old=base)
    rec["eventName"] = name
    try:
        result = decode_stream_record(rec, shard_id=SHARD)
    except FootfallError:
        return
    assert isinstance(result, RowChange | Retention | Skip | Poison)
    arrow_safe([result])


rows = st.builds(
    Row,
    event_id=st.from_regex(r"[!-~]{1,20}", fullmatch=True),
    actor=st.text(min_size=1, max_size=10),
    type=st.from_regex(r"[A-Za-z0-9_.:-]{1,10}", fullmatch=True),
    target=st.text(min_size=1, max_size=10),
    ts_ms=st.integers(0, 4_102_444_799_999),
    attributes=st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=4),
    source=st.just("dynamodb"),
    version=st.integers(0, (1 << 64) - 1),
    is_deleted=st.sampled_from([0, 1]),
)


@settings(deadline=None)
@given(rows, st.from_regex(r"[0-9]{1,30}", fullmatch=True))
def test_cdc_round_trips_any_row(row: Row, seq: str) -> None:
    change = RowChange(row, StreamPosition(SHARD, seq))
    assert decode_cdc(encode_cdc(change), partition=0, offset=0) == change


@settings(max_examples=300, deadline=None)
@given(dynamo_json)
def test_any_attribute_value_in_an_image_gives_a_row_or_poison(value: dict[str, Any]) -> None:
    rec = record("INSERT", new=image(attributes={"M": {"x": value}}))
    result = decode_stream_record(rec, shard_id=SHARD)
    assert isinstance(result, RowChange | Poison)
    arrow_safe([result])


def test_dynamodb_local_empty_maps_written_as_bare_braces_decode_as_empty_maps() -> None:
    # Recorded from DynamoDB Local 3.3: an empty map attribute arrives as `{}` in the image.
    record = {
        "eventID": "bad458be",
        "eventName": "INSERT",
        "dynamodb": {
            "Keys": {"actor": {"S": "ttl-actor"}, "sk": {"S": "1795715764510#01M8M7698Y8DR3"}},
            "NewImage": {
                "actor": {"S": "ttl-actor"},
                "rev": {"N": "1795974964510"},
                "event_id": {"S": "01M8M7698Y8DR3"},
                "sk": {"S": "1795715764510#01M8M7698Y8DR3"},
                "attributes": {},
                "type": {"S": "pv"},
                "target": {"S": "/old"},
                "ts": {"N": "1795715764510"},
                "nested": {"M": {"inner": {}, "list": {"L": [{}]}}},
            },
            "SequenceNumber": "000000000000000018114",
            "StreamViewType": "NEW_AND_OLD_IMAGES",
        },
    }
    change = decode_stream_record(record, shard_id="s")
    assert isinstance(change, RowChange)
    assert change.row.attributes == {}
