"""Backfill: copy an existing DynamoDB table into ClickHouse `activities` with a parallel Scan.

`backfill()` scans the table in `segments` parallel segments (one thread each, pages of up to
1 MB, ConsistentRead), turns each item into the row the stream decoder would build for it
(`row_from_item`: source 'dynamodb', version = the item's `rev`, is_deleted 0), and inserts the
rows in batches with a deterministic `insert_deduplication_token` per (segment, item range),
refreshing the daily rollup of each batch's days after its insert.

No gap and no double count against the stream; stream changes win:

- *Versions decide, not arrival order.* A scanned row carries the `rev` of the state the Scan
  read. Every later change of that item reaches the stream with a higher version: an update adds
  1 to `rev`, a user delete becomes a tombstone with `rev` + 1, and a re-put of a deleted key
  stores its write time. `activities` is a ReplacingMergeTree(version, is_deleted) on the
  activity's identity, so `FINAL` shows the highest version (and hides it if that one is a
  tombstone) whatever order the scan's and the relay's inserts land in. Equal versions are the
  same item state (each write sets a new `rev`), so a tie cannot change an attribute.
- *No double count.* A scanned row and a streamed row of one item share the identity and
  collapse to one row; a repeated backfill batch has the same token and is dropped (and any
  copy the token misses collapses the same way).
- *No gap.* Each item either existed when its segment read it (the scan writes that state and
  the stream holds every later change) or was written or deleted after that (the stream holds
  the change), provided the stream is read from before the scan started. Hence backfill first
  pins the stream (`HandOver`): the table must have a stream with NEW_AND_OLD_IMAGES (checked;
  error otherwise), and the relay state is read from its CheckpointStore before the first page.
  With checkpoints, the relay resumes after them; they are older than the scan because a
  checkpoint is stored only after its records are durable, so every record from the scan on is
  ahead of it, and a relay that falls behind the stream's 24 h retention gets
  TrimmedDataAccessException, which flags the range for `reconcile`. Without any checkpoint the
  relay's first start reads every shard from TRIM_HORIZON, which covers the scan only if it runs
  within 24 h of the scan's start: the report says so (`HandOver.deadline`), the CLI warns, and
  the check is never silent. After the scan the stream ARN is checked again: a stream disabled
  and re-enabled meanwhile lost changes, reported as a warning (run `reconcile`).

Deletes that happened before the scan, to rows ClickHouse already held, are not visible to a
Scan (the item is gone): that is `reconcile`'s job, which is also why a backfill does not mark
lost stream ranges (`sync_trimmed_ranges`) repaired.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final, TypeVar

from footfall._clickhouse import ClickHouse
from footfall._compaction import compact_after_load
from footfall._dynamodb import DynamoDB
from footfall._errors import ConfigError, InvalidActivity, StoreError
from footfall._rollup import days_of, refresh_rollup
from footfall._settings import Settings

from ._batch import dedup_token, rows_to_arrow
from ._decode import EventPosition, Row
from ._items import row_from_item
from ._streams import CheckpointStore

__all__ = [
    "BackfillReport",
    "HandOver",
    "Progress",
    "SegmentReport",
    "backfill",
    "batch_token",
    "insert_rows",
    "pin_stream",
]

log = logging.getLogger(__name__)
T = TypeVar("T")

TABLE: Final = "activities"
STREAM_RETENTION: Final = timedelta(hours=24)
MAX_SEGMENTS: Final = 1_000_000  # DynamoDB's limit on TotalSegments
PROGRESS_EVERY: Final = 1000  # items between progress callbacks (also after each batch)
Progress = Callable[[int, int], None]  # (segment, items scanned so far in it)


@dataclass(frozen=True, slots=True)
class HandOver:
    """Where the stream takes over from the scan: pinned before the first page is read."""

    stream_arn: str
    relay_shards: int  # shards the relay held a checkpoint for when the scan started
    started_at: datetime

    @property
    def from_trim_horizon(self) -> bool:
        """No relay state yet: its first start reads the stream from TRIM_HORIZON."""
        return self.relay_shards == 0

    @property
    def deadline(self) -> datetime | None:
        """When the scan's first stream records age out (None: the relay already holds state)."""
        return self.started_at + STREAM_RETENTION if self.from_trim_horizon else None

    def describe(self) -> str:
        if self.deadline is None:
            return (
                f"the relay resumes stream {self.stream_arn} from its checkpoints on "
                f"{self.relay_shards} shard(s), all older than the scan"
            )
        return (
            f"the relay has no checkpoint on stream {self.stream_arn} yet: it will read it from "
            f"TRIM_HORIZON, so start the sync worker before {self.deadline:%Y-%m-%d %H:%M} UTC "
            "or changes made during the backfill age out of the stream (then run reconcile)"
        )


