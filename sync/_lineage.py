"""Shard lineage of a DynamoDB stream: what to read next and where to start (pure: no I/O).

The relay lists shards with `describe_stream` (all pages), keeps per shard a checkpoint (the
last sequence number durably forwarded) and the set of drained shards (closed shards it read to
the end: `get_records` returned no `NextShardIterator`). From those, `plan_reads` says:

- which shards are readable now: not drained, and their parent drained or no longer listed (a
  parent trimmed after 24 h has nothing left to read); parents come before children, so records
  of one item stay in order across a split (one parent, two children);
- where each starts: after its checkpoint (`AFTER_SEQUENCE_NUMBER`) or, for a shard never read,
  at `TRIM_HORIZON`;
- which shards wait for a parent, which checkpoints can be forgotten (drained shards that are
  gone), and which shards vanished before they were drained (their tail is lost: report it).

Open shards (no `EndingSequenceNumber`) are never drained; the relay polls them. A
`TrimmedDataAccessException` (the checkpoint is older than the trim horizon) or a vanished shard
becomes a `TrimmedRange`: the relay logs it loudly, stores it, resumes at `TRIM_HORIZON`, and a
repair path (a backfill Scan: stream records cannot be re-read) covers the lost window.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal

from footfall import StoreError

__all__ = [
    "IteratorStart",
    "ReadPlan",
    "Shard",
    "TrimmedRange",
    "parse_shards",
    "plan_reads",
    "start_of",
]


@dataclass(frozen=True, slots=True)
class Shard:
    """One shard of `describe_stream`'s `StreamDescription.Shards`."""

    shard_id: str
    parent_id: str | None
    starting_sequence_number: str
    ending_sequence_number: str | None  # None while the shard is open

    @property
    def closed(self) -> bool:
        """A closed shard gets no new records; read to its end, it is drained."""
        return self.ending_sequence_number is not None


@dataclass(frozen=True, slots=True)
class IteratorStart:
    """Where to open a shard iterator."""

    shard_id: str
    iterator_type: Literal["TRIM_HORIZON", "AFTER_SEQUENCE_NUMBER"]
    sequence_number: str | None = None

    def request(self, stream_arn: str) -> dict[str, str]:
        """Keyword arguments for `dynamodbstreams.get_shard_iterator`."""
        args = {"StreamArn": stream_arn, "ShardId": self.shard_id}
        args["ShardIteratorType"] = self.iterator_type
        if self.sequence_number is not None:
            args["SequenceNumber"] = self.sequence_number
        return args


@dataclass(frozen=True, slots=True)
class ReadPlan:
    """What the relay should do with the shards listed now."""

    readable: tuple[IteratorStart, ...]  # parents before children, then by starting sequence
    waiting: tuple[str, ...]  # shards whose parent is listed and not drained yet
    forgettable: tuple[str, ...]  # drained shards no longer listed: drop their state
    vanished: tuple[TrimmedRange, ...]  # shards gone before drained: report, then forget them


@dataclass(frozen=True, slots=True)
class TrimmedRange:
    """Stream records that can no longer be read: the relay reports it, a repair path reads it.

    Records of shard `shard_id` after `after_sequence_number` (from the shard's start if None)
    and before `until_sequence_number` (the first record read again; None while unknown, or if
    the whole rest of the shard is gone) were trimmed unread, detected at `detected_at`.
    """

    shard_id: str
    after_sequence_number: str | None
    detected_at: datetime
    reason: str = "TrimmedDataAccessException"
    until_sequence_number: str | None = None

    def until(self, sequence_number: str) -> TrimmedRange:
        """The same range, closed by the first record read after resuming."""
        return replace(self, until_sequence_number=sequence_number)

    def resume(self) -> IteratorStart:
        """Where reading goes on: the oldest record still there."""
        return IteratorStart(self.shard_id, "TRIM_HORIZON")

    def describe(self) -> str:
        """A message for the loud log line and the CLI."""
        start = self.after_sequence_number or "the shard's start"
        end = self.until_sequence_number or "the oldest record still readable"
        return (
            f"stream records of shard {self.shard_id} after {start} up to {end} were lost unread "
            f"({self.reason}, detected {self.detected_at.isoformat()}); "
            "run a backfill of the table to repair the analytics copy"
        )

    def to_dict(self) -> dict[str, str | None]:
        """Plain JSON data, for the relay's state store."""
        return {
            "shard_id": self.shard_id,
            "after_sequence_number": self.after_sequence_number,
            "until_sequence_number": self.until_sequence_number,
            "detected_at": self.detected_at.isoformat(),
            "reason": self.reason,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrimmedRange:
        return cls(
            shard_id=str(data["shard_id"]),
            after_sequence_number=data.get("after_sequence_number"),
            detected_at=datetime.fromisoformat(str(data["detected_at"])),
            reason=str(data.get("reason") or "TrimmedDataAccessException"),
            until_sequence_number=data.get("until_sequence_number"),
        )


def parse_shards(shards: Iterable[Mapping[str, Any]]) -> tuple[Shard, ...]:
    """`Shard`s from `describe_stream` pages' `Shards` lists (concatenated)."""
    parsed = []
    for raw in shards:
        try:
            sequence_range = raw["SequenceNumberRange"]
            shard = Shard(
                shard_id=str(raw["ShardId"]),
                parent_id=raw.get("ParentShardId") or None,
                starting_sequence_number=str(sequence_range["StartingSequenceNumber"]),
                ending_sequence_number=sequence_range.get("EndingSequenceNumber"),
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise StoreError(
                "dynamodb-streams",
                f"describe_stream returned a shard without {exc}: {raw!r}",
                code="MalformedShard",
            ) from exc
        parsed.append(shard)
    return tuple(parsed)


def start_of(shard_id: str, checkpoint: str | None) -> IteratorStart:
    """Resume after the checkpoint, or read a shard never read from its oldest record."""
    if checkpoint is None:
        return IteratorStart(shard_id, "TRIM_HORIZON")
    return IteratorStart(shard_id, "AFTER_SEQUENCE_NUMBER", checkpoint)


def plan_reads(
    shards: Iterable[Shard],
    *,
    drained: Collection[str],
    checkpoints: Mapping[str, str],
    now: datetime,
) -> ReadPlan:
    """Which shards to read now and from where, given what is drained and checkpointed.

    A shard with a checkpoint that is neither listed nor drained expired before the relay read
    it to its end: it comes back in `vanished` (detected at `now`) until its state is dropped.
    """
    listed = {shard.shard_id: shard for shard in shards}
    readable, waiting = [], []
    for shard in listed.values():
        if shard.shard_id in drained:
            continue
        parent = shard.parent_id
        if parent is not None and parent in listed and parent not in drained:
            waiting.append(shard.shard_id)
        else:
            readable.append(shard)
    readable.sort(key=lambda shard: _sequence(shard.starting_sequence_number))
    gone = [shard_id for shard_id in checkpoints if shard_id not in listed]
    vanished = sorted(shard_id for shard_id in gone if shard_id not in drained)
    forgettable = {shard_id for shard_id in drained if shard_id not in listed}
    reason = "shard expired before it was drained"
    return ReadPlan(
        readable=tuple(start_of(s.shard_id, checkpoints.get(s.shard_id)) for s in readable),
        waiting=tuple(sorted(waiting)),
        forgettable=tuple(sorted(forgettable)),
        vanished=tuple(TrimmedRange(s, checkpoints[s], now, reason) for s in vanished),
    )


def _sequence(number: str) -> int:
    return int(number) if number.isdigit() else 0
