"""Schema migrations: the `.sql` files of `sql/migrations/`, applied in order, each once.

`migrate(ch)` records every applied file (name, sha256, applied_at) in `footfall_migrations` and
skips it the next time. An applied file must not change afterwards: a changed checksum stops
the run with `MigrationChanged`, because the database no longer matches what the file says; add
a new file instead. A file may hold several statements separated by `;`.

The SQL lives in plain files under `sql_root()` (`<repo>/sql` in a source checkout).
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from ._errors import FootfallError

if TYPE_CHECKING:
    from ._clickhouse import ClickHouse

__all__ = [
    "Migration",
    "MigrationChanged",
    "MigrationError",
    "load_migrations",
    "migrate",
    "pending",
    "read_sql",
    "split_statements",
    "sql_root",
]

log = logging.getLogger(__name__)

_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


class MigrationError(FootfallError):
    """The migration files or their record are inconsistent; nothing further was applied.

    `.name` is the migration file concerned.
    """

    def __init__(self, name: str, message: str) -> None:
        self.name = name
        super().__init__(f"migration {name}: {message}")


class MigrationChanged(MigrationError):
    """An applied migration file was edited afterwards (`.recorded` / `.current` sha256)."""

    def __init__(self, name: str, recorded: str, current: str) -> None:
        self.recorded = recorded
        self.current = current
        super().__init__(
            name,
            f"was applied with sha256 {recorded[:12]}... but the file now has {current[:12]}...; "
            "an applied migration must not change: restore the file and put the change into a "
            "new migration file",
        )


@dataclass(frozen=True, slots=True)
class Migration:
    """One migration file: its name, text and checksum (sha256 of the text, LF line ends)."""

    name: str
    text: str
    sha256: str

    @classmethod
    def of(cls, name: str, text: str) -> Migration:
        normalized = text.replace("\r\n", "\n")
        return cls(name, normalized, hashlib.sha256(normalized.encode()).hexdigest())

    def statements(self) -> list[str]:
        return split_statements(self.text)


def sql_root() -> Path:
    """The directory of footfall's SQL files: `<repo>/sql` in a checkout, else the installed
    data package `footfall_sql` (the same files, shipped in the wheel)."""
    checkout = Path(__file__).resolve().parent.parent / "sql"
    if checkout.is_dir():
        return checkout
    import importlib.util

    spec = importlib.util.find_spec("footfall_sql")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("footfall's SQL files are missing: reinstall footfall")
    return Path(next(iter(spec.submodule_search_locations)))


@cache
def read_sql(relative: str) -> str:
    """The text of one SQL file under `sql_root()`, e.g. `queries/rollup_refresh_days.sql`."""
    return (sql_root() / relative).read_text(encoding="utf-8")


def load_migrations(directory: Path | None = None) -> list[Migration]:
    """The migration files of `directory` (default `sql_root()/migrations`) in apply order."""
    folder = directory if directory is not None else sql_root() / "migrations"
    if not folder.is_dir():
        raise MigrationError(str(folder), "the migrations directory does not exist")
    found: list[Migration] = []
    numbers: dict[str, str] = {}
    for path in sorted(folder.glob("*.sql")):
        match = _NAME.match(path.name)
        if match is None:
            raise MigrationError(path.name, "name must be NNNN_lower_snake.sql, e.g. 0003_x.sql")
        if match.group(1) in numbers:
            raise MigrationError(path.name, f"has the same number as {numbers[match.group(1)]}")
        numbers[match.group(1)] = path.name
        found.append(Migration.of(path.name, path.read_text(encoding="utf-8")))
    return found


def pending(migrations: Sequence[Migration], applied: Mapping[str, str]) -> list[Migration]:
    """The migrations still to apply, given `applied` (name -> recorded sha256).

    Raises MigrationChanged if an applied file's checksum changed. A recorded migration without
    a file (e.g. run by a newer footfall) is logged and left alone.
    """
    for migration in migrations:
        recorded = applied.get(migration.name)
        if recorded is not None and recorded != migration.sha256:
            raise MigrationChanged(migration.name, recorded, migration.sha256)
    known = {m.name for m in migrations}
    for name in sorted(set(applied) - known):
        log.warning("migration %s is recorded as applied but has no file here", name)
    return [m for m in migrations if m.name not in applied]


def migrate(ch: ClickHouse, *, directory: Path | None = None) -> list[str]:
    """Apply the pending migrations in order; return the names applied this time.

    Safe to run again: applied files are skipped. Raises MigrationChanged (nothing applied) if an
    applied file was edited, and the store's error if a statement fails (the file stays
    unrecorded; its statements are written to be safe to apply again).
    """
    migrations = load_migrations(directory)
    for statement in split_statements(read_sql("footfall_migrations.sql")):
        ch.command(statement)
    recorded = ch.query_arrow("SELECT name, sha256 FROM footfall_migrations FINAL").to_pydict()
    applied = dict(zip(recorded["name"], recorded["sha256"], strict=True))
    done: list[str] = []
    for migration in pending(migrations, applied):
        for number, statement in enumerate(migration.statements(), 1):
            try:
                ch.command(statement)
            except FootfallError as exc:
                exc.add_note(f"in migration {migration.name}, statement {number}")
                raise
        ch.command(
            "INSERT INTO footfall_migrations (name, sha256) SELECT {name:String}, {sha256:String}",
            {"name": migration.name, "sha256": migration.sha256},
        )
        log.info("applied migration %s to database %s", migration.name, ch.database)
        done.append(migration.name)
    return done


def split_statements(sql: str) -> list[str]:
    """Split SQL text at the `;` that end statements, not at those inside strings, quoted
    identifiers, comments or heredocs. Statements holding only comments are dropped."""
    statements: list[str] = []
    start = 0
    has_code = False
    for kind, begin, end in _tokens(sql):
        if kind == ";":
            if has_code:
                statements.append(sql[start:begin].strip())
            start, has_code = end, False
        elif kind != "comment":
            has_code = has_code or bool(sql[begin:end].strip())
    if has_code:
        statements.append(sql[start:].strip())
    return statements


def _tokens(sql: str) -> Iterator[tuple[str, int, int]]:
    """(kind, start, end) spans of `sql`: `;`, `comment`, `quoted` or `code`."""
    i, n = 0, len(sql)
    while i < n:
        ch = sql[i]
        if ch == ";":
            yield ";", i, i + 1
            i += 1
        elif sql.startswith("--", i) or sql.startswith("# ", i) or sql.startswith("#!", i):
            end = sql.find("\n", i)
            end = n if end < 0 else end + 1
            yield "comment", i, end
            i = end
        elif sql.startswith("/*", i):
            end = _block_comment_end(sql, i)
            yield "comment", i, end
            i = end
        elif ch in "'\"`":
            end = _quoted_end(sql, i)
            yield "quoted", i, end
            i = end
        elif ch == "$" and (heredoc := _HEREDOC.match(sql, i)) is not None:
            close = sql.find(heredoc.group(0), heredoc.end())
            end = n if close < 0 else close + len(heredoc.group(0))
            yield "quoted", i, end
            i = end
        else:
            j = i + 1
            while j < n and sql[j] not in ";-#/'\"`$":
                j += 1
            yield "code", i, j
            i = j


_HEREDOC = re.compile(r"\$[A-Za-z0-9_]*\$")


def _quoted_end(sql: str, start: int) -> int:
    """The end of a quoted string or identifier: backslash escapes and doubled quotes."""
    quote = sql[start]
    i, n = start + 1, len(sql)
    while i < n:
        if sql[i] == "\\":
            i += 2
        elif sql[i] == quote:
            if i + 1 < n and sql[i + 1] == quote:
                i += 2
            else:
                return i + 1
        else:
            i += 1
    return n  # unterminated: the rest belongs to it, ClickHouse reports the error


def _block_comment_end(sql: str, start: int) -> int:
    """The end of a `/* ... */` comment; ClickHouse allows them nested."""
    depth, i, n = 0, start, len(sql)
    while i < n:
        if sql.startswith("/*", i):
            depth += 1
            i += 2
        elif sql.startswith("*/", i):
            depth -= 1
            i += 2
            if depth == 0:
                return i
        else:
            i += 1
    return n
