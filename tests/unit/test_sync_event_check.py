"""The fast acceptance check of Kafka events agrees with the Activity model on every input."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from unittest import mock

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import sync._decode as decode_module
from footfall import Activity, InvalidActivity
from footfall._activity import MAX_ITEM_BYTES
from footfall._synthetic import synthetic_activities
from footfall._table import sort_key, to_dynamo
from sync._decode import Poison, Row, decode_event, flatten_attributes
from sync._event_check import future_limit, plain_event
from sync._items import row_from_item

NOW = datetime(2026, 11, 29, 17, 0, tzinfo=UTC)


def slow_decode(value: bytes) -> Row | Poison:
    """decode_event with the fast path switched off: every event goes through Activity."""
    with mock.patch.object(decode_module, "plain_event", lambda *args: None):
        return decode_event(value, partition=0, offset=0, now=NOW)


def accepted(result: Row | Poison) -> tuple[Row, list[tuple[str, str]]] | None:
    """The row, and its attributes in order (a Map's order counts in ClickHouse)."""
    return (result, list(result.attributes.items())) if isinstance(result, Row) else None


# Text near every rule's edges: blank, whitespace, newlines, non-ASCII, lone surrogates, long.
edgy_text = st.one_of(
    st.text(max_size=8),
    st.text(alphabet="ab -_.:\n\t\x1f/", max_size=6),
    st.sampled_from(["", " ", "\n", "a\n", "ü", "\ud800", "x" * 128, "x" * 129]),
    st.sampled_from(["x" * 1024, "x" * 1025, "ü" * 512, "ü" * 513]),
    st.from_regex(r"[A-Za-z0-9_.:-]{1,10}", fullmatch=True),
)
numbers = st.one_of(
    st.integers(),
    st.sampled_from([10**37, 10**38 - 1, 10**38, -(10**38), 10**126, 0]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 1e-130, 1e-131, 9.99e125, 1e126, 1e-126, 1e125]),
)
scalars = st.one_of(st.none(), st.booleans(), numbers, edgy_text)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(edgy_text, inner, max_size=3),
    max_leaves=6,
)
names = st.one_of(edgy_text, st.sampled_from(["version", "source", "ts", "browser"]))
timestamps = st.one_of(
    st.datetimes(
        min_value=datetime(1969, 12, 30), max_value=datetime(2100, 1, 2), timezones=st.just(UTC)
    ).map(lambda d: d.isoformat()),
    st.datetimes(timezones=st.sampled_from([UTC, None])).map(lambda d: d.isoformat()),
    st.sampled_from(
        [
            "2026-11-29T17:00:00.123Z",
            (NOW + timedelta(days=1)).isoformat(),
            (NOW + timedelta(days=1, milliseconds=1)).isoformat(),
            (NOW + timedelta(days=1, microseconds=999)).isoformat(),
            "1970-01-01T00:00:00Z",
            "1969-12-31T23:59:59.999999Z",
            "2099-12-31T23:59:59.9999Z",
            "2026-11-29T19:00:00+02:00",
            "2026-11-29T17:00:00",
        ]
    ),
)


@st.composite
def mostly(draw: st.DrawFn, valid: Any, other: st.SearchStrategy[Any]) -> Any:
    """Usually the valid value, so that most events break at most one rule."""
    return valid if draw(st.integers(0, 5)) else draw(other)


@st.composite
def events(draw: st.DrawFn) -> dict[str, Any]:
    event: dict[str, Any] = {
        "event_id": draw(mostly("01JD3ABCDEF", st.one_of(edgy_text, st.integers()))),
        "actor": draw(mostly("bob", st.one_of(edgy_text, st.integers()))),
        "type": draw(mostly("store-pageviews", edgy_text)),
        "target": draw(mostly("/p/goji", edgy_text)),
        "ts": draw(mostly("2026-11-29T16:00:00.123Z", timestamps)),
    }
    attributes = draw(
        st.one_of(
            st.none(),
            st.dictionaries(
                st.sampled_from(["browser", "n", "version", "source", "ts", "", "ü", "a b"]),
                st.one_of(st.text(max_size=4), st.integers(-5, 5), st.floats(), st.booleans()),
                max_size=3,
            ),
            st.dictionaries(names, scalars, max_size=4),
            st.dictionaries(names, values, max_size=3),
            st.lists(scalars, max_size=2),
            st.just({"big": "x" * 150_000}),
        )
    )
    if attributes is not None or draw(st.booleans()):
        event["attributes"] = attributes
    return event


