"""The Activity model: defaults, immutability, wire form, and every validation rule."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from footfall import Activity, InvalidActivity
from footfall._activity import MAX_ITEM_BYTES, RESERVED_ATTRIBUTES, format_ts


def make(**fields: object) -> Activity:
    base: dict[str, object] = {"actor": "bob", "type": "store-pageviews", "target": "/p/goji"}
    base.update(fields)
    return Activity(**base)  # type: ignore[arg-type]


def test_defaults_fill_event_id_and_utc_ms_timestamp() -> None:
    before = datetime.now(UTC) - timedelta(milliseconds=1)
    a = make()
    assert len(a.event_id) == 26  # a ULID
    assert a.ts.tzinfo is UTC and a.ts.microsecond % 1000 == 0
    assert before <= a.ts <= datetime.now(UTC)
    assert a.attributes == {}


def test_generated_event_ids_are_time_ordered_and_unique() -> None:
    ids = [make().event_id for _ in range(200)]
    assert len(set(ids)) == 200
    assert ids[0][:10] <= ids[-1][:10]  # the ULID's time part never goes back


def test_timestamps_are_normalised_to_utc_milliseconds() -> None:
    cet = timezone(timedelta(hours=1))
    a = make(ts=datetime(2026, 3, 1, 13, 0, 0, 123456, tzinfo=cet))
    assert a.ts == datetime(2026, 3, 1, 12, 0, 0, 123000, tzinfo=UTC)
    assert a.ts_ms == int(a.ts.timestamp() * 1000)


def test_activity_is_immutable_and_attributes_are_copies() -> None:
    a = make(attributes={"tags": ["a"]})
    with pytest.raises(AttributeError):
        a.actor = "eve"  # type: ignore[misc]
    a.attributes["tags"].append("b")  # type: ignore[union-attr]
    assert a.attributes == {"tags": ["a"]}


def test_with_attributes_keeps_identity() -> None:
    a = make(attributes={"browser": "Chrome"})
    b = a.with_attributes(browser="Firefox", plan="pro")
    assert (b.actor, b.type, b.target, b.ts, b.event_id) == (
        a.actor,
        a.type,
        a.target,
        a.ts,
        a.event_id,
    )
    assert b.attributes == {"browser": "Firefox", "plan": "pro"}
    assert a != b and hash(a) == hash(b)


def test_wire_form_is_compact_json_with_iso_ts() -> None:
    a = make(
        ts=datetime(2026, 11, 29, 17, 0, 0, 123000, tzinfo=UTC),
        event_id="e1",
        attributes={"n": Decimal("2"), "f": 1.5, "s": {"b", "a"}, "m": {"x": None}},
    )
    body = json.loads(a.to_json())
    assert body == {
        "event_id": "e1",
        "actor": "bob",
        "type": "store-pageviews",
        "target": "/p/goji",
        "ts": "2026-11-29T17:00:00.123Z",
        "attributes": {"n": 2, "f": 1.5, "s": ["a", "b"], "m": {"x": None}},
    }
    assert format_ts(a.ts) == body["ts"]


@pytest.mark.parametrize(
    ("fields", "field", "fragment"),
    [
        ({"actor": ""}, "actor", "empty"),
        ({"actor": "   "}, "actor", "empty"),
        ({"actor": 42}, "actor", "must be a string"),
        ({"actor": "x" * 1025}, "actor", "1024 UTF-8 bytes"),
        ({"actor": "é" * 513}, "actor", "1024 UTF-8 bytes"),
        ({"actor": "bad\ud800"}, "actor", "lone surrogate"),
        ({"target": ""}, "target", "empty"),
        ({"target": "t" * 1025}, "target", "1024 UTF-8 bytes"),
        ({"type": ""}, "type", "empty"),
        ({"type": "has space"}, "type", "A-Z a-z 0-9"),
        ({"type": "a#b"}, "type", "A-Z a-z 0-9"),
        ({"type": "t" * 129}, "type", "1-128"),
        ({"event_id": ""}, "event_id", "empty"),
        ({"event_id": "with space"}, "event_id", "printable ASCII"),
        ({"event_id": "x" * 129}, "event_id", "printable ASCII"),
        ({"ts": datetime(2026, 1, 1)}, "ts", "timezone-aware"),
        ({"ts": "2026-01-01"}, "ts", "must be a datetime"),
        ({"ts": datetime(1969, 12, 31, tzinfo=UTC)}, "ts", "must lie in"),
        ({"ts": datetime(2100, 1, 1, tzinfo=UTC)}, "ts", "must lie in"),
        ({"ts": datetime.now(UTC) + timedelta(days=2)}, "ts", "in the future"),
        ({"attributes": {"actor": "x"}}, "attributes.actor", "footfall's own names"),
        ({"attributes": {"rev": 1}}, "attributes.rev", "footfall's own names"),
        ({"attributes": {"": 1}}, "attributes", "non-empty strings"),
        ({"attributes": {1: 1}}, "attributes", "non-empty strings"),
        ({"attributes": {"x": math.nan}}, "attributes.x", "NaN"),
        ({"attributes": {"x": math.inf}}, "attributes.x", "NaN"),
        ({"attributes": {"x": Decimal("NaN")}}, "attributes.x", "NaN"),
        ({"attributes": {"x": 10**130}}, "attributes.x", "1e126"),
        ({"attributes": {"x": Decimal("1e-131")}}, "attributes.x", "1e-130"),
        ({"attributes": {"x": 1234567890123456789012345678901234567891}}, "attributes.x", "38"),
        ({"attributes": {"x": set()}}, "attributes.x", "empty sets"),
        ({"attributes": {"x": {"a", 1}}}, "attributes.x", "only strings or only numbers"),
        ({"attributes": {"x": object()}}, "attributes.x", "plain data"),
        ({"attributes": {"x": b"bytes"}}, "attributes.x", "plain data"),
        ({"attributes": {"x": {"k": [object()]}}}, "attributes.x.k[0]", "plain data"),
        ({"attributes": {"x": {1: "a"}}}, "attributes.x", "map keys must be strings"),
        ({"attributes": {"x": "bad\udfff"}}, "attributes.x", "lone surrogate"),
        ({"attributes": ["not", "a", "map"]}, "attributes", "mapping"),
        ({"attributes": {"x": "v" * (MAX_ITEM_BYTES + 1)}}, "attributes", "400"),
    ],
)
def test_each_rule_is_enforced_with_the_field_named(
    fields: dict[str, object], field: str, fragment: str
) -> None:
    with pytest.raises(InvalidActivity) as caught:
        make(**fields)
    assert caught.value.field == field
    assert fragment in str(caught.value)


def test_nesting_deeper_than_dynamodb_allows_is_refused() -> None:
    value: object = "leaf"
    for _ in range(40):
        value = [value]
    with pytest.raises(InvalidActivity, match="deeper than 32"):
        make(attributes={"deep": value})


def test_plain_data_of_every_kind_is_accepted() -> None:
    attributes = {
        "s": "x",
        "empty": "",
        "i": -3,
        "f": 0.25,
        "d": Decimal("1.10"),
        "b": True,
        "none": None,
        "list": [1, "a", [None]],
        "map": {"k": {"n": 1}},
        "ss": {"a", "b"},
        "ns": {1, 2.5},
    }
    assert make(attributes=attributes).attributes == attributes


def test_an_error_located_in_a_batch_names_its_index() -> None:
    error = InvalidActivity("actor", "", "must not be empty").at_index(7)
    assert error.index == 7 and str(error).startswith("activity #7:")


def test_reserved_names_cover_the_model_fields() -> None:
    assert {"actor", "type", "target", "ts", "event_id"} <= RESERVED_ATTRIBUTES


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**30), 10**30)
    | st.text(max_size=20)
    | st.floats(allow_nan=False, allow_infinity=False, width=32),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(
    actor=st.text(max_size=40),
    target=st.text(max_size=40),
    activity_type=st.text(max_size=20),
    attributes=st.dictionaries(st.text(max_size=10), json_values, max_size=5),
)
def test_any_input_is_accepted_or_refused_with_invalid_activity(
    actor: str, target: str, activity_type: str, attributes: dict[str, object]
) -> None:
    try:
        a = Activity(actor=actor, type=activity_type, target=target, attributes=attributes)
    except InvalidActivity as exc:
        assert exc.field and exc.rule
        return
    assert a.actor == actor and a.attributes == attributes
    assert json.loads(a.to_json())["actor"] == actor


@settings(max_examples=200, deadline=None)
@given(value=st.floats() | st.decimals() | st.integers())
def test_numbers_are_accepted_only_when_dynamodb_can_store_them(value: object) -> None:
    try:
        make(attributes={"n": value})
    except InvalidActivity as exc:
        assert exc.field == "attributes.n"
    else:
        number = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)  # type: ignore[arg-type]
        assert number.is_finite()
        assert number == 0 or Decimal("1e-130") <= abs(number) < Decimal("1e126")
