"""Ad-hoc SQL executes nothing harmful, in embedded (chDB) and server (HTTP) mode.

Attacks come through the SQL text (statements, comments, strings, quoted identifiers, settings,
table and scalar functions), through parameters and named queries. The oracles are outside the
query's reach: a canary table's rows, the database's table list, a secret file whose content
must never come back, and a TCP sentinel that counts every connection a URL, S3 or remote
table function would open.

Both walls are tested on their own: the syntax-tree check of `query` (through `ff.sql`), and
ClickHouse's `readonly=1` on the read connection (statements sent to it directly, bypassing the
first wall). In chDB the scalar `file()` function reads any file even with `readonly=1` (chDB
runs as clickhouse-local does, without `user_files_path`), so for that function the first wall
is the only one; `test_scalar_file_is_stopped_by_the_first_wall_only` pins that down.
"""

from __future__ import annotations

import os
import socket
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import query
from footfall import FootfallError, StoreError, load_settings
from footfall._clickhouse import ClickHouse, connect
from footfall._migrate import migrate
from query import ParameterError, QueryError, QueryRefused

pytestmark = pytest.mark.faults

CANARY_ROWS = 100


class Sentinel:
    """A TCP listener that counts the connections made to it (and answers nothing)."""

    def __init__(self) -> None:
        self._socket = socket.create_server(("127.0.0.1", 0))
        self._socket.settimeout(0.2)
        self.port: int = self._socket.getsockname()[1]
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="sql-sentinel", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._socket.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._socket.close()


@dataclass
class Target:
    """One ClickHouse mode with a fresh database: the admin (writing) handle and the read API."""

    mode: str
    database: str
    admin: ClickHouse
    ff: query.Footfall
    secret: str
    secret_path: Path
    sentinel: Sentinel

    def canary_rows(self) -> int:
        table = f"`{self.database}`.canary"
        return int(self.admin.query_arrow(f"SELECT count() AS n FROM {table}")["n"][0].as_py())

    def tables(self) -> list[str]:
        found = self.admin.query_arrow(
            "SELECT name FROM system.tables WHERE database = {db:String} ORDER BY name",
            {"db": self.database},
        )
        return [str(v) for v in found["name"].to_pylist()]

    def unharmed(self, tables: list[str]) -> None:
        """The invariants no query may break."""
        assert self.canary_rows() == CANARY_ROWS
        assert self.tables() == tables
        assert self.sentinel.connections == 0, "a query opened a connection to the sentinel"


@pytest.fixture(scope="module")
def secret_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    secret = f"TOPSECRET-{uuid.uuid4().hex}"
    path = tmp_path_factory.mktemp("secret") / "secret.txt"
    path.write_text(secret + "\n")
    return secret, path


@pytest.fixture(scope="module")
def sentinel() -> Iterator[Sentinel]:
    listener = Sentinel()
    try:
        yield listener
    finally:
        listener.close()


@pytest.fixture(scope="module", params=["embedded", "server"])
def target(
    request: pytest.FixtureRequest,
    chdb_url: str,
    secret_file: tuple[str, Path],
    sentinel: Sentinel,
) -> Iterator[Target]:
    mode: str = request.param
    url = chdb_url if mode == "embedded" else request.getfixturevalue("clickhouse_url")
    database = f"sec_{uuid.uuid4().hex[:10]}"
    root = connect(load_settings(clickhouse_url=url))
    root.command(f"CREATE DATABASE {database}")
    if mode == "server":
        parts = urlsplit(url)
        url = urlunsplit(parts._replace(path=f"/{database}"))
    settings = load_settings(clickhouse_url=url)
    admin = connect(settings, database=database)
    migrate(admin)
    admin.command("CREATE TABLE canary (n UInt32, s String) ENGINE = MergeTree ORDER BY n")
    admin.command(f"INSERT INTO canary SELECT number, toString(number) FROM numbers({CANARY_ROWS})")
    ff = query.connect(settings, database=database)
    try:
        yield Target(mode, database, admin, ff, secret_file[0], secret_file[1], sentinel)
    finally:
        ff.close()
        admin.close()
        root.command(f"DROP DATABASE IF EXISTS {database} SYNC")
        root.close()


