"""Machinery of the fault suite: a pipeline per test, workers as processes, load, exact tallies.

A test builds a `Pipeline` (its own ClickHouse database, DynamoDB table and topic prefix on the
session's services, or on private ones it may stop), starts `Worker`s (`footfall sync worker`
processes, each in its own session, killed by PID), runs a `Load` (activities recorded in
DynamoDB and published to Kafka from a thread, each kept until its source acknowledged it),
injects its fault, and finally compares `activities FINAL` with what the sources accepted
(`Pipeline.wait_exact` -> `Tally`: lost, extra, duplicated, per source and type).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from footfall import Activity, Settings, StoreError, load_settings
from footfall._clickhouse import ClickHouse, connect
from footfall._kafka import KafkaBridge
from footfall.services import ServiceName, Stack, down, free_port, up
from footfall.services._process import read_state
from ingest import EventPublisher, Tracker
from sync._worker import prepare

REPO: Final = Path(__file__).resolve().parents[2]
TOOLS: Final = REPO / ".footfall" / "tools"
RESULTS: Final = REPO / ".footfall" / "faults"
NOW: Final = datetime.now(UTC).replace(microsecond=0)
Key = tuple[str, str]  # (source, type)


def is_long(config: pytest.Config) -> bool:
    """`--long` or FOOTFALL_FAULTS_LONG=1: the long volumes."""
    return bool(config.getoption("--long", default=False)) or (
        os.environ.get("FOOTFALL_FAULTS_LONG") == "1"
    )


def eventually(
    check: Callable[[], bool],
    what: str,
    *,
    timeout: float,
    interval: float = 0.2,
    describe: Callable[[], str] | None = None,
    abort: Callable[[], str | None] | None = None,
) -> float:
    """Poll `check` until it is true; returns the seconds it took. Fails the test on timeout,
    or at once when `abort` returns a reason (e.g. the worker died)."""
    started = time.monotonic()
    deadline = started + timeout
    while True:
        if check():
            return time.monotonic() - started
        reason = abort() if abort else None
        if reason or time.monotonic() > deadline:
            detail = describe() if describe else ""
            pytest.fail(f"{reason or f'timed out after {timeout:g}s'} waiting for {what}; {detail}")
        time.sleep(interval)


# -- workers ----------------------------------------------------------------------------------


class Worker:
    """`footfall sync worker` as a child process in its own session; SIGKILL is a crash."""

    def __init__(
        self, settings: Settings, home: Path, name: str = "worker", *, max_rows: int | None = None
    ) -> None:
        self.name = name
        self.max_rows = max_rows
        self.home = home / name
        self.home.mkdir(parents=True, exist_ok=True)
        self.env = {
            **os.environ,
            "FOOTFALL_DYNAMODB_ENDPOINT": str(settings.dynamodb_endpoint),
            "FOOTFALL_KAFKA_BROKER": str(settings.kafka_broker),
            "FOOTFALL_CLICKHOUSE_URL": settings.clickhouse_url,
            "FOOTFALL_TABLE": settings.table,
            "FOOTFALL_TOPIC_PREFIX": settings.topic_prefix,
            "FOOTFALL_TOPIC_PARTITIONS": str(settings.topic_partitions),
            "FOOTFALL_HOME": str(self.home),
        }
        self.log = self.home / "worker.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.metrics_port = 0
        self.starts = 0
        self.kills = 0

    def start(self) -> None:
        self.starts += 1
        self.metrics_port = free_port()
        with self.log.open("ab") as log:
            log.write(f"\n== start {self.starts} at {datetime.now(UTC).isoformat()}\n".encode())
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "footfall",
                    "sync",
                    "worker",
                    "--metrics-port",
                    str(self.metrics_port),
                    "--max-wait",
                    "0.1",
                    "--loglevel",
                    "warning",
                    *(["--max-rows", str(self.max_rows)] if self.max_rows else []),
                ],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        assert self.process is not None, "the worker was never started"
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL the worker's process group: no shutdown code runs, as in a crash."""
        assert self.process is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(30)
        self.kills += 1

    def stop(self) -> None:
        """SIGTERM (a graceful stop), SIGKILL after 30 s."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()
        self.process = None

    def rss_kib(self) -> int:
        """Resident memory of the worker process (VmRSS from /proc/<pid>/status), in KiB."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError(f"no VmRSS for pid {self.pid}")

    def metrics(self) -> dict[str, float]:
        """The worker's Prometheus samples (`name{labels}` -> value); {} if it does not answer."""
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            url = f"http://127.0.0.1:{self.metrics_port}/metrics"
            with opener.open(url, timeout=2) as response:
                text = response.read().decode()
        except OSError:
            return {}
        samples: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                samples[name] = float(value)
        return samples

    def died(self) -> str | None:
        """A reason to stop waiting when the worker exited on its own."""
        if self.process is not None and self.process.poll() is not None:
            return f"worker {self.name} exited with {self.process.returncode}:\n{self.tail()}"
        return None

    def tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""


