"""Named queries: the `.sql` files of `sql/queries/named/`, run with server-side parameters.

Each file starts with a header comment: `-- <name>: <what it answers>`, then one line per
parameter,

    -- @param <name>  <ClickHouse type> [<min>..<max>] [= <default>]  <what it is>

(the length bounds are for arrays; the default and the text after two spaces are optional;
indented comment lines continue the text). `named_queries()` lists them; the SQL binds each
parameter as a `{name:Type}` placeholder of the same type.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Final

from footfall._migrate import sql_root

from ._errors import ParameterError, UnknownName

__all__ = ["NamedParameter", "NamedQuery", "named_queries", "named_query"]

_PARAM: Final = re.compile(
    r"^@param\s+(?P<name>\w+)\s+(?P<type>\w+(?:\((?:[^()]|\([^()]*\))*\))?)"
    r"(?:\s+\[(?P<low>\d+)\.\.(?P<high>\d+)\])?"
    r"(?:\s*=\s*(?P<default>'[^']*'|\S+(?: \S+)*?))?"
    r"(?:\s{2,}(?P<doc>.*?))?\s*$"
)
_TITLE: Final = re.compile(r"^(?P<name>\w+):\s*(?P<text>.*)$")


@dataclass(frozen=True, slots=True)
class NamedParameter:
    """One parameter of a named query: its ClickHouse type, default (None: required), bounds
    on the number of items (arrays) and what it means."""

    name: str
    type: str
    default: str | None = None
    doc: str = ""
    length: tuple[int, int] | None = None

    def check_length(self, value: Any) -> None:
        if self.length is None or not isinstance(value, list | tuple):
            return
        low, high = self.length
        if not low <= len(value) <= high:
            raise ParameterError(
                self.name, self.type, value, f"give {low} to {high} items, not {len(value)}"
            )


@dataclass(frozen=True, slots=True)
class NamedQuery:
    """A named query: what it answers, its parameters and its SQL."""

    name: str
    description: str
    parameters: tuple[NamedParameter, ...]
    sql: str

    def with_defaults(self, given: dict[str, Any]) -> dict[str, Any]:
        """`given` completed with the defaults of the parameters it leaves out."""
        values = {p.name: p.default for p in self.parameters if p.default is not None}
        values.update(given)
        for parameter in self.parameters:
            parameter.check_length(values.get(parameter.name))
        return values


def named_queries() -> list[NamedQuery]:
    """Every named query, by name."""
    return [_load(path.stem) for path in sorted(_folder().glob("*.sql"))]


def named_query(name: str) -> NamedQuery:
    """The named query `name`; UnknownName lists the known ones otherwise."""
    known = [path.stem for path in sorted(_folder().glob("*.sql"))]
    if not isinstance(name, str) or name not in known:  # never a path built from the name
        shown = name if isinstance(name, str) else repr(name)
        raise UnknownName("named query", shown, f"the named queries are: {', '.join(known)}")
    return _load(name)


def _folder() -> Path:
    return sql_root() / "queries" / "named"


@cache
def _load(name: str) -> NamedQuery:
    text = (_folder() / f"{name}.sql").read_text(encoding="utf-8")
    header: list[str] = []
    for line in text.splitlines():
        if not line.startswith("--"):
            break
        header.append(line[2:].strip())
    description: list[str] = []
    parameters: list[NamedParameter] = []
    docs: list[list[str]] = []
    for line in header:
        if match := _PARAM.match(line):
            default = match["default"]
            if default is not None and default.startswith("'"):
                default = default[1:-1]
            low, high = match["low"], match["high"]
            parameters.append(
                NamedParameter(
                    match["name"],
                    match["type"],
                    default,
                    "",
                    (int(low), int(high)) if low and high else None,
                )
            )
            docs.append([match["doc"] or ""])
        elif parameters and line:
            docs[-1].append(line)
        elif not parameters:
            title = _TITLE.match(line) if not description else None
            description.append(title["text"] if title else line)
    full = [
        NamedParameter(p.name, p.type, p.default, " ".join(d).strip(), p.length)
        for p, d in zip(parameters, docs, strict=True)
    ]
    return NamedQuery(name, " ".join(x for x in description if x).strip(), tuple(full), text)
