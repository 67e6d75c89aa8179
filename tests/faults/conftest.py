"""The fault suite: real services under faults, every count compared with the sources.

Every test under tests/faults is marked `faults` (the marker is registered here as well, so the
directory runs on its own). Volumes are short by default; `--long` (or FOOTFALL_FAULTS_LONG=1)
runs the long ones.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from footfall import load_settings
from tests.faults._support import Pipeline, PrivateService, Results, is_long, pipeline

HERE = Path(__file__).resolve().parent


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "faults: the fault matrix against real services (short; --long for volume)"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in item.path.resolve().parents:
            item.add_marker(pytest.mark.faults)


@pytest.fixture(scope="session")
def long_volume(request: pytest.FixtureRequest) -> bool:
    """True with `--long` / FOOTFALL_FAULTS_LONG=1: the long volumes."""
    return is_long(request.config)


@pytest.fixture(scope="session")
def fault_results(long_volume: bool) -> Iterator[Results]:
    """The session's measured rows, saved to `.footfall/faults/<short|long>.json`."""
    results = Results("long" if long_volume else "short")
    try:
        yield results
    finally:
        if results.rows:
            results.save()


@pytest.fixture(scope="session")
def faults_dynamodb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A DynamoDB Local of the fault suite's own (fresh, in memory), unless the environment names
    one: the emulator's stream writes slow down as its streams fill, and the other tests of the
    session fill the shared one."""
    named = load_settings().dynamodb_endpoint
    if named:
        yield named
        return
    service = PrivateService("dynamodb", tmp_path_factory.mktemp("faults-dynamodb"))
    try:
        yield service.start()
    finally:
        service.close()


@pytest.fixture
def shared_pipeline(
    request: pytest.FixtureRequest,
    faults_dynamodb: str,
    kafka_broker: str,
    clickhouse_url: str,
    tmp_path: Path,
) -> Iterator[Pipeline]:
    """A fresh pipeline (database, table, topics) on the session's services, named after the
    test's module; rows whose fault is a service of their own build theirs with `pipeline()`."""
    name = request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_")
    with pipeline(
        dynamodb=faults_dynamodb,
        kafka=kafka_broker,
        clickhouse=clickhouse_url,
        home=tmp_path,
        name=name,
    ) as built:
        yield built
