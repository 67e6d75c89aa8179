"""`footfall sync backfill` and `footfall sync reconcile`: the repair commands.

`register(sync_app)` adds both to the `sync` sub-app. Progress and notes go to stderr (rich);
the result tables go to stdout.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Final

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ._activity import EARLIEST, LATEST
from ._cli_common import friendly
from ._errors import ConfigError
from ._settings import load_settings

if TYPE_CHECKING:
    from sync._backfill import BackfillReport
    from sync._reconcile import ReconcileReport

__all__ = ["parse_when", "register"]

out = Console()
err = Console(stderr=True)

_RELATIVE: Final = re.compile(r"(\d+)\s*([smhdw])")
_UNITS: Final = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
WHEN_FORMS: Final = "a duration back from now (30m, 24h, 7d, 2w), an ISO-8601 time, or 'all'"


def parse_when(text: str, *, now: datetime, option: str = "--since") -> datetime:
    """`7d`/`24h`/`30m`/`45s`/`2w` before `now`, an ISO-8601 time (UTC unless it says
    otherwise), or `all` (the earliest activity time). ConfigError names the option otherwise."""
    value = text.strip()
    if value.lower() == "all":
        return EARLIEST
    if match := _RELATIVE.fullmatch(value.lower()):
        amount, unit = match.groups()
        try:
            return now - timedelta(**{_UNITS[unit]: int(amount)})
        except OverflowError:
            raise ConfigError(option, text, WHEN_FORMS) from None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ConfigError(option, text, WHEN_FORMS) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def register(sync_app: typer.Typer) -> None:
    """Add `backfill` and `reconcile` to the `footfall sync` sub-app."""
    sync_app.command("backfill")(backfill_command)
    sync_app.command("reconcile")(reconcile_command)


@friendly
def backfill_command(
    segments: Annotated[int, typer.Option(min=1, help="Parallel Scan segments.")] = 4,
    batch_rows: Annotated[int, typer.Option(min=1, help="Rows per ClickHouse insert.")] = 10_000,
) -> None:
    """Copy the whole DynamoDB table into ClickHouse (parallel Scan; safe beside the worker)."""
    from sync._backfill import backfill
    from sync._state import ClickHouseCheckpoints

    from ._clickhouse import connect
    from ._dynamodb import DynamoDB
    from ._migrate import migrate

    settings = load_settings()
    store = DynamoDB(settings)
    estimate = int(store.describe().get("ItemCount") or 0)  # DynamoDB refreshes it every ~6 h
    per_segment = -(-estimate // segments) if estimate else None
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with connect(settings) as ch:
        migrate(ch)
        with Progress(*columns, console=err) as bar:
            tasks = [bar.add_task(f"segment {s}", total=per_segment) for s in range(segments)]

            def progress(segment: int, items: int) -> None:
                task = tasks[segment]
                total = bar.tasks[task].total
                bar.update(task, completed=items, total=max(total or 0, items) or None)

            report = backfill(
                settings,
                ch,
                checkpoints=ClickHouseCheckpoints(ch),
                segments=segments,
                batch_rows=batch_rows,
                progress=progress,
                dynamodb=store,
            )
            for state in report.segments:
                bar.update(tasks[state.segment], completed=state.items, total=state.items)
    out.print(_backfill_table(report))
    colour = "yellow" if report.handover.from_trim_horizon else "dim"
    err.print(f"[{colour}]hand-over:[/] {report.handover.describe()}")
    for warning in report.warnings:
        err.print(f"[bold yellow]warning:[/] {warning}")
    if report.invalid:
        err.print(f"[yellow]{report.invalid} invalid activity item(s) skipped; see the log[/]")


@friendly
def reconcile_command(
    since: Annotated[str, typer.Option(help=f"Window start: {WHEN_FORMS}.")] = "1d",
    until: Annotated[str | None, typer.Option(help="Window end (default: no end).")] = None,
    segments: Annotated[int, typer.Option(min=1, help="Parallel Scan segments.")] = 4,
) -> None:
    """Compare DynamoDB with ClickHouse for a window of activity time and repair ClickHouse."""
    from sync._reconcile import reconcile

    from ._clickhouse import connect
    from ._migrate import migrate

    now = datetime.now(UTC)
    start = parse_when(since, now=now, option="--since")
    end = None if until is None else parse_when(until, now=now, option="--until")
    settings = load_settings()
    with connect(settings) as ch:
        migrate(ch)
        with err.status(f"reconciling {settings.table} from {start:%Y-%m-%d %H:%M} UTC"):
            report = reconcile(settings, ch, since=start, until=end, segments=segments)
    out.print(_reconcile_table(report))
    differing = [g for g in report.groups if not g.matched]
    if differing:
        out.print(_groups_table(report))
    err.print(
        f"{report.scanned:,} item(s) compared in {len(report.groups)} (type, day) group(s), "
        f"{len(differing)} differed; {report.fixed:,} row(s) fixed in {report.duration_s:.1f}s"
    )


def _backfill_table(report: BackfillReport) -> Table:
    table = Table(title=f"backfill of {report.table} ({report.duration_s:.1f}s)")
    for column in ("segment", "items scanned", "rows written", "skipped", "invalid", "batches"):
        table.add_column(column, justify="right")
    for s in report.segments:
        table.add_row(
            str(s.segment), f"{s.items:,}", f"{s.rows:,}", f"{s.skipped:,}", f"{s.invalid:,}",
            f"{s.batches:,}",
        )  # fmt: skip
    table.add_row(
        "total", f"{report.items_scanned:,}", f"{report.rows_written:,}", f"{report.skipped:,}",
        f"{report.invalid:,}", f"{sum(s.batches for s in report.segments):,}", style="bold",
    )  # fmt: skip
    return table


def _reconcile_table(report: ReconcileReport) -> Table:
    end = "" if report.until >= LATEST else f" to {report.until:%Y-%m-%d %H:%M}"
    window = f"{report.since:%Y-%m-%d %H:%M}{end} UTC"
    table = Table(title=f"reconcile of {report.table}, {window}")
    table.add_column("what")
    table.add_column("rows", justify="right")
    table.add_column("done", style="dim")
    for what, count, done in (
        ("missing in ClickHouse", report.missing, "inserted"),
        ("stale in ClickHouse", report.stale, "newer version inserted"),
        ("deleted in DynamoDB", report.deleted, "tombstone inserted"),
        ("expired by TTL", report.retention_kept, "kept (retention)"),
        ("newer in ClickHouse", report.ahead, "left to the stream"),
        ("written during the scan", report.still_there, "left to the stream"),
        ("lost stream ranges", report.trimmed_repaired, "marked repaired"),
        ("invalid items", report.invalid, "skipped (see the log)"),
    ):
        table.add_row(what, f"{count:,}", done)
    return table


def _groups_table(report: ReconcileReport) -> Table:
    table = Table(title="(type, day) groups that differed")
    for column in ("type", "day", "DynamoDB", "ClickHouse before"):
        table.add_column(column, justify="left" if column in ("type", "day") else "right")
    for g in report.groups:
        if not g.matched:
            table.add_row(g.type, g.day.isoformat(), f"{g.dynamodb:,}", f"{g.clickhouse:,}")
    return table
