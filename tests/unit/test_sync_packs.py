"""Packs on `<prefix>.events`: cutting activities into packs, recognising them, decoding them
line by line, and a pack's acknowledgement waiting for all its parts."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from footfall import Activity
from footfall._wire import EVENT_HEADERS, PACK_HEADERS, is_pack, pack_lines
from sync._batch import Batcher, OffsetTracker
from sync._decode import EventPosition, Poison, Row, decode_event
from sync._packs import decode_pack

NOW = datetime(2026, 11, 29, 12, tzinfo=UTC)


def forms(n: int) -> list[bytes]:
    return [
        Activity(actor=f"a{i}", type="pv", target=f"/p/{i}", ts=NOW, attributes={"i": i}).to_json()
        for i in range(n)
    ]


# -- cutting and recognising ------------------------------------------------------------------


@given(
    sizes=st.lists(st.integers(1, 300), max_size=60),
    max_events=st.integers(1, 10),
    max_bytes=st.integers(1, 1000),
)
def test_packs_keep_every_form_in_order_within_both_limits(
    sizes: list[int], max_events: int, max_bytes: int
) -> None:
    values = [bytes([97 + i % 26]) * size for i, size in enumerate(sizes)]
    packs = list(pack_lines(values, max_events=max_events, max_bytes=max_bytes))
    assert [line for value, _ in packs for line in value.split(b"\n")] == values
    assert [i for _, indexes in packs for i in indexes] == list(range(len(values)))
    for value, indexes in packs:
        assert len(indexes) <= max_events
        assert len(value) <= max_bytes or len(indexes) == 1  # a large form travels alone


def test_a_pack_is_known_by_its_content_type_in_pairs_or_a_mapping() -> None:
    assert is_pack(list(PACK_HEADERS)) and is_pack(tuple(PACK_HEADERS))
    assert is_pack(dict(PACK_HEADERS))
    assert not is_pack(list(EVENT_HEADERS)) and not is_pack(dict(EVENT_HEADERS))
    assert not is_pack(None) and not is_pack([])


# -- decoding ---------------------------------------------------------------------------------


def test_every_line_decodes_as_the_single_message_would() -> None:
    lines = forms(5)
    rows, poisons = decode_pack(b"\n".join(lines) + b"\n", partition=2, offset=7, now=NOW)
    assert poisons == []
    assert rows == [decode_event(line, partition=2, offset=7, now=NOW) for line in lines]


def test_a_bad_line_is_a_poison_of_its_own_and_the_good_lines_stay_rows() -> None:
    good = forms(3)
    bad = [b"{not json", json.dumps({"actor": "x"}).encode()]
    value = b"\n".join([good[0], bad[0], b"", good[1], bad[1], good[2]])
    rows, poisons = decode_pack(value, partition=0, offset=42, now=NOW)
    assert [r.event_id for r in rows] == [json.loads(g)["event_id"] for g in good]
    assert [line for line, _ in poisons] == bad  # the DLQ gets the line itself
    reasons = [p.reason for _, p in poisons]
    assert reasons[0].startswith("line 2: not valid JSON")
    assert reasons[1].startswith("line 5: missing field(s)")
    assert all(p.position == EventPosition(0, 42) for _, p in poisons)


def line_by_line(value: bytes) -> tuple[list[Row], list[tuple[bytes, Poison]]]:
    """The oracle: every non-blank line through decode_event, as a message of its own."""
    rows: list[Row] = []
    poisons: list[tuple[bytes, Poison]] = []
    for number, line in enumerate(value.split(b"\n"), start=1):
        if line.strip():
            decoded = decode_event(line, partition=1, offset=5, now=NOW)
            if isinstance(decoded, Row):
                rows.append(decoded)
            else:
                poisons.append((line, Poison(decoded.position, f"line {number}: {decoded.reason}")))
    return rows, poisons


odd_lines = st.sampled_from(
    [
        b"",
        b" ",
        b"\x1c",  # whitespace to str.strip, not to bytes.strip
        b"\r",
        b"{}",
        b"[]",
        b"1",
        b"{",
        b"}",
        b'{"a":1} {"b":2}',
        b'{"a":1},{"b":2}',
        b'{"a":[1',
        b"2]}",
        b'{"a":' + b"[" * 5000 + b"]" * 5000 + b"}",  # deeper than the recursion limit
        b'{"actor":"\xc3\xbc"}',
        b'{"actor":"\xff"}',
        b'{"ts":NaN}',
    ]
)


@st.composite
def event_lines(draw: st.DrawFn) -> bytes:
    """A form as producers send it, the same padded or spoilt, or something else entirely."""
    i = draw(st.integers(0, 3))
    form = Activity(actor=f"a{i}", type="pv", target="/p", ts=NOW, attributes={"i": i}).to_json()
    padded = draw(st.sampled_from([b" ", b"\t", b"\r", b"\x1c", b""]))
    return draw(
        st.one_of(
            st.just(form),
            st.just(padded + form + padded),
            st.just(form.replace(b'"pv"', '"ü"'.encode())),
            st.just(form[: draw(st.integers(0, len(form)))]),
            odd_lines,
            st.binary(max_size=8),
        )
    )


@settings(max_examples=300, deadline=None)
@given(st.lists(event_lines(), min_size=1, max_size=6))
def test_a_pack_decodes_exactly_as_its_lines_one_by_one(lines: list[bytes]) -> None:
    """The pack's own parse (one text, the JSON scanner) changes no row and no reason."""
    value = b"\n".join(lines)
    expected = line_by_line(value)
    if expected == ([], []):
        return  # the empty pack: its own test
    assert decode_pack(value, partition=1, offset=5, now=NOW) == expected


