"""Batch rows for ClickHouse and decide checkpoints (pure: no I/O; the clock is injected).

A runner drives two objects: a `Batcher` cuts rows into `Batch`es by size and age, and an
`OffsetTracker` says which positions are safe to checkpoint. Every position read is tracked,
and acknowledged once what it produced is durable (its batch inserted, its poison record in the
DLQ, or nothing to write at all):

    tracker.track(position)
    match decode_event(message.value, partition=message.partition, offset=message.offset):
        case Poison() as poison:
            send_to_dlq(message, poison.headers())       # awaited
            tracker.ack(position)
        case row:
            if batch := batcher.add(row, position):
                flush(batch)
    ...
    if batch := batcher.poll():                           # also on an idle timer: due_in()
        flush(batch)

    def flush(batch):
        clickhouse.insert_arrow("activities", batch.table, dedup_token=batch.dedup_token)
        tracker.ack_all(batch.positions)                  # after the write, never before
        commit(tracker.committable())                     # Kafka: commit offset + 1

Who guarantees what ("effectively once" = at-least-once delivery + idempotent rows):

1. `OffsetTracker`: a position is committed only when it and every position read before it in
   its lane (partition or shard) is durable, so a crash re-reads, never skips: at least once.
2. `Batch.dedup_token`: a function of the batch's positions (per lane: first, last, count) and
   of its rows' identities. A batch re-sent with the same positions after a failed or unconfirmed
   insert gets the same token, and ClickHouse drops it as a duplicate insert (a Replicated table,
   or `non_replicated_deduplication_window` > 0 on a plain MergeTree; only within the window).
   Other content gets another token (a 128-bit digest of the rows' identities and versions),
   even if offsets were reused after a topic was recreated.
   This layer is an optimisation: it keeps duplicate rows out of parts.
3. `ReplacingMergeTree(version)` on the identity (type, target, ts, actor, event_id): everything
   the token misses lands as duplicate rows of equal version, e.g. a re-read cut at different
   boundaries after a restart (the age cut depends on timing), a record the relay produced twice
   at different offsets, or a token older than the window. Merges, and `FINAL` at once, collapse
   them. So `count() FROM activities FINAL` is exact; a plain `count()` may over-count until
   the merges ran.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import deque
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final, Generic, TypeVar

import pyarrow as pa  # type: ignore[import-untyped, unused-ignore]  # no stubs yet

from footfall import ConfigError

from ._decode import EventPosition, Row, StreamPosition

__all__ = [
    "SCHEMA",
    "Batch",
    "Batcher",
    "OffsetTracker",
    "dedup_token",
    "rows_to_arrow",
    "warm_up_arrow",
]

log = logging.getLogger(__name__)

P = TypeVar("P", EventPosition, StreamPosition)

_TEXT = pa.string()
_TS = pa.timestamp("ms", tz="UTC")
_ATTRIBUTES = pa.map_(pa.string(), pa.field("value", pa.string(), nullable=False))
SCHEMA: Final = pa.schema(
    [
        pa.field("event_id", _TEXT, nullable=False),
        pa.field("actor", _TEXT, nullable=False),
        pa.field("type", _TEXT, nullable=False),
        pa.field("target", _TEXT, nullable=False),
        pa.field("ts", _TS, nullable=False),
        pa.field("attributes", _ATTRIBUTES, nullable=False),
        pa.field("source", _TEXT, nullable=False),
        pa.field("version", pa.uint64(), nullable=False),
        pa.field("is_deleted", pa.uint8(), nullable=False),
    ]
)
_READABLE_TOKEN: Final = 200  # longer lane descriptions are hashed


def rows_to_arrow(rows: Sequence[Row]) -> pa.Table:
    """The rows as a table for `insert_arrow`, with the exact column types of `activities`."""
    if not rows:
        return SCHEMA.empty_table()
    event_id, actor, type_, target, ts, attributes, source, version, deleted = zip(
        *rows, strict=True
    )
    offsets, keys, values = [0], [], []
    for mapping in attributes:
        keys.extend(mapping)
        values.extend(mapping.values())
        offsets.append(len(keys))
    attribute_array = pa.MapArray.from_arrays(
        pa.array(offsets, pa.int32()),
        pa.array(keys, _TEXT),
        pa.array(values, _TEXT),
        type=_ATTRIBUTES,
    )
    columns = [
        pa.array(event_id, _TEXT),
        pa.array(actor, _TEXT),
        pa.array(type_, _TEXT),
        pa.array(target, _TEXT),
        pa.array(ts, _TS),
        attribute_array,
        pa.array(source, _TEXT),
        pa.array(version, pa.uint64()),
        pa.array(deleted, pa.uint8()),
    ]
    return pa.Table.from_arrays(columns, schema=SCHEMA)


def warm_up_arrow() -> None:
    """Convert one row, so pyarrow's lazy imports (its pandas shim: ~330 modules, 0.7 s here)
    happen at start-up instead of stalling a runner's event loop at its first batch."""
    rows_to_arrow([Row("warm-up", "a", "t", "x", 0, {"k": "v"}, "kafka", 0, 0)])


