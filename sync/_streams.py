"""The DynamoDB Streams relay: read every shard in order, hand the changes on, checkpoint after.

`StreamRelay.poll()` reads each readable shard once (parents before children, see `_lineage`),
decodes the records (`_decode`) and returns one `ShardRead` per shard with records. The runner
makes them durable in the next stage (Kafka `footfall.cdc` in the worker, ClickHouse in the
embedded runner) and only then calls `relay.commit(read)`, which stores the shard's checkpoint.
A crash in between re-reads the same records after restart: at least once, never a gap.

Iterators expire after 15 minutes: an expired one is reopened after the last sequence number
handed out. A checkpoint older than the stream's 24 h trim horizon raises
`TrimmedDataAccessException`: the range is logged at ERROR, stored as a `TrimmedRange` for the
repair path, and reading resumes at TRIM_HORIZON.

This module and `_decode` are the only places in `sync` that touch boto3.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from footfall._dynamodb import make_client, make_streams_client, translate_error
from footfall._errors import ConfigError, StoreError
from footfall._settings import Settings

from ._decode import Change, Poison, Retention, RowChange, Skip, decode_stream_record
from ._lineage import IteratorStart, TrimmedRange, parse_shards, plan_reads

if TYPE_CHECKING:
    from mypy_boto3_dynamodbstreams import DynamoDBStreamsClient

__all__ = ["CheckpointStore", "IdlePacing", "ShardRead", "StreamRelay", "stream_arn_of"]

log = logging.getLogger(__name__)


class CheckpointStore(Protocol):
    """Durable relay state: the last sequence number per shard handed on, which shards were
    read to their end, and lost ranges."""

    def load(self, stream_arn: str) -> dict[str, str]: ...

    def load_drained(self, stream_arn: str) -> set[str]: ...

    def save(
        self, stream_arn: str, shard_id: str, sequence_number: str, *, drained: bool = False
    ) -> None: ...

    def record_trimmed(self, stream_arn: str, trimmed: TrimmedRange) -> None: ...


@dataclass(slots=True)
class IdlePacing:
    """How long a relay waits before its next round once rounds find nothing.

    A round that handed on records is followed by the next one at once (`busy()`). After an
    empty round the wait starts at `first_s` and doubles with every further empty round up to
    `max_s`: a stream that just went quiet is still polled quickly, one idle for a while is
    polled `1 / max_s` times a second per shard instead of `1 / first_s` (on AWS every
    GetRecords call is billed, and a shard serves few readers before it throttles). The price
    is the first record after a quiet spell: it waits up to `max_s` for its round.
    """

    first_s: float = 0.05
    max_s: float = 0.25
    # how the caller names the two waits, for the error a bad pair raises
    names: tuple[str, str] = ("first_s", "max_s")
    _next: float = 0.0

    def __post_init__(self) -> None:
        if not 0 < self.first_s <= self.max_s:
            first, cap = self.names
            expected = f"more than 0 and at most {cap} ({self.max_s})"
            raise ConfigError(first, self.first_s, expected)

    def busy(self) -> None:
        """A round handed records on: the next empty round waits `first_s` again."""
        self._next = 0.0

    def idle(self) -> float:
        """A round found nothing: how long to wait before the next."""
        self._next = min(self.max_s, 2 * self._next) if self._next else self.first_s
        return self._next


@dataclass(slots=True)
class ShardRead:
    """What one `get_records` call on one shard produced, in stream order."""

    shard_id: str
    changes: list[Change]
    last_sequence: str | None  # checkpoint to store once the changes are durable
    drained: bool  # the shard is closed and read to its end

    @property
    def rows(self) -> list[RowChange]:
        return [c for c in self.changes if isinstance(c, RowChange)]

    @property
    def poison(self) -> list[Poison]:
        return [c for c in self.changes if isinstance(c, Poison)]


@dataclass(slots=True)
class RelayStats:
    records: int = 0
    rows: int = 0
    retention: int = 0
    skipped: int = 0
    poison: int = 0
    trimmed: list[TrimmedRange] = field(default_factory=list)


def stream_arn_of(settings: Settings) -> str:
    """The table's current stream ARN (raises StoreError if the table has no stream)."""
    client = make_client(settings)
    try:
        table = client.describe_table(TableName=settings.table)["Table"]
    except Exception as exc:
        raise translate_error(exc, table=settings.table) from exc
    arn = table.get("LatestStreamArn")
    if not arn:
        raise StoreError(
            "DynamoDB",
            f"table {settings.table} has no stream; create it with footfall",
            code="NoStream",
        )
    return str(arn)


