"""The relay lists a stream's shards at most every `shard_refresh_s`, and at once after a drain."""

from __future__ import annotations

from typing import Any

from footfall import load_settings
from sync._streams import StreamRelay

ARN = "arn:aws:dynamodb:local:000:table/t/stream/1"


class Checkpoints:
    def load(self, stream_arn: str) -> dict[str, str]:
        return {}

    def save(self, stream_arn: str, shard_id: str, sequence_number: str) -> None:
        pass

    def record_trimmed(self, stream_arn: str, trimmed: Any) -> None:
        pass


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


def relay(client: Streams, refresh: float) -> StreamRelay:
    settings = load_settings(dynamodb_endpoint="http://127.0.0.1:9", table="relay-shards")
    return StreamRelay(
        settings,
        Checkpoints(),
        stream_arn=ARN,
        client=client,  # type: ignore[arg-type]  # a structural stand-in
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