def dedup_token(scope: str, rows: Sequence[Row], positions: Sequence[P]) -> str:
    """A deterministic `insert_deduplication_token`: `ff1:<scope>:<lanes>:<digest>`.

    `<lanes>` lists, per lane in sorted order, `<lane>@<first>-<last>#<count>` (hashed when long);
    `<digest>` hashes the rows' (event_id, version, is_deleted) lane by lane in read order. The
    same positions with the same records give the same token however they interleaved across
    lanes; any other batch gets another one.
    """
    lanes: dict[Hashable, list[int]] = {}
    for index, position in enumerate(positions):
        lanes.setdefault(position[0], []).append(index)
    described, digest = [], hashlib.blake2b(digest_size=16)
    for lane in sorted(lanes, key=str):
        indexes = lanes[lane]
        first, last = positions[indexes[0]][1], positions[indexes[-1]][1]
        described.append(f"{lane}@{first}-{last}#{len(indexes)}")
        identities = (rows[i] for i in indexes)
        digest.update(
            "\n".join(f"{r.event_id} {r.version} {r.is_deleted}" for r in identities).encode()
        )
        digest.update(b"\x00")
    text = ",".join(described)
    if len(text) > _READABLE_TOKEN:
        text = "h" + hashlib.blake2b(text.encode(), digest_size=16).hexdigest()
    return f"ff1:{scope}:{text}:{digest.hexdigest()}"


@dataclass(frozen=True, slots=True)
class Batch(Generic[P]):
    """Rows ready for one insert, and the positions to acknowledge once it succeeded."""

    table: pa.Table
    dedup_token: str
    positions: tuple[P, ...]  # a pack's position once, however many rows it gave
    newest_ts_ms: int  # for the "newest event time written" lag metric

    def __len__(self) -> int:
        """The number of rows."""
        return int(self.table.num_rows)


