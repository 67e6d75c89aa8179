"""The chDB HTTP server (`footfall.services._clickhouse_http`) behind clickhouse-connect's real
HTTP client: the server runs as its own process, as the sync worker and the tests use it."""

from __future__ import annotations

import gzip
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import clickhouse_connect
import lz4.frame  # type: ignore[import-untyped]
import polars as pl
import pyarrow as pa
import pytest
from backports import zstd
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import DatabaseError, StreamFailureError

pytestmark = pytest.mark.integration

PASSWORD_VAR = "FOOTFALL_TEST_CLICKHOUSE_PASSWORD"


@dataclass
class Server:
    process: subprocess.Popen[str]
    port: int
    path: Path
    log: Path

    def url(self, **params: str) -> str:
        return f"http://127.0.0.1:{self.port}/?{urlencode(params)}"

    def stop(self) -> int:
        os.kill(self.process.pid, signal.SIGTERM)
        try:
            return self.process.wait(timeout=30)
        finally:
            if self.process.stdout is not None:
                self.process.stdout.close()


def start_server(path: Path, log: Path, *args: str, env: dict[str, str] | None = None) -> Server:
    """Start the server on a free port (`--port 0`) and read the port from its first line."""
    command = [sys.executable, "-m", "footfall.services._clickhouse_http", "--path", str(path)]
    with log.open("a") as stderr:
        process = subprocess.Popen(
            [*command, "--port", "0", *args],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            env=env,
        )
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line:
        process.stdout.close()
        process.wait(timeout=30)
        pytest.fail(f"the server did not start:\n{log.read_text()}")
    port = int(line.split("http://", 1)[1].split(" ", 1)[0].rsplit(":", 1)[1])
    return Server(process, port, path, log)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    base = tmp_path_factory.mktemp("clickhouse_http")
    running = start_server(base / "chdb", base / "server.log")
    yield running
    assert running.stop() == 0
    assert "Traceback" not in running.log.read_text()


@pytest.fixture
def connect(server: Server) -> Iterator[Callable[..., Client]]:
    """Make clickhouse-connect HTTP clients of the server; each is closed after the test."""
    clients: list[Client] = []

    def make(port: int | None = None, **kwargs: Any) -> Client:
        client = clickhouse_connect.get_client(
            host="127.0.0.1", port=port or server.port, dedicated_pool=True, **kwargs
        )
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def client(connect: Callable[..., Client]) -> Client:
    return connect()


@pytest.fixture
def table(client: Client) -> str:
    name = f"t_{uuid.uuid4().hex[:12]}"
    client.command(f"CREATE TABLE {name} (n UInt64, actor String) ENGINE = MergeTree ORDER BY n")
    return name