@dataclass(slots=True)
class SegmentReport:
    """What one Scan segment did."""

    segment: int
    items: int = 0  # items scanned
    rows: int = 0  # rows written to ClickHouse
    skipped: int = 0  # items that are no activity
    invalid: int = 0  # activity items that cannot become a row (logged)
    batches: int = 0
    done: bool = False


@dataclass(slots=True)
class BackfillReport:
    """The outcome of `backfill`."""

    table: str
    handover: HandOver
    segments: list[SegmentReport]
    duration_s: float = 0.0
    warnings: list[str] = field(default_factory=list)
    compacted: list[str] = field(default_factory=list)  # partitions merged at the end

    @property
    def items_scanned(self) -> int:
        return sum(s.items for s in self.segments)

    @property
    def rows_written(self) -> int:
        return sum(s.rows for s in self.segments)

    @property
    def skipped(self) -> int:
        return sum(s.skipped for s in self.segments)

    @property
    def invalid(self) -> int:
        return sum(s.invalid for s in self.segments)


def batch_token(table: str, segment: int, indexed_rows: Sequence[tuple[int, Row]]) -> str:
    """The deduplication token of a backfill batch: its table, segment, the ordinals of its
    items in the segment's scan, and its rows' identities and versions. A re-run over unchanged
    data cuts the same batches and gets the same tokens; changed data gets other tokens."""
    positions = [EventPosition(segment, index) for index, _ in indexed_rows]
    return dedup_token(f"backfill:{table}", [row for _, row in indexed_rows], positions)


def insert_rows(ch: ClickHouse, rows: Sequence[Row], *, token: str, attempts: int = 5) -> None:
    """Insert rows into `activities` (transient errors retried with the same token, so a retry
    of an insert that did land is dropped), then refresh the daily rollup of their days."""
    table = rows_to_arrow(rows)
    _retrying(lambda: ch.insert_arrow(TABLE, table, dedup_token=token), attempts)
    _retrying(lambda: refresh_rollup(ch, days_of(table)), attempts)


def pin_stream(dynamodb: DynamoDB) -> str:
    """The table's current stream ARN, after checking the stream carries both images."""
    table = dynamodb.describe()
    spec = table.get("StreamSpecification") or {}
    view = spec.get("StreamViewType")
    arn = table.get("LatestStreamArn")
    if not spec.get("StreamEnabled") or view != "NEW_AND_OLD_IMAGES" or not arn:
        raise ConfigError(
            f"StreamSpecification of table {dynamodb.table}",
            view if spec.get("StreamEnabled") else "disabled",
            "a stream with NEW_AND_OLD_IMAGES, enabled before any backfill or reconcile "
            "(tables made by `footfall table create` have one)",
        )
    return str(arn)


