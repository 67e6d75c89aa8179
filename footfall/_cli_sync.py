"""`footfall sync ...` and `footfall migrate`: the sync worker, the embedded runner, status."""

from __future__ import annotations

import signal
import threading
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from ._cli_common import friendly
from ._settings import load_settings

__all__ = ["migrate_command", "sync_app"]

out = Console()
err = Console(stderr=True)
sync_app = typer.Typer(
    help="Mirror DynamoDB Streams and Kafka events into ClickHouse.", no_args_is_help=True
)


@friendly
def migrate_command() -> None:
    """Apply the ClickHouse migrations in sql/migrations (safe to run twice)."""
    from ._clickhouse import connect
    from ._migrate import migrate

    with connect(load_settings()) as ch:
        applied = migrate(ch)
    err.print(f"applied {len(applied)} migration(s): {', '.join(applied) or 'none pending'}")


@sync_app.command()
@friendly
def worker(
    metrics_port: Annotated[int, typer.Option(help="Port of /metrics (0: a free one).")] = 6066,
    metrics_host: Annotated[str, typer.Option(help="Address /metrics binds to.")] = "127.0.0.1",
    max_rows: Annotated[int, typer.Option(help="Rows per ClickHouse insert at most.")] = 20_000,
    max_wait: Annotated[float, typer.Option(help="Seconds a row may wait for its batch.")] = 0.25,
    idle_cut: Annotated[
        float, typer.Option(help="Write a batch once its input paused this many seconds.")
    ] = 0.02,
    rollup_interval: Annotated[
        float, typer.Option(help="Seconds between daily-rollup refreshes under load.")
    ] = 1.0,
    relay: Annotated[bool, typer.Option(help="Run the DynamoDB Streams relay (leader).")] = True,
    loglevel: Annotated[str, typer.Option(help="Faust's log level.")] = "warning",
) -> None:
    """Run a Faust sync worker (more processes = more partitions in parallel).

    The defaults are `sync.SyncOptions`' (a test keeps them equal)."""
    from sync._worker import run_worker
    from sync.app import SyncOptions

    options = SyncOptions(
        max_rows=max_rows,
        max_wait_s=max_wait,
        idle_cut_s=idle_cut,
        rollup_interval_s=rollup_interval,
        relay=relay,
        metrics_port=metrics_port,
        metrics_host=metrics_host,
    )
    run_worker(load_settings(), options, loglevel=loglevel)


@sync_app.command("run")
@friendly
def run(
    embedded: Annotated[
        bool, typer.Option("--embedded", help="Relay and sink in this process, no Kafka.")
    ] = False,
    once: Annotated[bool, typer.Option(help="Catch up, then exit.")] = False,
) -> None:
    """Run the embedded runner: DynamoDB Streams straight into ClickHouse (chDB by default)."""
    if not embedded:
        err.print("use `footfall sync run --embedded`, or `footfall sync worker` with Kafka")
        raise typer.Exit(2)
    from sync._embedded import EmbeddedSync

    with EmbeddedSync(load_settings()) as runner:
        if once:
            err.print(f"caught up: {runner.catch_up():,} stream records mirrored")
            return
        done = threading.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: done.set())
        runner.start()
        err.print("mirroring DynamoDB Streams into ClickHouse; Ctrl-C stops")
        while not done.wait(1.0):
            if runner.error is not None:
                raise runner.error


@sync_app.command()
@friendly
def status() -> None:
    """Freshness and lag per source, relay checkpoints, lost ranges, dead letters."""
    from sync._status import sync_status

    from ._clickhouse import connect
    from ._migrate import migrate

    settings = load_settings()
    with connect(settings) as ch:
        migrate(ch)
        report = sync_status(settings, ch)
    now = datetime.now(UTC)
    table = Table(title="footfall sync")
    for column in ("source", "rows", "newest event", "freshness", "last write", "consumer lag"):
        table.add_column(column, justify="right" if column != "source" else "left")
    for s in report.sources:
        age = f"{(now - s.newest_ingest).total_seconds():.1f}s ago" if s.newest_ingest else "-"
        lag = "?" if s.lag_error else "-" if s.lag_messages is None else f"{s.lag_messages:,}"
        table.add_row(
            s.source,
            f"{s.rows:,}",
            s.newest_event.isoformat(timespec="milliseconds") if s.newest_event else "-",
            f"{(now - s.newest_event).total_seconds():.1f}s" if s.newest_event else "-",
            age,
            lag,
        )
    out.print(table)
    err.print(
        f"relay: {report.shards_checkpointed} shard(s) checkpointed; "
        f"{report.unrepaired_ranges} lost stream range(s) awaiting repair; "
        f"{report.dead_letters} dead letter(s) kept in ClickHouse"
    )
    for s in report.sources[:1]:
        if s.lag_error:
            err.print(f"[yellow]consumer lag unknown:[/] {s.lag_error}")
    for note in report.notes:
        err.print(note)


@sync_app.command()
@friendly
def compact(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List the partitions, compact nothing.")
    ] = False,
    all_months: Annotated[
        bool,
        typer.Option("--all", help="The current month too (after a bulk load of history)."),
    ] = False,
) -> None:
    """Merge each closed month of `activities` into one part, so FINAL reads it cheaply.

    Run it from a scheduler (e.g. daily). `--all` merges the current month as well, as
    `footfall sync backfill` does when it ends: worth it after loading history, wasted while a
    worker keeps adding parts to the month. It rewrites each month it lists.
    """
    from ._clickhouse import connect
    from ._compaction import (
        compact_after_load,
        compact_closed_partitions,
        compaction_candidates,
    )

    with connect(load_settings()) as ch:
        if dry_run:
            found = compaction_candidates(ch, closed_only=not all_months)
        else:
            found = compact_after_load(ch) if all_months else compact_closed_partitions(ch)
    which = "months" if all_months else "closed months"
    table = Table("partition", "parts", "rows", title=f"{which} with several parts")
    for item in found:
        table.add_row(item.partition, f"{item.parts:,}", f"{item.rows:,}")
    out.print(table)
    verb = "would compact" if dry_run else "compacted"
    err.print(f"{verb} {len(found)} partition(s) of activities")


def _register_repair() -> None:
    from ._cli_repair import register

    register(sync_app)


_register_repair()
