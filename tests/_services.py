"""Session fixtures for real services: DynamoDB Local, Kafka and a ClickHouse server.

Loaded for the whole test tree by `tests/conftest.py` (`pytest_plugins`), so `tests/integration`
and `tests/faults` share one set of services per session.

Each fixture takes, in order of preference:
1. an existing service named by the environment (`FOOTFALL_DYNAMODB_ENDPOINT` or
   `AWS_ENDPOINT_URL_DYNAMODB`; `FOOTFALL_KAFKA_BROKER`; `FOOTFALL_CLICKHOUSE_URL`), read
   through `footfall.load_settings()`;
2. a container, when a Docker engine answers a quick ping (testcontainers is imported only then);
3. a local process started by `footfall.services` on a free loopback port, with a fresh data
   folder, tools cached in `<repo>/.footfall/tools`, stopped by PID at the end of the session.
"""

from __future__ import annotations

import os
import socket
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from footfall import Settings, load_settings
from footfall.services import ServiceName, Stack, down, free_port, up
from footfall.services._kafka import kafka_probe
from footfall.services._process import Probe, http_probe

REPO = Path(__file__).resolve().parents[1]
TOOLS = REPO / ".footfall" / "tools"
DYNAMODB_IMAGE = "amazon/dynamodb-local:latest"
KAFKA_IMAGE = "apache/kafka:3.9.1"
START_TIMEOUT = 120.0


def _docker_address() -> tuple[str, str] | None:
    """('unix', path) or ('tcp', host:port) of the Docker engine this session would use."""
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if host.startswith("unix://"):
        return ("unix", host.removeprefix("unix://"))
    if host.startswith("tcp://") and not os.environ.get("DOCKER_TLS_VERIFY"):
        return ("tcp", host.removeprefix("tcp://").rstrip("/"))
    return None


def docker_answers(timeout: float = 0.5) -> bool:
    """True if a Docker engine answers GET /_ping within timeout (no Docker is the usual case)."""
    address = _docker_address()
    if address is None:
        return False
    kind, where = address
    try:
        if kind == "unix":
            if not Path(where).exists():
                return False
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            with sock:
                sock.connect(where)
                return _ping(sock)
        host, _, port = where.rpartition(":")
        with socket.create_connection((host, int(port)), timeout=timeout) as sock:
            return _ping(sock)
    except (OSError, ValueError):
        return False


def _ping(sock: socket.socket) -> bool:
    sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
    return sock.recv(64).split(b"\r\n", 1)[0].endswith(b" 200 OK")


def _docker_host_ip() -> str:
    address = _docker_address()
    if address is not None and address[0] == "tcp":
        return address[1].rpartition(":")[0]
    return "127.0.0.1"


def _wait(probe: Probe, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not probe.check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not answer on {probe.what} within {timeout:g}s")
        time.sleep(0.2)


def _quietly(call: Any, *args: Any) -> Any:
    """Run a testcontainers call with its library deprecation warnings silenced."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return call(*args)


def _container(image: str) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from testcontainers.core.container import DockerContainer
    return DockerContainer(image)


def _dynamodb_container() -> Iterator[str]:
    container = (
        _container(DYNAMODB_IMAGE)
        .with_command("-jar DynamoDBLocal.jar -inMemory -sharedDb -disableTelemetry")
        .with_exposed_ports(8000)
    )
    _quietly(container.start)
    try:
        host = container.get_container_host_ip()
        port = int(container.get_exposed_port(8000))
        endpoint = f"http://{host}:{port}"
        _wait(http_probe(endpoint + "/"), START_TIMEOUT, "DynamoDB Local container")
        yield endpoint
    finally:
        _quietly(container.stop)


def _kafka_container() -> Iterator[str]:
    host, port = _docker_host_ip(), free_port()
    settings = {
        "KAFKA_NODE_ID": "1",
        "KAFKA_PROCESS_ROLES": "broker,controller",
        "KAFKA_LISTENERS": "PLAINTEXT://0.0.0.0:9092,CONTROLLER://0.0.0.0:9093",
        "KAFKA_ADVERTISED_LISTENERS": f"PLAINTEXT://{host}:{port}",
        "KAFKA_CONTROLLER_LISTENER_NAMES": "CONTROLLER",
        "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "KAFKA_CONTROLLER_QUORUM_VOTERS": "1@localhost:9093",
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR": "1",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "1",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": "1",
        "KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS": "0",
        "KAFKA_AUTO_CREATE_TOPICS_ENABLE": "false",
        "KAFKA_NUM_PARTITIONS": "1",
    }
    container = _container(KAFKA_IMAGE).with_bind_ports(9092, port)
    for key, value in settings.items():
        container = container.with_env(key, value)
    _quietly(container.start)
    try:
        _wait(kafka_probe(port, host), START_TIMEOUT, "Kafka container")
        yield f"kafka://{host}:{port}"
    finally:
        _quietly(container.stop)


def _local(tmp_path_factory: pytest.TempPathFactory, service: ServiceName) -> Iterator[str]:
    stack = Stack(
        home=tmp_path_factory.mktemp(f"{service}-home"),
        tools=TOOLS,
        ephemeral=True,
        timeout=START_TIMEOUT,
    )
    try:
        (running,) = up(stack, only=[service], ports={service: 0})
        yield running.endpoint
    finally:
        down(stack, grace=5.0)


@pytest.fixture(scope="session")
def _session_settings() -> Settings:
    """The settings of this test session, read once from the environment."""
    return load_settings()


@pytest.fixture(scope="session")
def _use_docker() -> bool:
    """Whether containers are used for services the environment does not point at."""
    return docker_answers()


@pytest.fixture(scope="session")
def dynamodb_endpoint(
    _session_settings: Settings, _use_docker: bool, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """`http://host:port` of a DynamoDB Local (fresh and in memory, unless the env names one)."""
    if _session_settings.dynamodb_endpoint:
        yield _session_settings.dynamodb_endpoint
    elif _use_docker:
        yield from _dynamodb_container()
    else:
        yield from _local(tmp_path_factory, "dynamodb")


@pytest.fixture(scope="session")
def kafka_broker(
    _session_settings: Settings, _use_docker: bool, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """`kafka://host:port` of a single-node Kafka broker (fresh, unless the env names one)."""
    if _session_settings.kafka is not None:
        yield "kafka://" + _session_settings.kafka.bootstrap
    elif _use_docker:
        yield from _kafka_container()
    else:
        yield from _local(tmp_path_factory, "kafka")


@pytest.fixture(scope="session")
def chdb_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The one embedded chDB directory of this test session (`chdb:///...`).

    chDB opens one directory per process at a time: every in-process test shares this one and
    isolates itself with a fresh database.
    """
    return "chdb://" + str(tmp_path_factory.mktemp("chdb").resolve())


@pytest.fixture(scope="session")
def clickhouse_url(
    _session_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """`http://host:port/db` of a ClickHouse server that several processes can share.

    A server named by FOOTFALL_CLICKHOUSE_URL (http or https) wins; else footfall's own
    ClickHouse HTTP server over chDB runs as a local process for the session.
    """
    if _session_settings.clickhouse.mode == "server":
        yield _session_settings.clickhouse_url
    else:
        yield from _local(tmp_path_factory, "clickhouse")