@pytest.fixture
def before(target: Target) -> Iterator[list[str]]:
    """The database's tables before the test; afterwards every invariant is checked."""
    tables = target.tables()
    yield tables
    target.unharmed(tables)


def attacks(path: Path, port: int) -> dict[str, str]:
    """Statements that would write, change settings or read outside ClickHouse if they ran."""
    p, at = str(path), f"127.0.0.1:{port}"
    return {
        # statements other than one SELECT, however they hide
        "insert": "INSERT INTO canary VALUES (1000, 'x')",
        "insert select": "INSERT INTO canary SELECT * FROM canary",
        "drop": "DROP TABLE canary",
        "truncate": "TRUNCATE TABLE canary",
        "alter delete": "ALTER TABLE canary DELETE WHERE 1",
        "lightweight delete": "DELETE FROM canary WHERE 1",
        "create": "CREATE TABLE pwned (x UInt8) ENGINE = Memory",
        "rename": "RENAME TABLE canary TO gone",
        "system": "SYSTEM DROP MARK CACHE",
        "system stop merges": "SYSTEM STOP MERGES canary",
        "set": "SET readonly = 0",
        "optimize": "OPTIMIZE TABLE canary FINAL",
        "kill": "KILL QUERY WHERE 1",
        "insert into function": f"INSERT INTO FUNCTION file('{p}.out', 'CSV') SELECT 1",
        "select then drop": "SELECT 1; DROP TABLE canary",
        "select then drop, no space": "SELECT 1;DROP TABLE canary;",
        "drop after a comment": "SELECT 1 -- comment\n; DROP TABLE canary",
        "drop after a block comment": "SELECT 1 /* ; */ ; DROP TABLE canary",
        "drop after an escaped quote": "SELECT 'x\\\\'; DROP TABLE canary; --'",
        "drop after a doubled quote": "SELECT 'it''s'; DROP TABLE canary",
        "drop in a cte": "WITH x AS (SELECT 1) DROP TABLE canary",
        "into outfile": f"SELECT * FROM canary INTO OUTFILE '{p}.out'",
        "format": "SELECT * FROM canary FORMAT CSV",
        # settings that would lift the restriction
        "settings readonly": "SELECT count() FROM canary SETTINGS readonly = 0",
        "settings readonly 2": "SELECT 1 SETTINGS readonly = 2, allow_ddl = 1",
        "settings in a subquery": "SELECT * FROM (SELECT * FROM canary SETTINGS readonly = 0)",
        "settings in a cte": "WITH c AS (SELECT 1 SETTINGS readonly = 0) SELECT * FROM c",
        # reading files and URLs, scalar or table functions, however spelled or nested
        "file table function": f"SELECT * FROM file('{p}', 'LineAsString')",
        "file, upper case": f"SELECT * FROM FILE('{p}', 'LineAsString')",
        "file, quoted": f"SELECT * FROM `file`('{p}', 'LineAsString')",
        "scalar file": f"SELECT file('{p}') AS s",
        "scalar file, quoted": f"SELECT \"file\"('{p}') AS s",
        "scalar file, split by a comment": f"SELECT file /* x */ ('{p}') AS s",
        "scalar file in a lambda": f"SELECT arrayMap(x -> file(x), ['{p}']) AS s",
        "scalar file in a cte": f"WITH file('{p}') AS s SELECT s",
        "scalar file in a view": f"SELECT * FROM view(SELECT file('{p}') AS s)",
        "scalar file in a where": f"SELECT n FROM canary WHERE s = file('{p}')",
        "scalar file behind a heredoc": f"SELECT $$'$$ AS a, file('{p}') AS f --'",
        "url": f"SELECT * FROM url('http://{at}/x', 'LineAsString')",
        "url in a union": (
            f"SELECT s FROM canary UNION ALL SELECT * FROM url('http://{at}/', 'LineAsString')"
        ),
        "s3": f"SELECT * FROM s3('http://{at}/bucket/x.csv', 'CSV')",
        "remote": f"SELECT * FROM remote('{at}', system.one)",
        "remote in a join": f"SELECT 1 FROM canary AS a JOIN remote('{at}', system.one) AS b ON 1",
        "cluster": "SELECT * FROM clusterAllReplicas('default', system.one)",
        "mysql": f"SELECT * FROM mysql('{at}', 'd', 't', 'u', 'p')",
        "postgresql in a subquery": (
            "SELECT * FROM canary WHERE s IN "
            f"(SELECT c FROM postgresql('{at}', 'd', 't', 'u', 'p'))"
        ),
        "executable": "SELECT * FROM executable('id', 'TSV', 'x String')",
        "sqlite": f"SELECT * FROM sqlite('{p}', 't')",
        "iceberg local": f"SELECT * FROM icebergLocal('{p}')",
        "merge over system": "SELECT * FROM merge('system', '^users$')",
        # parameters footfall could not check
        "identifier parameter": "SELECT * FROM {t:Identifier}",
        "client-side placeholder": "SELECT * FROM canary WHERE s = %s",
    }