PLAIN = {
    "event_id": "01JD3ABCDEF",
    "actor": "bob",
    "type": "store-pageviews",
    "target": "/p/goji",
    "ts": "2026-11-29T16:00:00.123Z",
}
STORED = {
    "sk": "1764435600123#01JD3ABCDEF",
    "actor": "bob",
    "type": "store-pageviews",
    "target": "/p/goji",
    "event_id": "01JD3ABCDEF",
    "ts": Decimal(1_764_435_600_123),
    "rev": Decimal(0),
    "attributes": {"browser": "Chrome"},
}
EDGES = [
    {"attributes": {"s": "\ud800"}},
    {"attributes": {"k\udfff": "v"}},
    {"attributes": {"n": 10**38 - 1}},
    {"attributes": {"n": 10**38}},
    {"attributes": {"n": -(10**39)}},
    {"attributes": {"n": 10**39 - 1}},
    {"attributes": {"n": 10**126}},
    {"attributes": {"f": 1e126}},
    {"attributes": {"f": 1e-131}},
    {"attributes": {"version": 1}},
    {"actor": "\ud800"},
    {"target": "ü" * 512},
    {"target": "ü" * 513},
    {"actor": "x" * 1025},
    {"type": "a\n"},
    {"event_id": "e" * 129},
]


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(event=events(), escaped=st.booleans())
@example(event={**PLAIN, **EDGES[0]}, escaped=True)
@example(event={**PLAIN, **EDGES[1]}, escaped=True)
@example(event={**PLAIN, **EDGES[2]}, escaped=True)
@example(event={**PLAIN, **EDGES[3]}, escaped=True)
@example(event={**PLAIN, **EDGES[4]}, escaped=True)
@example(event={**PLAIN, **EDGES[5]}, escaped=True)
@example(event={**PLAIN, **EDGES[6]}, escaped=True)
@example(event={**PLAIN, **EDGES[7]}, escaped=True)
@example(event={**PLAIN, **EDGES[8]}, escaped=True)
@example(event={**PLAIN, **EDGES[9]}, escaped=True)
@example(event={**PLAIN, **EDGES[10]}, escaped=True)
@example(event={**PLAIN, **EDGES[11]}, escaped=True)
@example(event={**PLAIN, **EDGES[12]}, escaped=True)
@example(event={**PLAIN, **EDGES[13]}, escaped=True)
@example(event={**PLAIN, **EDGES[14]}, escaped=True)
@example(event={**PLAIN, **EDGES[15]}, escaped=True)
def test_the_fast_path_accepts_and_rejects_exactly_what_activity_does(
    event: dict[str, Any], escaped: bool
) -> None:
    # escaped: non-ASCII as \\u escapes, the only way a lone surrogate survives the UTF-8 check
    value = json.dumps(event, ensure_ascii=escaped).encode("utf-8", "surrogatepass")
    fast, slow = decode_event(value, partition=0, offset=0, now=NOW), slow_decode(value)
    assert accepted(fast) == accepted(slow)
    if isinstance(slow, Poison):
        assert isinstance(fast, Poison) and fast.reason == slow.reason


