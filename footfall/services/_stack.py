"""The local stack: DynamoDB Local, Kafka and the ClickHouse HTTP server, up, down and status.

Layout under a home folder (`FOOTFALL_HOME`, `.footfall` by default):
`run/<service>.json` (PID/state files), `logs/<service>.log`, `data/<service>/`, and the
installed tools in `tools/` (or a separate tools folder, shared between homes).
`up` is idempotent: a service whose state file names a live process is reported, not restarted.
`down` stops only the processes recorded in the state files.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from .._errors import ServiceError
from ._dynamodb_local import dynamodb_command, dynamodb_endpoint, dynamodb_probe
from ._kafka import kafka_command, kafka_endpoint, kafka_probe, prepare_kafka
from ._process import (
    Probe,
    ProcessState,
    check_port_free,
    file_lock,
    free_port,
    http_probe,
    liveness,
    read_state,
    start_process,
    stop_process,
)
from ._tools import (
    find_dynamodb_local,
    find_kafka,
    install_dynamodb_local,
    install_kafka,
    require_java,
)

__all__ = [
    "CLICKHOUSE_MODULE",
    "DEFAULT_PORTS",
    "ENV_VARS",
    "SERVICES",
    "Running",
    "ServiceName",
    "ServiceState",
    "ServiceStatus",
    "Stack",
    "Stopped",
    "clickhouse_command",
    "down",
    "install",
    "status",
    "up",
]

log = logging.getLogger(__name__)

ServiceName = Literal["dynamodb", "kafka", "clickhouse"]
ServiceState = Literal["running", "stopped", "stale", "not installed"]
SERVICES: tuple[ServiceName, ...] = ("dynamodb", "kafka", "clickhouse")
DEFAULT_PORTS: Mapping[ServiceName, int] = {"dynamodb": 8000, "kafka": 9092, "clickhouse": 8123}
ENV_VARS: Mapping[ServiceName, str] = {
    "dynamodb": "FOOTFALL_DYNAMODB_ENDPOINT",
    "kafka": "FOOTFALL_KAFKA_BROKER",
    "clickhouse": "FOOTFALL_CLICKHOUSE_URL",
}
CLICKHOUSE_MODULE = "footfall.services._clickhouse_http"


@dataclass(frozen=True, slots=True)
class Stack:
    """Where a stack lives. `ephemeral` runs DynamoDB Local in memory (tests)."""

    home: Path
    tools: Path | None = None
    ephemeral: bool = False
    timeout: float = 90.0

    @property
    def tools_dir(self) -> Path:
        return (self.tools or self.home / "tools").absolute()

    def state_path(self, name: ServiceName) -> Path:
        return self.home.absolute() / "run" / f"{name}.json"

    def log_path(self, name: ServiceName) -> Path:
        return self.home.absolute() / "logs" / f"{name}.log"

    def data_dir(self, name: ServiceName) -> Path:
        return self.home.absolute() / "data" / name

    @property
    def lock_path(self) -> Path:
        return self.home.absolute() / "run" / ".lock"


@dataclass(frozen=True, slots=True)
class Running:
    """A service `up` left running; `already_running` if it was not started by this call."""

    name: ServiceName
    endpoint: str
    pid: int
    log: Path
    already_running: bool

    @property
    def export(self) -> str:
        """`export FOOTFALL_...=<endpoint>`: a line a shell can eval."""
        return f"export {ENV_VARS[self.name]}={self.endpoint}"


@dataclass(frozen=True, slots=True)
class Stopped:
    """What `down` found: `was` is 'running' (stopped now), 'stale' or 'stopped' (nothing)."""

    name: ServiceName
    pid: int | None
    was: Literal["running", "stale", "stopped"]


@dataclass(frozen=True, slots=True)
class ServiceStatus:
    name: ServiceName
    state: ServiceState
    endpoint: str | None
    pid: int | None
    log: Path
    answering: bool | None = None


def _endpoint(name: ServiceName, port: int) -> str:
    if name == "dynamodb":
        return dynamodb_endpoint(port)
    if name == "kafka":
        return kafka_endpoint(port)
    return f"http://127.0.0.1:{port}/default"


def _probe(name: ServiceName, port: int) -> Probe:
    if name == "dynamodb":
        return dynamodb_probe(port)
    if name == "kafka":
        return kafka_probe(port)
    return http_probe(f"http://127.0.0.1:{port}/ping", body="Ok.")


def clickhouse_command(data_dir: Path, port: int) -> list[str]:
    """The ClickHouse HTTP server (chDB behind ClickHouse's HTTP interface) on port."""
    return [sys.executable, "-m", CLICKHOUSE_MODULE, "--path", str(data_dir), "--port", str(port)]


def _clickhouse_available() -> bool:
    try:
        return importlib.util.find_spec(CLICKHOUSE_MODULE) is not None
    except ImportError:
        return False


def _installed(stack: Stack, name: ServiceName) -> bool:
    if name == "dynamodb":
        return find_dynamodb_local(stack.tools_dir) is not None
    if name == "kafka":
        return find_kafka(stack.tools_dir) is not None
    return _clickhouse_available()


def _select(only: Iterable[ServiceName] | None) -> list[ServiceName]:
    chosen = set(only) if only else set(SERVICES)
    unknown = chosen - set(SERVICES)
    if unknown:
        raise ServiceError(
            ",".join(sorted(unknown)), "no such service", hint=f"choose from {', '.join(SERVICES)}"
        )
    return [name for name in SERVICES if name in chosen]


def _running_state(stack: Stack, name: ServiceName) -> ProcessState | None:
    """The state of a live service; a stale state file is removed (and None returned)."""
    state = read_state(stack.state_path(name))
    if state is None:
        return None
    if liveness(state) == "running":
        return state
    log.warning(
        "%s: pid %s in %s is gone or reused; forgetting it", name, state.pid, stack.state_path(name)
    )
    stack.state_path(name).unlink(missing_ok=True)
    return None


def install(stack: Stack, only: Iterable[ServiceName] | None = None) -> dict[ServiceName, Path]:
    """Install what the services need (idempotent). Returns where each one is."""
    done: dict[ServiceName, Path] = {}
    for name in _select(only):
        if name == "dynamodb":
            require_java(name)
            done[name] = install_dynamodb_local(stack.tools_dir).jar
        elif name == "kafka":
            require_java(name)
            done[name] = install_kafka(stack.tools_dir).libs
        else:
            spec = importlib.util.find_spec(CLICKHOUSE_MODULE) if _clickhouse_available() else None
            if spec is None or spec.origin is None:
                raise ServiceError(name, f"the module {CLICKHOUSE_MODULE} is not available")
            done[name] = Path(spec.origin)
    return done


def up(
    stack: Stack,
    only: Iterable[ServiceName] | None = None,
    ports: Mapping[ServiceName, int] | None = None,
) -> list[Running]:
    """Start the selected services (all by default) unless running; wait until each answers.

    A port of 0 picks a free one. Raises ServiceError (a port taken by another program, a
    missing tool, a service that does not answer); services started before the error stay up.
    """
    wanted = _select(only)
    with file_lock(stack.lock_path):  # one `up`/`down` at a time per home
        return _up(stack, wanted, {**DEFAULT_PORTS, **(ports or {})})


def _up(
    stack: Stack, wanted: list[ServiceName], chosen: Mapping[ServiceName, int]
) -> list[Running]:
    result: dict[ServiceName, Running] = {}
    to_start: dict[ServiceName, int] = {}
    for name in wanted:  # check everything before starting anything
        state = _running_state(stack, name)
        if state is not None:
            result[name] = Running(
                name, state.endpoint, state.pid, Path(state.log), already_running=True
            )
            continue
        port = chosen[name] or free_port()
        check_port_free(name, port, option=f"--{name}-port")
        if name in ("dynamodb", "kafka"):
            require_java(name)
        elif not _clickhouse_available():
            raise ServiceError(
                name,
                f"the module {CLICKHOUSE_MODULE} is not available in this footfall installation",
                hint="leave it out with --only dynamodb --only kafka",
            )
        to_start[name] = port
    for name, port in to_start.items():
        state = _STARTERS[name](stack, port)
        result[name] = Running(name, state.endpoint, state.pid, Path(state.log), False)
    return [result[name] for name in wanted]


def _launch(stack: Stack, name: ServiceName, port: int, argv: list[str]) -> ProcessState:
    cwd = stack.data_dir(name)
    cwd.mkdir(parents=True, exist_ok=True)
    return start_process(
        name,
        argv,
        state_path=stack.state_path(name),
        log_path=stack.log_path(name),
        probe=_probe(name, port),
        endpoint=_endpoint(name, port),
        timeout=stack.timeout,
        cwd=cwd,
        extra={"port": port},
    )


def _start_dynamodb(stack: Stack, port: int) -> ProcessState:
    java = require_java("dynamodb")
    tool = install_dynamodb_local(stack.tools_dir)
    data = None if stack.ephemeral else stack.data_dir("dynamodb")
    return _launch(stack, "dynamodb", port, dynamodb_command(java, tool, port, data))


def _start_kafka(stack: Stack, port: int) -> ProcessState:
    java = require_java("kafka")
    tool = install_kafka(stack.tools_dir)
    config = prepare_kafka(java, tool, port, stack.data_dir("kafka"))
    return _launch(stack, "kafka", port, kafka_command(java, tool, config))


def _start_clickhouse(stack: Stack, port: int) -> ProcessState:
    data = stack.data_dir("clickhouse") / "chdb"
    return _launch(stack, "clickhouse", port, clickhouse_command(data, port))


_STARTERS: Mapping[ServiceName, Callable[[Stack, int], ProcessState]] = {
    "dynamodb": _start_dynamodb,
    "kafka": _start_kafka,
    "clickhouse": _start_clickhouse,
}


def down(
    stack: Stack, only: Iterable[ServiceName] | None = None, *, grace: float = 15.0
) -> list[Stopped]:
    """Stop the selected services that `up` started (by the PIDs in their state files)."""
    wanted = _select(only)
    with file_lock(stack.lock_path):
        return _down(stack, wanted, grace)


def _down(stack: Stack, wanted: list[ServiceName], grace: float) -> list[Stopped]:
    stopped: list[Stopped] = []
    for name in reversed(wanted):
        path = stack.state_path(name)
        state = read_state(path)
        if state is None:
            path.unlink(missing_ok=True)
            stopped.append(Stopped(name, None, "stopped"))
            continue
        was = stop_process(state, path, grace=grace)
        stopped.append(Stopped(name, state.pid, "running" if was == "running" else "stale"))
    return stopped[::-1]


def status(stack: Stack, *, probe: bool = True) -> list[ServiceStatus]:
    """Each service's state; with probe, whether a running one answers right now."""
    report: list[ServiceStatus] = []
    for name in SERVICES:
        state = read_state(stack.state_path(name))
        if state is not None:
            alive = liveness(state) == "running"
            answering: bool | None = None
            if alive and probe:
                port = int(state.extra.get("port", 0))
                answering = bool(port) and _probe(name, port).check()
            report.append(
                ServiceStatus(
                    name,
                    "running" if alive else "stale",
                    state.endpoint,
                    state.pid,
                    Path(state.log),
                    answering,
                )
            )
            continue
        installed = _installed(stack, name)
        report.append(
            ServiceStatus(
                name,
                "stopped" if installed else "not installed",
                None,
                None,
                stack.log_path(name),
            )
        )
    return report
