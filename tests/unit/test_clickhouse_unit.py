"""The pure parts of the ClickHouse side: statement splitting, the migration plan, error
classification by code, parameter checks. No engine is started."""

from __future__ import annotations

import fcntl
import logging
import os
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from clickhouse_connect.driver import exceptions as ch_errors

from footfall import ClickHouseTarget, StoreError, StoreThrottled, StoreUnavailable
from footfall._clickhouse import ClickHouse, classify_code, directory_locked, translate_error
from footfall._migrate import (
    Migration,
    MigrationChanged,
    MigrationError,
    load_migrations,
    pending,
    read_sql,
    split_statements,
    sql_root,
)
from footfall._rollup import days_of

# -- statement splitting ---------------------------------------------------------------------


def test_split_statements_at_semicolons() -> None:
    assert split_statements("SELECT 1; SELECT 2;\n") == ["SELECT 1", "SELECT 2"]
    assert split_statements("SELECT 1") == ["SELECT 1"]
    assert split_statements("  ;; \n") == []
    assert split_statements("SELECT 1 -- note; SELECT 2\n") == ["SELECT 1 -- note; SELECT 2"]


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT 'a;b'",
        "SELECT 'it''s; here'",
        r"SELECT 'back\'slash; here'",
        'SELECT "odd;column" FROM t',
        "SELECT `odd;name` FROM t",
        "SELECT $$heredoc; text$$",
        "SELECT $tag$with $$ and ; inside$tag$",
        "SELECT 1 -- a comment; not a split",
        "SELECT 1 /* a; /* nested; */ comment; */ + 1",
        "SELECT 1 # a hash comment; too",
        "SELECT 4 - 2 / 1",
    ],
)
def test_split_statements_keeps_semicolons_in_strings_and_comments(sql: str) -> None:
    # the ; on the next line: on the same line a line comment would swallow it
    assert split_statements(f"{sql}\n;\nSELECT 2;") == [sql, "SELECT 2"]


def test_split_statements_drops_comment_only_statements() -> None:
    text = "-- header\nCREATE TABLE t (x UInt8) ENGINE = Memory;\n-- trailing note; done\n"
    assert split_statements(text) == ["-- header\nCREATE TABLE t (x UInt8) ENGINE = Memory"]


def test_every_shipped_file_splits_into_statements() -> None:
    for migration in load_migrations():
        assert migration.statements(), migration.name
    assert len(split_statements(read_sql("migrations/0002_activities_daily.sql"))) == 2
    assert len(split_statements(read_sql("queries/rollup_refresh_days.sql"))) == 1


# -- the migration plan ----------------------------------------------------------------------


def test_sql_root_holds_the_migrations() -> None:
    assert (sql_root() / "migrations").is_dir()
    names = [m.name for m in load_migrations()]
    assert names == sorted(names)
    assert names[0] == "0001_activities.sql"


def test_pending_skips_applied_files_in_order() -> None:
    files = [Migration.of(f"000{i}_m.sql", f"SELECT {i}") for i in (1, 2, 3)]
    applied = {files[0].name: files[0].sha256}
    assert pending(files, applied) == files[1:]
    assert pending(files, {m.name: m.sha256 for m in files}) == []


def test_pending_refuses_a_changed_applied_file() -> None:
    old = Migration.of("0001_m.sql", "SELECT 1")
    new = Migration.of("0001_m.sql", "SELECT 1 -- edited")
    with pytest.raises(MigrationChanged) as refused:
        pending([new], {old.name: old.sha256})
    assert (refused.value.name, refused.value.recorded, refused.value.current) == (
        "0001_m.sql",
        old.sha256,
        new.sha256,
    )
    assert "new migration file" in str(refused.value)


def test_pending_tolerates_a_recorded_file_it_does_not_have(
    caplog: pytest.LogCaptureFixture,
) -> None:
    files = [Migration.of("0001_m.sql", "SELECT 1")]
    with caplog.at_level(logging.WARNING, logger="footfall._migrate"):
        assert pending(files, {"0001_m.sql": files[0].sha256, "0002_newer.sql": "ab"}) == []
    assert "0002_newer.sql" in caplog.text


def test_the_checksum_ignores_line_endings() -> None:
    assert Migration.of("a", "SELECT 1;\r\n").sha256 == Migration.of("a", "SELECT 1;\n").sha256


@pytest.mark.parametrize(
    ("files", "problem"),
    [
        (["0001_a.sql", "1_b.sql"], "name must be"),
        (["0001_a.sql", "0001_b.sql"], "same number"),
    ],
)
def test_load_migrations_refuses_bad_names(tmp_path: Path, files: list[str], problem: str) -> None:
    for name in files:
        (tmp_path / name).write_text("SELECT 1")
    with pytest.raises(MigrationError, match=problem):
        load_migrations(tmp_path)


