"""`footfall faults [--long]`: run the fault matrix (tests/faults) and show what it measured.

The suite lives with the tests of a source checkout, not in the installed package: this command
runs pytest on `<checkout>/tests/faults` (marker `faults`) and then prints the figures the
suite saved in `.footfall/faults/<short|long>.json` (events sent, rows in ClickHouse, lost,
duplicated, recovery time). Services come from the environment (FOOTFALL_DYNAMODB_ENDPOINT,
FOOTFALL_KAFKA_BROKER, FOOTFALL_CLICKHOUSE_URL) or are started by the test session.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from ._cli_common import err

__all__ = ["register"]

CHECKOUT = Path(__file__).resolve().parents[1]
SUITE = CHECKOUT / "tests" / "faults"
RESULTS = CHECKOUT / ".footfall" / "faults"
out = Console()


def register(app: typer.Typer) -> None:
    """Add `faults` to the footfall CLI."""
    app.command("faults")(faults_command)


def faults_command(
    long: Annotated[
        bool, typer.Option("--long", help="Long volumes (minutes per row) instead of CI's.")
    ] = False,
    keyword: Annotated[
        str | None, typer.Option("-k", help="Only tests matching this pytest expression.")
    ] = None,
) -> None:
    """Run the fault matrix against real services; exit with pytest's status."""
    if not SUITE.is_dir():
        err.print(
            f"[bold red]error:[/] no fault suite at {SUITE}; "
            "`footfall faults` runs from a source checkout of footfall"
        )
        raise typer.Exit(2)
    argv = [sys.executable, "-m", "pytest", str(SUITE), "-m", "faults", "-p", "no:cacheprovider"]
    if long:
        argv.append("--long")
    if keyword:
        argv += ["-k", keyword]
    volume = "long" if long else "short"
    saved = RESULTS / f"{volume}.json"
    before = saved.stat().st_mtime if saved.exists() else None
    env = {**os.environ, "FOOTFALL_FAULTS_LONG": "1" if long else "0"}
    err.print(f"running the {volume} fault suite: {' '.join(argv[1:])}")
    code = subprocess.run(argv, cwd=CHECKOUT, env=env, check=False).returncode
    if saved.exists() and saved.stat().st_mtime != before:
        out.print(results_table(json.loads(saved.read_text())))
    raise typer.Exit(code)


def results_table(data: dict[str, Any]) -> Table:
    """The saved figures of a run as a table, one row of the matrix per line."""
    table = Table(title=f"fault matrix ({data.get('volume')}, {data.get('finished')})")
    for column in ("fault", "sent", "rows FINAL", "lost", "extra", "duplicated", "recovery", "s"):
        table.add_column(column, justify="left" if column == "fault" else "right")
    for row in data.get("rows", []):
        recovery = row.get("recovery_s")
        table.add_row(
            str(row["row"]),
            f"{row['sent']:,}",
            f"{row['rows_final']:,}",
            str(row["lost"]),
            str(row["extra"]),
            str(row["duplicated"]),
            "-" if recovery is None else f"{recovery:.1f}s",
            f"{row['seconds']:.0f}",
        )
    return table
