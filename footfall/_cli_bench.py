"""`footfall bench`: run the benchmarks (the `benchmarks` package of a source checkout)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType
from typing import Annotated

import typer

__all__ = ["register"]


def _benchmarks() -> ModuleType:
    """The `benchmarks` package: importable as is, or from the checkout this footfall is in."""
    try:
        return importlib.import_module("benchmarks")
    except ImportError:
        checkout = Path(__file__).resolve().parents[1]
        if not (checkout / "benchmarks" / "__init__.py").is_file():
            raise
        sys.path.insert(0, str(checkout))
        return importlib.import_module("benchmarks")


def register(app: typer.Typer) -> None:
    """Add `bench` to the `footfall` command."""

    @app.command("bench")
    def bench(
        quick: Annotated[
            bool, typer.Option("--quick", help="A smoke run: small data, a few seconds per case.")
        ] = False,
        only: Annotated[
            list[str] | None,
            typer.Option("--only", help="Run only this case group (repeatable)."),
        ] = None,
        results: Annotated[
            Path | None, typer.Option(help="Where to write latest.json and latest.png.")
        ] = None,
    ) -> None:
        """Measure footfall against its baselines (starts and stops its own services)."""
        try:
            benchmarks = _benchmarks()
        except ImportError as exc:
            raise typer.BadParameter(
                f"the benchmarks run from a source checkout of footfall ({exc})"
            ) from None
        known = [case.name for case in benchmarks.CASES]
        unknown = [name for name in only or [] if name not in known]
        if unknown:
            raise typer.BadParameter(
                f"unknown case {', '.join(unknown)}; choose from {', '.join(known)}",
                param_hint="--only",
            )
        code = benchmarks.run(quick=quick, only=only or [], results=results or benchmarks.RESULTS)
        raise typer.Exit(code)
