"""Run one local service as a detached process, tracked by a PID/state file.

A service runs in its own session and process group, writes its output to a log file and is
described by a JSON state file: its PID, the exact command line it was started with and its
start time, so a later `stop` or `status` (from another process) can tell whether that PID is
still the service or a stale record (the process is gone, or the PID now belongs to another
program). Readiness is a probe (TCP connect, HTTP GET, or a service-specific check) polled until
it answers or the timeout passes; on failure the error carries the tail of the log.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from .._errors import ServiceError

__all__ = [
    "Liveness",
    "Probe",
    "ProcessState",
    "check_port_free",
    "file_lock",
    "free_port",
    "http_probe",
    "liveness",
    "log_tail",
    "read_state",
    "start_process",
    "stop_process",
    "tcp_probe",
]

log = logging.getLogger(__name__)

Liveness = Literal["running", "stale"]

# Runs the service in a new session with its output appended to the log, prints its PID and
# exits at once: the service is then nobody's child here, so it outlives the caller cleanly (no
# zombie to reap, no "subprocess is still running" warning) and is tracked by PID alone.
_LAUNCHER = """\
import json, os, subprocess, sys
spec = json.loads(sys.argv[1])
with open(spec["log"], "ab") as log:
    child = subprocess.Popen(
        spec["argv"], stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        cwd=spec["cwd"], start_new_session=True, close_fds=True,
    )
sys.stdout.write(str(child.pid))
sys.stdout.flush()
os._exit(0)
"""


@dataclass(frozen=True, slots=True)
class Probe:
    """A readiness check: `check()` is True once the service answers; `what` describes it."""

    what: str
    check: Callable[[], bool]


def tcp_probe(host: str, port: int) -> Probe:
    """Ready when a TCP connection to host:port succeeds."""

    def check() -> bool:
        try:
            with socket.create_connection((host, port), timeout=1.0):
                return True
        except OSError:
            return False

    return Probe(f"tcp://{host}:{port}", check)


# loopback services are reached directly, whatever http_proxy says
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_probe(url: str, *, body: str | None = None) -> Probe:
    """Ready when GET url gets an HTTP response (any status), whose body starts with `body`."""

    def check() -> bool:
        try:
            with _DIRECT.open(url, timeout=2.0) as response:
                text = response.read(256).decode("utf-8", "replace")
        except urllib.error.HTTPError as exc:
            with exc:
                text = exc.read(256).decode("utf-8", "replace")
        except (OSError, ValueError):
            return False
        return body is None or text.strip().startswith(body)

    return Probe(f"GET {url}", check)


@dataclass(frozen=True, slots=True)
class ProcessState:
    """What the state file records about a started service."""

    name: str
    pid: int
    argv: tuple[str, ...]
    start_ticks: int
    started_at: str
    endpoint: str
    log: str
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        data = asdict(self)
        data["argv"] = list(self.argv)
        data["extra"] = dict(self.extra)
        return json.dumps(data, indent=2)

    @classmethod
    def from_json(cls, text: str) -> ProcessState:
        data = json.loads(text)
        return cls(
            name=str(data["name"]),
            pid=int(data["pid"]),
            argv=tuple(str(a) for a in data["argv"]),
            start_ticks=int(data.get("start_ticks", 0)),
            started_at=str(data.get("started_at", "")),
            endpoint=str(data.get("endpoint", "")),
            log=str(data.get("log", "")),
            extra=dict(data.get("extra", {})),
        )


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive flock on path (created if needed) for the duration of the block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on host that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def check_port_free(service: str, port: int, *, option: str, host: str = "127.0.0.1") -> None:
    """Raise ServiceError if something already listens on host:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise ServiceError(
                service,
                f"port {port} on {host} is already in use by another program ({exc.strerror})",
                hint=f"stop that program or pass {option} with a free port",
                port=port,
            ) from None


