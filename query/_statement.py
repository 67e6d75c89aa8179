"""The first read-only wall: ad-hoc SQL is parsed (sqlglot, ClickHouse dialect) and inspected.

Only one SELECT (or WITH ... SELECT, or a UNION of SELECTs) passes. Refused, by the syntax tree
and never by matching text: more than one statement, any other statement (DDL, INSERT, ALTER,
SYSTEM, SET, KILL, OPTIMIZE, ...), a SETTINGS or FORMAT clause (footfall chooses the settings
and the result format), table functions other than a few generators (file, url, s3, remote,
mysql, postgresql, hdfs, ... read outside ClickHouse's tables), functions that reach outside
(e.g. the scalar `file()`), `{name:Identifier}` parameters (the tables a query reads must be
visible to be checked) and client-side `?`/`%s` placeholders. What cannot be parsed is refused
too: footfall runs only what it could check.

The second wall is ClickHouse's own `readonly=1`, set on the connection the queries run on. On
chDB (embedded mode, and footfall's own HTTP server) `readonly=1` lets the scalar `file()`,
`INTO OUTFILE` and `KILL QUERY` through, so for those this first wall is the only one
(tests/faults/test_sql_security.py tries them in many spellings against both walls).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Final

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError
from sqlglot.tokenizer_core import Token, TokenType

from footfall._migrate import split_statements

from ._errors import QueryRefused

__all__ = ["Statement", "function_name", "parse_statement"]

DIALECT: Final = "clickhouse"
STATEMENT_CACHE: Final = 256  # parsed statements kept, by text (least recently used dropped)

# Table functions that only generate rows (everything else reads files, URLs or other systems).
SAFE_TABLE_FUNCTIONS: Final = frozenset(
    {
        "numbers", "numbers_mt", "zeros", "zeros_mt", "generate_series", "generateseries",
        "generaterandom", "view",
    }
)  # fmt: skip
# Functions (table or scalar) that read or write outside ClickHouse's own tables.
OUTSIDE_FUNCTIONS: Final = frozenset(
    {
        "file", "url", "urlcluster", "s3", "s3cluster", "gcs", "oss", "cosn", "hdfs",
        "hdfscluster", "azureblobstorage", "azureblobstoragecluster", "remote", "remotesecure",
        "cluster", "clusterallreplicas", "mysql", "postgresql", "jdbc", "odbc", "mongodb",
        "redis", "sqlite", "executable", "input", "iceberg", "icebergs3", "icebergazure",
        "iceberghdfs", "deltalake", "hudi", "hive", "kafka", "arrowflight", "ytsaurus",
        "filecluster", "paimon", "prometheusquery",
    }
)  # fmt: skip
_FIRST_WORD_REASONS: Final = {
    "INSERT": "INSERT writes data",
    "CREATE": "CREATE changes the schema (DDL)",
    "DROP": "DROP deletes tables or data (DDL)",
    "ALTER": "ALTER changes tables or data (DDL)",
    "RENAME": "RENAME changes the schema (DDL)",
    "TRUNCATE": "TRUNCATE deletes data",
    "DELETE": "DELETE deletes data",
    "UPDATE": "UPDATE changes data",
    "ATTACH": "ATTACH changes the schema (DDL)",
    "DETACH": "DETACH changes the schema (DDL)",
    "SYSTEM": "SYSTEM statements control the server",
    "SET": "SET changes settings",
    "KILL": "KILL stops queries",
    "OPTIMIZE": "OPTIMIZE rewrites table data",
    "GRANT": "GRANT changes access rights",
    "REVOKE": "REVOKE changes access rights",
    "USE": "USE changes the session's database",
    "EXCHANGE": "EXCHANGE swaps tables (DDL)",
    "UNDROP": "UNDROP changes the schema (DDL)",
    "BACKUP": "BACKUP writes data outside ClickHouse",
    "RESTORE": "RESTORE writes data",
}
_WRITES: Final = tuple(
    getattr(exp, name)
    for name in (
        "Insert", "Update", "Delete", "Create", "Drop", "Alter", "Command", "Set", "Merge",
        "TruncateTable", "Use", "Kill", "Grant", "Revoke", "Copy", "LoadData", "Into",
        "Transaction", "Commit", "Rollback", "Pragma", "Analyze", "Describe", "Refresh",
    )
    if hasattr(exp, name)
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Statement:
    """One checked, read-only query: its text (without a trailing `;`), syntax tree, the
    `{name:Type}` placeholders it binds (name -> type) and the names its WITH clauses define."""

    text: str
    tree: exp.Query
    placeholders: dict[str, str] = field(default_factory=dict)
    cte_names: frozenset[str] = frozenset()


def parse_statement(text: str) -> Statement:
    """Parse `text` and pass it through the read-only wall; QueryRefused says why not.

    Statements are cached by their text (the last STATEMENT_CACHE texts; refusals are not
    cached): values travel as `{name:Type}` parameters, so an application sends the same few
    texts again and again, and parsing costs milliseconds. The Statement returned is shared:
    its tree and placeholders must not be changed.
    """
    if not isinstance(text, str):
        raise QueryRefused(f"expected SQL text, not {type(text).__name__}")
    return _parse(text)


@lru_cache(maxsize=STATEMENT_CACHE)
def _parse(text: str) -> Statement:
    statements = split_statements(text)
    if not statements:
        raise QueryRefused("the text holds no statement")
    if len(statements) > 1:
        raise QueryRefused(f"it holds {len(statements)} statements; send one SELECT at a time")
    sql = statements[0]
    tokens = _tokens(sql)
    _refuse_by_first_word(tokens)
    try:
        trees = [t for t in sqlglot.parse(sql, read=DIALECT) if t is not None]
    except SqlglotError as exc:
        raise QueryRefused(_unparseable(exc)) from None
    if len(trees) != 1:
        raise QueryRefused(f"it holds {len(trees)} statements; send one SELECT at a time")
    tree = trees[0]
    if not isinstance(tree, exp.Query):
        raise QueryRefused(f"{tree.key.upper()} is not a SELECT")
    placeholders = _inspect(tree)
    ctes = frozenset(cte.alias_or_name for cte in tree.find_all(exp.CTE))
    return Statement(sql, tree, placeholders, ctes)


def function_name(node: exp.Expr) -> str:
    """The name a function call was written with, lower-cased (`File(...)` -> 'file')."""
    if isinstance(node, exp.Anonymous):
        return str(node.name).lower()
    if isinstance(node, exp.Func):
        return node.sql_name().lower()
    return node.key.lower()


def _tokens(sql: str) -> list[Token]:
    try:
        return list(sqlglot.tokenize(sql, read=DIALECT))
    except SqlglotError as exc:
        raise QueryRefused(_unparseable(exc)) from None


def _refuse_by_first_word(tokens: list[Token]) -> None:
    """Refuse non-queries before parsing (sqlglot would parse some only as opaque commands)."""
    if not tokens:
        raise QueryRefused("the text holds no statement")
    first = tokens[0]
    if first.token_type in (TokenType.SELECT, TokenType.WITH, TokenType.L_PAREN):
        return
    word = first.text.upper()
    reason = _FIRST_WORD_REASONS.get(word, f"{word} is not a SELECT")
    raise QueryRefused(reason)


def _inspect(tree: exp.Query) -> dict[str, str]:
    """Walk the whole tree: refuse what reads or writes outside, collect the placeholders."""
    placeholders: dict[str, str] = {}
    for node in tree.walk():
        if isinstance(node, _WRITES):
            raise QueryRefused(f"it contains a {node.key.upper()} statement")
        if node.args.get("settings"):
            raise QueryRefused(
                "SETTINGS clauses are refused (they could lift the read-only restriction); "
                "footfall sets the settings a query runs with"
            )
        if node.args.get("format") and isinstance(node, exp.Query):
            raise QueryRefused(
                "FORMAT clauses are refused: footfall fetches results as Arrow "
                "(choose the output format with the CLI's --format)"
            )
        if isinstance(node, exp.Table):
            _check_table(node)
        elif isinstance(node, exp.Func):
            name = function_name(node)
            if name in OUTSIDE_FUNCTIONS:
                raise QueryRefused(f"function {name}() reads outside ClickHouse's tables")
        elif isinstance(node, exp.Placeholder):
            _collect(node, placeholders)
    return placeholders


def _check_table(table: exp.Table) -> None:
    source = table.this
    if isinstance(source, exp.Placeholder):
        raise QueryRefused(
            "a table given as an {name:Identifier} parameter cannot be checked; "
            "name the table in the SQL text"
        )
    if isinstance(source, exp.Func):
        name = function_name(source)
        if name not in SAFE_TABLE_FUNCTIONS:
            raise QueryRefused(
                f"table function {name}() is refused: table functions read files, URLs and "
                f"other systems; only {', '.join(sorted(SAFE_TABLE_FUNCTIONS))} are allowed"
            )


def _collect(node: exp.Placeholder, placeholders: dict[str, str]) -> None:
    kind = node.args.get("kind")
    name = node.name
    if not name or kind is None:
        raise QueryRefused(
            "client-side placeholders (?, %s, :name) are refused; footfall binds values "
            "server-side only: write {name:Type}, e.g. WHERE actor = {actor:String}"
        )
    type_text = kind.sql(DIALECT) if isinstance(kind, exp.Expr) else str(kind)
    if type_text.lower() == "identifier":
        raise QueryRefused(
            f"{{{name}:Identifier}} parameters are refused: name tables and columns in the "
            "SQL text, so footfall can check what the query reads"
        )
    previous = placeholders.setdefault(name, type_text)
    if previous != type_text:
        raise QueryRefused(f"parameter {name!r} is declared as both {previous} and {type_text}")


def _unparseable(exc: SqlglotError) -> str:
    first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return (
        f"footfall could not parse it as ClickHouse SQL ({first}); it runs only queries it "
        "can check are read-only"
    )
