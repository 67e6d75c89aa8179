"""The pure pieces of backfill and reconcile: item to row, diff, digests, tokens, times."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from boto3.dynamodb.types import TypeSerializer

from footfall import ConfigError, InvalidActivity, load_settings
from footfall._activity import EARLIEST
from footfall._cli_repair import parse_when
from footfall._table import sort_key
from sync._backfill import backfill, batch_token, pin_stream
from sync._decode import Row, RowChange, decode_stream_record
from sync._items import row_from_item
from sync._reconcile import (
    DAY_MS,
    ReconcileReport,
    RowDiff,
    _repair,
    day_of,
    diff_rows,
    group_digests,
    identity_hash,
    reconcile,
    tombstone,
)

TS = 1_795_971_600_123  # 2026-11-29T17:00:00.123Z
NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def row(event_id: str, version: int = 10, *, actor: str = "bob", ts_ms: int = TS) -> Row:
    return Row(event_id, actor, "pv", "/p/goji", ts_ms, {"b": "Chrome"}, "dynamodb", version, 0)


def keyed(*rows: Row) -> dict[tuple[str, str], Row]:
    return {(r.actor, r.event_id): r for r in rows}


def item(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "actor": "bob",
        "sk": sort_key(TS, "01JD3ABC"),
        "type": "pv",
        "target": "/p/goji",
        "ts": Decimal(TS),
        "event_id": "01JD3ABC",
        "attributes": {"browser": "Chrome", "n": Decimal(3), "price": Decimal("9.5")},
        "rev": Decimal(1_795_971_600_200),
        "type_target": "pv#/p/goji#1",
        "actor_type": "bob#pv",
    }
    return {**base, **changes}


# -- item → row ------------------------------------------------------------------------------


def test_a_scanned_item_becomes_exactly_the_row_its_stream_insert_gives() -> None:
    image = TypeSerializer().serialize(item())["M"]
    record = {
        "eventName": "INSERT",
        "dynamodb": {
            "SequenceNumber": "1",
            "NewImage": image,
            "StreamViewType": "NEW_AND_OLD_IMAGES",
        },
    }
    streamed = decode_stream_record(record, shard_id="s")
    assert isinstance(streamed, RowChange)
    scanned = row_from_item(item())
    assert scanned == streamed.row
    assert scanned is not None
    assert (scanned.source, scanned.version, scanned.is_deleted) == (
        "dynamodb",
        1_795_971_600_200,
        0,
    )
    assert scanned.attributes == {"browser": "Chrome", "n": "3", "price": "9.5"}


def test_an_item_that_is_no_activity_gives_no_row() -> None:
    assert row_from_item({"actor": "meta", "sk": "config#1", "value": "x"}) is None
    assert row_from_item({"actor": "meta"}) is None


def test_a_malformed_activity_item_raises_with_the_reason() -> None:
    with pytest.raises(InvalidActivity, match="lacks field"):
        row_from_item({k: v for k, v in item().items() if k != "rev"})
    with pytest.raises(InvalidActivity, match="does not match"):
        row_from_item(item(ts=Decimal(TS + 1)))


# -- the diff --------------------------------------------------------------------------------


def test_diff_finds_missing_stale_and_leaves_newer_clickhouse_rows() -> None:
    dynamo = keyed(row("a", 10), row("b", 11), row("c", 10), row("d", 10))
    held = keyed(row("b", 10), row("c", 12), row("d", 10))
    diff = diff_rows(dynamo, held, now_ms=TS, ttl_days=None)
    assert diff.missing == [row("a", 10)]
    assert diff.stale == [row("b", 11)]  # the item's newer row, not ClickHouse's
    assert diff.ahead == 1  # c: the stream already mirrored a later change
    assert diff.gone == diff.retention == []


def test_diff_tells_user_deletes_from_ttl_expiry_by_age() -> None:
    ttl = 30
    expired_at_now = row("old", 5, ts_ms=TS - ttl * DAY_MS)  # ts + ttl == now: expired
    just_younger = row("young", 5, ts_ms=TS - ttl * DAY_MS + 1)
    held = keyed(expired_at_now, just_younger)
    diff = diff_rows({}, held, now_ms=TS, ttl_days=ttl)
    assert diff.retention == [expired_at_now]
    assert diff.gone == [just_younger]
    without_ttl = diff_rows({}, held, now_ms=TS, ttl_days=None)
    assert sorted(without_ttl.gone) == sorted([expired_at_now, just_younger])
    assert without_ttl.retention == []


def test_a_tombstone_is_one_version_higher_and_deleted() -> None:
    assert tombstone(row("a", 41)) == row("a", 42)._replace(is_deleted=1)


class FakeStore:
    def __init__(self, stored: set[tuple[str, str]]) -> None:
        self.stored = stored
        self.asked: list[dict[str, str]] = []

    def existing_keys(self, keys: list[dict[str, str]]) -> set[tuple[str, str]]:
        self.asked.extend(keys)
        return {(k["actor"], k["sk"]) for k in keys} & self.stored


class FakeClickHouse:
    def __init__(self) -> None:
        self.inserted: list[dict[str, Any]] = []
        self.tokens: list[str | None] = []

    def insert_arrow(self, table: str, arrow: Any, *, dedup_token: str | None) -> None:
        self.inserted.extend(arrow.to_pylist())
        self.tokens.append(dedup_token)

    def command(self, sql: str, parameters: Any = None) -> None:
        pass  # the rollup refresh


def test_a_row_missing_from_the_scan_but_still_stored_is_not_tombstoned() -> None:
    written_during_scan, deleted = row("late", 7), row("gone", 9)
    store = FakeStore({("bob", sort_key(TS, "late"))})
    ch = FakeClickHouse()
    report = ReconcileReport("t", NOW, NOW)
    diff = RowDiff(gone=[written_during_scan, deleted])

    _repair(ch, store, diff, report, scope="s")  # type: ignore[arg-type]

    assert [k["sk"] for k in store.asked] == [sort_key(TS, "late"), sort_key(TS, "gone")]
    assert [(r["event_id"], r["version"], r["is_deleted"]) for r in ch.inserted] == [
        ("gone", 10, 1)
    ]
    assert (report.deleted, report.still_there) == (1, 1)


def test_reconcile_refuses_a_window_it_cannot_read() -> None:
    settings = load_settings(dynamodb_endpoint="http://127.0.0.1:9")
    naive = datetime(2026, 1, 1)
    with pytest.raises(ConfigError, match="timezone-aware"):
        reconcile(settings, None, since=naive)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="after since"):
        reconcile(settings, None, since=NOW, until=NOW)  # type: ignore[arg-type]


# -- backfill with stand-ins -----------------------------------------------------------------


class ScanStore:
    """A DynamoDB stand-in: `describe` answers from a script, `scan` splits items by segment."""

    table = "tbl"

    def __init__(self, items: list[dict[str, Any]], describes: list[dict[str, Any]]) -> None:
        self.items = items
        self.describes = describes

    def describe(self) -> dict[str, Any]:
        return self.describes.pop(0) if len(self.describes) > 1 else self.describes[0]

    def scan(self, *, segment: int, total_segments: int, page_size: int | None = None) -> Any:
        return iter(self.items[segment::total_segments])


def stream(arn: str = "arn:1", view: str = "NEW_AND_OLD_IMAGES") -> dict[str, Any]:
    spec = {"StreamEnabled": True, "StreamViewType": view}
    return {"StreamSpecification": spec, "LatestStreamArn": arn}


class NoCheckpoints:
    def load(self, stream_arn: str) -> dict[str, str]:
        return {}


def test_backfill_refuses_a_table_whose_stream_cannot_take_over() -> None:
    for described in (
        {},
        stream(view="KEYS_ONLY"),
        {"StreamSpecification": {"StreamEnabled": False}},
    ):
        with pytest.raises(ConfigError, match="NEW_AND_OLD_IMAGES"):
            pin_stream(ScanStore([], [described]))  # type: ignore[arg-type]


def test_backfill_warns_when_the_stream_was_replaced_during_the_scan() -> None:
    ids = [f"01JD3E{i:02d}" for i in range(7)]
    items = [item(event_id=e, sk=sort_key(TS, e)) for e in ids] + [{"actor": "m", "sk": "cfg"}]
    store = ScanStore(items, [stream("arn:1"), stream("arn:2")])
    ch = FakeClickHouse()

    report = backfill(
        load_settings(),
        ch,
        checkpoints=NoCheckpoints(),
        segments=3,
        batch_rows=2,
        dynamodb=store,  # type: ignore[arg-type]
        compact=False,  # (the integration tests prove the merge at the end)
    )

    assert sorted(r["event_id"] for r in ch.inserted) == ids
    assert (report.items_scanned, report.rows_written, report.skipped) == (8, 7, 1)
    assert [s.batches for s in report.segments] == [2, 1, 1]  # 3, 2 (and the meta item), 2
    assert report.handover.stream_arn == "arn:1" and report.handover.from_trim_horizon
    assert len(report.warnings) == 1 and "arn:1" in report.warnings[0]


# -- digests ---------------------------------------------------------------------------------


def test_identity_hash_is_clickhouse_md5_reinterpreted_as_uint64() -> None:
    # SELECT reinterpretAsUInt64(MD5(concat('b', '\0', 'e2', '\0', toString(7))))
    assert identity_hash("b", "e2", 7) == 8853163941054276717


def test_group_digests_count_per_type_and_day_and_see_version_changes() -> None:
    next_day = TS + DAY_MS
    rows = [row("a"), row("b"), row("c", ts_ms=next_day), row("a", actor="eve")]
    digests = group_digests(rows)
    assert {group: count for group, (count, _) in digests.items()} == {
        ("pv", date(2026, 11, 29)): 3,
        ("pv", date(2026, 11, 30)): 1,
    }
    assert group_digests(reversed(rows)) == digests  # order does not matter
    bumped = group_digests([row("a", 11), *rows[1:]])
    assert bumped[("pv", date(2026, 11, 29))] != digests[("pv", date(2026, 11, 29))]
    assert bumped[("pv", date(2026, 11, 30))] == digests[("pv", date(2026, 11, 30))]


def test_day_of_is_the_utc_day() -> None:
    midnight = int((datetime(2026, 11, 30, tzinfo=UTC) - EARLIEST).total_seconds()) * 1000
    assert day_of(midnight - 1) == date(2026, 11, 29)
    assert day_of(midnight) == date(2026, 11, 30)
    assert day_of(0) == date(1970, 1, 1)


# -- tokens ----------------------------------------------------------------------------------


def test_backfill_tokens_are_deterministic_per_segment_range_and_content() -> None:
    batch = [(0, row("a")), (1, row("b")), (3, row("c"))]
    token = batch_token("tbl", 2, batch)
    assert token == batch_token("tbl", 2, list(batch))
    assert token.startswith("ff1:backfill:tbl:2@0-3#3:")
    others = {
        batch_token("tbl", 1, batch),  # another segment
        batch_token("other", 2, batch),  # another table
        batch_token("tbl", 2, [(1, row("a")), (2, row("b")), (3, row("c"))]),  # another range
        batch_token("tbl", 2, [(0, row("a", 11)), *batch[1:]]),  # another version
    }
    assert token not in others
    assert len(others) == 4


# -- the CLI's time options ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("7d", NOW - timedelta(days=7)),
        ("24h", NOW - timedelta(hours=24)),
        ("30m", NOW - timedelta(minutes=30)),
        ("45s", NOW - timedelta(seconds=45)),
        ("2w", NOW - timedelta(weeks=2)),
        ("2026-11-01T00:00:00Z", datetime(2026, 11, 1, tzinfo=UTC)),
        ("2026-11-01T02:00:00+02:00", datetime(2026, 11, 1, tzinfo=UTC)),
        ("2026-11-01", datetime(2026, 11, 1, tzinfo=UTC)),  # naive: UTC
        ("all", EARLIEST),
    ],
)
def test_parse_when_reads_durations_iso_times_and_all(text: str, expected: datetime) -> None:
    parsed = parse_when(text, now=NOW)
    assert parsed == expected
    assert parsed.tzinfo is not None


@pytest.mark.parametrize("text", ["", "7", "d7", "7y", "yesterday", "2026-13-01", "9" * 30 + "d"])
def test_parse_when_names_the_option_and_the_forms_when_it_cannot(text: str) -> None:
    with pytest.raises(ConfigError) as refused:
        parse_when(text, now=NOW, option="--until")
    assert refused.value.field == "--until"
    assert "7d" in refused.value.expected
