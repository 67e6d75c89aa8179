"""Shard lineage: children after drained parents, where to start, trimmed and vanished shards."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from footfall import StoreError
from sync._lineage import (
    IteratorStart,
    Shard,
    TrimmedRange,
    parse_shards,
    plan_reads,
    start_of,
)

NOW = datetime(2026, 11, 29, 17, 0, tzinfo=UTC)
ARN = "arn:aws:dynamodb:eu-west-1:123456789012:table/activities/stream/2026-11-01T00:00:00.000"

# A split as describe_stream shows it: the closed parent and its two open children.
DESCRIBED: list[dict[str, Any]] = [
    {
        "ShardId": "shardId-00000001795000000000-aaaaaaaa",
        "SequenceNumberRange": {
            "StartingSequenceNumber": "100000000000000000001",
            "EndingSequenceNumber": "100000000000000000999",
        },
    },
    {
        "ShardId": "shardId-00000001795100000000-bbbbbbbb",
        "ParentShardId": "shardId-00000001795000000000-aaaaaaaa",
        "SequenceNumberRange": {"StartingSequenceNumber": "200000000000000000001"},
    },
    {
        "ShardId": "shardId-00000001795100000000-cccccccc",
        "ParentShardId": "shardId-00000001795000000000-aaaaaaaa",
        "SequenceNumberRange": {"StartingSequenceNumber": "200000000000000000002"},
    },
]
PARENT, LEFT, RIGHT = (d["ShardId"] for d in DESCRIBED)


def readable_ids(plan: Any) -> list[str]:
    return [start.shard_id for start in plan.readable]


def test_parse_shards_reads_the_describe_stream_shape() -> None:
    parent, left, _ = parse_shards(DESCRIBED)
    assert parent == Shard(PARENT, None, "100000000000000000001", "100000000000000000999")
    assert parent.closed
    assert left.parent_id == PARENT
    assert not left.closed


def test_a_malformed_shard_is_a_store_error() -> None:
    with pytest.raises(StoreError):
        parse_shards([{"ShardId": "s"}])


def test_split_children_wait_until_the_parent_is_drained() -> None:
    shards = parse_shards(DESCRIBED)
    plan = plan_reads(shards, drained=set(), checkpoints={}, now=NOW)
    assert readable_ids(plan) == [PARENT]
    assert plan.waiting == (LEFT, RIGHT)
    plan = plan_reads(
        shards, drained={PARENT}, checkpoints={PARENT: "100000000000000000999"}, now=NOW
    )
    assert readable_ids(plan) == [LEFT, RIGHT]
    assert plan.waiting == ()


def test_a_closed_parent_still_being_read_resumes_after_its_checkpoint() -> None:
    plan = plan_reads(
        parse_shards(DESCRIBED), drained=(), checkpoints={PARENT: "100000000000000000500"}, now=NOW
    )
    assert plan.readable == (
        IteratorStart(PARENT, "AFTER_SEQUENCE_NUMBER", "100000000000000000500"),
    )


def test_children_of_a_parent_no_longer_listed_are_readable_from_trim_horizon() -> None:
    plan = plan_reads(parse_shards(DESCRIBED[1:]), drained=(), checkpoints={}, now=NOW)
    assert plan.readable == (
        IteratorStart(LEFT, "TRIM_HORIZON"),
        IteratorStart(RIGHT, "TRIM_HORIZON"),
    )
    assert plan.vanished == ()


def test_a_checkpointed_shard_that_vanished_undrained_is_reported_as_trimmed() -> None:
    plan = plan_reads(
        parse_shards(DESCRIBED[1:]),
        drained=(),
        checkpoints={PARENT: "100000000000000000500"},
        now=NOW,
    )
    assert plan.vanished == (
        TrimmedRange(PARENT, "100000000000000000500", NOW, "shard expired before it was drained"),
    )
    assert readable_ids(plan) == [LEFT, RIGHT]


def test_drained_shards_that_are_gone_can_be_forgotten_and_are_not_vanished() -> None:
    plan = plan_reads(
        parse_shards(DESCRIBED[1:]),
        drained={PARENT},
        checkpoints={PARENT: "100000000000000000999"},
        now=NOW,
    )
    assert plan.forgettable == (PARENT,)
    assert plan.vanished == ()


def test_a_drained_shard_is_not_read_again() -> None:
    plan = plan_reads(parse_shards(DESCRIBED), drained={PARENT, LEFT}, checkpoints={}, now=NOW)
    assert readable_ids(plan) == [RIGHT]


def test_start_of_uses_the_checkpoint_verbatim_or_trim_horizon() -> None:
    assert start_of("s1", None).request(ARN) == {
        "StreamArn": ARN,
        "ShardId": "s1",
        "ShardIteratorType": "TRIM_HORIZON",
    }
    assert start_of("s1", "000000000000000000042").request(ARN) == {
        "StreamArn": ARN,
        "ShardId": "s1",
        "ShardIteratorType": "AFTER_SEQUENCE_NUMBER",
        "SequenceNumber": "000000000000000000042",
    }


def test_trimmed_range_round_trips_and_says_how_to_repair() -> None:
    trimmed = TrimmedRange(LEFT, "200000000000000000050", NOW).until("200000000000000000090")
    assert TrimmedRange.from_dict(trimmed.to_dict()) == trimmed
    assert trimmed.resume() == IteratorStart(LEFT, "TRIM_HORIZON")
    message = trimmed.describe()
    assert LEFT in message
    assert "200000000000000000050" in message
    assert "200000000000000000090" in message
    assert "backfill" in message


@st.composite
def lineages(draw: st.DrawFn) -> tuple[list[Shard], set[str]]:
    """A random forest of shards (splits and single successors), some parents trimmed away."""
    count = draw(st.integers(1, 12))
    shards: list[Shard] = []
    for index in range(count):
        candidates = [s.shard_id for s in shards if s.closed]
        parent = draw(st.sampled_from([None, *candidates])) if candidates else None
        closed = draw(st.booleans())
        start = str(1000 * (index + 1))
        shards.append(
            Shard(f"s{index:02d}", parent, start, str(1000 * (index + 1) + 999) if closed else None)
        )
    trimmed = {s.shard_id for s in shards if draw(st.booleans()) and s.closed}
    return [s for s in shards if s.shard_id not in trimmed], trimmed


@settings(deadline=None)
@given(lineages(), st.randoms(use_true_random=False))
def test_reading_in_plan_order_drains_every_parent_before_its_children(
    lineage: tuple[list[Shard], set[str]], rng: Any
) -> None:
    shards, _ = lineage
    listed = {s.shard_id: s for s in shards}
    drained: set[str] = set()
    started: list[str] = []
    for _ in range(3 * len(shards) + 1):
        plan = plan_reads(shards, drained=drained, checkpoints={}, now=NOW)
        for start in plan.readable:
            shard = listed[start.shard_id]
            assert shard.parent_id not in listed or shard.parent_id in drained
            assert start.shard_id not in drained
        assert not set(plan.waiting) & set(readable_ids(plan))
        closed = [s for s in readable_ids(plan) if listed[s].closed]
        if not closed:
            break
        chosen = rng.choice(closed)  # the relay drains some readable closed shard
        started.append(chosen)
        drained.add(chosen)
    assert drained == {s.shard_id for s in shards if s.closed}
    for shard_id in started:
        parent = listed[shard_id].parent_id
        if parent in listed:
            assert started.index(parent) < started.index(shard_id)
    open_ids = {s.shard_id for s in shards if not s.closed}
    assert (
        set(readable_ids(plan_reads(shards, drained=drained, checkpoints={}, now=NOW))) == open_ids
    )
