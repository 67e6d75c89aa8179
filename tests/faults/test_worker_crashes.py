"""Sync workers crashing (SIGKILL) under load: nothing lost, nothing duplicated.

Rows of the fault matrix: a worker SIGKILLed 5 times at random points, and with it the relay
killed between producing to Kafka and storing its checkpoint (the repeats in `footfall.cdc` are
absorbed); two workers, one killed during a rebalance (the survivor takes over every partition).
"""

from __future__ import annotations

import random
import time

import pytest

from sync.app import SyncOptions
from tests.faults._support import (
    GroupProbe,
    Pipeline,
    Results,
    Worker,
    cdc_repeats,
    eventually,
    synthetic,
)

SHORT_KILLS = 5


def raw_rows(built: Pipeline) -> int:
    return int(built.scalar("SELECT count() FROM activities"))


def kill_at_a_random_moment(
    worker: Worker, built: Pipeline, rng: random.Random, *, busy: bool
) -> int:
    """SIGKILL the worker and start it again; returns the rows ClickHouse had at the kill.

    `busy`: once the (re)started worker writes rows again, within 2.5 s; else 1-6 s after its
    start, while it starts, joins the group or waits for the dead member to be dropped."""
    if busy:
        before = raw_rows(built)
        eventually(
            lambda: raw_rows(built) > before,
            "the (re)started worker to write rows",
            timeout=180,
            abort=worker.died,
        )
        time.sleep(rng.uniform(0.0, 2.5))  # the fault's timing: a random moment while it works
    else:
        time.sleep(rng.uniform(1.0, 6.0))  # the fault's timing: a random moment of its start
    rows = raw_rows(built)
    worker.kill()
    worker.start()
    return rows


@pytest.mark.timeout(900)
def test_a_worker_sigkilled_at_random_points_under_load_loses_nothing_and_absorbs_relay_repeats(
    shared_pipeline: Pipeline, long_volume: bool, fault_results: Results
) -> None:
    """Two rows of the matrix in one run. The worker is SIGKILLed 5 times (12 with --long) while
    both sources take activities, alternately while it writes and while it starts; the relay
    stores a shard's checkpoint only after Kafka acknowledged the round, so a kill between the
    two makes the restarted relay produce the round again. The run goes on (up to 4 more kills
    while it writes) until `footfall.cdc` holds such repeats, then every count must be exact."""
    crashes = fault_results.new("worker SIGKILLed 5 times at random points under load")
    relay = fault_results.new("relay killed between producing to Kafka and checkpointing")
    started = time.monotonic()
    rng = random.Random()
    kills, rate = (12, 500.0) if long_volume else (SHORT_KILLS, 250.0)
    pool = int(rate * (900 if long_volume else 400))  # more than the kills take: load throughout
    load = shared_pipeline.load(
        stored=synthetic(pool // 2, seed=101),
        events=synthetic(pool - pool // 2, seed=102),
        rate=rate,
    )
    worker = shared_pipeline.worker()
    worker.start()
    load.start()
    points = [
        kill_at_a_random_moment(worker, shared_pipeline, rng, busy=n % 2 == 0) for n in range(kills)
    ]
    messages, repeats = cdc_repeats(shared_pipeline.settings)
    while not repeats and worker.kills < kills + 4:
        points.append(kill_at_a_random_moment(worker, shared_pipeline, rng, busy=True))
        messages, repeats = cdc_repeats(shared_pipeline.settings)
    assert load.running, "the load ended before the last kill: raise the pool"
    load.stop()
    tally = shared_pipeline.wait_exact(load.accepted, timeout=300, abort=worker.died)
    messages, repeats = cdc_repeats(shared_pipeline.settings)
    for result in (crashes, relay):
        result.record(tally)
        result.seconds = round(time.monotonic() - started, 1)
    crashes.details = {"kills": worker.kills, "rows_in_clickhouse_at_each_kill": points}
    relay.details = {"kills": worker.kills, "cdc_messages": messages, "cdc_repeats": repeats}
    assert worker.kills >= kills
    assert repeats > 0, f"no kill fell between produce and checkpoint in {worker.kills} tries"
    assert tally.exact, tally.describe()


def rows_by_source(built: Pipeline) -> dict[str, int]:
    rows = built.ch.query_arrow(
        "SELECT source, count() AS n FROM activities GROUP BY source"
    ).to_pylist()
    return {r["source"]: int(r["n"]) for r in rows}


@pytest.mark.timeout(600)
def test_two_workers_one_killed_during_a_rebalance_the_survivor_takes_over_exactly(
    shared_pipeline: Pipeline, long_volume: bool, fault_results: Results
) -> None:
    result = fault_results.new("two workers, one killed during a rebalance")
    started = time.monotonic()
    settings = shared_pipeline.settings
    rate = 600.0 if long_volume else 200.0
    pool = int(rate * 300)
    load = shared_pipeline.load(
        stored=synthetic(pool // 3, seed=201),
        events=synthetic(pool - pool // 3, seed=202),
        rate=rate,
    )
    first, second = shared_pipeline.worker("first"), shared_pipeline.worker("second")
    probe = GroupProbe(settings)
    try:
        first.start()
        load.start()
        eventually(
            lambda: len(probe.describe().members) == 1 and raw_rows(shared_pipeline) > 0,
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
        before = rows_by_source(shared_pipeline)
        eventually(  # it consumes both inputs, and leads: the relay moved with the group
            lambda: all(
                rows_by_source(shared_pipeline).get(s, 0) > before.get(s, 0)
                for s in ("dynamodb", "kafka")
            ),
            "new rows of both sources from the survivor",
            timeout=60,
            abort=second.died,
        )
        load.stop()
        tally = shared_pipeline.wait_exact(load.accepted, timeout=300, abort=second.died)
    finally:
        probe.close()
    result.record(tally)
    result.recovery_s = round(takeover, 1)
    result.seconds = round(time.monotonic() - started, 1)
    result.details = {"takeover_s": round(takeover, 1), "workers": 2, "killed": 1}
    assert tally.exact, tally.describe()
    # a dead member is dropped after the session timeout; the takeover follows at once
    assert takeover < SyncOptions().session_timeout_s + 15
