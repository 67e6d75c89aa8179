"""The embedded runner: the same relay and sink core driven in one process, without Kafka.

DynamoDB Streams → decode → one batch per relay round → ClickHouse (chDB by default) → then the
shards' checkpoints. The daily rollup is refreshed between rounds, coalesced (`_rollup`): when a
round finds nothing new, or a second after the last refresh under load; `catch_up()` and
`stop()` leave it exact. chDB allows one process per data directory, so the embedded default runs
relay, sink and queries in the process that owns the directory: use `EmbeddedSync` from a
notebook or the demo (`start()` runs it on a background thread), or `footfall sync run
--embedded` as a process of its own. Multi-process deployments use a ClickHouse server and the
Faust worker (`footfall sync worker`).
"""

from __future__ import annotations

import logging
import threading
import time
from types import TracebackType

from footfall._clickhouse import ClickHouse, connect
from footfall._errors import StoreError
from footfall._migrate import migrate
from footfall._settings import Settings, load_settings

from ._batch import Batch, dedup_token, rows_to_arrow
from ._decode import Poison, Retention, Row, RowChange, StreamPosition
from ._metrics import SyncMetrics
from ._rollup import RollupKeeper
from ._sink import Sink
from ._state import ClickHouseCheckpoints, DeadLetter, store_dead_letters
from ._streams import IdlePacing, StreamRelay

__all__ = ["EmbeddedSync"]

log = logging.getLogger(__name__)


class EmbeddedSync:
    """Mirror a table's stream into ClickHouse from this process.

    >>> with EmbeddedSync() as sync:
    ...     sync.catch_up()          # everything recorded so far is now in ClickHouse
    """

    def __init__(
        self,
        settings: Settings | None = None,
        ch: ClickHouse | None = None,
        *,
        poll_interval: float = 0.05,
        poll_idle_max: float = 0.25,
        metrics: SyncMetrics | None = None,
    ) -> None:
        """`poll_interval`: the wait after a round that found nothing, doubling while rounds
        stay empty up to `poll_idle_max` (see `IdlePacing`)."""
        self.pacing = IdlePacing(
            poll_interval, poll_idle_max, names=("poll_interval", "poll_idle_max")
        )
        self.settings = settings or load_settings()
        self._own_ch = ch is None
        self.ch = ch or connect(self.settings)
        migrate(self.ch)
        self.metrics = metrics or SyncMetrics()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None
        self.relay = StreamRelay(self.settings, ClickHouseCheckpoints(self.ch))
        self.rollup = RollupKeeper(self.ch)
        self.sink = Sink(self.ch, self.metrics, stop=self._stop, rollup=self.rollup)
        self.scope = f"dynamodb:{self.relay.stream_arn}"

    def run_once(self) -> int:
        """One relay round, written and checkpointed; returns how many records it handled."""
        reads = self.relay.poll()
        rows: list[Row] = []
        positions: list[StreamPosition] = []
        dead: list[DeadLetter] = []
        handled = 0
        for read in reads:
            handled += len(read.changes)
            for change in read.changes:
                if isinstance(change, RowChange):
                    rows.append(change.row)
                    positions.append(change.position)
                elif isinstance(change, Retention):
                    self.metrics.retention_skipped.inc()
                elif isinstance(change, Poison):
                    dead.append(
                        DeadLetter("dynamodb", "{}@{}".format(*change.position), change.reason, "")
                    )
        self.metrics.events_in.labels("dynamodb").inc(handled)
        if rows:
            batch = Batch(
                table=rows_to_arrow(rows),
                dedup_token=dedup_token(self.scope, rows, positions),
                positions=tuple(positions),
                newest_ts_ms=max(r.ts_ms for r in rows),
            )
            self.sink.write(batch, "dynamodb")
        if dead:
            store_dead_letters(self.ch, dead)
            self.metrics.dead_lettered.labels("dynamodb").inc(len(dead))
        for read in reads:  # after the write, never before
            self.relay.commit(read)
        return handled

    def catch_up(self, *, timeout: float = 60.0) -> int:
        """Run rounds until one finds nothing new, then bring the rollup up to date; returns
        the records handled."""
        deadline = time.monotonic() + timeout
        total = 0
        while time.monotonic() < deadline:
            handled = self.run_once()
            total += handled
            if not handled:
                self.rollup.flush()
                return total
            if self.rollup.due():
                self.rollup.refresh()
        log.warning("catch_up stopped after %ss with the stream still busy", timeout)
        self.rollup.flush()
        return total

    def run(self) -> None:
        """Poll until `stop()` is called (blocking)."""
        while not self._stop.is_set():
            try:
                handled = self.run_once()
                if self.rollup.due(idle=not handled):
                    self.rollup.refresh()
                if handled:
                    self.pacing.busy()
                else:
                    self._stop.wait(self.pacing.idle())
            except Exception as exc:
                if self._stop.is_set():
                    return
                self.error = exc
                log.exception("embedded sync failed; stopping")
                raise

    def start(self) -> EmbeddedSync:
        """Run in a background thread (for notebooks and the demo)."""
        self._thread = threading.Thread(target=self.run, name="footfall-embedded-sync", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the background thread and bring the rollup up to date."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        if self.error is None and self.rollup.dirty:
            try:
                self.rollup.flush()
            except StoreError as exc:  # the watermark lets the next start catch up
                log.warning("could not bring the rollup up to date on stop: %s", exc)

    def close(self) -> None:
        self.stop()
        if self._own_ch:
            self.ch.close()

    def __enter__(self) -> EmbeddedSync:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
