"""The first read-only wall: ad-hoc SQL is refused by its syntax tree, not by its text."""

from __future__ import annotations

import pytest

from footfall import FootfallError
from query import QueryRefused
from query._statement import parse_statement

REFUSED = {
    # statements other than SELECT
    "insert": "INSERT INTO activities SELECT * FROM activities",
    "create": "CREATE TABLE t (x UInt8) ENGINE = Memory",
    "drop": "DROP TABLE activities",
    "alter": "ALTER TABLE activities DELETE WHERE 1",
    "truncate": "TRUNCATE TABLE activities",
    "rename": "RENAME TABLE activities TO gone",
    "detach": "DETACH TABLE activities",
    "attach": "ATTACH TABLE activities",
    "delete": "DELETE FROM activities WHERE 1",
    "update": "UPDATE activities SET target = 'x' WHERE 1",
    "system": "SYSTEM SHUTDOWN",
    "system lowercase": "system drop dns cache",
    "set": "SET readonly = 0",
    "kill": "KILL QUERY WHERE 1",
    "optimize": "OPTIMIZE TABLE activities FINAL",
    "grant": "GRANT ALL ON *.* TO someone",
    "use": "USE system",
    "explain": "EXPLAIN SELECT 1",
    "show": "SHOW TABLES",
    "describe": "DESCRIBE activities",
    # several statements, however they hide
    "two statements": "SELECT 1; DROP TABLE activities",
    "after a line comment": "SELECT 1 -- comment\n; DROP TABLE activities",
    "two selects": "select 1; select 2",
    # settings that could lift the restriction, anywhere in the tree
    "settings readonly": "SELECT 1 SETTINGS readonly = 0",
    "settings lowercase": "select 1 settings readonly=2",
    "settings harmless-looking": "SELECT 1 SETTINGS max_threads = 1",
    "settings in a subquery": "SELECT * FROM (SELECT 1 SETTINGS readonly = 0)",
    "format": "SELECT 1 FORMAT JSON",
    "into outfile": "SELECT 1 INTO OUTFILE '/tmp/x'",
    # table functions that read files, URLs or other systems
    "file": "SELECT * FROM file('/etc/passwd', 'LineAsString')",
    "file uppercase": "SELECT * FROM FILE('/etc/passwd')",
    "scalar file": "SELECT file('/etc/passwd')",
    "url": "SELECT * FROM url('http://169.254.169.254/', 'LineAsString')",
    "s3 in a union": "SELECT 1 UNION ALL SELECT * FROM s3('http://bucket/x.csv')",
    "mysql in a cte": "WITH x AS (SELECT * FROM mysql('h:3306', 'd', 't', 'u', 'p')) SELECT 1",
    "remote in a join": "SELECT 1 FROM activities AS a JOIN remote('h', db.t) AS b USING event_id",
    "postgresql in a subquery": (
        "SELECT * FROM activities WHERE actor IN (SELECT c FROM postgresql('h', 'd', 't', 'u'))"
    ),
    "hdfs": "SELECT * FROM hdfs('hdfs://x/y', 'CSV')",
    "executable": "SELECT * FROM executable('x.sh', 'TSV', 'a String')",
    "merge": "SELECT * FROM merge(currentDatabase(), '^act')",
    # parameters footfall cannot check or bind server-side
    "identifier parameter as table": "SELECT * FROM {t:Identifier}",
    "identifier parameter as column": "SELECT {c:Identifier} FROM activities",
    "client-side placeholder": "SELECT * FROM activities WHERE actor = ?",
    "one name, two types": "SELECT {a:String}, {a:UInt8}",
    # what cannot be parsed cannot be checked
    "garbage": "SELEC * FROM activities",
    "empty": "  \n-- only a comment\n",
}

ALLOWED = {
    "select": "SELECT ts FROM activities WHERE actor = 'bob'",
    "with select": "WITH t AS (SELECT actor FROM activities) SELECT count() FROM t",
    "union": "(SELECT 1) UNION ALL (SELECT 2)",
    "generator table function": "SELECT * FROM numbers(10)",
    "keywords in a string": "SELECT 'INSERT INTO x; DROP TABLE y' AS s",
    "keywords in a comment": "SELECT 1 /* ; DROP TABLE activities */ -- SETTINGS readonly=0",
    "columns named like clauses": "SELECT format, settings FROM t",
    "trailing semicolon": "SELECT 1;",
    "system tables": "SELECT name FROM system.tables",
    "server-side parameters": "SELECT * FROM activities WHERE ts >= {s:DateTime64(3, 'UTC')}",
}


@pytest.mark.parametrize("sql", REFUSED.values(), ids=REFUSED.keys())
def test_anything_but_one_select_is_refused_with_a_reason(sql: str) -> None:
    with pytest.raises(QueryRefused) as caught:
        parse_statement(sql)
    assert caught.value.reason
    assert caught.value.reason in str(caught.value)
    assert isinstance(caught.value, FootfallError)


@pytest.mark.parametrize("sql", ALLOWED.values(), ids=ALLOWED.keys())
def test_single_selects_pass_whatever_their_text_contains(sql: str) -> None:
    stmt = parse_statement(sql)
    assert not stmt.text.rstrip().endswith(";")


def test_the_reason_names_what_was_refused() -> None:
    cases = {
        "INSERT INTO t VALUES (1)": "INSERT",
        "SELECT 1 SETTINGS readonly = 0": "SETTINGS",
        "SELECT * FROM url('http://x')": "url()",
        "SELECT 1; SELECT 2": "2 statements",
        "SELECT * FROM {t:Identifier}": "Identifier",
    }
    for sql, named in cases.items():
        with pytest.raises(QueryRefused) as caught:
            parse_statement(sql)
        assert named in caught.value.reason, sql


def test_placeholders_are_collected_with_their_types() -> None:
    stmt = parse_statement(
        "SELECT ts FROM activities WHERE actor = {a:String} "
        "AND ts >= {s:DateTime64(3, 'UTC')} LIMIT {n:UInt32}"
    )
    assert stmt.placeholders == {"a": "String", "s": "DateTime64(3, 'UTC')", "n": "UInt32"}


def test_non_text_input_is_refused() -> None:
    with pytest.raises(QueryRefused):
        parse_statement(b"SELECT 1")  # type: ignore[arg-type]