def log_tail(path: Path, lines: int = 20) -> str:
    """The last `lines` lines of a log file ('' if it does not exist)."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 16384))
            data = handle.read()
    except OSError:
        return ""
    text = data.decode("utf-8", "replace").splitlines()
    return "\n".join(text[-lines:])


def read_state(path: Path) -> ProcessState | None:
    """The state recorded at path, or None if there is none (or it is unreadable)."""
    try:
        return ProcessState.from_json(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        log.warning("ignoring unreadable state file %s", path)
        return None


def _write_state(path: Path, state: ProcessState) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(state.to_json())
    tmp.replace(path)


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state letter, start time in clock ticks) of pid from /proc, or None if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # the command name (field 2) may hold spaces and parentheses: split after the last ')'
    fields = raw[raw.rindex(")") + 2 :].split()
    return fields[0], int(fields[19])


def _proc_cmdline(pid: int) -> tuple[str, ...] | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return tuple(part.decode("utf-8", "surrogateescape") for part in raw.split(b"\0")[:-1])


def _pid_alive(pid: int) -> bool:
    stat = _proc_stat(pid)
    return stat is not None and stat[0] not in ("Z", "X")


def liveness(state: ProcessState) -> Liveness:
    """'running' if state.pid is still the recorded program, 'stale' if it is gone or reused."""
    if not _pid_alive(state.pid):
        return "stale"
    stat = _proc_stat(state.pid)
    if _proc_cmdline(state.pid) != state.argv or stat is None:
        return "stale"
    if state.start_ticks and stat[1] != state.start_ticks:
        return "stale"
    return "running"


def _rotate(log_path: Path) -> None:
    if log_path.exists():
        log_path.replace(log_path.with_suffix(log_path.suffix + ".1"))


def start_process(
    name: str,
    argv: Sequence[str],
    *,
    state_path: Path,
    log_path: Path,
    probe: Probe,
    endpoint: str,
    timeout: float = 60.0,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> ProcessState:
    """Start argv detached (own session), wait until `probe` answers, record it in state_path.

    On early exit or timeout the process group is killed, the state file removed, and a
    ServiceError raised with the last lines of the log.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    _rotate(log_path)
    argv = tuple(argv)
    log.info("starting %s: %s", name, " ".join(argv))
    pid = _launch(name, argv, log_path, cwd, env)
    stat = _proc_stat(pid)
    state = ProcessState(
        name=name,
        pid=pid,
        argv=argv,
        start_ticks=stat[1] if stat else 0,
        started_at=datetime.now(UTC).isoformat(timespec="seconds"),
        endpoint=endpoint,
        log=str(log_path),
        extra=dict(extra or {}),
    )
    _write_state(state_path, state)
    try:
        _wait_ready(state, probe, timeout, log_path)
    except BaseException:
        stop_process(state, state_path, grace=2.0)
        raise
    log.info("%s answers on %s (pid %s)", name, endpoint, pid)
    return state


def _launch(
    name: str,
    argv: tuple[str, ...],
    log_path: Path,
    cwd: Path | None,
    env: Mapping[str, str] | None,
) -> int:
    spec = {"argv": list(argv), "log": str(log_path), "cwd": str(cwd) if cwd else None}
    try:
        done = subprocess.run(
            [sys.executable, "-c", _LAUNCHER, json.dumps(spec)],
            capture_output=True,
            text=True,
            env=dict(env) if env is not None else None,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ServiceError(name, f"could not launch {argv[0]}: {exc}") from exc
    if done.returncode != 0 or not done.stdout.strip().isdigit():
        error = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise ServiceError(name, f"could not run {argv[0]}: {error}", argv=list(argv))
    return int(done.stdout.strip())


def _wait_ready(state: ProcessState, probe: Probe, timeout: float, log_path: Path) -> None:
    deadline = time.monotonic() + timeout
    delay = 0.05
    while True:
        if not _pid_alive(state.pid):
            raise ServiceError(
                state.name,
                f"exited before answering on {probe.what}; "
                f"last lines of {log_path}:\n{log_tail(log_path)}",
                hint=f"see {log_path}",
                log=str(log_path),
                pid=state.pid,
            )
        if probe.check():
            return
        if time.monotonic() >= deadline:
            raise ServiceError(
                state.name,
                f"did not answer on {probe.what} within {timeout:g}s; "
                f"last lines of {log_path}:\n{log_tail(log_path)}",
                hint=f"see {log_path}, or raise the timeout",
                log=str(log_path),
                pid=state.pid,
            )
        time.sleep(delay)
        delay = min(delay * 1.5, 0.5)


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        try:
            os.killpg(pid, sig)
        except PermissionError:
            os.kill(pid, sig)


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while _pid_alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def stop_process(state: ProcessState, state_path: Path, *, grace: float = 15.0) -> Liveness:
    """Stop the recorded process: SIGTERM its group, wait `grace` s, then SIGKILL.

    Returns what it was: 'running' (now stopped) or 'stale' (nothing to stop; a PID now used by
    another program is never signalled). The state file is removed either way.
    """
    was = liveness(state)
    if was == "running":
        log.info("stopping %s (pid %s)", state.name, state.pid)
        _signal_group(state.pid, signal.SIGTERM)
        if not _wait_gone(state.pid, grace):
            log.warning(
                "%s (pid %s) ignored SIGTERM for %ss; killing", state.name, state.pid, grace
            )
            _signal_group(state.pid, signal.SIGKILL)
            if not _wait_gone(state.pid, 10.0):
                raise ServiceError(state.name, f"pid {state.pid} survived SIGKILL")
        # whatever else is left in its process group (helpers it spawned) goes too
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(state.pid, signal.SIGKILL)
    with contextlib.suppress(FileNotFoundError):
        state_path.unlink()
    return was
