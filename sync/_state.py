"""Durable sync state in ClickHouse: relay checkpoints, lost stream ranges, dead letters.

The relay's checkpoints live beside the data they describe (tables from
sql/migrations/0003_sync_state.sql) rather than in a Faust table: the relay runs as a
leader-only timer, outside any partition's context, where a Faust table cannot be written; a
ClickHouse row per shard is durable, readable by `footfall sync status`, and the repair path
reads the lost ranges from the same place.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence

import pyarrow as pa  # type: ignore[import-untyped, unused-ignore]

from footfall._clickhouse import ClickHouse
from footfall._errors import StoreError

from ._lineage import TrimmedRange

__all__ = ["ClickHouseCheckpoints", "DeadLetter", "DeferredCheckpoints", "store_dead_letters"]

log = logging.getLogger(__name__)


class ClickHouseCheckpoints:
    """`CheckpointStore` on the `sync_checkpoints` and `sync_trimmed_ranges` tables."""

    def __init__(self, ch: ClickHouse) -> None:
        self.ch = ch

    def load(self, stream_arn: str) -> dict[str, str]:
        table = self.ch.query_arrow(
            "SELECT shard, argMax(sequence, version) AS sequence FROM sync_checkpoints "
            "WHERE stream = {stream:String} GROUP BY shard",
            {"stream": stream_arn},
        )
        return dict(
            zip(
                table.column("shard").to_pylist(), table.column("sequence").to_pylist(), strict=True
            )
        )

    def load_drained(self, stream_arn: str) -> set[str]:
        table = self.ch.query_arrow(
            "SELECT shard FROM sync_checkpoints WHERE stream = {stream:String} "
            "GROUP BY shard HAVING argMax(drained, version) = 1",
            {"stream": stream_arn},
        )
        return set(table.column("shard").to_pylist())

    def save(
        self, stream_arn: str, shard_id: str, sequence_number: str, *, drained: bool = False
    ) -> None:
        self.ch.insert_arrow(
            "sync_checkpoints",
            pa.table(
                {
                    "stream": [stream_arn],
                    "shard": [shard_id],
                    "sequence": [sequence_number],
                    "drained": pa.array([int(drained)], pa.uint8()),
                    "version": pa.array([time.time_ns()], pa.uint64()),
                }
            ),
            dedup_token=None,
        )

    def record_trimmed(self, stream_arn: str, trimmed: TrimmedRange) -> None:
        self.ch.insert_arrow(
            "sync_trimmed_ranges",
            pa.table(
                {
                    "stream": [stream_arn],
                    "shard": [trimmed.shard_id],
                    "after_sequence": [trimmed.after_sequence_number],
                    "until_sequence": [trimmed.until_sequence_number],
                    "reason": [trimmed.reason],
                    "detected_at": pa.array([trimmed.detected_at], pa.timestamp("ms", tz="UTC")),
                    "version": pa.array([time.time_ns()], pa.uint64()),
                }
            ),
            dedup_token=None,
        )


class DeferredCheckpoints:
    """A checkpoint store that keeps the relay going while its durable store is away.

    The worker's relay hands changes to Kafka, not to ClickHouse, so a ClickHouse outage need
    not stop it: a checkpoint (or lost range) that cannot be stored stays pending here, newest
    per shard, and `flush` stores it once the store is back. Until then a restarted relay
    resumes from the older stored checkpoint and re-sends what followed; the changes are in
    Kafka already and their rows are idempotent, so the repeats are absorbed. The checkpoint is
    still saved only after the hand-off (the relay calls `save` after Kafka acknowledged).
    `load` needs the store: a relay cannot start without knowing where to resume.

    With `eager=False`, `save` only notes the checkpoint and the runner calls `flush` from
    another thread, on its own schedule: the relay's next read does not wait for a ClickHouse
    insert (a crash re-sends at most what followed the last stored checkpoint, as above).
    """

    def __init__(self, store: ClickHouseCheckpoints, *, eager: bool = True) -> None:
        self.store = store
        self.eager = eager
        # (stream, shard) -> newest pending (sequence, drained)
        self._sequences: dict[tuple[str, str], tuple[str, bool]] = {}
        self._trimmed: list[tuple[str, TrimmedRange]] = []
        self._lock = threading.Lock()  # the relay notes, a flush stores: maybe two threads
        self._flushing = threading.Lock()

    @property
    def pending(self) -> int:
        """Checkpoints and lost ranges not yet stored."""
        return len(self._sequences) + len(self._trimmed)

    def load(self, stream_arn: str) -> dict[str, str]:
        """The stored checkpoints, overlaid with those still pending here (newer)."""
        stored = self.store.load(stream_arn)
        with self._lock:
            pending = {k[1]: v[0] for k, v in self._sequences.items() if k[0] == stream_arn}
        return {**stored, **pending}

    def load_drained(self, stream_arn: str) -> set[str]:
        """The stored drained shards, with those pending here."""
        stored = self.store.load_drained(stream_arn)
        with self._lock:
            pending = {k[1] for k, v in self._sequences.items() if k[0] == stream_arn and v[1]}
        return stored | pending

    def save(
        self, stream_arn: str, shard_id: str, sequence_number: str, *, drained: bool = False
    ) -> None:
        with self._lock:
            self._sequences[(stream_arn, shard_id)] = (sequence_number, drained)
        if self.eager:
            self.flush()

    def record_trimmed(self, stream_arn: str, trimmed: TrimmedRange) -> None:
        with self._lock:
            self._trimmed.append((stream_arn, trimmed))
        if self.eager:
            self.flush()

    def flush(self) -> bool:
        """Store what is pending; True when nothing is left (a store error keeps it pending).
        Only one flush runs at a time; `save` may note newer checkpoints meanwhile."""
        try:
            with self._flushing:
                while self._trimmed:
                    stream_arn, trimmed = self._trimmed[0]
                    self.store.record_trimmed(stream_arn, trimmed)
                    with self._lock:
                        self._trimmed.pop(0)
                with self._lock:
                    pending = list(self._sequences.items())
                for key, (sequence, drained) in pending:
                    self.store.save(*key, sequence, drained=drained)
                    with self._lock:
                        if self._sequences.get(key) == (sequence, drained):
                            del self._sequences[key]
        except StoreError as exc:
            log.warning("relay checkpoints kept pending (%s): %s", self.pending, exc)
            return False
        return True


class DeadLetter:
    """A record that can never become a row, with why (kept where the runner keeps them)."""

    __slots__ = ("payload", "position", "reason", "source")

    def __init__(self, source: str, position: str, reason: str, payload: bytes | str) -> None:
        self.source = source
        self.position = position
        self.reason = reason
        self.payload = payload if isinstance(payload, str) else payload.decode(errors="replace")


def store_dead_letters(ch: ClickHouse, letters: Sequence[DeadLetter]) -> None:
    """Keep dead letters in `sync_dead_letters` (the embedded runner has no Kafka DLQ)."""
    if not letters:
        return
    ch.insert_arrow(
        "sync_dead_letters",
        pa.table(
            {
                "source": [d.source for d in letters],
                "position": [d.position for d in letters],
                "reason": [d.reason for d in letters],
                "payload": [d.payload[:65536] for d in letters],
            }
        ),
        dedup_token=None,
    )
    for letter in letters:
        log.warning(
            "dead-lettered %s record at %s: %s", letter.source, letter.position, letter.reason
        )