# Texts that pass the first wall although they look dangerous: the danger sits in a comment or
# a string, for sqlglot and ClickHouse alike. They run; they must do nothing but read.
HARMLESS = {
    "drop in a string": "SELECT 'x''; DROP TABLE canary; --' AS s",
    "drop after an escaped quote in a string": "SELECT 'a\\'; DROP TABLE canary; --' AS s",
    "file in a string": "SELECT 'file(''{p}'')' AS s",
    "file after a carriage return in a comment": "SELECT 1 AS s -- \r, file('{p}')",
    "drop after a line separator in a comment": "SELECT 1 AS s -- x\u2028; DROP TABLE canary",
    "file in a conditional comment": "SELECT 1 AS s /*! , file('{p}') */",
    "file in a nested comment": "SELECT 1 AS s /* /* */ , file('{p}') */",
    "a quoted identifier holding a statement": "SELECT 1 AS `s; DROP TABLE canary`",
    "a column named file": "SELECT n AS file FROM canary LIMIT 1",
}


def test_every_attack_is_refused_and_changes_nothing(target: Target, before: list[str]) -> None:
    """Each attack through `ff.sql` (and `explain`) raises a QueryError before anything runs;
    the canary, the table list and the sentinel show nothing happened, the secret never shows."""
    for name, text in attacks(target.secret_path, target.sentinel.port).items():
        for call in (target.ff.sql, target.ff.explain):
            with pytest.raises(QueryError) as caught:
                call(text)
            assert target.secret not in str(caught.value), name
        target.unharmed(before)
        assert not Path(f"{target.secret_path}.out").exists(), name


@pytest.mark.parametrize("name", sorted(HARMLESS))
def test_dangerous_looking_text_in_comments_and_strings_only_reads(
    target: Target, before: list[str], name: str
) -> None:
    text = HARMLESS[name].replace("{p}", str(target.secret_path))
    try:
        frame = target.ff.sql(text, route="clickhouse")
    except FootfallError:
        return  # refused (or rejected by ClickHouse): nothing ran
    assert target.secret not in str(frame.to_dicts())


# What the read-only connection runs although wall 1 refuses it: harmless reads, and what only
# wall 1 stops on chDB (embedded mode and footfall's own HTTP server, both chDB, which runs
# queries as clickhouse-local does): the scalar `file()` (no user_files_path: any file), INTO
# OUTFILE (a client feature of clickhouse-local: it writes the file) and KILL QUERY (everyone is
# `default`, so a read-only session may kill the writer's queries).
SECOND_WALL_RUNS = {
    "format": "harmless: a read, in another format",
    "into outfile": "wall 1 only on chDB: writes the file despite readonly=1",
    "merge over system": "harmless: reads ClickHouse's own tables",
    "kill": "wall 1 only: KILL QUERY is allowed to read-only users",
    "settings in a subquery": "harmless: a subquery's SETTINGS cannot lift readonly=1",
    "settings in a cte": "harmless: a subquery's SETTINGS cannot lift readonly=1",
}