# -- private services -------------------------------------------------------------------------


def port_free(port: int) -> bool:
    """True if nothing listens on 127.0.0.1:port (a restart may bind it again)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def gone(pid: int) -> bool:
    """True once pid has exited (a zombie waiting for its reaper counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat[stat.rindex(")") + 2] in "ZX"


class PrivateService:
    """One service of a private `footfall.services` stack that a test may stop and restart on the
    same port and data directory without disturbing the session's services."""

    def __init__(self, name: ServiceName, home: Path) -> None:
        self.name = name
        self.stack = Stack(home=home, tools=TOOLS, ephemeral=True, timeout=120.0)
        self.port = 0
        self.endpoint = ""

    def start(self) -> str:
        (running,) = up(self.stack, only=[self.name], ports={self.name: self.port})
        self.endpoint = running.endpoint
        self.port = int(running.endpoint.rsplit(":", 1)[1].split("/")[0])
        return self.endpoint

    @property
    def pid(self) -> int | None:
        state = read_state(self.stack.state_path(self.name))
        return None if state is None else state.pid

    def kill(self) -> None:
        """SIGKILL the service's process group (a crash), then forget its state file."""
        pid = self.pid
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            eventually(lambda: gone(pid), f"{self.name} (pid {pid}) to exit", timeout=30)
        down(self.stack, only=[self.name], grace=1.0)

    def stop(self) -> None:
        """A graceful stop (SIGTERM, SIGKILL after the grace period)."""
        down(self.stack, only=[self.name], grace=30.0)

    def data_dir(self) -> Path:
        return self.stack.data_dir(self.name)

    def close(self) -> None:
        down(self.stack, only=[self.name], grace=5.0)


# -- the pipeline -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Tally:
    """`activities FINAL` compared with the sources after a run."""

    expected: int
    rows_final: int
    rows_raw: int  # before FINAL: duplicates the table absorbed (until merges collapse them)
    lost: int  # accepted by a source, not in ClickHouse
    extra: int  # in ClickHouse, never accepted by a source
    duplicated: int  # event ids present more than once in FINAL (another identity)
    by_type_expected: dict[str, int]
    by_type_found: dict[str, int]

    @property
    def exact(self) -> bool:
        return (
            self.lost == 0
            and self.extra == 0
            and self.duplicated == 0
            and self.rows_final == self.expected
            and self.by_type_found == self.by_type_expected
        )

    def describe(self) -> str:
        return (
            f"expected {self.expected}, FINAL {self.rows_final} (raw {self.rows_raw}), "
            f"lost {self.lost}, extra {self.extra}, duplicated {self.duplicated}; "
            f"per source/type expected {self.by_type_expected}, found {self.by_type_found}"
        )


@dataclass
class Pipeline:
    """One test's slice of the services: database, table, topics, workers."""

    settings: Settings
    ch: ClickHouse
    home: Path
    workers: list[Worker] = field(default_factory=list)
    loads: list[Load] = field(default_factory=list)

    def worker(
        self, name: str = "worker", *, max_rows: int | None = None, dynamodb: str | None = None
    ) -> Worker:
        """A worker of this pipeline (`dynamodb`: another endpoint for it, e.g. a stand-in)."""
        settings = self.settings
        if dynamodb is not None:
            settings = settings.model_copy(update={"dynamodb_endpoint": dynamodb})
        worker = Worker(settings, self.home, name, max_rows=max_rows)
        self.workers.append(worker)
        return worker

    def load(
        self,
        *,
        stored: Sequence[Activity] = (),
        events: Sequence[Activity] = (),
        rate: float,
        chunk: int = 200,
    ) -> Load:
        """A load on this pipeline's sources, stopped at the latest when the pipeline closes."""
        load = Load(self.settings, stored=stored, events=events, rate=rate, chunk=chunk)
        self.loads.append(load)
        return load

    def scalar(self, sql: str) -> Any:
        return next(iter(self.ch.query_arrow(sql).to_pylist()[0].values()))

    def present(self) -> set[tuple[str, str]]:
        """(source, event_id) of every row of `activities FINAL`."""
        columns = self.ch.query_arrow("SELECT source, event_id FROM activities FINAL").to_pydict()
        return set(zip(columns["source"], columns["event_id"], strict=True))

    def counts(self) -> dict[str, int]:
        """Rows of `activities FINAL` per `source/type`."""
        rows = self.ch.query_arrow(
            "SELECT source, type, count() AS n FROM activities FINAL GROUP BY source, type"
        ).to_pylist()
        return {f"{r['source']}/{r['type']}": int(r["n"]) for r in rows}

    def tally(self, expected: Expected) -> Tally:
        columns = self.ch.query_arrow("SELECT source, event_id FROM activities FINAL").to_pydict()
        found = Counter(zip(columns["source"], columns["event_id"], strict=True))
        wanted = expected.ids
        return Tally(
            expected=len(wanted),
            rows_final=sum(found.values()),
            rows_raw=int(self.scalar("SELECT count() FROM activities")),
            lost=len(wanted - found.keys()),
            extra=len(found.keys() - wanted),
            duplicated=sum(n - 1 for n in found.values()),
            by_type_expected=expected.by_type(),
            by_type_found=self.counts(),
        )

    def wait_exact(
        self, expected: Expected, *, timeout: float, abort: Callable[[], str | None] | None = None
    ) -> Tally:
        """Wait until the per source/type counts of FINAL equal the sources', then tally."""
        wanted = expected.by_type()
        eventually(
            lambda: self.counts() == wanted,
            "activities FINAL to equal the sources",
            timeout=timeout,
            interval=0.5,
            describe=lambda: self.tally(expected).describe() + "\n" + self.worker_logs(),
            abort=abort,
        )
        return self.tally(expected)

    def worker_logs(self) -> str:
        return "\n".join(f"--- {w.name} log tail:\n{w.tail(2000)}" for w in self.workers)

    def any_died(self) -> str | None:
        """A reason if a worker that should run exited by itself."""
        for worker in self.workers:
            if reason := worker.died():
                return reason
        return None

    def close(self) -> None:
        for load in self.loads:
            load.halt()
        for worker in self.workers:
            worker.stop()


@contextlib.contextmanager
def pipeline(
    *,
    dynamodb: str,
    kafka: str,
    clickhouse: str,
    home: Path,
    name: str,
    partitions: int = 3,
) -> Iterator[Pipeline]:
    """A fresh database on `clickhouse` (a server URL), a fresh table and topic prefix, the
    migrations applied and topics created; workers stopped and the database dropped after."""
    tag = f"{name}_{uuid.uuid4().hex[:6]}"
    server = load_settings(clickhouse_url=clickhouse)
    admin = connect(server)
    admin.command(f"CREATE DATABASE {tag}")
    settings = load_settings(
        dynamodb_endpoint=dynamodb,
        kafka_broker=kafka,
        clickhouse_url=clickhouse.rsplit("/", 1)[0] + f"/{tag}",
        table=f"faults-{tag}",
        topic_prefix=f"faults-{tag}",
        topic_partitions=partitions,
        home=home,
    )
    Tracker("x", settings).ensure_table()
    prepare(settings)
    ch = connect(settings)
    built = Pipeline(settings, ch, home)
    try:
        yield built
    finally:
        built.close()
        ch.close()
        with contextlib.suppress(StoreError):  # the server may be the one a test stopped
            admin.command(f"DROP DATABASE IF EXISTS {tag} SYNC")
        admin.close()


# -- load -------------------------------------------------------------------------------------


class Expected:
    """What the sources accepted: (source, event_id) -> type. Thread-safe (a Load adds to it)."""

    def __init__(self) -> None:
        self._types: dict[tuple[str, str], str] = {}
        self._lock = threading.Lock()

    def add(self, source: str, activities: Sequence[Activity]) -> None:
        with self._lock:
            for a in activities:
                self._types[(source, a.event_id)] = a.type

    def update(self, other: Expected) -> None:
        """Add what another load's sources accepted."""
        with other._lock:
            taken = dict(other._types)
        with self._lock:
            self._types.update(taken)

    @property
    def ids(self) -> set[tuple[str, str]]:
        """What was accepted so far."""
        with self._lock:
            return set(self._types)

    def by_type(self) -> dict[str, int]:
        with self._lock:
            return dict(Counter(f"{source}/{t}" for (source, _), t in self._types.items()))

    def __len__(self) -> int:
        return len(self._types)


def synthetic(count: int, seed: int, *, pad: int = 0) -> list[Activity]:
    """`count` reproducible activities of the last day, of five types; `pad` adds an attribute
    of that many bytes to each."""
    from footfall._synthetic import synthetic_activities

    made = list(synthetic_activities(count, seed=seed, end=NOW, days=1))
    if not pad:
        return made
    return [
        Activity(
            actor=a.actor,
            type=a.type,
            target=a.target,
            ts=a.ts,
            event_id=a.event_id,
            attributes={**a.attributes, "pad": "x" * pad},
        )
        for a in made
    ]


class Load:
    """Records `stored` in DynamoDB and publishes `events` to Kafka, each from a thread of its
    own (one source's outage does not hold the other up), `chunk` at a time at about `rate`
    activities per second in all, until both are sent or `stop()` is called.

    Every chunk is sent until its source acknowledged it (a failed chunk is sent again whole:
    the repeats are the same activities), even after `stop()`: `accepted` is exactly what the
    sources took, never a chunk half-sent and forgotten.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        stored: Sequence[Activity] = (),
        events: Sequence[Activity] = (),
        rate: float = 2_000.0,
        chunk: int = 200,
        give_up_s: float = 300.0,
    ) -> None:
        self.settings = settings
        self.chunk = chunk
        self.give_up_s = give_up_s
        self.accepted = Expected()
        self.retries = 0
        self.errors: list[str] = []
        self.failures: list[BaseException] = []
        self._stop = threading.Event()
        total = len(stored) + len(events) or 1
        self._threads = [
            threading.Thread(
                target=self._run,
                args=(source, list(items), rate * len(items) / total),
                name=f"fault-load-{source}",
                daemon=True,
            )
            for source, items in (("dynamodb", stored), ("kafka", events))
            if items
        ]
        self._trackers: dict[str, Tracker] = {}

    @property
    def running(self) -> bool:
        return all(t.is_alive() for t in self._threads) and not self._stop.is_set()

    def start(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        """Send no new chunk; wait for the ones in flight."""
        self._stop.set()
        self.join(timeout=self.give_up_s + 60)

    def halt(self) -> None:
        """Stop without judging (clean-up after a failed test)."""
        self._stop.set()
        for thread in self._threads:
            if thread.is_alive():
                thread.join(self.give_up_s + 60)

    def join(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        if any(t.is_alive() for t in self._threads):
            self.halt()
            pytest.fail(f"the load did not finish in {timeout:g}s ({len(self.accepted)} sent)")
        if self.failures:
            raise self.failures[0]

    def _run(self, source: str, items: list[Activity], rate: float) -> None:
        try:
            if source == "kafka":
                publisher = self._until_done(lambda: EventPublisher(self.settings))
                try:
                    self._pace(source, items, rate, publisher.publish_many)
                finally:
                    publisher.close()
            else:
                self._pace(source, items, rate, self._record)
        except BaseException as exc:  # reported by join()
            self.failures.append(exc)

    def _pace(
        self,
        source: str,
        items: list[Activity],
        rate: float,
        send: Callable[[Sequence[Activity]], Any],
    ) -> None:
        started, sent = time.monotonic(), 0
        for at in range(0, len(items), self.chunk):
            if self._stop.is_set():
                return
            some = items[at : at + self.chunk]
            self._until_done(lambda s=some: send(s))  # type: ignore[misc]
            self.accepted.add(source, some)
            sent += len(some)
            ahead = sent / rate - (time.monotonic() - started)
            if ahead > 0:
                self._stop.wait(ahead)

    def _record(self, activities: Sequence[Activity]) -> None:
        by_type: dict[str, list[Activity]] = {}
        for a in activities:
            by_type.setdefault(a.type, []).append(a)
        for type_, items in by_type.items():
            tracker = self._trackers.get(type_)
            if tracker is None:
                tracker = self._trackers[type_] = Tracker(type_, self.settings)
            tracker.record_many(items)

    def _until_done(self, send: Callable[[], Any]) -> Any:
        """Call `send` until it succeeds (a store may be down for a while)."""
        deadline = time.monotonic() + self.give_up_s
        while True:
            try:
                return send()
            except StoreError as exc:
                self.retries += 1
                self.errors.append(str(exc)[:200])
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)


# -- Kafka ------------------------------------------------------------------------------------


def read_topic(settings: Settings, topic: str, *, idle_ms: int = 3_000) -> list[Any]:
    """Every record of `topic` (of `settings.topic_partitions` partitions) from the beginning,
    read up to the end offsets seen at the start, or until `idle_ms` bring nothing new."""
    assert settings.kafka is not None
    bridge = KafkaBridge(settings.kafka)

    async def read() -> list[Any]:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=settings.kafka.bootstrap,  # type: ignore[union-attr]
            enable_auto_commit=False,
            max_partition_fetch_bytes=4 << 20,
        )
        await consumer.start()
        try:
            tps = [TopicPartition(topic, p) for p in range(settings.topic_partitions)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends = await consumer.end_offsets(tps)
            out: list[Any] = []
            left = {tp: end for tp, end in ends.items() if end > 0}
            while left:
                batch = await consumer.getmany(timeout_ms=idle_ms)
                if not batch:
                    break
                for tp, records in batch.items():
                    out.extend(records)
                    if tp in left and records[-1].offset + 1 >= left[tp]:
                        del left[tp]
            return out
        finally:
            await consumer.stop()

    try:
        return bridge.run(read(), timeout=300)
    finally:
        bridge.close()


@dataclass(frozen=True, slots=True)
class Group:
    """A consumer group as the coordinator describes it: state and each member's partitions."""

    state: str
    members: dict[str, frozenset[tuple[str, int]]]

    def owned(self, topic: str) -> set[int]:
        return {p for tps in self.members.values() for t, p in tps if t == topic}


class GroupProbe:
    """Describes the sync workers' consumer group (`<topic prefix>-sync`, the Faust app id)
    through one admin client, quickly enough to catch a rebalance in the act."""

    def __init__(self, settings: Settings) -> None:
        from aiokafka.admin import AIOKafkaAdminClient

        assert settings.kafka is not None
        self.group_id = f"{settings.topic_prefix}-sync"
        bootstrap = settings.kafka.bootstrap
        self._bridge = KafkaBridge(settings.kafka)

        async def start() -> AIOKafkaAdminClient:  # aiokafka clients are made on their loop
            admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
            await admin.start()
            return admin

        self._admin = self._bridge.run(start())

    def describe(self) -> Group:
        return self._bridge.run(self._describe(), timeout=30)

    async def _describe(self) -> Group:
        from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment

        (response,) = await self._admin.describe_consumer_groups([self.group_id])
        _error, _group, state, _kind, _protocol, members, *_ = response.groups[0]
        owned: dict[str, frozenset[tuple[str, int]]] = {}
        for member_id, _client, _host, _metadata, assignment, *_ in members:
            decoded = ConsumerProtocolMemberAssignment.decode(assignment) if assignment else None
            tps = decoded.partitions() if decoded else []
            owned[member_id] = frozenset((tp.topic, tp.partition) for tp in tps)
        return Group(state, owned)

    def close(self) -> None:
        try:
            self._bridge.run(self._admin.close())
        finally:
            self._bridge.close()


def topic_size(settings: Settings, topic: str) -> int:
    """Messages in `topic` (the sum of its partitions' end offsets); footfall's topics have
    `settings.topic_partitions` partitions."""
    assert settings.kafka is not None
    bridge = KafkaBridge(settings.kafka)

    async def size() -> int:
        consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka.bootstrap)  # type: ignore[union-attr]
        await consumer.start()
        try:
            tps = [TopicPartition(topic, p) for p in range(settings.topic_partitions)]
            ends = await consumer.end_offsets(tps)
            return int(sum(ends.values()))
        finally:
            await consumer.stop()

    try:
        return bridge.run(size(), timeout=60)
    finally:
        bridge.close()


