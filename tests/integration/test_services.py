"""The real local services: DynamoDB Local and Kafka go up, answer, and go down by PID.

Each test uses its own home folder (the session fixtures keep theirs); the tools are shared
from `<repo>/.footfall/tools`, so only the first run downloads anything.
"""

from __future__ import annotations

import asyncio
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from typer.testing import CliRunner

from footfall._cli_services import services_app
from footfall.services import Stack, down, status, up
from footfall.services._kafka import metadata_broker_count

TOOLS = Path(__file__).resolve().parents[2] / ".footfall" / "tools"  # shared with conftest


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat[stat.rindex(")") + 2] not in "ZX"


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    home = Stack(home=tmp_path / "home", tools=TOOLS, ephemeral=True, timeout=120.0)
    yield home
    down(home, grace=5.0)


def _dynamodb_tables(endpoint: str) -> list[str]:
    client = boto3.client(
        "dynamodb",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",  # DynamoDB Local accepts any key
    )
    try:
        return list(client.list_tables()["TableNames"])
    finally:
        client.close()


def test_dynamodb_up_twice_starts_once_and_down_stops_it(stack: Stack) -> None:
    (first,) = up(stack, only=["dynamodb"], ports={"dynamodb": 0})
    assert not first.already_running
    assert _dynamodb_tables(first.endpoint) == []

    (second,) = up(stack, only=["dynamodb"], ports={"dynamodb": 0})
    assert second.already_running
    assert (second.pid, second.endpoint) == (first.pid, first.endpoint)

    (row,) = [row for row in status(stack) if row.name == "dynamodb"]
    assert (row.state, row.pid, row.answering) == ("running", first.pid, True)

    (stopped,) = down(stack, only=["dynamodb"])
    assert (stopped.was, stopped.pid) == ("running", first.pid)
    assert not _alive(first.pid)
    assert [row.state for row in status(stack) if row.name == "dynamodb"] == ["stopped"]


async def _create_topic_and_produce(bootstrap: str) -> int:
    from aiokafka import AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic("services-smoke", 1, 1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        metadata = await producer.send_and_wait("services-smoke", b"hello")
    finally:
        await producer.stop()
    return int(metadata.offset)


def test_kafka_up_takes_topics_and_messages_and_down_stops_it(stack: Stack) -> None:
    (kafka,) = up(stack, only=["kafka"], ports={"kafka": 0})
    bootstrap = kafka.endpoint.removeprefix("kafka://")
    host, port = bootstrap.rsplit(":", 1)
    assert metadata_broker_count(host, int(port)) == 1

    assert asyncio.run(_create_topic_and_produce(bootstrap)) == 0

    down(stack, only=["kafka"])
    assert not _alive(kafka.pid)


def test_cli_up_prints_only_export_lines_on_stdout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "tools").symlink_to(TOOLS)  # reuse the cached tools
    monkeypatch.setenv("FOOTFALL_HOME", str(home))
    runner = CliRunner()
    args = ["up", "--only", "dynamodb", "--dynamodb-port", "0"]
    try:
        first = runner.invoke(services_app, args)
        assert first.exit_code == 0, first.stderr
        (line,) = first.stdout.splitlines()
        assert line.startswith("export FOOTFALL_DYNAMODB_ENDPOINT=http://127.0.0.1:")
        assert "started" in first.stderr

        again = runner.invoke(services_app, args)
        assert again.stdout == first.stdout
        assert "already running" in again.stderr
    finally:
        stopped = runner.invoke(services_app, ["down"])
    assert stopped.exit_code == 0 and "dynamodb stopped" in stopped.stderr
    assert not list((home / "run").glob("*.json"))


def test_clickhouse_server_answers_ping_while_up(stack: Stack) -> None:
    server = pytest.importorskip("footfall.services._clickhouse_http")
    if not hasattr(server, "main"):  # the module is being written; no entry point yet
        pytest.skip("footfall.services._clickhouse_http has no main() yet")
    (clickhouse,) = up(stack, only=["clickhouse"], ports={"clickhouse": 0})
    base = clickhouse.endpoint.removesuffix("/default")
    with urllib.request.urlopen(base + "/ping", timeout=5) as response:
        assert response.read().strip() == b"Ok."
    down(stack, only=["clickhouse"])
    assert not _alive(clickhouse.pid)


def test_session_fixtures_point_at_live_services(dynamodb_endpoint: str, kafka_broker: str) -> None:
    assert isinstance(_dynamodb_tables(dynamodb_endpoint), list)
    host, port = kafka_broker.removeprefix("kafka://").split(",")[0].rsplit(":", 1)
    assert metadata_broker_count(host, int(port)) >= 1
