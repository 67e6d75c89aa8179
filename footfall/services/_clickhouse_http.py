"""ClickHouse's HTTP interface in front of one chDB data directory.

chDB runs the real ClickHouse engine in-process and lets one process own a data directory; this
server is that process, so separate processes (sync worker, tests, CLI) share one ClickHouse
through clickhouse-connect's ordinary HTTP client:

    python -m footfall.services._clickhouse_http --path DIR --port 8123 \\
        [--host 127.0.0.1] [--user U --password-env VAR]

Concurrency: a thread per HTTP connection. Each ClickHouse session (`session_id`) owns a chDB
connection, so `USE`, `SET` and temporary tables stay per session; chDB releases the GIL and
runs the queries of separate connections in parallel, one at a time per connection. Requests
without a session, and read-only ones, get a fresh connection that is closed afterwards. URL
settings apply to their request only: on a session's connection they are `SET` before the
query and reset by the first later request that stops sending them. INSERT data streams from
the socket into chDB's streaming insert (`send_insert`), never through the SQL text, whose size
`max_query_size` limits; compressed request bodies are decoded frame by frame on the way.
"""

from __future__ import annotations

import argparse
import hmac
import itertools
import json
import logging
import os
import re
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import chdb

from footfall.services._clickhouse_protocol import (
    ClickHouseError,
    Encoder,
    InsertHead,
    NeedMoreData,
    RequestOptions,
    arrow_stream_joiner,
    choose_encoding,
    credentials,
    decode_body,
    new_encoder,
    output_format,
    parse_form,
    parse_options,
    produces_result,
    session_settings,
    split_insert,
    statement_keyword,
)

__all__ = ["ClickHouseHTTPServer", "Engine", "main"]

logger = logging.getLogger(__name__)

MAX_QUERY_SIZE = 262_144  # ClickHouse's max_query_size: the SQL text of one request
_READ_CHUNK = 1 << 20
# Formats whose per-block renderings concatenate into one valid result (ArrowStream is joined).
_STREAMABLE = frozenset(
    {"Native", "TabSeparated", "TSV", "TabSeparatedRaw", "TSVRaw", "CSV", "RowBinary"}
    | {"JSONEachRow", "JSONCompactEachRow", "JSONLines", "NDJSON", "ArrowStream"}
)
_CONTENT_TYPES = {"TabSeparated": "text/tab-separated-values; charset=UTF-8", "CSV": "text/csv"}
_CONTENT_TYPES |= {"JSON": "application/json; charset=UTF-8", "JSONEachRow": "application/json"}
_SECRET = re.compile(r"(password=)[^&\s]*", re.IGNORECASE)
_NO_SUMMARY = {"read_rows": "0", "read_bytes": "0", "written_rows": "0", "written_bytes": "0"}


def _connect(path: str) -> Any:
    return chdb.connect(path)  # type: ignore[no-untyped-call]


