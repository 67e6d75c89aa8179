"""The relay's shards: listed at most every `shard_refresh_s` (at once after a drain); a
drained shard that later leaves the listing is forgotten, one that leaves before it was drained
is reported lost, once, and a restarted relay tells the two apart."""

from __future__ import annotations

from typing import Any

import botocore.exceptions
import pytest

from footfall import ConfigError, load_settings
from sync._lineage import TrimmedRange
from sync._streams import IdlePacing, StreamRelay

ARN = "arn:aws:dynamodb:local:000:table/t/stream/1"


class Checkpoints:
    """The relay's durable state, in memory (it outlives a relay, as the store does)."""

    def __init__(self) -> None:
        self.saved: dict[str, str] = {}
        self.drained: set[str] = set()
        self.trimmed: list[TrimmedRange] = []

    def load(self, stream_arn: str) -> dict[str, str]:
        return dict(self.saved)

    def load_drained(self, stream_arn: str) -> set[str]:
        return set(self.drained)

    def save(
        self, stream_arn: str, shard_id: str, sequence_number: str, *, drained: bool = False
    ) -> None:
        self.saved[shard_id] = sequence_number
        if drained:
            self.drained.add(shard_id)

    def record_trimmed(self, stream_arn: str, trimmed: TrimmedRange) -> None:
        self.trimmed.append(trimmed)


class Streams:
    """One shard, no records; closed (its reads end) once `close()` was called."""

    def __init__(self) -> None:
        self.describes = 0
        self.closed = False

    def close(self) -> None:
        self.closed = True

    def describe_stream(self, **kwargs: Any) -> dict[str, Any]:
        self.describes += 1
        sequence_range: dict[str, str] = {"StartingSequenceNumber": "1"}
        if self.closed:
            sequence_range["EndingSequenceNumber"] = "1"
        shard = {"ShardId": "s-1", "SequenceNumberRange": sequence_range}
        return {"StreamDescription": {"Shards": [shard]}}

    def get_shard_iterator(self, **kwargs: Any) -> dict[str, Any]:
        return {"ShardIterator": "it"}

    def get_records(self, **kwargs: Any) -> dict[str, Any]:
        return {"Records": []} if self.closed else {"Records": [], "NextShardIterator": "it"}


def relay(client: Any, refresh: float, checkpoints: Checkpoints | None = None) -> StreamRelay:
    settings = load_settings(dynamodb_endpoint="http://127.0.0.1:9", table="relay-shards")
    return StreamRelay(
        settings,
        checkpoints or Checkpoints(),
        stream_arn=ARN,
        client=client,  # a structural stand-in
        shard_refresh_s=refresh,
    )


def test_by_default_every_round_lists_the_shards() -> None:
    client = Streams()
    reader = relay(client, 0.0)
    for _ in range(3):
        reader.poll()
    assert client.describes == 3


def test_a_fresh_listing_serves_the_next_rounds() -> None:
    client = Streams()
    reader = relay(client, 3600.0)
    for _ in range(3):
        reader.poll()
    assert client.describes == 1


def test_a_drained_shard_lists_the_shards_again_at_once() -> None:
    client = Streams()
    reader = relay(client, 3600.0)
    reader.poll()
    client.close()
    reads = reader.poll()  # still the old listing: the shard is read and found drained
    assert [r.drained for r in reads] == [True] and client.describes == 1
    for read in reads:
        reader.commit(read)
    reader.poll()
    assert client.describes == 2


def record(sequence: str) -> dict[str, Any]:
    keys = {"actor": {"S": "a"}, "sk": {"S": f"k{sequence}"}}
    return {"eventName": "REMOVE", "dynamodb": {"SequenceNumber": sequence, "Keys": keys}}


