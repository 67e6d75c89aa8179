"""The `footfall` command line. The CLI owns user-facing output (rich); libraries only log."""

from __future__ import annotations

import logging
import sys
from typing import Annotated

import typer

from ._cli_common import err, friendly
from ._errors import ConfigError
from ._settings import Settings, load_settings

__all__ = ["app", "main"]


app = typer.Typer(
    name="footfall",
    help="Activity store: point lookups in DynamoDB, analytics in ClickHouse.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
table_app = typer.Typer(help="The DynamoDB activity table.", no_args_is_help=True)
app.add_typer(table_app, name="table")


def settings_from_cli() -> Settings:
    return load_settings()


@app.callback()
def _root(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log at DEBUG level.")] = False,
) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


@app.command()
def version() -> None:
    """Print footfall's version."""
    from . import __version__

    typer.echo(__version__)


@table_app.command("create")
@friendly
def table_create() -> None:
    """Create the activity table (GSIs, Streams, TTL when FOOTFALL_TTL_DAYS is set)."""
    from ._dynamodb import DynamoDB

    settings = settings_from_cli()
    created = DynamoDB(settings).ensure_table()
    state = "created" if created else "already exists"
    err.print(f"table [bold]{settings.table}[/] {state}")


def _add_sub_apps() -> None:
    from ._cli_bench import register as register_bench
    from ._cli_demo import register as register_demo
    from ._cli_faults import register as register_faults
    from ._cli_query import register as register_query
    from ._cli_services import services_app
    from ._cli_sync import migrate_command, sync_app

    app.add_typer(services_app, name="services")
    app.add_typer(sync_app, name="sync")
    app.command("migrate")(migrate_command)
    register_query(app)
    register_demo(app)
    register_bench(app)
    register_faults(app)


_add_sub_apps()


def main() -> None:
    try:
        app()
    except ConfigError as exc:  # raised while reading settings before a command runs
        err.print(f"[bold red]configuration error:[/] {exc}")
        sys.exit(2)