def _quote_identifier(name: str) -> str:
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def _quote_literal(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


class Handle:
    """One chDB connection and what this server knows of its session state."""

    def __init__(self, conn: Any, *, session: bool) -> None:
        self.conn = conn
        self.session = session  # False: one request's connection, closed after it
        self.lock = threading.Lock()
        self.timeout = 60.0
        self.last_used = time.monotonic()
        self._database: str | None = None
        self._applied: dict[str, str] = {}  # request settings in force on the connection
        self._session: dict[str, str] = {}  # values the session `SET` itself, as SQL text

    def run(
        self, sql: str, fmt: str = "TabSeparated", params: Mapping[str, str] | None = None
    ) -> Any:
        try:
            return self.conn.query(sql, fmt, params=dict(params or {}))
        except Exception as exc:
            raise ClickHouseError.from_engine(exc) from exc

    def execute(self, sql: str, fmt: str, params: Mapping[str, str]) -> Any:
        """Run a client's statement, noting what it changes in the session."""
        assignments = session_settings(sql) if self.session else None
        if assignments is not None:
            self.apply_settings({})  # the session's own values, without this request's
        result = self.run(sql, fmt, params)
        self._session.update(assignments or {})
        if statement_keyword(sql) == "USE":
            self._database = None
        return result

    def use(self, database: str | None) -> None:
        if database and database != self._database:
            self.run(f"USE {_quote_identifier(database)}")
            self._database = database

    def apply_settings(self, wanted: Mapping[str, str]) -> None:
        """Make exactly `wanted` the request-level settings in force on this connection."""
        for name in [name for name in self._applied if name not in wanted]:
            self.run(f"SET {name} = {self._session.get(name, 'DEFAULT')}")
            del self._applied[name]
        for name, value in wanted.items():
            if self._applied.get(name) != value:
                if not name.isidentifier():
                    raise ClickHouseError(115, f"Unknown setting '{name}'", "UNKNOWN_SETTING")
                self.run(f"SET {name} = {_quote_literal(value)}")
                self._applied[name] = value

    def close(self) -> None:
        try:
            self.conn.close()
        except Exception:
            logger.warning("closing a chDB connection failed", exc_info=True)


class Engine:
    """The chDB engine of one data directory and the connections of its sessions."""

    def __init__(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        self.path = str(path)
        self._anchor = _connect(self.path)  # keeps the engine up between requests
        self._lock = threading.Condition()
        self._sessions: dict[str, Handle] = {}
        self._busy = 0
        self._closing = False
        info = self._anchor.query("SELECT version(), timezone()", "TabSeparated")
        self.version, self.timezone = info.bytes().decode().strip().split("\t")
        self.display_name = socket.gethostname()

    @contextmanager
    def acquire(self, options: RequestOptions) -> Iterator[Handle]:
        """The connection for one request, set to its database and settings."""
        with self._lock:
            if self._closing:
                raise ClickHouseError(1002, "The server is shutting down")
            self._busy += 1
        try:
            with self._connection(options) as handle:
                handle.use(options.database)
                handle.apply_settings(options.settings)
                if options.readonly:  # last: readonly=1 refuses every later SET
                    handle.run(f"SET readonly = {options.readonly}")
                yield handle
        finally:
            with self._lock:
                self._busy -= 1
                self._lock.notify_all()

    @contextmanager
    def _connection(self, options: RequestOptions) -> Iterator[Handle]:
        session_id = options.session_id
        if not session_id or options.readonly:
            handle = Handle(_connect(self.path), session=False)
            try:
                yield handle
            finally:
                handle.close()
            return
        with self._lock:
            self._expire_sessions()
            handle = self._sessions.get(session_id) or self._open_session(session_id, options)
            if not handle.lock.acquire(blocking=False):
                raise ClickHouseError(373, f"Session {session_id} is locked by a concurrent client")
        handle.timeout = options.session_timeout
        try:
            yield handle
        finally:
            handle.last_used = time.monotonic()
            handle.lock.release()

    def _open_session(self, session_id: str, options: RequestOptions) -> Handle:
        if options.session_check:
            raise ClickHouseError(372, f"Session {session_id} not found")
        handle = self._sessions[session_id] = Handle(_connect(self.path), session=True)
        return handle

    def _expire_sessions(self) -> None:
        now = time.monotonic()
        for session_id, handle in list(self._sessions.items()):
            if now - handle.last_used > handle.timeout and handle.lock.acquire(blocking=False):
                del self._sessions[session_id]
                handle.close()

    def close(self, timeout: float = 30.0) -> None:
        """Wait for running requests, then close every connection: chDB flushes and stops."""
        with self._lock:
            self._closing = True
            if not self._lock.wait_for(lambda: self._busy == 0, timeout):
                logger.warning("closing chDB while %d requests still run", self._busy)
            sessions, self._sessions = list(self._sessions.values()), {}
        for handle in sessions:
            handle.close()
        self._anchor.close()


class ClickHouseHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self, address: tuple[str, int], engine: Engine, auth: tuple[str, str] | None = None
    ) -> None:
        super().__init__(address, _Handler)
        self.engine = engine
        self.auth = auth

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that drops its connection is routine, not a server fault worth a traceback."""
        error = sys.exc_info()[1]
        if isinstance(error, ConnectionError):
            logger.debug("client %s dropped the connection: %s", client_address, error)
            return
        logger.error("unexpected failure serving %s", client_address, exc_info=error)


def _read_at_most(chunks: Iterator[bytes], limit: int) -> bytes:
    data = bytearray()
    for chunk in chunks:
        data += chunk
        if len(data) >= limit:
            break
    return bytes(data)


def _split_head(head: bytes, body: Iterator[bytes]) -> tuple[bytes, InsertHead | None]:
    """Read the request's SQL: all of it, or an INSERT's up to where its data starts."""
    for chunk in body:
        head += chunk
        try:
            insert = split_insert(head, complete=False)
        except NeedMoreData:
            if len(head) <= MAX_QUERY_SIZE:
                continue
            break
        if insert is not None:
            return head, insert
        break
    head += _read_at_most(body, MAX_QUERY_SIZE + 1 - len(head))
    if len(head) > MAX_QUERY_SIZE:
        raise ClickHouseError(62, f"Max query size exceeded: more than {MAX_QUERY_SIZE} bytes")
    return head, split_insert(head, complete=True)


def _summary(result: Any) -> dict[str, str]:
    return {
        "read_rows": str(result.rows_read()),
        "read_bytes": str(result.bytes_read()),
        "written_rows": str(result.rows_written()),
        "written_bytes": str(result.bytes_written()),
        "result_bytes": str(result.size()),
        "elapsed_ns": str(int(result.elapsed() * 1e9)),
    }


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "footfall-chdb"
    timeout = 120  # seconds an idle keep-alive connection stays open
    disable_nagle_algorithm = True  # else small answers wait ~40 ms for a delayed ACK
    server: ClickHouseHTTPServer

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        logger.debug("%s %s -> %s", self.command, urlsplit(self.path).path, code)

    def log_error(self, format: str, *args: Any) -> None:
        logger.warning("HTTP %s", _SECRET.sub(r"\1***", format % args))  # may quote the URL

    def _serve(self, method: str) -> None:
        url = urlsplit(self.path)
        chunked = "chunked" in self.headers.get("Transfer-Encoding", "").lower()
        length = int(self.headers.get("Content-Length") or 0)
        self._body_read, self._started = not (chunked or length), False
        self._raw = self._raw_body(chunked, length)
        if url.path in ("/ping", "/replicas_status") or (method == "GET" and not url.query):
            self._respond(200, [("Content-Type", "text/html; charset=UTF-8")], b"Ok.\n")
            return
        pairs = parse_qsl(url.query, keep_blank_values=True)
        query_id = dict(pairs).get("query_id") or str(uuid.uuid4())
        started = time.perf_counter()
        try:
            if url.path != "/":
                raise ClickHouseError(36, f"There is no handle {url.path}")
            self._authenticate(pairs)
            self._execute(self._read_request(method, pairs), query_id)
        except ClickHouseError as exc:
            self._send_error(exc, query_id)
        except (ConnectionError, TimeoutError) as exc:
            logger.info("query %s: the client connection broke: %s", query_id, exc)
            self.close_connection = True
        except Exception as exc:
            logger.exception("query %s: unexpected failure", query_id)
            self._send_error(ClickHouseError(1002, f"{type(exc).__name__}: {exc}"), query_id)
        logger.debug("query %s took %.1f ms", query_id, (time.perf_counter() - started) * 1e3)

    def _authenticate(self, pairs: list[tuple[str, str]]) -> None:
        if self.server.auth is None:
            return
        user, password = credentials({k.lower(): v for k, v in self.headers.items()}, dict(pairs))
        expected_user, expected_password = self.server.auth
        right_user = hmac.compare_digest(user.encode(), expected_user.encode())
        if not hmac.compare_digest(password.encode(), expected_password.encode()) or not right_user:
            reason = "password is incorrect, or there is no user with such name"
            raise ClickHouseError(516, f"{user}: Authentication failed: {reason}")

    # --- reading the request -----------------------------------------------------------

    def _raw_body(self, chunked: bool, remaining: int) -> Iterator[bytes]:
        while chunked and (size := int(self.rfile.readline().split(b";")[0] or b"0", 16)):
            yield self.rfile.read(size)
            self.rfile.readline()
        while chunked and self.rfile.readline().strip():
            pass  # trailer fields
        while remaining > 0:
            chunk = self.rfile.read(min(remaining, _READ_CHUNK))
            if not chunk:
                raise ConnectionError("the request body ended early")
            remaining -= len(chunk)
            yield chunk
        self._body_read = True

    def _read_request(self, method: str, pairs: list[tuple[str, str]]) -> _Request:
        body = decode_body(self._raw, self.headers.get("Content-Encoding"))
        content_type = self.headers.get("Content-Type", "")
        if content_type.startswith("multipart/form-data"):
            pairs = [*pairs, *parse_form(content_type, _read_at_most(body, 64 * MAX_QUERY_SIZE))]
        options = parse_options(pairs, method)
        head, insert = _split_head(options.query.encode() + b"\n" if options.query else b"", body)
        if insert is not None:
            data = itertools.chain((head[insert.data_start :],), body)
            return _Request(options, insert.statement, insert, data)
        if not head.strip():
            raise ClickHouseError(62, "Empty query")
        return _Request(options, head.decode(), None, iter(()))

    # --- answering it ------------------------------------------------------------------

    def _execute(self, request: _Request, query_id: str) -> None:
        options, sql = request.options, request.sql
        with self.server.engine.acquire(options) as handle:
            if request.insert is not None:
                summary = self._insert(handle, request.insert, request.data)
                self._respond(200, self._headers(query_id, None, summary), b"")
                return
            fmt = output_format(sql, options.default_format) if produces_result(sql) else None
            streams = statement_keyword(sql) in ("SELECT", "WITH")  # chDB streams only queries
            if streams and fmt in _STREAMABLE and not options.wait_end_of_query:
                self._stream(handle, request, query_id, fmt)
                return
            result = handle.execute(sql, options.default_format, options.params)
            memview = result.get_memview()  # the result's own buffer, sent without a copy
            self._send_body(self._headers(query_id, fmt, _summary(result)), memview.view(), options)

    def _insert(self, handle: Handle, insert: InsertHead, data: Iterator[bytes]) -> dict[str, str]:
        try:
            inserter = handle.conn.send_insert(insert.statement, insert.format)
        except Exception as exc:
            raise ClickHouseError.from_engine(exc) from exc
        try:
            for chunk in data:
                inserter.append(chunk)
            done = inserter.finish()
        except Exception as exc:
            inserter.cancel()
            if isinstance(exc, (ClickHouseError, ConnectionError, TimeoutError)):
                raise
            raise ClickHouseError.from_engine(exc) from exc
        return {
            "written_rows": str(done.rows_written),
            "written_bytes": str(done.bytes_written),
            "elapsed_ns": str(int(done.elapsed * 1e9)),
        }

    def _stream(self, handle: Handle, request: _Request, query_id: str, fmt: str) -> None:
        """Send the result block by block as chDB makes it (no `wait_end_of_query`)."""
        options = request.options
        try:
            stream = handle.conn.send_query(request.sql, options.default_format, options.params)
        except Exception as exc:
            raise ClickHouseError.from_engine(exc) from exc
        try:
            blocks = (block.bytes() for block in stream)
            try:  # an error before the first block is still an HTTP error
                first = next(blocks, None)
            except Exception as exc:
                raise ClickHouseError.from_engine(exc) from exc
            if first is None and fmt == "ArrowStream":  # empty, but the schema is due
                result = handle.execute(request.sql, options.default_format, options.params)
                first = result.bytes()
            self._send_blocks(itertools.chain((first or b"",), blocks), query_id, fmt, options)
        finally:
            stream.close()

    def _send_blocks(
        self, blocks: Iterator[bytes], query_id: str, fmt: str, options: RequestOptions
    ) -> None:
        join, trailer = arrow_stream_joiner() if fmt == "ArrowStream" else (bytes, b"")
        tag = uuid.uuid4().hex
        headers = [*self._headers(query_id, fmt, _NO_SUMMARY), ("X-ClickHouse-Exception-Tag", tag)]
        encoding = choose_encoding(self.headers.get("Accept-Encoding"))
        encoder = new_encoder(encoding) if encoding and options.compress_response else None
        if encoding and encoder:
            headers.append(("Content-Encoding", encoding))
        self._start(200, [*headers, ("Transfer-Encoding", "chunked")])
        try:
            for block in blocks:
                self._write_chunk(join(block), encoder)
            self._write_chunk(trailer, encoder)
        except (ConnectionError, TimeoutError):
            raise
        except Exception as exc:
            error = ClickHouseError.from_engine(exc)
            logger.info("query %s failed while streaming: %s", query_id, error.message)
            self._write_chunk(error.render_in_stream(tag, self.server.engine.version), encoder)
            self.close_connection = True
        if encoder is not None:
            self._write_chunk(encoder.flush(), None)
        self.wfile.write(b"0\r\n\r\n")

    def _write_chunk(self, data: bytes, encoder: Encoder | None) -> None:
        data = encoder.compress(data) if encoder is not None else data
        if data:
            self.wfile.write(b"%x\r\n" % len(data))
            self.wfile.write(data)
            self.wfile.write(b"\r\n")

    def _headers(
        self, query_id: str, fmt: str | None, summary: Mapping[str, str] | None
    ) -> list[tuple[str, str]]:
        engine = self.server.engine
        headers = [
            ("X-ClickHouse-Query-Id", query_id),
            ("X-ClickHouse-Timezone", engine.timezone),
            ("X-ClickHouse-Server-Display-Name", engine.display_name),
            ("X-ClickHouse-Summary", json.dumps(summary or _NO_SUMMARY)),
            ("Content-Type", _CONTENT_TYPES.get(fmt or "", "application/octet-stream")),
        ]
        return [*headers, ("X-ClickHouse-Format", fmt)] if fmt else headers

    def _send_body(
        self, headers: list[tuple[str, str]], body: bytes | memoryview, options: RequestOptions
    ) -> None:
        encoding = choose_encoding(self.headers.get("Accept-Encoding"))
        if encoding and options.compress_response and len(body):
            encoder = new_encoder(encoding)
            body = encoder.compress(body) + encoder.flush()
            headers = [*headers, ("Content-Encoding", encoding)]
        self._respond(200, headers, body)

    def _send_error(self, error: ClickHouseError, query_id: str) -> None:
        logger.info("query %s failed: code %d, %s", query_id, error.code, error.message)
        if self._started:  # too late for an HTTP error: end the connection instead
            self.close_connection = True
            return
        try:
            for _ in self._raw:
                pass  # read the body to its end, so the client reads the answer
        except (ConnectionError, TimeoutError, ValueError):
            self.close_connection = True
        body = error.render(self.server.engine.version)
        headers = [
            ("X-ClickHouse-Exception-Code", str(error.code)),
            ("X-ClickHouse-Query-Id", query_id),
            ("X-ClickHouse-Server-Display-Name", self.server.engine.display_name),
            ("Content-Type", "text/plain; charset=UTF-8"),
        ]
        self._respond(error.http_status, headers, body)

    def _respond(
        self, status: int, headers: list[tuple[str, str]], body: bytes | memoryview
    ) -> None:
        self._start(status, [*headers, ("Content-Length", str(len(body)))])
        self.wfile.write(body)

    def _start(self, status: int, headers: list[tuple[str, str]]) -> None:
        self._started = True
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        if not self._body_read:  # an unread body would be taken for the next request
            self.send_header("Connection", "close")
        self.end_headers()


class _Request:
    """One request: its options, SQL and, for an INSERT with data, where and what the data is."""

    def __init__(
        self, options: RequestOptions, sql: str, insert: InsertHead | None, data: Iterator[bytes]
    ) -> None:
        self.options = options
        self.sql = sql
        self.insert = insert
        self.data = data


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m footfall.services._clickhouse_http",
        description="Serve a chDB data directory over ClickHouse's HTTP interface.",
    )
    parser.add_argument("--path", required=True, type=Path, help="chDB data directory")
    parser.add_argument("--port", type=int, default=8123, help="0 picks a free port")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--user", help="require this user (Basic auth or X-ClickHouse-User)")
    parser.add_argument(
        "--password-env", metavar="VAR", help="environment variable with the password"
    )
    parser.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"]
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    auth = None
    if args.user or args.password_env:
        if args.password_env and args.password_env not in os.environ:
            logger.error(
                "the environment variable %s (--password-env) is not set", args.password_env
            )
            return 2
        auth = (args.user or "default", os.environ.get(args.password_env or "", ""))
    engine = Engine(args.path)
    try:
        server = ClickHouseHTTPServer((args.host, args.port), engine, auth)
    except OSError:
        engine.close()
        raise

    def stop(signum: int, frame: FrameType | None) -> None:
        logger.info("signal %d: stopping", signum)
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    port = server.server_address[1]
    print(
        f"clickhouse-http listening on http://{args.host}:{port} (chDB {engine.version})",
        flush=True,
    )
    try:
        server.serve_forever()
    finally:
        server.server_close()
        engine.close()
        logger.info("stopped; chDB closed")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
