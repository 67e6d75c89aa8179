"""The services a benchmark run starts for itself, and the sync worker as a child process.

Like the integration fixtures: local processes from `footfall.services`, on free loopback
ports, with a throwaway home, stopped by PID. Kafka and the ClickHouse HTTP server (chDB behind
ClickHouse's HTTP interface) live for the whole run; DynamoDB Local (in memory) is started anew
for each case, as DESIGN.md advises (its stream records pile up and slow later writes).
Services named by the environment are not used: a run must own what it restarts.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any, Literal

from footfall import Settings, load_settings
from footfall._clickhouse import ClickHouse, connect
from footfall._migrate import migrate
from footfall.services import ServiceName, Stack, down, free_port, up

__all__ = [
    "REPO",
    "Services",
    "Worker",
    "bare_dynamodb_client",
    "open_clickhouse",
    "read_rss_mb",
    "settings_for",
]

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]
TOOLS = REPO / ".footfall" / "tools"


class Services:
    """Kafka and ClickHouse on first use, a fresh DynamoDB Local per `fresh_dynamodb()`."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self._stacks: dict[str, Stack] = {}
        self._endpoints: dict[str, str] = {}
        self._dynamodb_runs = 0

    def _start(self, key: str, service: ServiceName) -> str:
        if key not in self._endpoints:
            stack = Stack(home=self.home / key, tools=TOOLS, ephemeral=True, timeout=180.0)
            self._stacks[key] = stack
            (running,) = up(stack, only=[service], ports={service: 0})
            self._endpoints[key] = running.endpoint
            log.info("%s up at %s (pid %s)", service, running.endpoint, running.pid)
        return self._endpoints[key]

    def _stop(self, key: str) -> None:
        stack = self._stacks.pop(key, None)
        self._endpoints.pop(key, None)
        if stack is not None:
            down(stack, grace=10.0)

    @property
    def kafka(self) -> str:
        """`kafka://127.0.0.1:<port>`."""
        return self._start("kafka", "kafka")

    @property
    def clickhouse(self) -> str:
        """`http://127.0.0.1:<port>/default` of the ClickHouse HTTP server."""
        return self._start("clickhouse", "clickhouse")

    def fresh_dynamodb(self) -> str:
        """A DynamoDB Local that no earlier case wrote to (the previous one is stopped)."""
        for key in [k for k in self._stacks if k.startswith("dynamodb")]:
            self._stop(key)
        self._dynamodb_runs += 1
        return self._start(f"dynamodb{self._dynamodb_runs}", "dynamodb")

    def database(self, prefix: str) -> str:
        """A new database on the ClickHouse server with the schema applied; its URL."""
        name = f"{prefix}_{uuid.uuid4().hex[:8]}"
        with connect(load_settings(clickhouse_url=self.clickhouse)) as admin:
            admin.command(f"CREATE DATABASE {name}")
        url = self.clickhouse.rsplit("/", 1)[0] + f"/{name}"
        with connect(load_settings(clickhouse_url=url)) as ch:
            migrate(ch)
        return url

    def drop_database(self, url: str) -> None:
        name = url.rsplit("/", 1)[1]
        with connect(load_settings(clickhouse_url=self.clickhouse)) as admin:
            admin.command(f"DROP DATABASE IF EXISTS {name} SYNC")

    def close(self) -> None:
        """Stop everything this run started (by PID)."""
        for key in list(self._stacks):
            try:
                self._stop(key)
            except Exception:  # stop the others even if one refuses
                log.exception("stopping %s failed", key)


def settings_for(
    services: Services, *, dynamodb: str | None, clickhouse_url: str, name: str
) -> Settings:
    """Settings naming this run's services, with a table and topic prefix of their own."""
    return load_settings(
        dynamodb_endpoint=dynamodb,
        kafka_broker=services.kafka,
        clickhouse_url=clickhouse_url,
        table=f"bench-{name}",
        topic_prefix=f"bench{name}",
        topic_partitions=4,
        home=services.home / "footfall",
    )


def bare_dynamodb_client(settings: Settings, *, pool: int = 64) -> Any:
    """A plain boto3 DynamoDB client for the baselines: default retries, a connection pool
    large enough for every thread the baselines use."""
    import boto3
    import botocore.config

    return boto3.session.Session().client(
        "dynamodb",
        region_name=settings.region,
        endpoint_url=settings.dynamodb_endpoint,
        aws_access_key_id="benchlocal",
        aws_secret_access_key="benchlocal",
        config=botocore.config.Config(max_pool_connections=pool),
    )


def read_rss_mb(pid: int) -> float | None:
    """Resident memory of a process in MB (from /proc; None when it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


class Worker:
    """`python -m footfall sync worker` as a child in a session of its own, stopped by PID."""

    def __init__(self, settings: Settings, log_path: Path, *, relay: bool = True) -> None:
        self.metrics_port = free_port()
        self.relay = relay
        self.log_path = log_path
        self.env = {
            **os.environ,
            "FOOTFALL_DYNAMODB_ENDPOINT": str(settings.dynamodb_endpoint or ""),
            "FOOTFALL_KAFKA_BROKER": str(settings.kafka_broker),
            "FOOTFALL_CLICKHOUSE_URL": settings.clickhouse_url,
            "FOOTFALL_TABLE": settings.table,
            "FOOTFALL_TOPIC_PREFIX": settings.topic_prefix,
            "FOOTFALL_TOPIC_PARTITIONS": str(settings.topic_partitions),
            "FOOTFALL_HOME": str(settings.home),
        }
        if not settings.dynamodb_endpoint:
            del self.env["FOOTFALL_DYNAMODB_ENDPOINT"]
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Worker:
        argv = [sys.executable, "-m", "footfall", "sync", "worker"]
        argv += ["--metrics-port", str(self.metrics_port), "--loglevel", "warning"]
        if not self.relay:
            argv.append("--no-relay")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as out:
            self.process = subprocess.Popen(
                argv,
                env=self.env,
                cwd=REPO,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    @property
    def pid(self) -> int:
        if self.process is None:
            raise RuntimeError("the worker is not running")
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def metrics(self) -> dict[str, float]:
        """The worker's Prometheus samples (name with labels -> value); {} until it serves."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                text = response.read().decode()
        except OSError:
            return {}
        samples: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                samples[name] = float(value)
        return samples

    def counter(self, name: str, source: Literal["kafka", "dynamodb"]) -> float:
        return self.metrics().get(f'{name}{{source="{source}"}}', 0.0)

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Until /metrics answers (the Faust app is up)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"the worker died; see {self.log_path}")
            if self.metrics():
                return
            time.sleep(0.2)
        raise TimeoutError(f"the worker did not serve /metrics in {timeout}s; see {self.log_path}")

    def stop(self) -> None:
        """SIGTERM to its process group, SIGKILL after 30 s."""
        if self.process is None:
            return
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(30)
        self.process = None

    def __enter__(self) -> Worker:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def open_clickhouse(url: str) -> ClickHouse:
    """A (writable) handle on a benchmark database."""
    return connect(load_settings(clickhouse_url=url))
