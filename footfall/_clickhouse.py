"""The ClickHouse adapter: the only module (besides tests) that imports clickhouse_connect.

One code path serves both modes through clickhouse-connect: the embedded engine (chDB, a
`chdb:///dir` URL) and a server over HTTP(S). Outward it speaks footfall's types: Arrow tables and
polars frames in and out, footfall errors raised `from` the driver's.

chDB hosts one data directory per process, and a directory can be open in one process only (the
engine holds an exclusive lock on `<dir>/status`). Within a process, every `connect()` to the same
directory and database shares one client; the engine is released when the last one is closed,
after which another directory may be opened.

`connect(..., readonly=True)` gives a handle whose every query runs with ClickHouse's
`readonly=1` (no writes, no DDL, no setting changes, no table functions that reach outside). In
embedded mode that is a chDB client of its own: chDB keeps a query's `SETTINGS readonly = 1` on
the connection afterwards, so a per-query setting on the shared client would lock the writers
out too. chDB runs queries the way clickhouse-local does, so there `readonly=1` does not stop the
scalar `file()` (it reads any file), `SELECT ... INTO OUTFILE` (it writes one) or `KILL QUERY`:
ad-hoc SQL reaches this handle only through `query`'s syntax check, which refuses them.

Errors are classified by ClickHouse's numeric error code (clickhouse-connect's `Error.code`), or
by the driver's exception type when there is no code, never by message text.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import clickhouse_connect
from clickhouse_connect.driver import exceptions as ch_errors

from ._errors import ConfigError, StoreError, StoreThrottled, StoreUnavailable
from ._settings import ClickHouseTarget, Settings

if TYPE_CHECKING:
    import polars
    import pyarrow  # type: ignore[import-untyped, unused-ignore]  # no stubs yet
    from clickhouse_connect.driver.client import Client

__all__ = ["ClickHouse", "classify_code", "connect", "directory_locked", "translate_error"]

log = logging.getLogger(__name__)

STORE = "ClickHouse"
# ClickHouse's code for "Cannot lock file <dir>/status. Another server instance in same directory
# is already running" (chDB only prints it; the exception it raises says BAD_ARGUMENTS).
LOCKED_CODE = "76"

# Codes worth retrying after a pause: the server is busy or asks us to slow down.
THROTTLED_CODES = frozenset(
    {
        201,  # QUOTA_EXCEEDED
        202,  # TOO_MANY_SIMULTANEOUS_QUERIES
        252,  # TOO_MANY_PARTS
        364,  # RECEIVED_ERROR_TOO_MANY_REQUESTS
        745,  # SERVER_OVERLOADED
        749,  # TCP_CONNECTION_LIMIT_REACHED
        762,  # HTTP_CONNECTION_LIMIT_REACHED
    }
)
# Codes of failures that may pass: network, timeouts, memory pressure, replication, shutdown.
TRANSIENT_CODES = frozenset(
    {
        159,  # TIMEOUT_EXCEEDED
        160,  # TOO_SLOW
        173,  # CANNOT_ALLOCATE_MEMORY
        203,  # NO_FREE_CONNECTION
        209,  # SOCKET_TIMEOUT
        210,  # NETWORK_ERROR
        225,  # NO_ZOOKEEPER
        236,  # ABORTED
        241,  # MEMORY_LIMIT_EXCEEDED
        242,  # TABLE_IS_READ_ONLY (a replica lost its keeper session)
        279,  # ALL_CONNECTION_TRIES_FAILED
        285,  # TOO_FEW_LIVE_REPLICAS
        286,  # UNSATISFIED_QUORUM_FOR_PREVIOUS_WRITE
        319,  # UNKNOWN_STATUS_OF_INSERT
        373,  # SESSION_IS_LOCKED
        384,  # PART_IS_TEMPORARILY_LOCKED
        394,  # QUERY_WAS_CANCELLED (e.g. by a server shutdown)
        410,  # EXTERNAL_SERVER_IS_NOT_RESPONDING
        425,  # SYSTEM_ERROR
        439,  # CANNOT_SCHEDULE_TASK
        473,  # DEADLOCK_AVOIDED
        777,  # MEMORY_RESERVATION_KILLED
        778,  # MEMORY_RESERVATION_FAILED
        999,  # KEEPER_EXCEPTION
        1017,  # ASYNC_INSERT_FLUSH_TIMEOUT
        1019,  # QUERY_SLOT_ACQUISITION_TIMEOUT
        1020,  # MEMORY_RESERVATION_ACQUISITION_TIMEOUT
    }
    | THROTTLED_CODES
)

_PLACEHOLDER = re.compile(r"\{(\w+):([^}]+)\}")
_SERVER_HINT = (
    "run a ClickHouse server for multi-process use (e.g. `footfall services up`) and set "
    "FOOTFALL_CLICKHOUSE_URL=http://host:8123/database, or stop the other process"
)

Kind = Literal["throttled", "unavailable", "terminal"]


def classify_code(code: int | None, exc: BaseException | None = None) -> Kind:
    """Whether a ClickHouse failure may pass (`throttled`, `unavailable`) or not (`terminal`).

    By the numeric code when there is one. Without a code: a transport failure
    (`OperationalError`) or a non-ClickHouse HTTP error (a plain `DatabaseError`, e.g. a proxy's
    502/503) may pass; a client-side programming or data error cannot.
    """
    if code is not None:
        if code in THROTTLED_CODES:
            return "throttled"
        return "unavailable" if code in TRANSIENT_CODES else "terminal"
    if isinstance(exc, ch_errors.OperationalError):
        return "unavailable"
    if type(exc) is ch_errors.DatabaseError:
        return "unavailable"
    return "terminal"


def translate_error(exc: Exception, *, doing: str = "") -> StoreError:
    """The footfall error for a clickhouse-connect error, classified by its code."""
    if isinstance(exc, StoreError):
        return exc
    code: int | None = getattr(exc, "code", None) if isinstance(exc, ch_errors.Error) else None
    kind = classify_code(code, exc)
    text = f"{doing}: {exc}" if doing else str(exc)
    code_text = None if code is None else str(code)
    if kind == "throttled":
        return StoreThrottled(STORE, text, code=code_text, retry_after=1.0)
    if kind == "unavailable":
        return StoreUnavailable(STORE, text, code=code_text)
    return StoreError(STORE, text, code=code_text)


class ClickHouse:
    """footfall's handle on ClickHouse (embedded or server). Thread-safe; close it when done.

    Parameters are always bound server-side: every key of `parameters` must appear in the SQL as
    a `{name:Type}` placeholder.
    """

    def __init__(
        self,
        client: Client,
        *,
        target: ClickHouseTarget,
        release: Callable[[], None],
        readonly: bool = False,
    ) -> None:
        self._client = client
        self._release = release
        self._closed = False
        self.target = target
        self.readonly = readonly

    @property
    def database(self) -> str:
        return str(self._client.database or "default")

    @property
    def embedded(self) -> bool:
        return self.target.mode == "embedded"

    def command(self, sql: str, parameters: Mapping[str, Any] | None = None) -> None:
        """Run one statement (DDL, INSERT ... SELECT, SYSTEM ...) and discard any result."""
        params = _checked(sql, parameters)
        try:
            self._live().command(sql, parameters=params)
        except ch_errors.Error as exc:
            raise translate_error(exc, doing=_head(sql)) from exc

    def query_arrow(self, sql: str, parameters: Mapping[str, Any] | None = None) -> pyarrow.Table:
        """Run a query and return its result as an Arrow table (String columns as Arrow strings)."""
        import pyarrow

        params = _checked(sql, parameters)
        try:
            return self._live().query_arrow(sql, parameters=params, use_strings=True)
        except ch_errors.Error as exc:
            raise translate_error(exc, doing=_head(sql)) from exc
        except pyarrow.ArrowException as exc:  # the answer was not an Arrow stream
            raise StoreError(
                STORE, f"{_head(sql)}: the answer is not an Arrow result ({exc})", code="NOT_ARROW"
            ) from exc

    def query_polars(
        self, sql: str, parameters: Mapping[str, Any] | None = None
    ) -> polars.DataFrame:
        """Run a query and return a polars DataFrame, built from Arrow (no Python row objects)."""
        import polars

        frame = polars.from_arrow(self.query_arrow(sql, parameters), rechunk=False)
        if not isinstance(frame, polars.DataFrame):  # from_arrow returns a Series for arrays only
            raise TypeError("expected a DataFrame from an Arrow table")
        return frame

    def insert_arrow(
        self, table_name: str, arrow_table: pyarrow.Table, *, dedup_token: str | None
    ) -> None:
        """Insert an Arrow table; a repeat with the same `dedup_token` is dropped by the table.

        The token must be deterministic for the batch (e.g. the source offsets it covers); the
        table's `non_replicated_deduplication_window` decides how many recent inserts are
        remembered.
        """
        settings = {"insert_deduplication_token": dedup_token} if dedup_token else None
        try:
            self._live().insert_arrow(table_name, arrow_table, settings=settings)
        except ch_errors.Error as exc:
            raise translate_error(exc, doing=f"insert into {table_name}") from exc

    def _live(self) -> Client:
        if self._closed:
            raise StoreError(STORE, f"{self!r} is closed; connect() again", code="CLOSED")
        return self._client

    def close(self) -> None:
        """Release this handle; the shared embedded engine closes with its last handle."""
        if not self._closed:
            self._closed = True
            self._release()

    def __enter__(self) -> ClickHouse:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ClickHouse({self.target!r}, database={self.database!r})"


class _Release:
    def __init__(self, key: tuple[str, str, bool] | None, client: Client) -> None:
        self.key = key
        self.client = client

    def __call__(self) -> None:
        if self.key is None:
            _close_quietly(self.client)
            return
        with _lock:
            shared = _shared.get(self.key)
            if shared is None or shared.client is not self.client:
                return
            shared.refs -= 1
            if shared.refs > 0:
                return
            del _shared[self.key]
        log.debug("closing the chDB client for %s (database %s, readonly %s)", *self.key)
        _close_quietly(self.client)


@dataclass
class _Shared:
    client: Client
    refs: int


_lock = threading.Lock()
_shared: dict[tuple[str, str, bool], _Shared] = {}


def connect(
    settings: Settings, *, database: str | None = None, readonly: bool = False
) -> ClickHouse:
    """Connect to the ClickHouse that `settings.clickhouse_url` names.

    `database` (keyword) wins over the URL's database. With `readonly`, every query of the
    handle runs with ClickHouse's `readonly=1`. Raises StoreUnavailable when the server cannot
    be reached or the chDB directory is held by another process, StoreError otherwise.
    """
    target = settings.clickhouse
    db = database or target.database
    if target.mode == "embedded":
        return _connect_embedded(target, db, readonly)
    try:
        client = clickhouse_connect.get_client(
            host=target.host,
            port=target.port,
            username=target.username,
            password=target.password,
            database=db,
            secure=target.secure,
            autogenerate_session_id=False,  # a session would serialize concurrent callers
            settings=_READONLY if readonly else _QUERY_SETTINGS,  # sent with every request
        )
    except ch_errors.Error as exc:
        raise translate_error(exc, doing=f"connect to {target}") from exc
    return ClickHouse(client, target=target, release=_Release(None, client), readonly=readonly)


# Query settings every handle sends with every request.
#
# `use_skip_indexes_if_final_exact_mode = 0`: with FINAL, ClickHouse 26.9 (chDB 4.4) uses skip
# indexes (`use_skip_indexes_if_final = 1`) and by default, in "exact mode", adds back every range
# of every other part whose primary-key range overlaps a granule the index kept, in case a newer
# version of a kept row sits in a granule the index dropped. That protects indexes on columns an
# update can change. `activities` has one skip index, the `actor` bloom filter, and `actor` is
# part of the sorting key and immutable: every version of an activity, tombstones too, carries
# the same actor, so no version can be in a dropped granule; the expansion only costs. With
# inserts spread over the key range (every part overlaps every other), it added back nearly all
# of the table: the sessions query of one actor over 10M rows in 10 parts took 24 s with it,
# 0.9 s without (same result). A skip index on a column outside the sorting key would need exact
# mode again (tests/integration/test_clickhouse_schema.py pins that there is none).
_QUERY_SETTINGS: dict[str, Any] = {"use_skip_indexes_if_final_exact_mode": 0}
# `readonly` last: once it is set, a request may not change further settings
_READONLY: dict[str, Any] = {**_QUERY_SETTINGS, "readonly": 1}


def _connect_embedded(target: ClickHouseTarget, database: str, readonly: bool) -> ClickHouse:
    if target.path is None:  # the URL parser always sets it; this guards hand-made targets
        raise ConfigError("FOOTFALL_CLICKHOUSE_URL", str(target), "chdb:///path/to/dir")
    path = os.path.realpath(target.path)
    key = (path, database, readonly)
    with _lock:
        shared = _shared.get(key)
        if shared is None:
            held_here = _refuse_second_directory(path)
            client = _open_engine(path, database, probe_lock=not held_here, readonly=readonly)
            shared = _Shared(client, 0)
            _shared[key] = shared
        shared.refs += 1
        client = shared.client
    return ClickHouse(client, target=target, release=_Release(key, client), readonly=readonly)


def _refuse_second_directory(path: str) -> bool:
    """Raise if this process hosts chDB on another directory; whether it hosts `path`."""
    for other, _db, _readonly in _shared:
        if other == path:
            return True
        raise StoreError(
            STORE,
            f"this process already hosts chDB on {other}; chDB hosts one data directory per "
            f"process, so {path} cannot be opened until every handle on {other} is closed",
            code="CHDB_DIRECTORY_IN_USE",
        )
    return False


def _open_engine(path: str, database: str, *, probe_lock: bool, readonly: bool = False) -> Client:
    try:
        Path(path).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            "FOOTFALL_CLICKHOUSE_URL", f"chdb://{path}", f"a writable directory ({exc})"
        ) from exc
    try:
        # chdb:// selects the embedded engine; the explicit path wins over the DSN's and needs
        # no URL quoting
        return clickhouse_connect.get_client(
            dsn="chdb://",
            path=path,
            database=database,
            settings=_READONLY if readonly else _QUERY_SETTINGS,
        )
    except ch_errors.Error as exc:
        if probe_lock and directory_locked(path):
            raise StoreUnavailable(
                STORE,
                f"the chDB data directory {path} is in use by another process (chDB allows one "
                f"process per directory); {_SERVER_HINT}",
                code=LOCKED_CODE,
            ) from exc
        raise translate_error(exc, doing=f"open chDB on {path}") from exc


def directory_locked(path: str | Path) -> bool:
    """Whether a process holds the engine lock (`flock` on `<dir>/status`) of a chDB directory.

    Probes with a non-blocking exclusive `flock` that is released at once. Only meaningful while
    this process has not opened the directory itself (its own lock would count as held).
    """
    try:
        fd = os.open(os.path.join(path, "status"), os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return True
        raise
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def _checked(sql: str, parameters: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The parameters, after checking each is bound server-side by a `{name:Type}` placeholder.

    Without a placeholder clickhouse-connect would format the value into the SQL text instead.
    """
    if not parameters:
        return None
    bound = {name for name, _type in _PLACEHOLDER.findall(sql)}
    unbound = sorted(set(parameters) - bound)
    if unbound:
        raise StoreError(
            STORE,
            f"parameter(s) {', '.join(unbound)} have no {{name:Type}} placeholder in the SQL; "
            "footfall binds parameters server-side only, e.g. WHERE actor = {actor:String}",
            code="UNBOUND_PARAMETER",
        )
    return dict(parameters)


def _head(sql: str) -> str:
    text = " ".join(sql.split())
    return text if len(text) <= 80 else text[:77] + "..."


def _close_quietly(client: Client) -> None:
    try:
        client.close()
    except Exception:  # closing must not mask the caller's own error
        log.debug("error closing a ClickHouse client", exc_info=True)
