"""The sink's retry policy: the same batch, the same token, until written or stopped."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from footfall import StoreError, StoreUnavailable
from sync._batch import Batcher
from sync._decode import EventPosition, Row
from sync._sink import Backoff, Sink, SinkStopped


class ScriptedClickHouse:
    """Answers insert_arrow from a script of exceptions; records every attempt."""

    def __init__(self, script: list[Exception | None]) -> None:
        self.script = script
        self.inserts: list[tuple[str, int, str | None]] = []

    def insert_arrow(self, table: str, arrow: Any, *, dedup_token: str | None) -> None:
        self.inserts.append((table, arrow.num_rows, dedup_token))
        step = self.script.pop(0) if self.script else None
        if step is not None:
            raise step

    def command(self, sql: str, parameters: Any = None) -> None:  # the rollup refresh
        pass


def batch(n: int = 3) -> Any:
    batcher: Batcher[EventPosition] = Batcher("kafka:t", max_rows=n)
    out = None
    for i in range(n):
        row = Row(f"e{i}", "a", "t", "/x", 1_700_000_000_000 + i, {}, "kafka", 0, 0)
        out = batcher.add(row, EventPosition(0, i))
    assert out is not None
    return out


def sink(script: list[Exception | None], stop: threading.Event | None = None) -> tuple[Sink, Any]:
    ch = ScriptedClickHouse(script)
    return Sink(ch, stop=stop, backoff=Backoff(base=0.001, cap=0.002)), ch  # type: ignore[arg-type]


def test_transient_errors_retry_the_same_batch_with_the_same_token() -> None:
    s, ch = sink([StoreUnavailable("ClickHouse", "down"), StoreUnavailable("ClickHouse", "down")])
    b = batch()
    s.write(b, "kafka")
    assert [i[2] for i in ch.inserts] == [b.dedup_token] * 3
    assert {i[1] for i in ch.inserts} == {3}
    assert s.metrics.insert_retries._value.get() == 2


def test_terminal_errors_are_raised_without_retry() -> None:
    s, ch = sink([StoreError("ClickHouse", "no such table", code="60")])
    with pytest.raises(StoreError, match="no such table"):
        s.write(batch(), "kafka")
    assert len(ch.inserts) == 1


def test_stopping_while_retrying_raises_and_acknowledges_nothing() -> None:
    stop = threading.Event()
    stop.set()
    s, ch = sink([StoreUnavailable("ClickHouse", "down")] * 5, stop=stop)
    with pytest.raises(SinkStopped):
        s.write(batch(), "kafka")
    assert len(ch.inserts) == 1  # one try, then the stop wins over the backoff
    assert s.newest == {}  # nothing counted as written


def test_the_freshness_watermark_only_moves_forward() -> None:
    s, _ = sink([])
    s.write(batch(3), "kafka")
    first = s.newest["kafka"]
    older: Batcher[EventPosition] = Batcher("kafka:t", max_rows=1)
    b = older.add(
        Row("old", "a", "t", "/x", 1_600_000_000_000, {}, "kafka", 0, 0), EventPosition(0, 9)
    )
    assert b is not None
    s.write(b, "kafka")
    assert s.newest["kafka"] == first


class CountingKeeper:
    """A RollupKeeper stand-in: counts the marks."""

    def __init__(self) -> None:
        self.marks = 0

    def mark(self) -> None:
        self.marks += 1


def test_a_write_marks_the_rollup_instead_of_refreshing_it_before_the_ack() -> None:
    ch = ScriptedClickHouse([])
    commands: list[str] = []
    ch.command = lambda sql, parameters=None: commands.append(sql)  # type: ignore[method-assign]
    keeper = CountingKeeper()
    s = Sink(ch, rollup=keeper)  # type: ignore[arg-type]
    s.write(batch(3), "kafka")
    s.write(batch(2), "kafka")
    assert keeper.marks == 2
    assert commands == []  # no rollup statement on the acknowledgement path
