"""DeferredCheckpoints: a store outage leaves checkpoints pending, never lost or reordered."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from footfall._errors import StoreUnavailable
from sync._lineage import TrimmedRange
from sync._state import DeferredCheckpoints


class FlakyStore:
    """An in-memory checkpoint store that refuses every call while `down`."""

    def __init__(self) -> None:
        self.down = False
        self.saved: list[tuple[str, str, str]] = []
        self.drained: set[tuple[str, str]] = set()  # (stream, shard) saved as drained
        self.trimmed: list[tuple[str, Any]] = []

    def _check(self) -> None:
        if self.down:
            raise StoreUnavailable("ClickHouse", "connection refused")

    def load(self, stream_arn: str) -> dict[str, str]:
        self._check()
        return {shard: seq for stream, shard, seq in self.saved if stream == stream_arn}

    def load_drained(self, stream_arn: str) -> set[str]:
        self._check()
        return {shard for stream, shard in self.drained if stream == stream_arn}

    def save(
        self, stream_arn: str, shard_id: str, sequence_number: str, *, drained: bool = False
    ) -> None:
        self._check()
        self.saved.append((stream_arn, shard_id, sequence_number))
        if drained:
            self.drained.add((stream_arn, shard_id))

    def record_trimmed(self, stream_arn: str, trimmed: TrimmedRange) -> None:
        self._check()
        self.trimmed.append((stream_arn, trimmed))


def deferred(store: FlakyStore) -> DeferredCheckpoints:
    return DeferredCheckpoints(store)  # type: ignore[arg-type]  # a structural stand-in


def test_checkpoints_are_stored_at_once_while_the_store_is_up() -> None:
    store = FlakyStore()
    checkpoints = deferred(store)
    checkpoints.save("s", "shard-1", "100")
    assert store.saved == [("s", "shard-1", "100")] and checkpoints.pending == 0


def test_an_outage_keeps_the_newest_checkpoint_per_shard_pending_until_flushed() -> None:
    store = FlakyStore()
    checkpoints = deferred(store)
    store.down = True
    checkpoints.save("s", "shard-1", "100")  # does not raise: the relay keeps going
    checkpoints.save("s", "shard-1", "200")
    checkpoints.save("s", "shard-2", "50")
    lost = TrimmedRange("shard-3", "1", datetime(2026, 11, 29, tzinfo=UTC))
    checkpoints.record_trimmed("s", lost)
    assert checkpoints.pending == 3 and not store.saved
    assert not checkpoints.flush()

    store.down = False
    assert checkpoints.flush()

    assert store.trimmed == [("s", lost)]
    assert sorted(store.saved) == [("s", "shard-1", "200"), ("s", "shard-2", "50")]
    assert checkpoints.pending == 0


def test_load_needs_the_store() -> None:
    """A relay cannot start without knowing where to resume: that error is not deferred."""
    store = FlakyStore()
    store.down = True
    with pytest.raises(StoreUnavailable):
        deferred(store).load("s")


def test_a_lazy_store_notes_checkpoints_and_stores_them_only_when_flushed() -> None:
    store = FlakyStore()
    checkpoints = DeferredCheckpoints(store, eager=False)  # type: ignore[arg-type]
    checkpoints.save("s", "shard-1", "100")
    checkpoints.save("s", "shard-1", "200")
    lost = TrimmedRange("shard-3", "1", datetime(2026, 11, 29, tzinfo=UTC))
    checkpoints.record_trimmed("s", lost)
    assert store.saved == [] and store.trimmed == [] and checkpoints.pending == 2
    assert checkpoints.flush()
    assert store.saved == [("s", "shard-1", "200")] and store.trimmed == [("s", lost)]
    assert checkpoints.pending == 0


class SlowStore(FlakyStore):
    """Notes a newer checkpoint (as the relay's thread would) while a save is under way."""

    def __init__(self, checkpoints: list[DeferredCheckpoints]) -> None:
        super().__init__()
        self.checkpoints = checkpoints

    def save(
        self, stream_arn: str, shard_id: str, sequence_number: str, *, drained: bool = False
    ) -> None:
        super().save(stream_arn, shard_id, sequence_number, drained=drained)
        if sequence_number == "100":
            self.checkpoints[0].save(stream_arn, shard_id, "300")


def test_a_checkpoint_noted_during_a_flush_stays_pending_for_the_next() -> None:
    holder: list[DeferredCheckpoints] = []
    store = SlowStore(holder)
    checkpoints = DeferredCheckpoints(store, eager=False)  # type: ignore[arg-type]
    holder.append(checkpoints)
    checkpoints.save("s", "shard-1", "100")
    assert checkpoints.flush() and checkpoints.pending == 1  # "300" came in meanwhile
    assert checkpoints.flush() and checkpoints.pending == 0
    assert [seq for _, _, seq in store.saved] == ["100", "300"]


def test_loading_sees_the_checkpoints_still_pending() -> None:
    store = FlakyStore()
    checkpoints = DeferredCheckpoints(store, eager=False)  # type: ignore[arg-type]
    store.saved.append(("s", "shard-1", "100"))
    store.saved.append(("s", "shard-2", "7"))
    checkpoints.save("s", "shard-1", "200")  # a relay that lost and regained leadership
    checkpoints.save("other", "shard-1", "999")
    assert checkpoints.load("s") == {"shard-1": "200", "shard-2": "7"}


def test_a_drained_shard_pending_through_an_outage_is_stored_as_drained() -> None:
    store = FlakyStore()
    checkpoints = DeferredCheckpoints(store, eager=False)  # type: ignore[arg-type]
    store.drained.add(("s", "shard-0"))
    store.down = True
    checkpoints.save("s", "shard-1", "100")
    checkpoints.save("s", "shard-1", "120", drained=True)  # the read that found its end
    checkpoints.save("s", "shard-2", "50")
    assert not checkpoints.flush()
    store.down = False
    assert checkpoints.load_drained("s") == {"shard-0", "shard-1"}  # pending ones included
    assert checkpoints.flush() and checkpoints.pending == 0
    assert store.drained == {("s", "shard-0"), ("s", "shard-1")}
    assert ("s", "shard-1", "120") in store.saved