@settings(max_examples=300, deadline=None)
@given(events())
def test_whatever_the_fast_check_passes_activity_accepts_with_the_same_time(
    event: dict[str, Any],
) -> None:
    try:
        ts = datetime.fromisoformat(event["ts"])
    except ValueError:
        return
    raw = json.dumps(event, ensure_ascii=False).encode("utf-8", "surrogatepass")
    plain = plain_event(event, ts, future_limit(NOW), len(raw))
    if plain is not None:
        activity = Activity(
            actor=event["actor"],
            type=event["type"],
            target=event["target"],
            ts=ts,
            event_id=event["event_id"],
            attributes=event.get("attributes"),
            now=NOW,
        )
        assert plain is not None and plain[0] == activity.ts_ms
        assert list(plain[1].items()) == list(flatten_attributes(activity.attributes).items())


def test_ordinary_events_take_the_fast_path() -> None:
    """The synthetic load (what producers send) never needs an Activity per event."""
    for activity in synthetic_activities(500, seed=5, end=NOW):
        value = activity.to_json()
        event = json.loads(value)
        ts = datetime.fromisoformat(event["ts"])
        plain = plain_event(event, ts, future_limit(NOW), len(value))
        assert plain is not None and plain[0] == activity.ts_ms
        assert list(plain[1].items()) == list(flatten_attributes(activity.attributes).items())
        with mock.patch.object(decode_module, "Activity", side_effect=AssertionError):
            row = decode_event(value, partition=0, offset=0, now=NOW)
        assert isinstance(row, Row) and row == slow_decode(value)


# -- stored items (the point reads of `query`, backfill, reconcile) ----------------------------


def item_outcome(item: dict[str, Any]) -> tuple[Row, list[tuple[str, str]]] | str | None:
    """row_from_item's row with its attributes in order, or the text of the InvalidActivity it
    raised."""
    try:
        row = row_from_item(item)
    except InvalidActivity as exc:
        return f"{exc.field}: {exc}"
    return None if row is None else (row, list(row.attributes.items()))


@st.composite
def items(draw: st.DrawFn) -> dict[str, Any]:
    event = draw(events())
    ts_ms = draw(mostly(1_764_435_600_123, st.integers(0, 4_102_444_800_000)))
    attributes = event.get("attributes")
    try:
        stored = to_dynamo(attributes if isinstance(attributes, dict) else {})
    except (TypeError, ArithmeticError):
        stored = {}
    event_id = event["event_id"]
    sk_id = event_id if isinstance(event_id, str) else "x"
    return {
        "pk": "p",
        "sk": draw(mostly(sort_key(ts_ms, sk_id), st.just(sort_key(ts_ms + 1, sk_id)))),
        "actor": event["actor"],
        "type": event["type"],
        "target": event["target"],
        "event_id": event_id,
        "ts": Decimal(ts_ms),
        "rev": Decimal(draw(st.integers(0, 3))),
        "attributes": stored,
    }


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(item=items())
@example(item={**STORED, "attributes": {"big": "x" * (MAX_ITEM_BYTES - 286)}})  # the limit
@example(item={**STORED, "attributes": {"big": "x" * (MAX_ITEM_BYTES - 285)}})  # one byte over
@example(item={**STORED, "attributes": {"n": Decimal(10) ** 40}})
@example(item={**STORED, "actor": "ü"})
@example(item={**STORED, "actor": " "})
@example(item={**STORED, "attributes": {"n": Decimal(3), "browser": "Chrome"}})  # unsorted names
def test_stored_items_become_the_same_rows_with_or_without_the_fast_path(
    item: dict[str, Any],
) -> None:
    with mock.patch.object(decode_module, "plain_item", lambda *args: None):
        slow = item_outcome(item)
    assert item_outcome(item) == slow


def test_ordinary_stored_items_take_the_fast_path() -> None:
    for activity in synthetic_activities(200, seed=9, end=NOW):
        item = {
            "sk": sort_key(activity.ts_ms, activity.event_id),
            "actor": activity.actor,
            "type": activity.type,
            "target": activity.target,
            "event_id": activity.event_id,
            "ts": Decimal(activity.ts_ms),
            "rev": Decimal(0),
            "attributes": to_dynamo(activity.attributes),
        }
        with mock.patch.object(decode_module, "Activity", side_effect=AssertionError):
            row = row_from_item(item)
        assert row is not None and row.event_id == activity.event_id