def backfill(
    settings: Settings,
    ch: ClickHouse,
    *,
    checkpoints: CheckpointStore,
    segments: int = 4,
    batch_rows: int = 10_000,
    page_size: int | None = None,
    progress: Progress | None = None,
    dynamodb: DynamoDB | None = None,
    compact: bool = True,
) -> BackfillReport:
    """Copy every activity item of `settings.table` into `activities` (see the module doc).

    `checkpoints` is the relay's store: read (never written) to pin the hand-over. `progress`
    is called from the segment threads with (segment, items scanned so far in it) after each
    batch, every 1000 items and at the segment's end. Safe to run again and beside a running
    sync worker: it only inserts versioned rows. With `compact` (the default) it ends as a bulk
    load should: each month of `activities` it left in several parts is merged into one
    (`compact_after_load`), so reads with FINAL do not merge them at read time; a failed merge is
    a warning, the rows are in.
    """
    if not 1 <= segments <= MAX_SEGMENTS:
        raise ConfigError("segments", segments, f"an integer in [1, {MAX_SEGMENTS}]")
    if batch_rows < 1:
        raise ConfigError("batch_rows", batch_rows, "an integer >= 1")
    store = dynamodb or DynamoDB(settings)
    began = time.monotonic()
    arn = pin_stream(store)
    handover = HandOver(arn, len(checkpoints.load(arn)), datetime.now(UTC))
    if handover.from_trim_horizon:
        log.warning("%s", handover.describe())
    else:
        log.info("%s", handover.describe())
    report = BackfillReport(settings.table, handover, [SegmentReport(s) for s in range(segments)])
    scan = _Scan(store, ch, report, batch_rows, page_size, progress)
    with ThreadPoolExecutor(max_workers=segments, thread_name_prefix="backfill") as pool:
        futures = [pool.submit(scan.segment, s) for s in range(segments)]
        errors = [f.exception() for f in futures]
    if failed := next((e for e in errors if e is not None), None):
        raise failed
    if pin_stream(store) != arn:
        report.warnings.append(
            f"the stream of {settings.table} was replaced during the backfill (was {arn}); "
            "changes in between may be lost: run `footfall sync reconcile`"
        )
        log.error("%s", report.warnings[-1])
    if compact:
        try:
            report.compacted = [c.partition for c in compact_after_load(ch)]
        except StoreError as exc:
            report.warnings.append(
                f"compaction after the backfill failed ({exc}); run "
                "`footfall sync compact --all` later, reads are exact meanwhile"
            )
            log.warning("%s", report.warnings[-1])
    report.duration_s = time.monotonic() - began
    log.info(
        "backfill of %s: %s items scanned, %s rows written, %s skipped, %s invalid in %.1fs",
        settings.table,
        report.items_scanned,
        report.rows_written,
        report.skipped,
        report.invalid,
        report.duration_s,
    )
    return report


class _Scan:
    """The per-segment work of one backfill; segments share nothing but the stop flag."""

    def __init__(
        self,
        store: DynamoDB,
        ch: ClickHouse,
        report: BackfillReport,
        batch_rows: int,
        page_size: int | None,
        progress: Progress | None,
    ) -> None:
        self.store = store
        self.ch = ch
        self.report = report
        self.batch_rows = batch_rows
        self.page_size = page_size
        self.progress = progress or (lambda segment, items: None)
        self.stop = threading.Event()

    def segment(self, segment: int) -> None:
        try:
            self._run(segment)
        except BaseException:
            self.stop.set()  # the other segments stop at their next item
            raise

    def _run(self, segment: int) -> None:
        state = self.report.segments[segment]
        total = len(self.report.segments)
        pending: list[tuple[int, Row]] = []
        items = self.store.scan(segment=segment, total_segments=total, page_size=self.page_size)
        for index, item in enumerate(items):
            if self.stop.is_set():
                return
            state.items += 1
            try:
                row = row_from_item(item)
            except InvalidActivity as exc:
                state.invalid += 1
                log.warning("backfill: item %s of segment %s skipped: %s", index, segment, exc)
                continue
            if row is None:
                state.skipped += 1
            else:
                pending.append((index, row))
                if len(pending) >= self.batch_rows:
                    self._write(state, pending)
                    pending = []
                    self.progress(segment, state.items)
                    continue
            if state.items % PROGRESS_EVERY == 0:
                self.progress(segment, state.items)
        if pending:
            self._write(state, pending)
        state.done = True
        self.progress(segment, state.items)

    def _write(self, state: SegmentReport, pending: list[tuple[int, Row]]) -> None:
        rows = [row for _, row in pending]
        insert_rows(self.ch, rows, token=batch_token(self.report.table, state.segment, pending))
        state.rows += len(rows)
        state.batches += 1


def _retrying(call: Callable[[], T], attempts: int) -> T:
    """`call()`, retried with capped exponential backoff while it fails transiently."""
    for attempt in range(1, attempts + 1):
        try:
            return call()
        except StoreError as exc:
            if not exc.transient or attempt == attempts:
                raise
            delay = min(5.0, 0.2 * 2**attempt)
            log.warning("retrying in %.1fs after a transient error: %s", delay, exc)
            time.sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover
