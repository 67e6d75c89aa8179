"""Point reads build their columns straight from the items, and get the rows sync would write."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from unittest import mock

import pyarrow as pa
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import query
import query._items as items_module
from footfall import load_settings
from footfall._synthetic import synthetic_activities
from footfall._table import sort_key, to_dynamo
from query._frames import items_to_arrow, items_to_polars, items_to_rows, to_polars
from query._items import plain_row
from sync._batch import rows_to_arrow
from sync._items import row_from_item

NOW = datetime(2026, 11, 29, 17, 0, tzinfo=UTC)
MAX_TS_MS = 4_102_444_800_000  # 2100-01-01, exclusive
STORED: dict[str, Any] = {
    "sk": "1764435600123#01JD3ABCDEF",
    "actor": "bob",
    "type": "store-pageviews",
    "target": "/p/goji",
    "event_id": "01JD3ABCDEF",
    "ts": Decimal(1_764_435_600_123),
    "rev": Decimal(7),
    "attributes": {"browser": "Chrome", "n": Decimal(3), "f": Decimal("2.5"), "ok": True},
    "type_target": "store-pageviews#/p/goji#1",
    "actor_type": "bob#store-pageviews",
}

text = st.one_of(
    st.text(max_size=6),
    st.sampled_from(["", " ", "\n", "a\n", "ü", "\ud800", "x" * 129, "x" * 1025, "a#b"]),
    st.from_regex(r"[A-Za-z0-9_.:-]{1,8}", fullmatch=True),
)
numbers = st.one_of(
    st.integers(-(10**40), 10**40).map(Decimal),
    st.sampled_from(["0.5", "-0", "1E+2", "1e-131", "1e126", "Infinity", "NaN", "sNaN"]).map(
        Decimal
    ),
)
whole = st.one_of(
    st.integers(-1, MAX_TS_MS + 1).map(Decimal),
    st.sampled_from([Decimal("1.5"), Decimal("1E+3"), Decimal("Infinity"), Decimal("NaN")]),
    st.sampled_from([Decimal(2**64 - 1), Decimal(2**64), 5, "5", None]),
)
values = st.one_of(
    st.none(),
    st.booleans(),
    numbers,
    text,
    st.lists(text, max_size=2),
    st.dictionaries(text, text, max_size=2),
    st.frozensets(st.sampled_from(["a", "b"]), min_size=1),
)


@st.composite
def mostly(draw: st.DrawFn, valid: Any, other: st.SearchStrategy[Any]) -> Any:
    """Usually the valid value, so that most items break at most one rule."""
    return valid if draw(st.integers(0, 5)) else draw(other)


@st.composite
def stored_items(draw: st.DrawFn) -> dict[str, Any]:
    event_id = draw(mostly("01JD3ABCDEF", st.one_of(text, st.integers())))
    ts = draw(mostly(Decimal(1_764_435_600_123), whole))
    item = {
        "actor": draw(mostly("bob", st.one_of(text, st.integers()))),
        "type": draw(mostly("store-pageviews", text)),
        "target": draw(mostly("/p/goji", text)),
        "event_id": event_id,
        "ts": ts,
        "rev": draw(mostly(Decimal(3), whole)),
        "attributes": draw(
            mostly(
                {"browser": "Chrome"},
                st.one_of(
                    st.dictionaries(
                        st.one_of(text, st.sampled_from(["version", "ts", "browser"])),
                        values,
                        max_size=3,
                    ),
                    st.lists(text, max_size=1),
                    st.just({"big": "x" * 410_000}),
                ),
            )
        ),
    }
    try:
        sk = sort_key(int(ts), str(event_id))
    except (TypeError, ValueError, ArithmeticError):
        sk = "0000000000000#x"
    item["sk"] = draw(mostly(sk, st.one_of(text, st.just(sk + "x"), st.none())))
    for name in draw(st.sets(st.sampled_from(list(item)), max_size=1)):
        if draw(st.integers(0, 3)) == 0:
            del item[name]
    return item


def checked(item: dict[str, Any]) -> tuple[Any, ...] | str | None:
    """row_from_item's first six values, or the name of the error it raised."""
    try:
        row = row_from_item(item)
    except Exception as exc:
        return type(exc).__name__
    return None if row is None else tuple(row[:6])


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(item=stored_items())
@example(item=STORED)
@example(item={**STORED, "attributes": {"big": "x" * 409_000}})
@example(item={**STORED, "attributes": {"n": Decimal("Infinity")}})
@example(item={**STORED, "attributes": {"n": Decimal("sNaN")}})
@example(item={**STORED, "rev": Decimal(2**64)})
@example(item={**STORED, "ts": Decimal("1764435600123.0")})
@example(item={**STORED, "rev": Decimal("1.5")})
@example(item={**STORED, "ts": Decimal(MAX_TS_MS), "sk": sort_key(MAX_TS_MS, "01JD3ABCDEF")})
@example(
    item={**STORED, "ts": Decimal(MAX_TS_MS - 1), "sk": sort_key(MAX_TS_MS - 1, "01JD3ABCDEF")}
)
@example(item={**STORED, "sk": "1764435600123#01JD3ABCDEG"})
@example(item={key: value for key, value in STORED.items() if key != "attributes"})
def test_the_fast_path_gives_exactly_the_row_sync_would_write(item: dict[str, Any]) -> None:
    fast = plain_row(item)
    if fast is not None:
        assert checked(item) == fast


