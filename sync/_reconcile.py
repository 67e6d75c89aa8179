"""Reconcile: the batch half of the lambda architecture, for a window of activity time.

`reconcile(settings, ch, since=..., until=...)` compares the activities with `ts` in
`[since, until)` that DynamoDB holds (a parallel Scan, FilterExpression on `ts`) with those
ClickHouse holds from DynamoDB (`activities FINAL`, `source = 'dynamodb'`: raw Kafka events are
never in DynamoDB), and repairs ClickHouse:

1. Per (type, UTC day), both sides' count and a digest of every (actor, event_id, version)
   (`identity_hash`, XORed; `sql/queries/reconcile_groups.sql` computes the same in ClickHouse).
   A group whose count and digest match holds the same item states on both sides: done.
2. The other groups are compared row by row (`diff_rows`):
   - **missing** in ClickHouse → the item's row is inserted;
   - **stale** (ClickHouse version < the item's `rev`) → the newer row is inserted;
   - **ahead** (ClickHouse version > `rev`: the stream mirrored a change the Scan read before) →
     left alone, the stream wins;
   - **gone** from DynamoDB → first confirmed with a consistent BatchGetItem (an item written
     after its segment was scanned, and already mirrored, is still there: left alone); then, if
     `settings.ttl_days` is set and `ts + ttl_days <= now`, it expired: retention, analytics keep
     their history (counted as *retention kept*); otherwise a user deleted it: a tombstone with
     the ClickHouse version + 1 is inserted (what the stream's REMOVE would have written).

Safe beside a running worker and idempotent: it only inserts versioned rows (never deletes or
updates in place), each equal to what the stream writes for the same state, so whichever lands
last, the highest version wins; a second run finds every group equal and fixes nothing.

Lost stream ranges (`sync_trimmed_ranges`) are marked repaired (a new version with
`repaired = 1`) only by a reconcile over all activity time (`since` at or before 1970, no
`until`) and only those detected before it started: a lost stream record may have changed an
activity of any `ts` (an update of an old activity, a late activity), so no narrower window can
be known to cover it. A backfill does not mark them either: a Scan cannot see lost deletes.

Memory: the window's scanned rows are held at once; reconcile wide windows in slices.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Final

import pyarrow as pa  # type: ignore[import-untyped, unused-ignore]  # no stubs yet

from footfall._activity import EARLIEST, LATEST
from footfall._clickhouse import ClickHouse
from footfall._dynamodb import DynamoDB
from footfall._errors import ConfigError, InvalidActivity
from footfall._migrate import read_sql
from footfall._settings import Settings
from footfall._table import sort_key

from ._backfill import MAX_SEGMENTS, insert_rows, pin_stream
from ._batch import dedup_token
from ._decode import EventPosition, Row
from ._items import row_from_item

__all__ = [
    "GroupCount",
    "ReconcileReport",
    "RowDiff",
    "diff_rows",
    "group_digests",
    "identity_hash",
    "reconcile",
    "tombstone",
]

log = logging.getLogger(__name__)

Key = tuple[str, str]  # (actor, event_id): an activity's identity
Group = tuple[str, date]  # (type, UTC day)
DAY_MS: Final = 86_400_000
BATCH_ROWS: Final = 10_000
_EPOCH_ORDINAL: Final = EARLIEST.date().toordinal()


@dataclass(frozen=True, slots=True)
class GroupCount:
    """One (type, day) of the window: activities on each side, and whether they matched."""

    type: str
    day: date
    dynamodb: int
    clickhouse: int
    matched: bool  # same count and same digest of identities and versions


@dataclass(slots=True)
class RowDiff:
    """What the row-by-row comparison of some groups found (rows as ClickHouse should get them,
    except `gone` and `retention`: the ClickHouse rows of items absent from DynamoDB)."""

    missing: list[Row] = field(default_factory=list)
    stale: list[Row] = field(default_factory=list)
    gone: list[Row] = field(default_factory=list)  # user deletes, once confirmed
    retention: list[Row] = field(default_factory=list)  # expired by TTL: kept
    ahead: int = 0  # ClickHouse newer than the scan: the stream wins


@dataclass(slots=True)
class ReconcileReport:
    """The outcome of `reconcile`."""

    table: str
    since: datetime
    until: datetime
    groups: list[GroupCount] = field(default_factory=list)
    scanned: int = 0  # activity items of the window in DynamoDB
    skipped: int = 0  # items that are no activity
    invalid: int = 0  # activity items that cannot become a row (logged)
    missing: int = 0
    stale: int = 0
    deleted: int = 0  # tombstones written
    retention_kept: int = 0
    ahead: int = 0
    still_there: int = 0  # absent from the scan but found by the consistent read: left alone
    trimmed_repaired: int = 0
    duration_s: float = 0.0

    @property
    def fixed(self) -> int:
        return self.missing + self.stale + self.deleted


def identity_hash(actor: str, event_id: str, version: int) -> int:
    """The first 8 bytes (little-endian) of MD5("<actor>\\0<event_id>\\0<version>"), as
    ClickHouse's `reinterpretAsUInt64(MD5(...))` computes it in reconcile_groups.sql."""
    text = f"{actor}\0{event_id}\0{version}".encode()
    return int.from_bytes(hashlib.md5(text, usedforsecurity=False).digest()[:8], "little")