@pytest.mark.parametrize("value", [None, b"", b"\n\n \n"])
def test_a_pack_without_an_activity_is_one_poison(value: bytes | None) -> None:
    rows, poisons = decode_pack(value, partition=1, offset=3)
    assert rows == []
    assert len(poisons) == 1 and isinstance(poisons[0][1], Poison)
    assert "empty pack" in poisons[0][1].reason


# -- batching and acknowledging ----------------------------------------------------------------


def test_a_packs_rows_join_one_batch_under_its_position_once() -> None:
    rows = [r for r in decode_pack(b"\n".join(forms(4)), partition=0, offset=9, now=NOW)[0]]
    batcher: Batcher[EventPosition] = Batcher("kafka:t", max_rows=3, max_wait_s=10)
    batch = batcher.add_many(rows, EventPosition(0, 9))  # over max_rows: cut, whole
    assert batch is not None and len(batch) == 4 and batch.positions == (EventPosition(0, 9),)
    assert batcher.add_many([], EventPosition(0, 10)) is None and len(batcher) == 0
    small = batcher.add_many(rows[:2], EventPosition(0, 11))
    assert small is None and len(batcher) == 2


def test_a_position_expecting_parts_is_safe_only_after_all_of_them() -> None:
    tracker: OffsetTracker[EventPosition] = OffsetTracker()
    pack, after = EventPosition(0, 5), EventPosition(0, 6)
    assert tracker.track(pack) and tracker.track(after)
    tracker.expect(pack, 3)  # its batch and two dead letters
    tracker.ack(after)
    tracker.ack(pack)
    tracker.ack(pack)
    assert tracker.committable() == [] and tracker.pending() == 2
    tracker.ack(pack)
    assert tracker.committable() == [after]


def test_expecting_parts_of_an_untracked_position_is_a_mistake() -> None:
    tracker: OffsetTracker[EventPosition] = OffsetTracker()
    with pytest.raises(ValueError, match="track it first"):
        tracker.expect(EventPosition(0, 1), 2)


def test_a_reset_lane_forgets_the_parts_it_expected() -> None:
    tracker: OffsetTracker[EventPosition] = OffsetTracker()
    pack = EventPosition(0, 5)
    tracker.track(pack)
    tracker.expect(pack, 2)
    tracker.reset(0)
    assert tracker.track(pack)  # re-read from the checkpoint: one ack is enough now
    tracker.ack(pack)
    assert tracker.committable() == [pack]