def test_the_read_connection_alone_refuses_writes_settings_and_outside_reads(
    target: Target, before: list[str]
) -> None:
    """The second wall: statements sent straight to the read-only connection (bypassing the
    syntax check) fail in ClickHouse with READONLY (164) or a syntax error (62); what runs
    anyway is listed in SECOND_WALL_RUNS, and none of it writes or reads outside."""
    ch = target.ff.clickhouse
    assert ch.readonly
    ran: set[str] = set()
    for name, text in attacks(target.secret_path, target.sentinel.port).items():
        if "scalar file" in name or "parameter" in name or "placeholder" in name:
            continue  # wall 1 only (see the module docstring), or not SQL ClickHouse can run
        for run in (ch.query_arrow, ch.command):
            try:
                result = run(text)
            except StoreError as exc:
                assert target.secret not in str(exc), name
                continue
            assert target.secret not in str(result), name
            ran.add(name)
        target.unharmed(before)
    assert ran <= set(SECOND_WALL_RUNS), ran - set(SECOND_WALL_RUNS)
    assert ch.query_arrow("SELECT getSetting('readonly') AS r")["r"][0].as_py() == 1
    Path(f"{target.secret_path}.out").unlink(missing_ok=True)  # INTO OUTFILE's, see above


def test_scalar_file_is_refused_by_the_first_wall(target: Target, before: list[str]) -> None:
    """chDB's scalar `file()` reads any file even under `readonly=1` (no user_files_path), so
    the syntax check must refuse it in every spelling (see the attack list): here, plainly."""
    with pytest.raises(QueryRefused, match=r"file\(\)"):
        target.ff.sql(f"SELECT file('{target.secret_path}') AS s")


INJECTIONS = [
    "x' OR '1'='1",
    "'; DROP TABLE canary; --",
    "\\'; DROP TABLE canary; --",
    "x'); INSERT INTO canary VALUES (9999, 'x'); --",
    "' UNION ALL SELECT file('/etc/passwd') --",
    "{s:String}",
    "$$; DROP TABLE canary; $$",
    "\x00'; DROP TABLE canary",
    "`; DROP TABLE canary; `",
    '"; DROP TABLE canary; --',
    "1 SETTINGS readonly=0",
    "ö🙂\u2028\r\n\t",
]


@pytest.mark.parametrize("value", INJECTIONS, ids=range(len(INJECTIONS)))
def test_parameters_are_data_never_sql(target: Target, before: list[str], value: str) -> None:
    """A value bound to a `{name:Type}` placeholder comes back exactly as given and matches
    nothing it is not equal to; named queries bind their parameters the same way."""
    echoed = target.ff.sql("SELECT {v:String} AS v", {"v": value})
    assert echoed["v"].to_list() == [value]
    found = target.ff.sql("SELECT count() AS n FROM canary WHERE s = {v:String}", {"v": value})
    assert found["n"].to_list() == [0]
    arrays = target.ff.sql("SELECT {v:Array(String)} AS v", {"v": [value, value]})
    assert arrays["v"].to_list() == [[value, value]]
    now = datetime.now(UTC)
    top = target.ff.named("top_targets", type=value, start=now - timedelta(days=1), end=now)
    assert top.is_empty()
    with pytest.raises(ParameterError):
        target.ff.sql("SELECT count() AS n FROM canary WHERE n = {v:UInt32}", {"v": value})