class Lineage:
    """Shard P (records 1 and 2, then closed at 3) and its child C, as a stream rolls its shards
    over; `expire()` drops P from the listing, as DynamoDB does about a day after it closed.
    Reading P after a trim (`trim()`) fails with TrimmedDataAccessException."""

    def __init__(self) -> None:
        self.records = {"P": [record("1"), record("2")], "C": []}
        self.closed = False
        self.listed = ["P"]
        self.trimmed = False

    def roll_over(self) -> None:
        self.closed = True
        self.listed = ["P", "C"]

    def expire(self) -> None:
        self.listed = ["C"]

    def describe_stream(self, **kwargs: Any) -> dict[str, Any]:
        shards = []
        for shard_id in self.listed:
            sequence_range = {"StartingSequenceNumber": "1" if shard_id == "P" else "4"}
            if shard_id == "P" and self.closed:
                sequence_range["EndingSequenceNumber"] = "3"
            shard = {"ShardId": shard_id, "SequenceNumberRange": sequence_range}
            shards.append({**shard, "ParentShardId": "P"} if shard_id == "C" else shard)
        return {"StreamDescription": {"Shards": shards}}

    def get_shard_iterator(self, **kwargs: Any) -> dict[str, Any]:
        after = kwargs.get("SequenceNumber")
        if self.trimmed and after is not None:
            error = {"Error": {"Code": "TrimmedDataAccessException", "Message": "trimmed"}}
            raise botocore.exceptions.ClientError(error, "GetShardIterator")  # type: ignore[arg-type]
        return {"ShardIterator": f"{kwargs['ShardId']}:{after or 0}"}

    def get_records(self, ShardIterator: str, **kwargs: Any) -> dict[str, Any]:
        shard_id, after = ShardIterator.split(":")
        held = self.records[shard_id]
        rest = [r for r in held if int(r["dynamodb"]["SequenceNumber"]) > int(after)]
        if self.trimmed and shard_id == "P":
            rest = []  # everything P held was trimmed
        position = rest[-1]["dynamodb"]["SequenceNumber"] if rest else after
        page: dict[str, Any] = {"Records": rest}
        if not (shard_id == "P" and self.closed):
            page["NextShardIterator"] = f"{shard_id}:{position}"
        return page


def rounds(reader: StreamRelay, n: int = 3) -> None:
    for _ in range(n):
        for read in reader.poll():
            reader.commit(read)


def drained_then_expired() -> tuple[Lineage, Checkpoints, StreamRelay]:
    """P read to its end by a relay, then gone from the listing (the relay has not polled since)."""
    stream, checkpoints = Lineage(), Checkpoints()
    reader = relay(stream, 0.0, checkpoints)
    rounds(reader)
    stream.roll_over()
    rounds(reader)
    assert checkpoints.drained == {"P"} and checkpoints.saved == {"P": "2"}
    stream.expire()
    return stream, checkpoints, reader


def test_a_drained_shard_that_leaves_the_listing_is_forgotten_not_reported_lost() -> None:
    _stream, checkpoints, reader = drained_then_expired()
    rounds(reader)
    assert reader.stats.trimmed == [] and checkpoints.trimmed == []


def test_a_restarted_relay_knows_which_expired_shards_were_drained() -> None:
    stream, checkpoints, _first = drained_then_expired()
    restarted = relay(stream, 0.0, checkpoints)
    rounds(restarted)
    assert restarted.stats.trimmed == [] and checkpoints.trimmed == []


def test_a_shard_that_leaves_the_listing_before_it_was_drained_is_reported_once() -> None:
    stream, checkpoints = Lineage(), Checkpoints()
    reader = relay(stream, 0.0, checkpoints)
    rounds(reader)  # P read up to 2, open
    stream.records["P"].append(record("3"))
    stream.roll_over()
    stream.expire()  # P, with record 3 unread, gone
    rounds(reader)
    assert [(t.shard_id, t.after_sequence_number) for t in checkpoints.trimmed] == [("P", "2")]
    assert reader.stats.trimmed == checkpoints.trimmed


def test_a_closed_shard_trimmed_to_its_end_is_reported_lost() -> None:
    stream, checkpoints = Lineage(), Checkpoints()
    reader = relay(stream, 0.0, checkpoints)
    rounds(reader)
    stream.records["P"].append(record("3"))
    stream.roll_over()
    stream.trimmed = True  # P's rest was trimmed before the relay came back to it
    restarted = relay(stream, 0.0, checkpoints)
    rounds(restarted)
    assert [(t.shard_id, t.after_sequence_number) for t in checkpoints.trimmed] == [("P", "2")]
    assert checkpoints.trimmed[0].until_sequence_number is None  # the whole rest of P
    assert checkpoints.drained == {"P"}


def test_idle_rounds_wait_longer_and_longer_up_to_the_cap_and_a_busy_one_resets() -> None:
    pacing = IdlePacing(0.05, 0.25)
    assert [pacing.idle() for _ in range(5)] == [0.05, 0.1, 0.2, 0.25, 0.25]
    pacing.busy()
    assert pacing.idle() == 0.05


def test_idle_pacing_refuses_a_first_wait_above_its_cap() -> None:
    with pytest.raises(ConfigError, match=r"first_s=0\.5: expected more than 0 and at most max_s"):
        IdlePacing(0.5, 0.25)
    with pytest.raises(ConfigError, match=r"first_s=0\.0: expected more than 0 and at most max_s"):
        IdlePacing(0.0, 0.25)