class StreamRelay:
    """Reads a table's stream shard by shard; the runner hands changes on and commits."""

    def __init__(
        self,
        settings: Settings,
        checkpoints: CheckpointStore,
        *,
        stream_arn: str | None = None,
        batch_limit: int = 1000,
        client: DynamoDBStreamsClient | None = None,
        shard_refresh_s: float = 0.0,
    ) -> None:
        """`shard_refresh_s`: list the stream's shards at most this often (one DescribeStream
        per round otherwise); a shard found drained lists them again at once, so its children
        are read without delay."""
        self.settings = settings
        self.stream_arn = stream_arn or stream_arn_of(settings)
        self.checkpoints = checkpoints
        self.batch_limit = batch_limit
        self.client: DynamoDBStreamsClient = client or make_streams_client(settings)
        self._committed: dict[str, str] = dict(checkpoints.load(self.stream_arn))
        self._iterators: dict[str, str] = {}  # shard -> next iterator
        self._handed: dict[str, str] = {}  # shard -> last sequence handed out (not committed)
        # Read to their end, by this relay or an earlier one: a drained shard that leaves the
        # listing expired as every shard does, one that was not drained lost records.
        self._drained: set[str] = set(checkpoints.load_drained(self.stream_arn))
        self._pending_trim: dict[str, TrimmedRange] = {}
        self.shard_refresh_s = shard_refresh_s
        self._shards: list[Any] | None = None  # the last listing, while fresh enough
        self._listed = 0.0  # when (time.monotonic)
        self.stats = RelayStats()

    def poll(self) -> list[ShardRead]:
        """One round: one `get_records` per readable shard; only shards with news are returned."""
        now = time.monotonic()
        if self._shards is None or now - self._listed >= self.shard_refresh_s:
            self._shards, self._listed = self._list_shards(), now
        plan = plan_reads(
            self._shards,
            drained=self._drained,
            checkpoints=self._committed,
            now=datetime.now(UTC),
        )
        for lost in plan.vanished:
            self._report_trimmed(lost)
            self._forget(lost.shard_id)
        for shard_id in plan.forgettable:
            self._forget(shard_id)
        reads = []
        for start in plan.readable:
            read = self._read(start)
            if read.changes or read.drained:
                reads.append(read)
        return reads

    def commit(self, read: ShardRead) -> None:
        """The changes of `read` are durable downstream: store the shard's checkpoint (and, for
        the read that found the shard's end, that it is drained)."""
        sequence = read.last_sequence
        if sequence is None and read.drained:
            # the end held no new record: mark the last checkpoint drained (a shard never read
            # has none, and without a checkpoint nothing can report it lost either)
            sequence = self._committed.get(read.shard_id)
        if sequence is not None:
            self.checkpoints.save(self.stream_arn, read.shard_id, sequence, drained=read.drained)
            self._committed[read.shard_id] = sequence
        if read.drained:
            self._drained.add(read.shard_id)
            self._iterators.pop(read.shard_id, None)
            self._shards = None  # its children may be new: list again on the next round

    def drain(self) -> Iterator[ShardRead]:
        """Rounds until a round finds nothing new (for tests, backfill hand-over and demos)."""
        while True:
            reads = self.poll()
            if not reads:
                return
            yield from reads

    def _forget(self, shard_id: str) -> None:
        """Drop a shard that left the listing from memory (its stored rows stay, harmless)."""
        for state in (self._committed, self._iterators, self._handed, self._pending_trim):
            state.pop(shard_id, None)
        self._drained.discard(shard_id)

    # -- I/O ---------------------------------------------------------------------------------

    def _list_shards(self) -> list[Any]:
        shards: list[Any] = []
        request: dict[str, Any] = {"StreamArn": self.stream_arn}
        while True:
            description = self._call("describe_stream", **request)["StreamDescription"]
            shards.extend(description.get("Shards", []))
            last = description.get("LastEvaluatedShardId")
            if not last:
                return list(parse_shards(shards))
            request["ExclusiveStartShardId"] = last

    def _read(self, start: IteratorStart) -> ShardRead:
        shard_id = start.shard_id
        iterator = self._iterators.get(shard_id) or self._open(start)
        try:
            response = self._call("get_records", ShardIterator=iterator, Limit=self.batch_limit)
        except StoreError as exc:
            if exc.code != "ExpiredIteratorException":
                raise
            log.info("iterator of shard %s expired; reopening after its last record", shard_id)
            self._iterators.pop(shard_id, None)
            response = self._call(
                "get_records", ShardIterator=self._open(start), Limit=self.batch_limit
            )
        records = response.get("Records", [])
        next_iterator = response.get("NextShardIterator")
        if next_iterator:
            self._iterators[shard_id] = next_iterator
        changes = [decode_stream_record(r, shard_id=shard_id) for r in records]
        last = str(records[-1]["dynamodb"]["SequenceNumber"]) if records else None
        if last is not None:
            self._handed[shard_id] = last
            if shard_id in self._pending_trim:
                first = str(records[0]["dynamodb"]["SequenceNumber"])
                self._report_trimmed(self._pending_trim.pop(shard_id).until(first))
        if next_iterator is None and shard_id in self._pending_trim:
            # closed with no record left after the trimmed ones: the rest of the shard is gone
            self._report_trimmed(self._pending_trim.pop(shard_id))
        self._count(changes)
        return ShardRead(shard_id, changes, last, drained=next_iterator is None)

    def _open(self, start: IteratorStart) -> str:
        """A fresh iterator: after what was handed out (or committed), else TRIM_HORIZON."""
        after = self._handed.get(start.shard_id) or self._committed.get(start.shard_id)
        request = IteratorStart(start.shard_id, "AFTER_SEQUENCE_NUMBER", after) if after else start
        try:
            response = self._call("get_shard_iterator", **request.request(self.stream_arn))
        except StoreError as exc:
            if exc.code != "TrimmedDataAccessException":
                raise
            self._pending_trim[start.shard_id] = TrimmedRange(
                start.shard_id, after, datetime.now(UTC)
            )
            horizon = IteratorStart(start.shard_id, "TRIM_HORIZON")
            response = self._call("get_shard_iterator", **horizon.request(self.stream_arn))
        return str(response["ShardIterator"])

    def _report_trimmed(self, trimmed: TrimmedRange) -> None:
        log.error("DATA LOSS IN THE STREAM: %s", trimmed.describe())
        self.stats.trimmed.append(trimmed)
        self.checkpoints.record_trimmed(self.stream_arn, trimmed)

    def _count(self, changes: list[Change]) -> None:
        stats = self.stats
        stats.records += len(changes)
        for change in changes:
            if isinstance(change, RowChange):
                stats.rows += 1
            elif isinstance(change, Retention):
                stats.retention += 1
            elif isinstance(change, Skip):
                stats.skipped += 1
            else:
                stats.poison += 1

    def _call(self, operation: str, **kwargs: Any) -> Any:
        try:
            return getattr(self.client, operation)(**kwargs)
        except Exception as exc:
            raise translate_error(exc) from exc
