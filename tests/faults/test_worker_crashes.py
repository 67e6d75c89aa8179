"""Sync workers crashing (SIGKILL) under load: nothing lost, nothing duplicated.

Rows of the fault matrix: a worker SIGKILLed 5 times at random points; two workers, one killed
during a rebalance (the survivor takes over every partition); the relay killed between producing
to Kafka and storing its checkpoint (the repeats in `footfall.cdc` are absorbed).
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sync.app import SyncOptions
from tests.faults._support import (
    GroupProbe,
    Pipeline,
    Results,
    cdc_repeats,
    eventually,
    pipeline,
    synthetic,
    topic_size,
)

SHORT_KILLS = 5


@pytest.fixture
def crash_pipeline(
    faults_dynamodb: str, kafka_broker: str, clickhouse_url: str, tmp_path: Path
) -> Iterator[Pipeline]:
    with pipeline(
        dynamodb=faults_dynamodb,
        kafka=kafka_broker,
        clickhouse=clickhouse_url,
        home=tmp_path,
        name="crash",
    ) as built:
        yield built


def raw_rows(built: Pipeline) -> int:
    return int(built.scalar("SELECT count() FROM activities"))


@pytest.mark.timeout(900)
def test_a_worker_sigkilled_five_times_under_load_loses_and_duplicates_nothing(
    crash_pipeline: Pipeline, long_volume: bool, fault_results: Results
) -> None:
    result = fault_results.new("worker SIGKILLed 5 times at random points under load")
    started = time.monotonic()
    rng = random.Random()
    kills, rate = (12, 600.0) if long_volume else (SHORT_KILLS, 250.0)
    pool = int(rate * (600 if long_volume else 240))  # more than the kills take: load throughout
    load = crash_pipeline.load(
        stored=synthetic(pool // 3, seed=101),
        events=synthetic(pool - pool // 3, seed=102),
        rate=rate,
    )
    worker = crash_pipeline.worker()
    worker.start()
    load.start()
    kill_points = []
    for _ in range(kills):
        before = raw_rows(crash_pipeline)
        eventually(
            lambda b=before: raw_rows(crash_pipeline) > b,  # type: ignore[misc]
            "the (re)started worker to write rows",
            timeout=180,
            abort=worker.died,
        )
        time.sleep(rng.uniform(0.0, 2.5))  # the fault's timing: a random moment while it works
        assert load.running, "the load ended before the last kill: raise the pool"
        kill_points.append(raw_rows(crash_pipeline))
        worker.kill()
        worker.start()
    load.stop()
    tally = crash_pipeline.wait_exact(load.accepted, timeout=300, abort=crash_pipeline.any_died)
    result.record(tally)
    result.seconds = round(time.monotonic() - started, 1)
    result.details = {"kills": worker.kills, "rows_in_clickhouse_at_each_kill": kill_points}
    assert worker.kills == kills
    assert tally.exact, tally.describe()


def rows_by_source(built: Pipeline) -> dict[str, int]:
    rows = built.ch.query_arrow(
        "SELECT source, count() AS n FROM activities GROUP BY source"
    ).to_pylist()
    return {r["source"]: int(r["n"]) for r in rows}


@pytest.mark.timeout(600)
def test_two_workers_one_killed_during_a_rebalance_the_survivor_takes_over_exactly(
    crash_pipeline: Pipeline, long_volume: bool, fault_results: Results
) -> None:
    result = fault_results.new("two workers, one killed during a rebalance")
    started = time.monotonic()
    settings = crash_pipeline.settings
    rate = 600.0 if long_volume else 200.0
    pool = int(rate * 300)
    load = crash_pipeline.load(
        stored=synthetic(pool // 3, seed=201),
        events=synthetic(pool - pool // 3, seed=202),
        rate=rate,
    )
    first, second = crash_pipeline.worker("first"), crash_pipeline.worker("second")
    probe = GroupProbe(settings)
    try:
        first.start()
        load.start()
        eventually(
            lambda: len(probe.describe().members) == 1 and raw_rows(crash_pipeline) > 0,
            "the first worker to own the group and write rows",
            timeout=120,
            abort=first.died,
        )
        second.start()  # its join makes the coordinator rebalance the group
        eventually(
            lambda: probe.describe().state in ("PreparingRebalance", "CompletingRebalance"),
            "the rebalance the second worker's join starts",
            timeout=120,
            interval=0.02,
            abort=second.died,
        )
        first.kill()  # in the middle of the rebalance
        inputs = {settings.topic("events"), settings.topic("cdc")}
        everything = set(range(settings.topic_partitions))

        def survivor_owns_every_partition() -> bool:
            group = probe.describe()
            return (
                group.state == "Stable"
                and len(group.members) == 1
                and all(group.owned(topic) == everything for topic in inputs)
            )

        takeover = eventually(
            survivor_owns_every_partition,
            "the survivor to own every partition of both inputs",
            timeout=120,
            abort=second.died,
        )
        before = rows_by_source(crash_pipeline)
        eventually(  # it consumes both inputs, and leads: the relay moved with the group
            lambda: all(
                rows_by_source(crash_pipeline).get(s, 0) > before.get(s, 0)
                for s in ("dynamodb", "kafka")
            ),
            "new rows of both sources from the survivor",
            timeout=60,
            abort=second.died,
        )
        load.stop()
        tally = crash_pipeline.wait_exact(load.accepted, timeout=300, abort=second.died)
    finally:
        probe.close()
    result.record(tally)
    result.recovery_s = round(takeover, 1)
    result.seconds = round(time.monotonic() - started, 1)
    result.details = {"takeover_s": round(takeover, 1), "workers": 2, "killed": 1}
    assert tally.exact, tally.describe()
    # a dead member is dropped after the session timeout; the takeover follows at once
    assert takeover < SyncOptions().session_timeout_s + 15


@pytest.mark.timeout(600)
def test_relay_killed_between_producing_and_checkpointing_its_repeats_are_absorbed(
    crash_pipeline: Pipeline, long_volume: bool, fault_results: Results
) -> None:
    """The relay stores a shard's checkpoint only after Kafka acknowledged the round, so a worker
    killed in between re-reads the round and produces it again. The kill comes at random moments
    while the relay is busy, until `footfall.cdc` holds repeats (a stream record produced twice):
    each of them must be absorbed, ClickHouse still exact."""
    result = fault_results.new("relay killed between producing to Kafka and checkpointing")
    started = time.monotonic()
    settings = crash_pipeline.settings
    cdc = settings.topic("cdc")
    rng = random.Random()
    rate = 500.0 if long_volume else 250.0
    wanted_repeat_kills = 3 if long_volume else 1
    load = crash_pipeline.load(stored=synthetic(int(rate * 400), seed=301), rate=rate)
    worker = crash_pipeline.worker()
    worker.start()
    load.start()
    kills_with_repeats, repeats, messages = 0, 0, 0
    while kills_with_repeats < wanted_repeat_kills and worker.kills < 8 * wanted_repeat_kills:
        produced = topic_size(settings, cdc)
        eventually(
            lambda p=produced: topic_size(settings, cdc) > p,  # type: ignore[misc]
            "the relay to produce",
            timeout=120,
            abort=worker.died,
        )
        time.sleep(rng.uniform(0.0, 1.0))  # the fault's timing: a random moment of a busy relay
        assert load.running, "the load ended before the relay was caught: raise the pool"
        worker.kill()
        worker.start()
        produced = topic_size(settings, cdc)
        eventually(  # the restarted relay resumed from its checkpoint
            lambda p=produced: topic_size(settings, cdc) > p,  # type: ignore[misc]
            "the restarted relay to produce",
            timeout=120,
            abort=worker.died,
        )
        messages, now_repeats = cdc_repeats(settings)
        kills_with_repeats += now_repeats > repeats
        repeats = now_repeats
    load.stop()
    tally = crash_pipeline.wait_exact(load.accepted, timeout=300, abort=worker.died)
    messages, repeats = cdc_repeats(settings)
    result.record(tally)
    result.seconds = round(time.monotonic() - started, 1)
    result.details = {"kills": worker.kills, "cdc_messages": messages, "cdc_repeats": repeats}
    assert repeats > 0, f"no kill fell between produce and checkpoint in {worker.kills} tries"
    assert tally.exact, tally.describe()
