"""`footfall query|explain|actor|target|named`: reads through the `query` package.

`register(app)` adds the commands. Results go to stdout: a rich table on a terminal, else CSV
(or `--format csv|json|parquet|table`, `--output FILE`); notes and errors go to stderr.
Times accept ISO-8601 and durations back from now (`30m`, `24h`, `7d`, `2w`); `--param k=v`
values are converted to their placeholder's type (times: the same forms; arrays: a JSON list
or comma-separated items).
"""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Mapping
from datetime import UTC, date, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ._cli_common import friendly
from ._cli_repair import WHEN_FORMS, parse_when
from ._errors import ConfigError
from ._settings import load_settings

if TYPE_CHECKING:
    import polars

    from query import Footfall

__all__ = ["register"]

out = Console()
err = Console(stderr=True)
_TIME_TYPES = ("DateTime", "Date")
TABLE_ROWS = 500  # rows a terminal table shows


class Format(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"
    parquet = "parquet"


FormatOption = Annotated[
    Format | None,
    typer.Option(
        "--format",
        "-f",
        help="table, csv, json or parquet (default: table on a terminal, else csv).",
    ),
]
OutputOption = Annotated[
    Path | None, typer.Option("--output", "-o", help="Write the result to this file.")
]
ParamOption = Annotated[
    list[str] | None,
    typer.Option("--param", "-p", help="A {name:Type} parameter as name=value (repeatable)."),
]


def register(app: typer.Typer) -> None:
    """Add `query`, `explain`, `actor`, `target` and `named` to the footfall CLI."""
    app.command("query")(query_command)
    app.command("explain")(explain_command)
    app.command("actor")(actor_command)
    app.command("target")(target_command)
    app.command("named")(named_command)


@friendly
def query_command(
    sql: Annotated[str, typer.Argument(help="One SELECT; values as {name:Type} parameters.")],
    param: ParamOption = None,
    format: FormatOption = None,
    output: OutputOption = None,
    route: Annotated[
        str, typer.Option(help="auto, dynamodb (point reads only) or clickhouse.")
    ] = "auto",
    fresh: Annotated[
        bool, typer.Option(help="Also count the actor's activities sync has not mirrored yet.")
    ] = False,
) -> None:
    """Run read-only SQL; point reads go to DynamoDB, the rest to ClickHouse."""
    from query._statement import parse_statement

    with _connect() as ff:
        params = _parameters(param, parse_statement(sql).placeholders)
        route_used = ff.explain(sql, params)
        frame = ff.sql(sql, params, route=route, fresh=fresh)  # type: ignore[arg-type]
    err.print(
        f"[dim]{len(frame):,} row(s) from {route if route != 'auto' else route_used.route}[/]"
    )
    _emit(frame, format, output)


@friendly
def explain_command(
    sql: Annotated[str, typer.Argument(help="The SELECT to explain.")],
) -> None:
    """Say which store would answer a query, with which index, and why."""
    with _connect() as ff:
        route = ff.explain(sql)
    out.print(f"[bold]route:[/] {route.route}")
    if route.index:
        out.print(f"[bold]index:[/] {route.index}")
    out.print(f"[bold]why:[/]   {escape(route.reason)}")
    if route.sql:
        out.print(f"[bold]sql:[/]   {escape(route.sql)}")


@friendly
def actor_command(
    actor: Annotated[str, typer.Argument(help="The actor.")],
    type: Annotated[
        str | None, typer.Option("--type", "-t", help="Only this activity type.")
    ] = None,
    since: Annotated[str | None, typer.Option(help=f"From: {WHEN_FORMS}.")] = None,
    limit: Annotated[int, typer.Option(min=0, help="At most this many, newest first.")] = 20,
    format: FormatOption = None,
    output: OutputOption = None,
) -> None:
    """An actor's latest activities (DynamoDB, one Query)."""
    with _connect() as ff:
        if since is None:
            frame = ff.latest(actor, limit, type)
        else:
            now = datetime.now(UTC)
            start = parse_when(since, now=now, option="--since")
            frame = ff.actor_range(actor, start, now, type, limit=limit)
    _emit(frame, format, output)


@friendly
def target_command(
    target: Annotated[str, typer.Argument(help="The target.")],
    type: Annotated[str, typer.Option("--type", "-t", help="The activity type (required).")],
    since: Annotated[str, typer.Option(help=f"From: {WHEN_FORMS}.")] = "24h",
    until: Annotated[str | None, typer.Option(help="Until (default: now).")] = None,
    limit: Annotated[int | None, typer.Option(min=0, help="At most this many.")] = None,
    format: FormatOption = None,
    output: OutputOption = None,
) -> None:
    """Activities of a type on a target (DynamoDB, one Query per write shard)."""
    now = datetime.now(UTC)
    start = parse_when(since, now=now, option="--since")
    end = now if until is None else parse_when(until, now=now, option="--until")
    with _connect() as ff:
        frame = ff.target_range(type, target, start, end, limit)
    _emit(frame, format, output)


@friendly
def named_command(
    name: Annotated[str | None, typer.Argument(help="The named query (omit to list them).")] = None,
    param: ParamOption = None,
    format: FormatOption = None,
    output: OutputOption = None,
    fresh: Annotated[
        bool, typer.Option(help="Also count the actor's activities sync has not mirrored yet.")
    ] = False,
) -> None:
    """Run a named query from sql/queries/named (omit NAME to list them)."""
    from query import named_queries
    from query._named import named_query

    if name is None:
        out.print(_named_table(named_queries()))
        return
    query = named_query(name)
    types = {p.name: p.type for p in query.parameters}
    with _connect() as ff:
        frame = ff.named(name, fresh=fresh, **_parameters(param, types))
    _emit(frame, format, output)


def _connect() -> Footfall:
    import query

    return query.connect(load_settings())


def _parameters(pairs: list[str] | None, types: Mapping[str, str]) -> dict[str, Any]:
    """`name=value` pairs, times and arrays converted for their placeholder's type."""
    now = datetime.now(UTC)
    values: dict[str, Any] = {}
    for pair in pairs or []:
        name, sep, text = pair.partition("=")
        if not sep or not name.strip():
            raise ConfigError("--param", pair, "name=value, e.g. --param actor=bob")
        name = name.strip()
        kind = types.get(name, "")
        values[name] = _convert(text, kind, now, name)
    return values


def _convert(text: str, kind: str, now: datetime, name: str) -> Any:
    base = kind.split("(", 1)[0]
    if base.startswith(_TIME_TYPES):
        try:
            return parse_when(text, now=now, option=f"--param {name}")
        except ConfigError:
            return text  # the query reports a malformed value with its type
    if base == "Array":
        if text.strip().startswith("["):
            try:
                return json.loads(text)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"--param {name}", text, f"a JSON list ({exc})") from None
        return [item.strip() for item in text.split(",") if item.strip()]
    return text