# -- error classification --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        (60, "terminal"),  # UNKNOWN_TABLE
        (47, "terminal"),  # UNKNOWN_IDENTIFIER
        (62, "terminal"),  # SYNTAX_ERROR
        (164, "terminal"),  # READONLY
        (53, "terminal"),  # TYPE_MISMATCH
        (159, "unavailable"),  # TIMEOUT_EXCEEDED
        (210, "unavailable"),  # NETWORK_ERROR
        (241, "unavailable"),  # MEMORY_LIMIT_EXCEEDED
        (202, "throttled"),  # TOO_MANY_SIMULTANEOUS_QUERIES
        (252, "throttled"),  # TOO_MANY_PARTS
        (745, "throttled"),  # SERVER_OVERLOADED
    ],
)
def test_classify_by_code(code: int, kind: str) -> None:
    assert classify_code(code) == kind


def test_without_a_code_the_driver_error_type_decides() -> None:
    assert classify_code(None, ch_errors.OperationalError("connection refused")) == "unavailable"
    assert classify_code(None, ch_errors.DatabaseError("HTTP 503 from a proxy")) == "unavailable"
    assert classify_code(None, ch_errors.ProgrammingError("client closed")) == "terminal"
    assert classify_code(None, ch_errors.DataError("None in a non-Nullable column")) == "terminal"


def test_translate_error_keeps_the_code_and_ignores_the_message() -> None:
    unknown = translate_error(ch_errors.DatabaseError("timeout, retry later", code=60))
    assert type(unknown) is StoreError
    assert (unknown.code, unknown.transient, unknown.store) == ("60", False, "ClickHouse")

    busy = translate_error(ch_errors.DatabaseError("Unknown table", code=202))
    assert isinstance(busy, StoreThrottled)
    assert (busy.code, busy.transient) == ("202", True)

    down = translate_error(ch_errors.OperationalError("Error executing HTTP request"))
    assert type(down) is StoreUnavailable
    assert down.code is None


class _FailingClient:
    database = "db"

    def __init__(self, error: Exception) -> None:
        self.error = error

    def __getattr__(self, name: str) -> Any:
        def fail(*args: Any, **kwargs: Any) -> Any:
            raise self.error

        return fail


def _handle(error: Exception, release: Callable[[], None] = lambda: None) -> ClickHouse:
    target = ClickHouseTarget(mode="server", host="h", port=8123)
    client: Any = _FailingClient(error)  # a stand-in for clickhouse-connect's Client
    return ClickHouse(client, target=target, release=release)


def test_the_wrapper_raises_footfall_errors_from_the_driver_error() -> None:
    cause = ch_errors.DatabaseError("Code: 81. Database nope does not exist", code=81)
    with pytest.raises(StoreError) as failed:
        _handle(cause).query_arrow("SELECT 1")
    assert failed.value.code == "81"
    assert failed.value.__cause__ is cause

    with pytest.raises(StoreUnavailable):
        _handle(ch_errors.OperationalError("refused")).insert_arrow(
            "activities", pa.table({"x": [1]}), dedup_token="t"
        )


def test_parameters_need_a_server_side_placeholder() -> None:
    ch = _handle(ch_errors.DatabaseError("never reached", code=1))
    with pytest.raises(StoreError) as unbound:
        ch.command("SELECT %(actor)s", {"actor": "x"})
    assert unbound.value.code == "UNBOUND_PARAMETER"
    assert "actor" in str(unbound.value)


def test_a_closed_handle_refuses_calls() -> None:
    released: list[bool] = []
    ch = _handle(RuntimeError("never reached"), release=lambda: released.append(True))
    ch.close()
    ch.close()
    assert released == [True]
    with pytest.raises(StoreError, match="closed"):
        ch.command("SELECT 1")


# -- the chDB directory lock -----------------------------------------------------------------


def test_directory_locked_sees_an_flock_on_status(tmp_path: Path) -> None:
    assert not directory_locked(tmp_path)  # no status file: no engine ever ran
    status = tmp_path / "status"
    status.write_text("PID: 1\n")
    assert not directory_locked(tmp_path)  # left behind by a crashed engine: free
    fd = os.open(status, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert directory_locked(tmp_path)
    finally:
        os.close(fd)
    assert not directory_locked(tmp_path)


# -- rollup helpers --------------------------------------------------------------------------


def test_days_of_a_batch_are_utc_days() -> None:
    ts = pa.array(
        [datetime(2026, 3, 1, 23, 59, tzinfo=UTC), datetime(2026, 3, 2, 0, 0, tzinfo=UTC)] * 2,
        pa.timestamp("ms", tz="UTC"),
    )
    assert days_of(pa.table({"ts": ts})) == {date(2026, 3, 1), date(2026, 3, 2)}
