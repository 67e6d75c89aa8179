"""The zero-setup DynamoDB stand-in: moto's server on a loopback port, inside this process.

Used only by `footfall demo` and the quickstart notebook when no DynamoDB endpoint is
configured, so that they run with nothing but Python installed (no Java, no Docker). moto
serves DynamoDB and DynamoDB Streams (one shard) well enough to show the product end to end; it
is not what footfall's behaviour is proven against (the tests use DynamoDB Local or AWS). Its
data lives in memory and is gone when the server stops.

The server is moto's own application (the one `moto.server.ThreadedMotoServer` runs) on
werkzeug's threaded server, with two changes:

- One request at a time. moto's backends are not thread-safe: with 8 concurrent BatchWriteItem
  writers, about 1 stream record in 120 shared its sequence number with another (measured on
  30,000 writes), and moto's iterators then hand records out twice. The process is bound by the
  GIL anyway, so serving requests one by one costs nothing.
- GetRecords is answered with moto's DynamoDB JSON encoder, the one moto's DynamoDB handler uses
  for Query and Scan, instead of moto's generic model-driven serializer, which costs about 2 ms
  of CPU per stream record here (it walks every attribute of every image): the same records
  once parsed, about six times less CPU (tests/integration/test_demo.py compares both answers).
"""

from __future__ import annotations

import calendar
import contextlib
import functools
import json
import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ._errors import ServiceError

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment
    from werkzeug.serving import BaseWSGIServer

__all__ = ["MotoDynamoDB", "fast_get_records", "moto_dynamodb"]

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'moto[server]', or point FOOTFALL_DYNAMODB_ENDPOINT at a DynamoDB"

_patch_lock = threading.Lock()
_patch_users = 0
_original_get_records: Callable[..., Any] | None = None


class MotoDynamoDB:
    """moto's server on `127.0.0.1:<free port>` in a thread of this process; `endpoint` once
    started.

    >>> with MotoDynamoDB() as endpoint:
    ...     settings = load_settings(dynamodb_endpoint=endpoint)
    """

    def __init__(self, host: str = "127.0.0.1", *, fast_streams: bool = True) -> None:
        self.host = host
        self.fast_streams = fast_streams
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._patched = False
        self.endpoint = ""

    def start(self) -> str:
        """Start serving (port 0: the OS picks a free one, no race); returns the endpoint."""
        try:
            from moto.moto_server.werkzeug_app import (
                DomainDispatcherApplication,
                MotoRequestHandler,
                create_backend_app,
            )
            from werkzeug.serving import make_server
        except ImportError as exc:
            raise ServiceError("moto", "is not installed", hint=INSTALL_HINT) from exc
        _quiet_request_log()
        app = _one_at_a_time(DomainDispatcherApplication(create_backend_app))
        server = make_server(self.host, 0, app, threaded=True, request_handler=MotoRequestHandler)
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, name="footfall-moto", daemon=True
        )
        self._thread.start()
        if self.fast_streams:
            _install_fast_get_records()
            self._patched = True
        self.endpoint = f"http://{self.host}:{server.server_port}"
        log.info("moto serves DynamoDB at %s", self.endpoint)
        return self.endpoint

    def stop(self) -> None:
        """Stop serving and close the port (what moto held is dropped)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
            log.info("moto at %s stopped", self.endpoint)
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        if self._patched:
            _remove_fast_get_records()
            self._patched = False

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _one_at_a_time(app: WSGIApplication) -> WSGIApplication:
    """The WSGI app, serving one request at a time (moto's backends are not thread-safe)."""
    lock = threading.Lock()

    def serve(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        with lock:
            return app(environ, start_response)

    return serve


@contextlib.contextmanager
def moto_dynamodb(host: str = "127.0.0.1") -> Iterator[str]:
    """An in-process moto DynamoDB for the duration of the block; yields its endpoint."""
    server = MotoDynamoDB(host)
    try:
        yield server.start()
    finally:
        server.stop()


@contextlib.contextmanager
def fast_get_records() -> Iterator[None]:
    """moto's GetRecords answered with its DynamoDB JSON encoder for the block (see above)."""
    _install_fast_get_records()
    try:
        yield
    finally:
        _remove_fast_get_records()


def _get_records(self: Any) -> str:
    """GetRecords as moto's handler does it, encoded the way moto's DynamoDB handler encodes
    Query answers (see the module docstring)."""
    limit = self._get_param("Limit")
    result = self.backend.get_records(self._get_param("ShardIterator"), limit or 1000)
    if isinstance(result, str):  # a moto that encodes the answer itself
        return result
    return json.dumps(result, cls=_encoder())


@functools.cache
def _encoder() -> type[json.JSONEncoder]:
    """moto's DynamoDB JSON encoder, with times as moto's serializer writes them: epoch seconds
    truncated to milliseconds (the Smithy rule)."""
    from moto.dynamodb.models.utilities import DynamoJsonEncoder

    class Encoder(DynamoJsonEncoder):
        def default(self, o: Any) -> Any:
            if isinstance(o, datetime):
                return calendar.timegm(o.timetuple()) + (o.microsecond // 1000) / 1000.0
            return super().default(o)

    return Encoder


def _install_fast_get_records() -> None:
    global _patch_users, _original_get_records
    from moto.dynamodbstreams.responses import DynamoDBStreamsHandler

    with _patch_lock:
        if _patch_users == 0:
            _original_get_records = DynamoDBStreamsHandler.get_records
            DynamoDBStreamsHandler.get_records = _get_records  # type: ignore[method-assign, assignment]
        _patch_users += 1


def _remove_fast_get_records() -> None:
    global _patch_users, _original_get_records
    from moto.dynamodbstreams.responses import DynamoDBStreamsHandler

    with _patch_lock:
        _patch_users -= 1
        if _patch_users == 0 and _original_get_records is not None:
            DynamoDBStreamsHandler.get_records = _original_get_records  # type: ignore[method-assign]
            _original_get_records = None


def _quiet_request_log() -> None:
    """Keep werkzeug's per-request lines ("POST / HTTP/1.1" 200) off the terminal, unless the
    application configured that logger itself."""
    werkzeug = logging.getLogger("werkzeug")
    if werkzeug.level == logging.NOTSET:
        werkzeug.setLevel(logging.WARNING)
