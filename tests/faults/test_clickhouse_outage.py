"""ClickHouse unreachable for 30 s under load (server mode): the ClickHouse server process is
SIGKILLed and restarted on the same port and data directory while both sources keep taking
activities.

Proves: nothing lost or duplicated; the backlog is written within 10 s of the server's return
(the lag is back to its level before the outage); the worker's memory stays bounded while
ClickHouse is away. The bound: each input holds at most `max_rows` rows while its write is
stuck (then the agent waits), plus Faust's stream buffer (4096 events), after which the
consumer pauses. The short run's backlog stays under that bound, so its memory check only
shows growth that levels off; `--long` adds a flood many times the bound
(`test_clickhouse_away_under_a_flood_the_worker_memory_levels_off`).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sync.app import SyncOptions
from tests.faults._support import (
    Expected,
    Pipeline,
    PrivateService,
    Results,
    eventually,
    pipeline,
    port_free,
    synthetic,
)

OUTAGE_S = 30.0
RECOVERY_LIMIT_S = 10.0
# While a write is stuck the worker holds at most MAX_ROWS rows per input, Faust's stream buffer
# (1,024 messages) and what aiokafka fetched: up to SyncOptions.fetch_bytes_per_partition a
# partition, held as bytes and as the records decoded from them. With ~1.2 KB events some tens
# of MB, whatever the backlog grows to. 64 MiB was the bound with 1 MiB fetches (the flood
# measured +25 MB then); the 8 MiB fetches add twice their extra 7 MiB per partition (the flood
# measured +71 MB, level after 9 s).
MAX_ROWS = 1_000
PAD = 1_000
PARTITIONS = 3  # pipeline()'s
EXTRA_FETCH_KIB = 2 * PARTITIONS * (SyncOptions().fetch_bytes_per_partition - (1 << 20)) // 1024
MEMORY_LIMIT_KIB = 64 * 1024 + EXTRA_FETCH_KIB
PLATEAU_KIB = 8 * 1024  # growth allowed in the last third of the outage


@pytest.fixture
def clickhouse_server(tmp_path: Path) -> Iterator[PrivateService]:
    """A ClickHouse HTTP server of this test's own, which it may stop."""
    service = PrivateService("clickhouse", tmp_path / "clickhouse")
    service.start()
    try:
        yield service
    finally:
        service.close()


@pytest.fixture
def outage_pipeline(
    faults_dynamodb: str, kafka_broker: str, clickhouse_server: PrivateService, tmp_path: Path
) -> Iterator[Pipeline]:
    with pipeline(
        dynamodb=faults_dynamodb,
        kafka=kafka_broker,
        clickhouse=clickhouse_server.endpoint,
        home=tmp_path,
        name="chdown",
    ) as built:
        yield built


def lag_s(built: Pipeline, accepted: set[tuple[str, str]], timeout: float) -> dict[str, float]:
    """Per source, the seconds until ClickHouse holds every activity of `accepted`."""
    started = time.monotonic()
    waiting = {source for source, _ in accepted}
    took: dict[str, float] = {}

    def caught_up() -> bool:
        present = built.present()
        for source in list(waiting):
            if {k for k in accepted if k[0] == source} <= present:
                took[source] = round(time.monotonic() - started, 2)
                waiting.discard(source)
        return not waiting

    eventually(
        caught_up,
        "ClickHouse to hold what the sources had accepted",
        timeout=timeout,
        interval=0.1,
        abort=built.any_died,
    )
    return took


