"""`footfall demo`: the whole product in one process, with a readable report and a chart.

Records synthetic activity (the shared generator) through `Tracker.record_many`, mirrors the
table's stream into ClickHouse with the embedded runner, answers routed and named queries through
`query.connect()`, and draws a PNG. With nothing configured it needs nothing but Python: DynamoDB
is moto in this process and ClickHouse is chDB (see `footfall._demo`); configured endpoints
(`footfall services up`, or real ones) are used instead.

Progress and notes go to stderr, the report to stdout.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.rule import Rule
from rich.table import Table

from ._cli_common import friendly
from ._settings import Settings, load_settings

if TYPE_CHECKING:
    import polars

    from ._activity import Activity
    from ._demo import Mirrored, Recorded
    from ._demo_findings import Answer, Findings

__all__ = ["demo_command", "register", "run_demo"]

out = Console()
err = Console(stderr=True)
DEFAULT_SIZE = 100_000
SHOWN_ROWS = 10


def register(app: typer.Typer) -> None:
    """Add `demo` to the footfall CLI."""
    app.command("demo")(demo_command)


@friendly
def demo_command(
    size: Annotated[
        int, typer.Option(min=1, help="How many synthetic activities to record.")
    ] = DEFAULT_SIZE,
    seed: Annotated[int, typer.Option(help="Seed of the synthetic data.")] = 7,
    chart: Annotated[
        Path | None,
        typer.Option(help="Where to write the PNG chart [default: FOOTFALL_HOME/demo.png]."),
    ] = None,
) -> None:
    """Record synthetic activity, mirror it into ClickHouse, query both stores, draw a chart.

    Needs no services: DynamoDB is moto in this process, ClickHouse is chDB. Configured
    endpoints (FOOTFALL_DYNAMODB_ENDPOINT, FOOTFALL_CLICKHOUSE_URL) are used instead.
    """
    run_demo(load_settings(), size=size, seed=seed, chart=chart)


def run_demo(settings: Settings, *, size: int, seed: int, chart: Path | None = None) -> None:
    """The demo, from generated activity to the chart; see the module docstring."""
    from ._demo import demo_activities, demo_stores, mirror, record, run_prefix
    from ._demo_chart import write_chart
    from ._demo_findings import ask

    began = time.perf_counter()
    end = datetime.now(UTC).replace(microsecond=0)
    with demo_stores(settings) as stores:
        settings = stores.settings
        out.print(Rule("footfall demo"))
        out.print(f"[bold]DynamoDB[/]   {escape(stores.dynamodb)}")
        out.print(f"[bold]ClickHouse[/] {escape(stores.clickhouse)}")
        out.print(
            "[bold]sync[/]       EmbeddedSync: DynamoDB Streams → ClickHouse, in this process"
        )

        with err.status(f"generating {size:,} activities (seed {seed}) ..."):
            activities = demo_activities(size, seed, end)
        start = min(a.ts for a in activities).replace(minute=0, second=0, microsecond=0)
        _describe_data(activities, start, end)

        with _progress("recording") as bar:
            task = bar.add_task("record", total=len(activities))
            recorded = record(settings, activities, lambda n: bar.advance(task, n))
        with _progress("mirroring") as bar:
            task = bar.add_task("mirror", total=recorded.written)
            mirrored = mirror(settings, recorded.written, lambda n: bar.advance(task, n))
        with err.status("asking ..."):
            found = ask(settings, run=run_prefix(activities), start=start, end=end)
        _report_counts(recorded, mirrored, found, settings)
        _report_routed(found, standin=stores.standin)
        _report_named(found)

        path = chart or settings.home / "demo.png"
        with err.status("drawing ..."):
            title = f"footfall demo: {size:,} activities"
            write_chart(found.per_hour, found.top_targets, path, title=title)
        out.print(Rule())
        out.print(f"[bold]chart[/]      {escape(str(path))}")
        for note in stores.notes:
            out.print(f"[bold]data[/]       {escape(note)}", soft_wrap=True)
        out.print(f"[dim]demo done in {time.perf_counter() - began:.0f}s[/]")


def _progress(what: str) -> Progress:
    return Progress(
        TextColumn(f"{what:<10}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
    )


def _describe_data(activities: Sequence[Activity], start: datetime, end: datetime) -> None:
    actors = len({a.actor for a in activities})
    targets = len({a.target for a in activities})
    types = len({a.type for a in activities})
    out.print(
        f"[bold]data[/]       {len(activities):,} synthetic activities of {actors:,} actors on "
        f"{targets:,} targets, {types} types, {start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC "
        "(sessions, Zipf-skewed targets, a view → cart → purchase funnel)"
    )


def _report_counts(recorded: Recorded, mirrored: Mirrored, found: Findings, s: Settings) -> None:
    rate = recorded.written / max(recorded.seconds, 1e-9)
    check = "[green]✓[/]" if recorded.written == found.in_clickhouse else "[red]✗[/]"
    table = Table(title="recorded and mirrored", show_header=False, box=None, padding=(0, 2))
    table.add_column(justify="left", style="bold")
    table.add_column(justify="right")
    table.add_column()
    table.add_row(
        "recorded",
        f"{recorded.written:,}",
        f"Tracker.record_many, {recorded.seconds:.1f}s = {rate:,.0f}/s, BatchWriteItem with "
        f"{s.write_concurrency} in flight"
        + (f", {recorded.duplicates:,} already stored" if recorded.duplicates else ""),
    )
    table.add_row(
        "mirrored",
        f"{mirrored.records:,}",
        f"stream records, EmbeddedSync, {mirrored.seconds:.1f}s = "
        f"{mirrored.records / max(mirrored.seconds, 1e-9):,.0f}/s"
        + (", earlier changes to the table too" if mirrored.records > recorded.written else ""),
    )
    table.add_row(
        "in ClickHouse", f"{found.in_clickhouse:,}", f"this run's activities, FINAL {check}"
    )
    out.print(table)


def _report_routed(found: Findings, *, standin: bool) -> None:
    out.print(Rule("routed queries: query.connect().sql(...)"))
    for answer in found.routed:
        _print_answer(answer)
    same = "the same rows" if found.same_answer else "[red]different rows[/]"
    out.print(f"the point read gave {same} from DynamoDB and from ClickHouse")
    if standin:
        out.print(
            "[dim]moto answers a Query by scanning every item it holds: its times say nothing "
            "about DynamoDB's (single-digit milliseconds)[/]"
        )
    out.print()


def _report_named(found: Findings) -> None:
    out.print(Rule("named queries: query.connect().named(...)"))
    for answer in found.named:
        _print_answer(answer)


def _print_answer(answer: Answer) -> None:
    where = ""
    if answer.route is not None:
        index = f" ({answer.route.index})" if answer.route.index else ""
        where = f" · [bold]{answer.route.route}{index}[/]"
    out.print(f"[bold cyan]{escape(answer.title)}[/]{where} · {answer.ms:,.0f} ms")
    out.print(f"  [dim]{escape(answer.question)}[/]", soft_wrap=True)
    if answer.route is not None:
        out.print(f"  [dim]why: {escape(answer.route.reason)}[/]", soft_wrap=True)
    out.print(_table(answer.frame.select(answer.columns) if answer.columns else answer.frame))


def _table(frame: polars.DataFrame) -> Table:
    shown = frame.head(SHOWN_ROWS)
    more = len(frame) - len(shown)
    table = Table(caption=f"{more:,} more row(s)" if more else None, padding=(0, 1))
    for name, dtype in frame.schema.items():
        table.add_column(name, justify="right" if dtype.is_numeric() else "left")
    for row in shown.iter_rows():
        table.add_row(*(escape(_cell(v)) for v in row))
    return table


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 1 else f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, timedelta):
        return str(value)
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return "" if value is None else str(value)
