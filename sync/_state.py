"""Durable sync state in ClickHouse: relay checkpoints, lost stream ranges, dead letters.

The relay's checkpoints live beside the data they describe (tables from
sql/migrations/0003_sync_state.sql) rather than in a Faust table: the relay runs as a
leader-only timer, outside any partition's context, where a Faust table cannot be written; a
ClickHouse row per shard is durable, readable by `footfall sync status`, and the repair path
reads the lost ranges from the same place.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import pyarrow as pa  # type: ignore[import-untyped, unused-ignore]

from footfall._clickhouse import ClickHouse

from ._lineage import TrimmedRange

__all__ = ["ClickHouseCheckpoints", "DeadLetter", "store_dead_letters"]

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

    def save(self, stream_arn: str, shard_id: str, sequence_number: str) -> None:
        self.ch.insert_arrow(
            "sync_checkpoints",
            pa.table(
                {
                    "stream": [stream_arn],
                    "shard": [shard_id],
                    "sequence": [sequence_number],
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
