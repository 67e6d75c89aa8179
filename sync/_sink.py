"""The ClickHouse sink: write a batch, retry what may succeed later, note it for the rollup.

Both runners (the Faust worker and the embedded runner) hand their batches to `Sink.write` and
acknowledge the batch's positions only after it returned: checkpoint after the write.

A transient error (server unreachable, overloaded, timeout) is retried with capped exponential
backoff, the same batch with the same deduplication token, so a retry of an insert that did land
is dropped by ClickHouse and nothing is reordered: the caller is blocked until the batch is in
or the runner stops. A terminal error (unknown table, schema drift) is raised: the batch's
positions stay unacknowledged and the runner stops loudly rather than skip data.

The daily rollup is not refreshed here: the sink `mark()`s its `RollupKeeper` after each insert
and the runner refreshes it coalesced, off the acknowledgement path (see `_rollup`).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from footfall._clickhouse import ClickHouse
from footfall._errors import StoreError, StoreThrottled

from ._batch import Batch
from ._metrics import SyncMetrics
from ._rollup import RollupKeeper

__all__ = ["Sink", "SinkStopped"]

log = logging.getLogger(__name__)
TABLE = "activities"
Source = Literal["dynamodb", "kafka"]


class SinkStopped(StoreError):
    """The runner is stopping while a batch was still being retried; it was not acknowledged."""

    def __init__(self) -> None:
        super().__init__("ClickHouse", "stopped before the batch was written", code="Stopped")


@dataclass(frozen=True, slots=True)
class Backoff:
    """Jittered exponential delays. The cap bounds how long a batch waits after ClickHouse is
    back (a refused connection is cheap to retry; the lag must recover within seconds)."""

    base: float = 0.2
    cap: float = 2.0

    def delay(self, attempt: int) -> float:
        return random.uniform(self.base, min(self.cap, self.base * 2**attempt))


class Sink:
    """Writes batches of `activities` rows into ClickHouse (thread-safe: one insert at a time)."""

    def __init__(
        self,
        ch: ClickHouse,
        metrics: SyncMetrics | None = None,
        *,
        stop: threading.Event | None = None,
        backoff: Backoff | None = None,
        rollup: RollupKeeper | None = None,
    ) -> None:
        self.ch = ch
        self.metrics = metrics or SyncMetrics()
        self.stop = stop or threading.Event()
        self.backoff = backoff or Backoff()
        self.rollup = rollup
        self._lock = threading.Lock()
        self.newest: dict[str, float] = {}  # source -> newest event time written (epoch s)

    def write(self, batch: Batch[Any], source: Source) -> None:
        """Insert the batch (retrying transient errors until done or stopped) and mark the
        rollup out of date. Returns only when the rows are durable."""
        if not len(batch):
            return
        started = time.perf_counter()
        with self._lock:
            self._retrying(
                lambda: self.ch.insert_arrow(TABLE, batch.table, dedup_token=batch.dedup_token)
            )
            if self.rollup is not None:
                self.rollup.mark()
        m = self.metrics
        m.batch_seconds.labels(source).observe(time.perf_counter() - started)
        m.rows_written.labels(source).inc(len(batch))
        newest = batch.newest_ts_ms / 1000
        if newest > self.newest.get(source, 0.0):  # the watermark only moves forward
            self.newest[source] = newest
            m.newest_event_ts.labels(source).set(newest)
        log.debug("wrote %s %s rows (token %s)", len(batch), source, batch.dedup_token)

    def _retrying(self, call: Callable[[], None]) -> None:
        attempt = 0
        while True:
            try:
                call()
                return
            except StoreError as exc:
                if not exc.transient:
                    log.error("ClickHouse refused a batch (not retrying): %s", exc)
                    raise
                attempt += 1
                self.metrics.insert_retries.inc()
                wait = (
                    exc.retry_after
                    if isinstance(exc, StoreThrottled)
                    else self.backoff.delay(attempt)
                )
                log.warning("ClickHouse unavailable (%s); retry %d in %.1fs", exc, attempt, wait)
                if self.stop.wait(wait):
                    raise SinkStopped() from exc