def test_identifiers_that_hold_statements_are_only_names(target: Target, before: list[str]) -> None:
    """Quoted identifiers holding `;` and statements name a table, column or alias that does
    not exist (a typed error) or is merely an alias; a statement after the identifier is refused.
    """
    with pytest.raises(QueryRefused):
        target.ff.sql("SELECT * FROM `canary`; DROP TABLE canary")
    for text in (
        "SELECT * FROM `canary; DROP TABLE canary`",
        'SELECT "n; DROP TABLE canary" FROM canary',
    ):
        with pytest.raises(QueryError):
            target.ff.sql(text)
    aliased = target.ff.sql("SELECT n AS `x``; DROP TABLE canary; --` FROM canary LIMIT 1")
    assert aliased.columns == ["x`; DROP TABLE canary; --"]


FRAGMENTS = [
    "SELECT",
    "n",
    "s",
    "*",
    ",",
    "FROM",
    "canary",
    "activities",
    "WHERE",
    "1",
    "=",
    "(",
    ")",
    ";",
    "--",
    "\n",
    "\r",
    "/*",
    "*/",
    "#",
    "'",
    "''",
    "\\'",
    '"',
    "`",
    "$$",
    "DROP TABLE canary",
    "INSERT INTO canary VALUES (1, 'x')",
    "SETTINGS readonly = 0",
    "FORMAT CSV",
    "UNION ALL SELECT",
    "file('{p}')",
    "FROM file('{p}', 'LineAsString')",
    "FROM url('http://{at}/', 'LineAsString')",
    "remote('{at}', system.one)",
    "{v:String}",
    "AS",
    "x",
]


def fuzz_examples(config: pytest.Config) -> int:
    """Generated texts per mode: a few in the short run, thousands with `--long`."""
    env = os.environ.get("FOOTFALL_FAULTS_LONG") == "1"
    long = bool(config.getoption("--long", default=False)) or env
    return 2_500 if long else 150


def test_generated_sql_never_harms(
    target: Target, before: list[str], request: pytest.FixtureRequest
) -> None:
    """Texts assembled from statement pieces, comments, quotes and dangerous calls: each is
    refused with a QueryError or runs as a pure read (no secret, canary intact, no connection).
    """
    p, at = str(target.secret_path), f"127.0.0.1:{target.sentinel.port}"
    pieces = [f.replace("{p}", p).replace("{at}", at) for f in FRAGMENTS]
    text_of = st.lists(st.sampled_from(pieces), min_size=1, max_size=14).map(" ".join)
    texts = st.one_of(text_of, text_of.map(lambda t: "SELECT " + t))

    @settings(
        max_examples=fuzz_examples(request.config),
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(text=texts)
    @example(text="SELECT '' UNION ALL SELECT 1")  # a Variant column (found by a --long run)
    def check(text: str) -> None:
        parameters: dict[str, Any] | None = {"v": "x"} if "{v:String}" in text else None
        try:
            frame = target.ff.sql(text, parameters, route="clickhouse")
        except FootfallError as exc:
            assert target.secret not in str(exc)
        else:
            assert target.secret not in str(frame.to_dicts())
        assert target.canary_rows() == CANARY_ROWS
        assert target.sentinel.connections == 0

    check()


def test_the_second_wall_holds_after_refused_attempts(target: Target, before: list[str]) -> None:
    """After every refused attempt the read connection still runs with readonly=1, and the
    writer (in embedded mode the same chDB engine) can still write elsewhere."""
    for text in ("SELECT 1 SETTINGS readonly = 0", "SET readonly = 0"):
        with pytest.raises(StoreError):
            target.ff.clickhouse.query_arrow(text)
    assert target.ff.sql("SELECT getSetting('readonly') AS r")["r"].to_list() == [1]
    target.admin.command("CREATE TABLE scratch (x UInt8) ENGINE = Memory")
    target.admin.command("INSERT INTO scratch VALUES (1)")
    assert target.ff.sql("SELECT count() AS n FROM scratch")["n"].to_list() == [1]
    target.admin.command("DROP TABLE scratch")
    assert os.path.exists(target.secret_path)