@pytest.mark.timeout(600)
def test_clickhouse_down_30s_under_load_loses_nothing_recovers_fast_and_bounds_memory(
    outage_pipeline: Pipeline,
    clickhouse_server: PrivateService,
    long_volume: bool,
    fault_results: Results,
) -> None:
    result = fault_results.new("ClickHouse unreachable for 30 s under load")
    started = time.monotonic()
    built = outage_pipeline
    rate = 200.0 if long_volume else 120.0  # a backlog the worker drains well within 10 s
    pool = int(rate * 240)
    load = built.load(
        stored=synthetic(pool // 4, seed=401),
        events=synthetic(pool - pool // 4, seed=402, pad=PAD),
        rate=rate,
    )
    worker = built.worker(max_rows=MAX_ROWS)
    worker.start()
    load.start()
    eventually(
        lambda: built.scalar("SELECT count() FROM activities") > 0,
        "the worker to write rows",
        timeout=120,
        abort=worker.died,
    )
    before = lag_s(built, load.accepted.ids, timeout=60)  # steady state, before the outage
    rss_before = worker.rss_kib()

    clickhouse_server.kill()
    down_at, accepted_at_down = time.monotonic(), len(load.accepted)
    rss_during = []
    while (away := time.monotonic() - down_at) < OUTAGE_S:
        assert worker.alive(), worker.tail()
        rss_during.append(worker.rss_kib())
        time.sleep(min(1.0, OUTAGE_S - away))  # sampling memory at 1 Hz through the outage
    eventually(lambda: port_free(clickhouse_server.port), "the port to be free", timeout=30)
    clickhouse_server.start()  # same port, same data directory
    returned = load.accepted.ids
    backlog = len(returned) - accepted_at_down
    recovered = lag_s(built, returned, timeout=120)
    recovery = max(recovered.values())
    after = lag_s(built, load.accepted.ids, timeout=60)  # lag back to its steady state
    load.stop()
    tally = built.wait_exact(load.accepted, timeout=180, abort=worker.died)

    result.record(tally)
    result.recovery_s = round(recovery, 1)
    result.seconds = round(time.monotonic() - started, 1)
    result.details = {
        "outage_s": round(away, 1),
        "accepted_during_outage": backlog,
        "recovery_by_source_s": recovered,
        "lag_before_s": before,
        "lag_after_recovery_s": after,
        "rss_before_mib": round(rss_before / 1024, 1),
        "rss_peak_during_mib": round(max(rss_during) / 1024, 1),
        "rss_samples_mib": [round(r / 1024) for r in rss_during],
    }
    assert tally.exact, tally.describe()
    assert recovery <= RECOVERY_LIMIT_S, result.details
    assert max(rss_during) - rss_before <= MEMORY_LIMIT_KIB, result.details
    late = rss_during[len(rss_during) * 2 // 3 :]  # the backlog grew on; the worker did not
    assert max(late) - late[0] <= PLATEAU_KIB, result.details


@pytest.mark.timeout(900)
def test_clickhouse_away_under_a_flood_the_worker_memory_levels_off(
    outage_pipeline: Pipeline,
    clickhouse_server: PrivateService,
    long_volume: bool,
    fault_results: Results,
) -> None:
    """--long only: 40,000 events of ~1.2 KB (~48 MB) arrive while ClickHouse is away; the
    worker takes what its bound allows and leaves the rest in Kafka."""
    if not long_volume:
        pytest.skip("a flood of 40,000 events: with --long")
    result = fault_results.new("ClickHouse unreachable under a flood: worker memory")
    started = time.monotonic()
    built = outage_pipeline
    worker = built.worker(max_rows=MAX_ROWS)
    worker.start()
    warm = built.load(events=synthetic(200, seed=451, pad=PAD), rate=1_000.0)
    warm.start().join(timeout=120)
    built.wait_exact(warm.accepted, timeout=120, abort=worker.died)
    rss_before = worker.rss_kib()
    clickhouse_server.kill()
    flood = built.load(events=synthetic(40_000, seed=452, pad=PAD), rate=5_000.0, chunk=1_000)
    flood.start()
    rss_during = []
    down_at = time.monotonic()
    while time.monotonic() - down_at < 45.0:
        assert worker.alive(), worker.tail()
        rss_during.append(worker.rss_kib())
        time.sleep(1.0)  # sampling memory at 1 Hz while the flood arrives
    flood.stop()
    eventually(lambda: port_free(clickhouse_server.port), "the port to be free", timeout=30)
    clickhouse_server.start()
    expected = Expected()
    expected.update(warm.accepted)
    expected.update(flood.accepted)
    tally = built.wait_exact(expected, timeout=600, abort=worker.died)
    result.record(tally)
    result.seconds = round(time.monotonic() - started, 1)
    flood_mib = 40_000 * (PAD + 200) / 2**20
    result.details = {
        "flood_events": len(flood.accepted),
        "flood_mib": round(flood_mib),
        "rss_before_mib": round(rss_before / 1024, 1),
        "rss_peak_during_mib": round(max(rss_during) / 1024, 1),
        "rss_samples_mib": [round(r / 1024) for r in rss_during],
    }
    assert tally.exact, tally.describe()
    assert max(rss_during) - rss_before <= MEMORY_LIMIT_KIB, result.details
    late = rss_during[len(rss_during) * 2 // 3 :]
    assert max(late) - late[0] <= PLATEAU_KIB, result.details