class Batcher(Generic[P]):
    """Accumulate rows; cut a batch at `max_rows` rows or when the oldest waited `max_wait_s`.

    `scope` names the input in dedup tokens (e.g. `kafka:footfall.events`, `dynamodb:<table>`);
    use one Batcher per input, so positions of different inputs never share a token.
    """

    def __init__(
        self,
        scope: str,
        *,
        max_rows: int = 10_000,
        max_wait_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_rows < 1:
            raise ConfigError("max_rows", max_rows, "an integer >= 1")
        if not max_wait_s > 0:
            raise ConfigError("max_wait_s", max_wait_s, "a number of seconds > 0")
        self.scope = scope
        self.max_rows = max_rows
        self.max_wait_s = max_wait_s
        self._clock = clock
        self._rows: list[Row] = []
        self._positions: list[P] = []
        self._started = 0.0

    def __len__(self) -> int:
        return len(self._rows)

    def add(self, row: Row, position: P, *, by_age: bool = True) -> Batch[P] | None:
        """Add a row; returns a batch when this row filled it or (with `by_age`) the oldest row
        waited enough. A runner with a write in flight passes `by_age=False` and lets the batch
        grow until that write is done."""
        return self.add_many((row,), position, by_age=by_age)

    def add_many(self, rows: Sequence[Row], position: P, *, by_age: bool = True) -> Batch[P] | None:
        """Add the rows of one position (a pack) to the same batch, which may so exceed
        `max_rows` by less than one pack; otherwise as `add`."""
        if not rows:
            return None
        if not self._rows:
            self._started = self._clock()
        self._rows.extend(rows)
        self._positions.append(position)
        if len(self._rows) >= self.max_rows:
            return self.flush()
        return self.poll() if by_age else None

    def poll(self) -> Batch[P] | None:
        """A batch if the oldest pending row waited `max_wait_s` or longer, else None."""
        if self._rows and self._clock() - self._started >= self.max_wait_s:
            return self.flush()
        return None

    def due_in(self) -> float | None:
        """Seconds until `poll()` cuts a batch (0 if due now); None while nothing is pending."""
        if not self._rows:
            return None
        return max(0.0, self._started + self.max_wait_s - self._clock())

    def flush(self) -> Batch[P] | None:
        """Cut whatever is pending now (e.g. on shutdown or partition revocation)."""
        if not self._rows:
            return None
        rows, positions = self._rows, tuple(self._positions)
        self._rows, self._positions = [], []
        batch = Batch(
            table=rows_to_arrow(rows),
            dedup_token=dedup_token(self.scope, rows, positions),
            positions=positions,
            newest_ts_ms=max(row.ts_ms for row in rows),
        )
        log.debug("batch of %s rows cut, token %s", len(rows), batch.dedup_token)
        return batch


@dataclass(slots=True)
class _Lane(Generic[P]):
    queue: deque[P] = field(default_factory=deque)  # tracked, not yet safe, in read order
    queued: set[P] = field(default_factory=set)
    acked: set[P] = field(default_factory=set)
    last: int | None = None  # order key of the newest tracked position
    parts: dict[P, int] = field(default_factory=dict)  # position -> acks still expected (> 1)
    safe: P | None = None
    advanced: bool = False


class OffsetTracker(Generic[P]):
    """Per lane, the newest position whose every predecessor is acknowledged too.

    `track` positions in read order, `ack` them in any order once durable; `committable()` then
    lists, for each lane that moved, the newest position safe to checkpoint (Kafka wants offset
    + 1 committed; DynamoDB Streams resume AFTER_SEQUENCE_NUMBER of it). A gap, a position tracked
    and not yet acknowledged, holds its lane back, however much is acknowledged after it.
    """

    def __init__(self) -> None:
        self._lanes: dict[Hashable, _Lane[P]] = {}

    def track(self, position: P) -> bool:
        """Note a position as read. Returns False (and ignores it) when it is not newer than the
        last one tracked in its lane, i.e. a redelivery the first reading already covers."""
        lane = self._lanes.get(position[0])
        if lane is None:
            lane = self._lanes[position[0]] = _Lane()
        key = _order(position)
        if lane.last is not None and key <= lane.last:
            return False
        lane.last = key
        lane.queue.append(position)
        lane.queued.add(position)
        return True

    def expect(self, position: P, parts: int) -> None:
        """A tracked position is durable only after `parts` acks (a pack whose rows and dead
        letters are made durable separately)."""
        lane = self._lanes.get(position[0])
        if lane is None or position not in lane.queued:
            raise ValueError(f"{position} is not pending: track it first")
        if parts > 1:
            lane.parts[position] = parts

    def ack(self, position: P) -> bool:
        """Mark a tracked position durable (or one of its `expect`ed parts). Returns False for
        one not pending (never tracked, already safe, or in a lane `reset` since): ignored."""
        lane = self._lanes.get(position[0])
        if lane is None or position not in lane.queued:
            log.debug("ack of a position not pending ignored: %s", position)
            return False
        left = lane.parts.get(position)
        if left is not None:
            if left > 1:
                lane.parts[position] = left - 1
                return True
            del lane.parts[position]
        lane.acked.add(position)
        queue = lane.queue
        while queue and queue[0] in lane.acked:
            done = queue.popleft()
            lane.acked.discard(done)
            lane.queued.discard(done)
            lane.safe, lane.advanced = done, True
        return True

    def ack_all(self, positions: Iterable[P]) -> None:
        for position in positions:
            self.ack(position)

    def committable(self) -> list[P]:
        """The newest safe position of each lane that advanced since the last call."""
        out: list[P] = []
        for lane in self._lanes.values():
            if lane.advanced and lane.safe is not None:
                out.append(lane.safe)
                lane.advanced = False
        return out

    def safe(self, lane: Hashable) -> P | None:
        """The newest safe position of a lane (None before the first one)."""
        state = self._lanes.get(lane)
        return None if state is None else state.safe

    def pending(self) -> int:
        """How many tracked positions are not yet safe to checkpoint."""
        return sum(len(lane.queue) for lane in self._lanes.values())

    def reset(self, lane: Hashable) -> None:
        """Forget a lane: a revoked partition, or before re-reading it from its checkpoint."""
        self._lanes.pop(lane, None)


def _order(position: EventPosition | StreamPosition) -> int:
    mark = position[1]
    return mark if isinstance(mark, int) else int(mark)