def _emit(frame: polars.DataFrame, format: Format | None, output: Path | None) -> None:
    chosen = format or (Format.table if output is None and sys.stdout.isatty() else Format.csv)
    if chosen is Format.table:
        if output is not None:
            with output.open("w", encoding="utf-8") as handle:
                Console(file=handle, width=200).print(_rich_table(frame))
        else:
            out.print(_rich_table(frame))
        return
    if chosen is Format.parquet:
        import pyarrow.parquet  # type: ignore[import-untyped, unused-ignore]

        target: Any = output if output is not None else io.BytesIO()
        pyarrow.parquet.write_table(frame.to_arrow(), target)
        if output is None:
            sys.stdout.buffer.write(target.getvalue())
        return
    if chosen is Format.json:
        text = json.dumps(_rows(frame), ensure_ascii=False, indent=1)
    else:
        text = _flat(frame).write_csv()
    if output is not None:
        output.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")
    else:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")


def _rows(frame: polars.DataFrame) -> list[dict[str, Any]]:
    """The rows as plain Python values (maps as dicts, times as ISO-8601) for JSON and tables."""
    import pyarrow

    table = frame.to_arrow()
    maps = {f.name for f in table.schema if _is_map(pyarrow, f.type)}
    return [
        {k: _plain(_as_dict(v) if k in maps else v) for k, v in row.items()}
        for row in table.to_pylist()
    ]


def _is_map(pa: Any, kind: Any) -> bool:
    if pa.types.is_map(kind):
        return True
    return bool(  # polars 1 gives a map back as a list of {key, value} structs
        pa.types.is_list(kind)
        and pa.types.is_struct(kind.value_type)
        and [f.name for f in kind.value_type] == ["key", "value"]
    )


def _as_dict(value: Any) -> Any:
    if value is None:
        return None
    return dict((item["key"], item["value"]) if isinstance(item, dict) else item for item in value)


def _plain(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def _flat(frame: polars.DataFrame) -> polars.DataFrame:
    """Nested columns (maps, lists, structs) as JSON text, for CSV."""
    import polars

    nested = [n for n, t in frame.schema.items() if t.is_nested()]
    if not nested:
        return frame
    rows = _rows(frame.select(nested))
    return frame.with_columns(
        polars.Series(n, [json.dumps(r[n], ensure_ascii=False) for r in rows]) for n in nested
    )


def _rich_table(frame: polars.DataFrame) -> Table:
    shown = frame.head(TABLE_ROWS)
    more = len(frame) - len(shown)
    caption = f"{more:,} more row(s): use --format csv or --output FILE" if more else None
    table = Table(caption=caption)
    for name, dtype in frame.schema.items():
        table.add_column(name, justify="right" if dtype.is_numeric() else "left")
    for row in _rows(shown):
        table.add_row(*(escape(_cell(v)) for v in row.values()))
    return table


def _cell(value: Any) -> str:
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return "" if value is None else str(value)


def _named_table(queries: list[Any]) -> Table:
    table = Table(title="named queries (footfall named NAME --param k=v ...)")
    table.add_column("name", style="bold")
    table.add_column("what it answers")
    table.add_column("parameters")
    for q in queries:
        params = "\n".join(
            f"{p.name}: {p.type}" + (f" = {p.default or repr('')}" if p.default is not None else "")
            for p in q.parameters
        )
        table.add_row(q.name, escape(q.description), escape(params))
    return table