def test_ordinary_items_take_the_fast_path() -> None:
    """Items as `record_many` stores them never go through the stream decoder's row."""
    items = [stored_item(a) for a in synthetic_activities(300, seed=3, end=NOW)]
    with mock.patch("sync._items.row_from_item", side_effect=AssertionError("slow path")):
        table = items_to_arrow(items)
    assert table.num_rows == 300
    assert table.equals(slow_arrow(items))


def test_columns_keep_the_order_of_the_items_whichever_path_each_took() -> None:
    odd = {**STORED, "actor": "ü", "sk": "1764435600124#e2", "event_id": "e2"}
    odd["ts"] = Decimal(1_764_435_600_124)
    malformed = {**STORED, "sk": "1764435600125#e3", "event_id": "e3", "ts": Decimal("1.5")}
    not_an_activity = {"actor": "bob", "sk": "meta"}
    items = [STORED, odd, malformed, not_an_activity, {**STORED, "actor": "carol"}]
    with mock.patch.object(items_module, "plain_row", wraps=plain_row) as fast:
        table = items_to_arrow(items, [("actor", "who"), ("attributes", "attributes")])
    assert [c for (c,), _ in fast.call_args_list] == items
    assert table.column("who").to_pylist() == ["bob", "ü", "carol"]
    assert table.column_names == ["who", "attributes"]
    assert table.column("attributes")[0].as_py() == [
        ("browser", "Chrome"),
        ("f", "2.5"),
        ("n", "3"),
        ("ok", "true"),
    ]
    assert table.select(["attributes"]).equals(
        slow_arrow(items).select(["attributes"])
    ) and table.column("who").equals(slow_arrow(items).column("actor"))


def test_no_items_give_the_empty_table_of_the_activity_schema() -> None:
    assert items_to_arrow([]).equals(slow_arrow([]))


def stored_item(activity: Any) -> dict[str, Any]:
    return {
        "sk": sort_key(activity.ts_ms, activity.event_id),
        "actor": activity.actor,
        "type": activity.type,
        "target": activity.target,
        "event_id": activity.event_id,
        "ts": Decimal(activity.ts_ms),
        "rev": Decimal(1_764_435_600_000),
        "attributes": to_dynamo(activity.attributes),
    }


def slow_arrow(items: list[dict[str, Any]]) -> pa.Table:
    """What a point read returned before its fast path: sync's rows and Arrow, six columns."""
    table = rows_to_arrow(items_to_rows(items))
    return table.select(["event_id", "actor", "type", "target", "ts", "attributes"])


def test_frames_built_from_the_columns_equal_the_arrow_route() -> None:
    items = [stored_item(a) for a in synthetic_activities(40, seed=4, end=NOW)]
    items += [{**STORED, "actor": "ü"}, {"actor": "bob", "sk": "meta"}]
    renamed = [("ts", "at"), ("attributes", "attrs"), ("event_id", "id")]
    for chosen in (items, []):
        for columns in (None, renamed):
            frame = items_to_polars(chosen, columns)
            assert frame.equals(to_polars(items_to_arrow(chosen, columns)))
            assert frame.schema == to_polars(items_to_arrow(chosen, columns)).schema


def test_point_reads_hand_polars_no_arrow_table() -> None:
    """Converting an Arrow table runs on polars' thread pool: a point read's small frame is
    built from its columns in the calling thread instead."""
    items = [stored_item(a) for a in synthetic_activities(60, seed=6, actors=1, end=NOW)]
    actor = items[0]["actor"]
    reads = query.Footfall(load_settings(table="tbl"), dynamodb=StubStore(items))  # type: ignore[arg-type]
    with mock.patch("polars.from_arrow", side_effect=AssertionError("an Arrow table")):
        latest = reads.latest(actor, 50)
        routed = reads.sql(
            "SELECT event_id, ts AS at FROM activities WHERE actor = {a:String} "
            "ORDER BY ts DESC LIMIT 50",
            {"a": actor},
        )
    assert latest.height == 50 and latest["actor"].unique().to_list() == [actor]
    assert routed.columns == ["event_id", "at"] and routed.height == 50


class StubStore:
    """A DynamoDB stand-in whose Query answers with the given items."""

    def __init__(self, items: list[dict[str, Any]]) -> None:
        self.items = items

    def query(self, *, limit: int | None = None, **_: Any) -> Any:
        return iter(self.items[:limit])