def post(url: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, Any, bytes]:
    request = urllib.request.Request(url, data=body, headers=headers or {}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.headers, error.read()


def rows(count: int) -> list[list[object]]:
    """Rows whose strings do not compress away, so compressed bodies stay large too."""
    return [[i, uuid.uuid4().hex + uuid.uuid4().hex] for i in range(count)]


def test_ping_answers_ok(server: Server) -> None:
    with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/ping", timeout=5) as response:
        assert response.read() == b"Ok.\n"


def test_a_client_resetting_its_connection_is_routine(server: Server) -> None:
    """A peer that drops a keep-alive connection (RST) is no server failure: no traceback."""
    for request in (b"", b"GET /?query=SELECT"):
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as conn:
            if request:
                conn.sendall(request)
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    time.sleep(0.5)  # the handler threads meet the reset
    with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/ping", timeout=5) as response:
        assert response.read() == b"Ok.\n"
    assert "Traceback" not in server.log.read_text()


def test_client_starts_against_the_server(client: Client) -> None:
    assert client.server_version is not None and client.server_version.startswith("26.")
    assert client.command("SELECT 1") == 1


def test_ddl_and_native_row_insert_round_trip(client: Client, table: str) -> None:
    summary = client.insert(table, [[1, "ann"], [2, "bob"]], column_names=["n", "actor"])

    assert summary.written_rows == 2
    assert client.query(f"SELECT n, actor FROM {table} ORDER BY n").result_rows == [
        (1, "ann"),
        (2, "bob"),
    ]
    client.command(f"ALTER TABLE {table} ADD COLUMN extra UInt8 DEFAULT 7")
    assert client.command(f"SELECT sum(extra) FROM {table}") == 14
    client.command(f"DROP TABLE {table}")
    assert client.command(f"EXISTS TABLE {table}") == 0


def test_insert_arrow_and_query_arrow_into_polars(client: Client, table: str) -> None:
    data = pa.table({"n": pa.array([1, 2, 3], pa.uint64()), "actor": ["a", "b", "c"]})

    assert client.insert_arrow(table, data).written_rows == 3
    frame = pl.from_arrow(client.query_arrow(f"SELECT n, actor FROM {table} ORDER BY n"))
    assert isinstance(frame, pl.DataFrame)
    assert frame.to_dict(as_series=False) == {"n": [1, 2, 3], "actor": ["a", "b", "c"]}


@pytest.mark.parametrize("compress", [False, True, "lz4", "zstd", "gzip"])
def test_large_inserts_arrive_whole_with_every_compression(
    connect: Callable[..., Client], table: str, compress: bool | str
) -> None:
    client = connect(compress=compress)
    data = rows(60_000)  # about 4 MB: well over chDB's 256 KiB max_query_size, compressed too
    last = data[-1][1]

    client.insert(table, data, column_names=["n", "actor"])
    arrow = pa.table(
        {"n": pa.array([r[0] for r in data], pa.uint64()), "actor": [r[1] for r in data]}
    )
    client.insert_arrow(table, arrow)

    query = f"SELECT count(), max(n), countIf(actor = {{last:String}}) FROM {table}"
    assert client.query(query, parameters={"last": last}).result_rows == [(120_000, 59_999, 2)]


def test_inline_insert_sql_over_256_kib_is_not_truncated(client: Client, table: str) -> None:
    values = ",".join(f"({i}, '{'x' * 20}')" for i in range(50_000))
    assert len(values) > 1_000_000

    client.command(f"INSERT INTO {table} (n, actor) VALUES {values}")

    assert client.query(f"SELECT count(), max(n) FROM {table}").result_rows == [(50_000, 49_999)]


@pytest.mark.parametrize("encoding", ["lz4", "zstd", "gzip"])
def test_every_frame_of_a_compressed_body_is_decoded(
    server: Server, client: Client, table: str, encoding: str
) -> None:
    pack = {"lz4": lz4.frame.compress, "zstd": zstd.compress, "gzip": gzip.compress}[encoding]
    body = pack(f"INSERT INTO {table} (n, actor) FORMAT TSV\n1\ta\n".encode()) + pack(b"2\tb\n")

    status, _, answer = post(server.url(), body, {"Content-Encoding": encoding})

    assert status == 200, answer
    assert client.query(f"SELECT n, actor FROM {table} ORDER BY n").result_rows == [
        (1, "a"),
        (2, "b"),
    ]


def test_responses_are_compressed_when_the_client_asks(server: Server) -> None:
    url = server.url(enable_http_compression="1", query_id="q-compressed")
    status, headers, body = post(url, b"SELECT 42", {"Accept-Encoding": "lz4, gzip"})

    assert status == 200
    assert headers["Content-Encoding"] == "lz4"
    assert lz4.frame.decompress(body) == b"42\n"
    assert headers["X-ClickHouse-Query-Id"] == "q-compressed"


def test_headers_clickhouse_connect_reads(server: Server, client: Client) -> None:
    url = server.url(default_format="CSV", wait_end_of_query="1")
    status, headers, body = post(url, b"SELECT 1 AS a, 'x' AS b")

    assert (status, body) == (200, b'1,"x"\n')
    assert headers["X-ClickHouse-Format"] == "CSV"
    assert headers["X-ClickHouse-Timezone"] == client.command("SELECT timezone()")
    assert headers["X-ClickHouse-Server-Display-Name"]
    assert json.loads(headers["X-ClickHouse-Summary"])["read_rows"] == "1"


def test_a_million_rows_stream_into_polars(client: Client) -> None:
    frame = client.query_df_arrow("SELECT number FROM numbers(1000000)", dataframe_library="polars")
    assert isinstance(frame, pl.DataFrame)
    assert (frame.height, frame["number"].sum()) == (1_000_000, 499_999_500_000)

    with client.query_df_arrow_stream(
        "SELECT number FROM numbers(1000000)", dataframe_library="polars"
    ) as stream:
        assert sum(chunk.height for chunk in stream) == 1_000_000
    with client.query_row_block_stream("SELECT number FROM numbers(1000000)") as blocks:
        assert sum(len(block) for block in blocks) == 1_000_000
    with client.query_arrow_stream("SELECT number FROM numbers(10) WHERE number > 10") as empty:
        assert sum(batch.num_rows for batch in empty) == 0


def test_an_error_after_the_first_streamed_block_reaches_the_client(client: Client) -> None:
    with (
        pytest.raises(StreamFailureError) as caught,
        client.query_row_block_stream(
            "SELECT number, throwIf(number = 700000) FROM numbers(1000000)"
        ) as blocks,
    ):
        for _ in blocks:
            pass
    assert caught.value.code == 395
    assert client.command("SELECT 1") == 1


def test_server_side_parameters_bind_values_and_never_run_them(client: Client, table: str) -> None:
    client.insert(table, [[1, "alice"], [2, "bob"]], column_names=["n", "actor"])
    query = f"SELECT n FROM {table} WHERE actor = {{actor:String}}"

    assert client.query(query, parameters={"actor": "alice"}).result_rows == [(1,)]
    for attack in ["alice' OR '1'='1", f"x'; DROP TABLE {table}; --", "\\' OR 1=1 --"]:
        assert client.query(query, parameters={"actor": attack}).result_rows == []
    assert client.command(f"SELECT count() FROM {table}") == 2


def test_form_encoded_parameters_bind_too(connect: Callable[..., Client], table: str) -> None:
    client = connect(form_encode_query_params=True)  # multipart/form-data, as for long values
    client.insert(table, [[1, "x" * 5000]], column_names=["n", "actor"])

    query = f"SELECT n FROM {table} WHERE actor = {{actor:String}}"
    assert client.query(query, parameters={"actor": "x" * 5000}).result_rows == [(1,)]


def test_the_database_parameter_selects_the_database(connect: Callable[..., Client]) -> None:
    name = f"db_{uuid.uuid4().hex[:12]}"
    connect().command(f"CREATE DATABASE {name}")
    client = connect(database=name)

    client.command("CREATE TABLE here (n UInt8) ENGINE = Memory")
    client.insert("here", [[5]], column_names=["n"])

    assert client.command("SELECT currentDatabase()") == name
    assert connect().command(f"SELECT sum(n) FROM {name}.here") == 5


def test_insert_deduplication_token_makes_a_repeated_insert_a_no_op(client: Client) -> None:
    name = f"dedup_{uuid.uuid4().hex[:12]}"
    client.command(
        f"CREATE TABLE {name} (n UInt64, actor String) ENGINE = ReplacingMergeTree ORDER BY n "
        "SETTINGS non_replicated_deduplication_window = 100"
    )
    batch = [[1, "a"], [2, "b"]]
    arrow = pa.table({"n": pa.array([3, 4], pa.uint64()), "actor": ["c", "d"]})

    for _ in range(2):
        client.insert(name, batch, settings={"insert_deduplication_token": "batch-1"})
        client.insert_arrow(name, arrow, settings={"insert_deduplication_token": "batch-2"})
    assert client.command(f"SELECT count() FROM {name}") == 4

    client.insert(name, batch, settings={"insert_deduplication_token": "batch-3"})
    assert client.command(f"SELECT count() FROM {name}") == 6


def test_errors_carry_clickhouse_codes(client: Client, server: Server) -> None:
    with pytest.raises(DatabaseError) as unknown:
        client.query("SELECT * FROM no_such_table")
    assert unknown.value.code == 60 and "code: 60" in str(unknown.value)
    assert "UNKNOWN_TABLE" in str(unknown.value)
    with pytest.raises(DatabaseError) as syntax:
        client.command("SELEC 1")
    assert syntax.value.code == 62

    status, headers, body = post(server.url(), b"SELECT * FROM no_such_table")
    assert (status, headers["X-ClickHouse-Exception-Code"]) == (404, "60")
    assert body.startswith(b"Code: 60. DB::Exception: ") and b"(UNKNOWN_TABLE)" in body


def test_readonly_refuses_insert_drop_and_changing_readonly(
    connect: Callable[..., Client], client: Client, table: str
) -> None:
    client.insert(table, [[1, "a"]], column_names=["n", "actor"])
    reader = connect(settings={"readonly": 1})

    assert reader.command(f"SELECT count() FROM {table}") == 1
    for attempt in [
        lambda: reader.insert(table, [[2, "b"]], column_names=["n", "actor"]),
        lambda: reader.insert_arrow(
            table, pa.table({"n": pa.array([3], pa.uint64()), "actor": ["c"]})
        ),
        lambda: reader.command(f"DROP TABLE {table}"),
        lambda: reader.command("SET readonly = 0"),
    ]:
        with pytest.raises(DatabaseError) as caught:
            attempt()
        assert caught.value.code == 164
    assert client.command(f"SELECT count() FROM {table}") == 1


def test_a_get_request_is_read_only(server: Server, table: str) -> None:
    with urllib.request.urlopen(server.url(query="SELECT 2"), timeout=5) as response:
        assert response.read() == b"2\n"
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(server.url(query=f"INSERT INTO {table} VALUES (1, 'a')"), timeout=5)
    with caught.value as error:
        assert error.headers["X-ClickHouse-Exception-Code"] == "164"


def test_sessions_keep_their_settings_and_temporary_tables(connect: Callable[..., Client]) -> None:
    first, second = connect(), connect()

    first.command("SET max_threads = 1")
    first.command("CREATE TEMPORARY TABLE scratch (x UInt8)")
    first.command("INSERT INTO scratch VALUES (1), (2)")

    assert first.command("SELECT getSetting('max_threads')") == 1
    assert first.command("SELECT getSetting('max_threads')", settings={"max_threads": 2}) == 2
    assert first.command("SELECT getSetting('max_threads')") == 1  # a URL setting is per request
    assert first.command("SELECT count() FROM scratch") == 2
    with pytest.raises(DatabaseError) as caught:
        second.command("SELECT count() FROM scratch")
    assert caught.value.code == 60


def test_clients_in_two_threads_query_at_once(connect: Callable[..., Client]) -> None:
    clients = [connect(), connect(), connect(autogenerate_session_id=False)]
    callers = [clients[0], clients[1], clients[2], clients[2]]  # a sessionless client is shared
    results: dict[int, object] = {}

    def sleep_one_second(index: int) -> None:
        results[index] = callers[index].command("SELECT sleep(1) + 1")

    threads = [threading.Thread(target=sleep_one_second, args=(i,)) for i in range(4)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert results == {0: 1, 1: 1, 2: 1, 3: 1}
    assert time.monotonic() - started < 1.9


def test_one_session_serves_one_query_at_a_time(connect: Callable[..., Client]) -> None:
    busy, other = connect(session_id="shared"), connect(session_id="shared")
    thread = threading.Thread(target=busy.command, args=("SELECT sleep(1)",))
    thread.start()
    time.sleep(0.3)
    try:
        with pytest.raises(DatabaseError) as caught:
            other.command("SELECT 1")
    finally:
        thread.join()
    assert caught.value.code == 373


def test_authentication_when_configured(tmp_path: Path) -> None:
    env = {**os.environ, PASSWORD_VAR: "s3cret"}
    server = start_server(
        tmp_path / "chdb",
        tmp_path / "log",
        "--user",
        "footfall",
        "--password-env",
        PASSWORD_VAR,
        env=env,
    )
    try:
        good = clickhouse_connect.get_client(
            host="127.0.0.1",
            port=server.port,
            username="footfall",
            password="s3cret",
            dedicated_pool=True,
        )
        assert good.command("SELECT 1") == 1
        good.close()
        for username, password in [("footfall", "wrong"), ("default", "")]:
            with pytest.raises(DatabaseError) as caught:
                clickhouse_connect.get_client(
                    host="127.0.0.1", port=server.port, username=username, password=password
                )
            assert caught.value.code == 516
        keyed = {"X-ClickHouse-User": "footfall", "X-ClickHouse-Key": "s3cret"}
        assert post(server.url(), b"SELECT 3", keyed)[::2] == (200, b"3\n")
        status, headers, _ = post(server.url(), b"SELECT 3")
        assert (status, headers["X-ClickHouse-Exception-Code"]) == (403, "516")
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/ping", timeout=5) as response:
            assert response.read() == b"Ok.\n"
        assert "s3cret" not in server.log.read_text()
    finally:
        assert server.stop() == 0


def test_data_survives_a_restart(tmp_path: Path) -> None:
    server = start_server(tmp_path / "chdb", tmp_path / "log")
    client = clickhouse_connect.get_client(host="127.0.0.1", port=server.port, dedicated_pool=True)
    client.command("CREATE TABLE kept (n UInt64) ENGINE = MergeTree ORDER BY n")
    client.insert("kept", [[i] for i in range(1000)], column_names=["n"])
    client.close()
    assert server.stop() == 0

    again = start_server(tmp_path / "chdb", tmp_path / "log")
    try:
        client = clickhouse_connect.get_client(
            host="127.0.0.1", port=again.port, dedicated_pool=True
        )
        assert client.query("SELECT count(), sum(n) FROM kept").result_rows == [(1000, 499_500)]
        client.close()
    finally:
        assert again.stop() == 0
    assert "Traceback" not in (tmp_path / "log").read_text()
