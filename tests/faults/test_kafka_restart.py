"""The Kafka broker stopped and restarted under load: nothing lost, nothing duplicated.

The test runs a broker of its own (a private `footfall.services` stack), stops it gracefully
while activities keep coming (DynamoDB keeps taking them; the publisher's sends fail and are
retried), and restarts it on the same port and data directory. The worker rides it out: the
relay's produce and the sink's commits wait for the broker, nothing is checkpointed meanwhile.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults._support import (
    Pipeline,
    PrivateService,
    Results,
    eventually,
    pipeline,
    port_free,
    synthetic,
)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[PrivateService]:
    """A Kafka broker of this test's own, which it may stop."""
    service = PrivateService("kafka", tmp_path / "kafka")
    service.start()
    try:
        yield service
    finally:
        service.close()


@pytest.fixture
def kafka_pipeline(
    faults_dynamodb: str, broker: PrivateService, clickhouse_url: str, tmp_path: Path
) -> Iterator[Pipeline]:
    with pipeline(
        dynamodb=faults_dynamodb,
        kafka=broker.endpoint,
        clickhouse=clickhouse_url,
        home=tmp_path,
        name="kafkadown",
    ) as built:
        yield built


@pytest.mark.timeout(600)
def test_kafka_stopped_and_restarted_under_load_loses_and_duplicates_nothing(
    kafka_pipeline: Pipeline, broker: PrivateService, long_volume: bool, fault_results: Results
) -> None:
    result = fault_results.new("Kafka broker stopped and restarted under load")
    started = time.monotonic()
    built = kafka_pipeline
    rate, down_s = (400.0, 30.0) if long_volume else (200.0, 10.0)
    pool = int(rate * 300)
    load = built.load(
        stored=synthetic(pool // 3, seed=501),
        events=synthetic(pool - pool // 3, seed=502),
        rate=rate,
    )
    worker = built.worker()
    worker.start()
    load.start()
    eventually(
        lambda: len(built.counts()) >= 2,  # rows of both sources: relay and sink are running
        "the worker to write rows of both sources",
        timeout=120,
        abort=worker.died,
    )
    stopping = time.monotonic()
    broker.stop()  # a graceful stop (SIGTERM): the broker closes its logs cleanly
    stopped_at = time.monotonic()
    eventually(lambda: port_free(broker.port), "the broker's port to be free", timeout=60)
    while time.monotonic() - stopped_at < down_s:
        assert worker.alive(), worker.tail()
        time.sleep(0.5)  # the fault's duration: the broker stays away this long
    starting = time.monotonic()
    broker.start()  # same port, same data directory, same cluster id
    returned = time.monotonic()
    accepted_at_return = load.accepted.ids
    recovery = eventually(
        lambda: accepted_at_return <= built.present(),
        "ClickHouse to hold what the sources had accepted before the broker returned",
        timeout=180,
        interval=0.25,
        abort=worker.died,
    )
    load.stop()
    tally = built.wait_exact(load.accepted, timeout=240, abort=worker.died)
    result.record(tally)
    result.recovery_s = round(recovery, 1)
    result.seconds = round(time.monotonic() - started, 1)
    result.details = {
        "broker_down_s": round(returned - stopping, 1),
        "stop_took_s": round(stopped_at - stopping, 1),
        "restart_took_s": round(returned - starting, 1),
        "publisher_retries": load.retries,
        "worker_restarts": worker.starts - 1,
    }
    assert tally.exact, tally.describe()
    assert worker.starts == 1 and worker.alive(), "the worker did not ride out the outage"