def cdc_repeats(settings: Settings) -> tuple[int, int]:
    """(messages, repeats) in `footfall.cdc`: a repeat is a stream record (shard, seq) the relay
    produced more than once."""
    seen = Counter(
        (m["shard"], m["seq"])
        for m in (json.loads(r.value) for r in read_topic(settings, settings.topic("cdc")))
    )
    return sum(seen.values()), sum(n - 1 for n in seen.values())


# -- results ----------------------------------------------------------------------------------


@dataclass
class FaultResult:
    """One row of the fault matrix as measured; written to `.footfall/faults/<volume>.json`."""

    row: str
    volume: str
    sent: int = 0
    rows_final: int = 0
    rows_raw: int = 0
    lost: int = 0
    extra: int = 0
    duplicated: int = 0
    recovery_s: float | None = None
    seconds: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)
    measured: bool = False  # only measured rows are saved

    def record(self, tally: Tally) -> None:
        self.measured = True
        self.sent, self.rows_final, self.rows_raw = tally.expected, tally.rows_final, tally.rows_raw
        self.lost, self.extra, self.duplicated = tally.lost, tally.extra, tally.duplicated


class Results:
    """The session's fault results, saved as they come (a crash keeps what was measured)."""

    def __init__(self, volume: str) -> None:
        self.volume = volume
        self.path = RESULTS / f"{volume}.json"
        self.rows: list[FaultResult] = []

    def new(self, row: str) -> FaultResult:
        result = FaultResult(row, self.volume)
        self.rows.append(result)
        return result

    def save(self) -> None:
        RESULTS.mkdir(parents=True, exist_ok=True)
        data = {
            "volume": self.volume,
            "finished": datetime.now(UTC).isoformat(timespec="seconds"),
            "rows": [asdict(r) for r in self.rows if r.measured],
        }
        self.path.write_text(json.dumps(data, indent=2) + "\n")


def jitter(low: float, high: float, rng: random.Random) -> float:
    return rng.uniform(low, high)
