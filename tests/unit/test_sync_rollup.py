"""When the rollup keeper refreshes: coalesced under load, soon when idle, never when clean."""

from __future__ import annotations

from typing import Any

import pytest

from sync._rollup import RollupKeeper


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def keeper(clock: Clock) -> RollupKeeper:
    k = RollupKeeper(None, interval_s=1.0, clock=clock)  # type: ignore[arg-type]
    k._refresh = lambda: None  # type: ignore[method-assign]  # no ClickHouse here
    return k


def test_a_new_keeper_is_due_at_once_to_catch_up_from_the_watermark() -> None:
    assert keeper(Clock()).due()


def test_under_load_refreshes_are_coalesced_to_one_per_interval() -> None:
    clock = Clock()
    k = keeper(clock)
    k.refresh()
    for _ in range(50):  # many batches within the interval
        k.mark()
        clock.now += 0.01
        assert not k.due()
    clock.now += 0.5
    assert k.due()


def test_an_idle_input_gets_its_refresh_without_waiting_for_the_interval() -> None:
    clock = Clock()
    k = keeper(clock)
    k.refresh()
    k.mark()
    clock.now += 0.25
    assert not k.due() and k.due(idle=True)


def test_a_trickle_idle_between_its_batches_is_refreshed_at_most_every_idle_gap() -> None:
    clock = Clock()
    k = keeper(clock)
    k.refresh()
    for _ in range(20):  # a batch every 10 ms, the input idle in between
        clock.now += 0.01
        k.mark()
        assert not k.due(idle=True)
    clock.now += 0.05
    assert k.due(idle=True)


def test_nothing_written_means_nothing_to_refresh() -> None:
    clock = Clock()
    k = keeper(clock)
    k.refresh()
    clock.now += 10
    assert not k.due(idle=True)
    k.flush()
    assert k.refreshes == 1


def test_a_failed_refresh_stays_due() -> None:
    clock = Clock()
    k = keeper(clock)

    def fail() -> Any:
        raise RuntimeError("ClickHouse away")

    k._refresh = fail  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        k.refresh()
    clock.now += 0.25
    assert k.dirty and k.due(idle=True)
