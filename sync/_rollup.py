"""Keep the daily rollup exact, off the sink's critical path.

The sink acknowledges a batch once its rows are in `activities`; recomputing the days it touched
(`footfall._rollup.refresh_rollup`) after every batch, inside the write, cost 35 ms on an empty
table and 378 ms at 200k rows and kept batches small. Instead the sink only `mark()`s that rows
were written, and a `RollupKeeper` refreshes coalesced: at most every `interval_s` under load,
as soon as the input is idle, and on `flush()` (the runners call it on catch-up and shutdown).
So the rollup trails `activities` by about a second and equals the aggregate over
`activities FINAL` whenever the pipeline is caught up and flushed.

What to refresh comes from ClickHouse, not from memory: one refresh recomputes the days of every
row ingested since the persisted watermark minus `margin_s`, then moves the watermark to the
server time at which it looked. The watermark is a checkpoint over `activities.ingested_at`,
kept as a row of `sync_checkpoints` (stream `rollup:activities_daily`, `sequence` = epoch ms).
That makes it crash-safe and correct with several workers:
- a worker killed after a batch was acknowledged but before the rollup caught up leaves rows
  ingested after the watermark: the next refresh by any runner, at the latest the first one of
  the next start, recomputes their days;
- a refresh covers every runner's rows, so one runner may move the shared watermark;
- `margin_s` covers an insert whose `ingested_at` was taken before the look but whose part
  became visible after it.
A refresh is idempotent (it recomputes from `activities FINAL`), so overlapping ones are safe.
With no watermark yet (a new database, or one written by an older version) the first refresh
rebuilds the whole rollup once.

Finding the days scans the `ingested_at` column (no skip index: footfall's FINAL queries are
exact only with skip indexes on sorting-key columns), about 8 bytes per row, at most once per
`interval_s` and only after writes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pyarrow as pa  # type: ignore[import-untyped, unused-ignore]  # no stubs yet

from footfall._clickhouse import ClickHouse
from footfall._migrate import read_sql
from footfall._rollup import ROLLUP, refresh_rollup

__all__ = ["WATERMARK_PREFIX", "RollupKeeper"]

log = logging.getLogger(__name__)
WATERMARK_PREFIX = "rollup:"  # the `stream` of the watermark's row in sync_checkpoints
_SCOPE = WATERMARK_PREFIX + ROLLUP
_SHARD = "ingested_at"


class RollupKeeper:
    """Refreshes the daily rollup of what was written, coalesced (thread-safe)."""

    def __init__(
        self,
        ch: ClickHouse,
        *,
        interval_s: float = 1.0,
        idle_gap_s: float = 0.25,
        margin_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ch = ch
        self.interval_s = interval_s
        self.idle_gap_s = idle_gap_s  # a trickle is idle between its batches: not per batch
        self.margin = timedelta(seconds=margin_s)
        self._clock = clock
        self._lock = threading.Lock()  # one refresh at a time
        self._dirty = True  # the first refresh catches up from the persisted watermark
        self._last = float("-inf")  # when the last refresh started (clock)
        self.watermark: datetime | None = None
        self.refreshes = 0

    @property
    def dirty(self) -> bool:
        """Rows were written since the last refresh started (or none ran yet)."""
        return self._dirty

    def mark(self) -> None:
        """Rows were written to `activities` (cheap: the sink calls it after every batch)."""
        self._dirty = True

    def due(self, *, idle: bool = False) -> bool:
        """Whether a refresh should run now: something to do, and `interval_s` passed since the
        last one started, or only `idle_gap_s` if the input is idle."""
        if not self._dirty:
            return False
        elapsed = self._clock() - self._last
        return elapsed >= self.interval_s or (idle and elapsed >= self.idle_gap_s)

    def flush(self) -> None:
        """Refresh now if anything was written: afterwards the rollup reflects every row that
        was in `activities` when it was called (the runners' "caught up")."""
        if self._dirty:
            self.refresh()

    def refresh(self) -> None:
        """Recompute the days of every row ingested since the watermark; move it on."""
        with self._lock:
            self._dirty = False  # a write during the refresh asks for the next one
            self._last = self._clock()
            try:
                self._refresh()
            except BaseException:
                self._dirty = True
                raise
            self.refreshes += 1

    def _refresh(self) -> None:
        if self.watermark is None:
            self.watermark = self._load()
        if self.watermark is None:  # never refreshed by a runner: rebuild once
            now = _utc(self.ch.query_arrow("SELECT now64(3, 'UTC') AS now")["now"][0].as_py())
            refresh_rollup(self.ch, None)
            self._save(now)
            return
        since = self.watermark - self.margin
        found = self.ch.query_arrow(read_sql("queries/rollup_days_since.sql"), {"since": since})
        days, now = found["days"][0].as_py(), _utc(found["now"][0].as_py())
        refresh_rollup(self.ch, days)
        if now > self.watermark:
            self._save(now)
        log.debug("rollup refreshed: %s day(s) of rows ingested since %s", len(days), since)

    def _load(self) -> datetime | None:
        found = self.ch.query_arrow(read_sql("queries/rollup_watermark.sql"), {"scope": _SCOPE})
        if not found.num_rows:
            return None
        ms = int(found.column("ingested_until_ms")[0].as_py())
        return _EPOCH + timedelta(milliseconds=ms)

    def _save(self, until: datetime) -> None:
        until = _utc(until)
        ms = (until - _EPOCH) // timedelta(milliseconds=1)
        self.ch.insert_arrow(
            "sync_checkpoints",
            pa.table(
                {
                    "stream": [_SCOPE],
                    "shard": [_SHARD],
                    "sequence": [str(ms)],
                    "version": pa.array([ms * 1_000_000], pa.uint64()),  # the newest time wins
                }
            ),
            dedup_token=None,
        )
        self.watermark = until


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _utc(moment: datetime) -> datetime:
    """A server time as an aware UTC datetime (naive values are UTC)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