def day_of(ts_ms: int) -> date:
    """The UTC day of a timestamp in epoch milliseconds."""
    return date.fromordinal(_EPOCH_ORDINAL + ts_ms // DAY_MS)


def group_digests(rows: Iterable[Row]) -> dict[Group, tuple[int, int]]:
    """Per (type, UTC day): (count, XOR of `identity_hash`) of live rows."""
    out: dict[Group, tuple[int, int]] = {}
    for row in rows:
        group = (row.type, day_of(row.ts_ms))
        count, digest = out.get(group, (0, 0))
        out[group] = (count + 1, digest ^ identity_hash(row.actor, row.event_id, row.version))
    return out


def diff_rows(
    dynamodb: Mapping[Key, Row],
    clickhouse: Mapping[Key, Row],
    *,
    now_ms: int,
    ttl_days: int | None,
) -> RowDiff:
    """Compare the items of DynamoDB with the live rows of ClickHouse, by identity (pure)."""
    diff = RowDiff()
    for key in sorted(dynamodb):
        item, held = dynamodb[key], clickhouse.get(key)
        if held is None:
            diff.missing.append(item)
        elif held.version < item.version:
            diff.stale.append(item)
        elif held.version > item.version:
            diff.ahead += 1
    for key in sorted(clickhouse.keys() - dynamodb.keys()):
        held = clickhouse[key]
        expired = ttl_days is not None and held.ts_ms + ttl_days * DAY_MS <= now_ms
        (diff.retention if expired else diff.gone).append(held)
    return diff


def tombstone(row: Row) -> Row:
    """The tombstone of a ClickHouse row: one version higher, `is_deleted` 1."""
    return row._replace(version=row.version + 1, is_deleted=1)


def reconcile(
    settings: Settings,
    ch: ClickHouse,
    *,
    since: datetime,
    until: datetime | None = None,
    segments: int = 4,
    dynamodb: DynamoDB | None = None,
    now: datetime | None = None,
) -> ReconcileReport:
    """Compare and repair the activities with `ts` in `[since, until)` (see the module doc).

    `until` None means no upper bound. `now` (default: the clock) decides what TTL expired.
    """
    began, started = time.monotonic(), datetime.now(UTC)
    low, high = _window(since, until)
    if not 1 <= segments <= MAX_SEGMENTS:
        raise ConfigError("segments", segments, f"an integer in [1, {MAX_SEGMENTS}]")
    store = dynamodb or DynamoDB(settings)
    pin_stream(store)  # a table without a stream would be stale again at once
    report = ReconcileReport(settings.table, low, high)
    scanned = _scan(store, segments, (_ms(low), _ms(high)), report)
    window: dict[str, Any] = {"since": low, "until": high}
    theirs = _clickhouse_groups(ch, window)
    ours = group_digests(scanned.values())
    differing: set[Group] = set()
    for group in sorted(ours.keys() | theirs.keys()):
        mine, held = ours.get(group, (0, 0)), theirs.get(group, (0, 0))
        report.groups.append(GroupCount(*group, mine[0], held[0], mine == held))
        if mine != held:
            differing.add(group)
    if differing:
        held_rows = _clickhouse_rows(ch, window, differing)
        items = {k: r for k, r in scanned.items() if (r.type, day_of(r.ts_ms)) in differing}
        now_ms = _ms(now or datetime.now(UTC))
        diff = diff_rows(items, held_rows, now_ms=now_ms, ttl_days=settings.ttl_days)
        _repair(ch, store, diff, report, scope=f"reconcile:{settings.table}:{_ms(started)}")
    if low <= EARLIEST and high >= LATEST:
        report.trimmed_repaired = _mark_trimmed_repaired(ch, settings.table, started)
    report.duration_s = time.monotonic() - began
    log.info(
        "reconcile of %s [%s, %s): %s items, %s/%s groups differed; fixed %s missing, %s stale, "
        "%s deleted; %s kept as retention",
        settings.table,
        low.isoformat(),
        high.isoformat(),
        report.scanned,
        len(differing),
        len(report.groups),
        report.missing,
        report.stale,
        report.deleted,
        report.retention_kept,
    )
    return report


def _window(since: datetime, until: datetime | None) -> tuple[datetime, datetime]:
    for name, value in (("since", since), ("until", until)):
        if value is not None and value.tzinfo is None:
            raise ConfigError(name, value, "a timezone-aware datetime, e.g. in UTC")
    low = max(since.astimezone(UTC), EARLIEST)
    high = LATEST if until is None else min(until.astimezone(UTC), LATEST)
    if high <= low:
        raise ConfigError("until", until, f"a time after since ({low.isoformat()})")
    return low, high


def _ms(moment: datetime) -> int:
    delta = moment - EARLIEST
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def _scan(
    store: DynamoDB, segments: int, ts_range: tuple[int, int], report: ReconcileReport
) -> dict[Key, Row]:
    def one(segment: int) -> tuple[list[Row], int, int]:
        rows, skipped, invalid = [], 0, 0
        for item in store.scan(segment=segment, total_segments=segments, ts_range=ts_range):
            try:
                row = row_from_item(item)
            except InvalidActivity as exc:
                invalid += 1
                log.warning("reconcile: an item of segment %s skipped: %s", segment, exc)
                continue
            if row is None:
                skipped += 1
            else:
                rows.append(row)
        return rows, skipped, invalid

    scanned: dict[Key, Row] = {}
    with ThreadPoolExecutor(max_workers=segments, thread_name_prefix="reconcile") as pool:
        for rows, skipped, invalid in pool.map(one, range(segments)):
            scanned.update(((r.actor, r.event_id), r) for r in rows)
            report.skipped += skipped
            report.invalid += invalid
    report.scanned = len(scanned)
    return scanned


def _clickhouse_groups(ch: ClickHouse, window: dict[str, Any]) -> dict[Group, tuple[int, int]]:
    table = ch.query_arrow(read_sql("queries/reconcile_groups.sql"), window).to_pydict()
    return {
        (type_, day): (count, digest)
        for type_, day, count, digest in zip(
            table["type"], table["day"], table["activities"], table["digest"], strict=True
        )
    }


def _clickhouse_rows(ch: ClickHouse, window: dict[str, Any], groups: set[Group]) -> dict[Key, Row]:
    parameters = {
        **window,
        "types": sorted({t for t, _ in groups}),
        "days": sorted({d for _, d in groups}),
    }
    table = ch.query_arrow(read_sql("queries/reconcile_rows.sql"), parameters).to_pylist()
    rows: dict[Key, Row] = {}
    for r in table:
        if (r["type"], day_of(r["ts_ms"])) not in groups:
            continue
        attributes = dict(r["attributes"])
        rows[r["actor"], r["event_id"]] = Row(
            r["event_id"], r["actor"], r["type"], r["target"], r["ts_ms"], attributes,
            "dynamodb", r["version"], 0,
        )  # fmt: skip
    return rows


def _repair(
    ch: ClickHouse, store: DynamoDB, diff: RowDiff, report: ReconcileReport, *, scope: str
) -> None:
    keys = [{"actor": r.actor, "sk": sort_key(r.ts_ms, r.event_id)} for r in diff.gone]
    still_there = store.existing_keys(keys) if keys else set()
    deleted = [
        tombstone(r)
        for r in diff.gone
        if (r.actor, sort_key(r.ts_ms, r.event_id)) not in still_there
    ]
    report.missing, report.stale, report.deleted = len(diff.missing), len(diff.stale), len(deleted)
    report.retention_kept, report.ahead = len(diff.retention), diff.ahead
    report.still_there = len(diff.gone) - len(deleted)
    fixes = [*diff.missing, *diff.stale, *deleted]
    for start in range(0, len(fixes), BATCH_ROWS):
        batch = fixes[start : start + BATCH_ROWS]
        positions = [EventPosition(0, start + i) for i in range(len(batch))]
        insert_rows(ch, batch, token=dedup_token(scope, batch, positions))
    kinds = Counter(r.type for r in fixes)
    if kinds:
        log.info("reconcile wrote %s row(s): %s", len(fixes), dict(kinds))


def _mark_trimmed_repaired(ch: ClickHouse, table: str, started: datetime) -> int:
    parameters = {"started": started, "marker": f":table/{table}/stream/"}
    open_ranges = ch.query_arrow(read_sql("queries/trimmed_ranges_open.sql"), parameters)
    if open_ranges.num_rows == 0:
        return 0
    count: int = open_ranges.num_rows
    repaired = open_ranges.append_column("repaired", pa.array([1] * count, pa.uint8()))
    version = pa.array([time.time_ns()] * count, pa.uint64())
    ch.insert_arrow(
        "sync_trimmed_ranges", repaired.append_column("version", version), dedup_token=None
    )
    for described in open_ranges.select(["stream", "shard", "detected_at"]).to_pylist():
        log.info("lost stream range marked repaired: %s", described)
    return count
