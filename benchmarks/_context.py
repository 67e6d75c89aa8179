"""What every case gets: the run's mode, its services, a scratch folder and the console."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from rich.console import Console

from ._harness import CaseResult
from ._services import Services

__all__ = ["REPETITIONS", "Bench", "Case"]

N = TypeVar("N", int, float)
REPETITIONS = 5  # measured rounds per case (after the warm-up round)


@dataclass
class Bench:
    quick: bool
    services: Services
    work: Path
    console: Console
    now: datetime = field(default_factory=lambda: datetime.now(UTC).replace(microsecond=0))

    def size(self, full: N, quick: N) -> N:
        """A data size or duration: `full` in a full run, `quick` in a `--quick` one."""
        return quick if self.quick else full

    def step(self, text: str) -> None:
        self.console.log(text)


@dataclass(frozen=True)
class Case:
    """A case group: `--only NAME` selects it; `run` returns its rows of the table."""

    name: str
    rows: tuple[str, ...]  # the names of the rows it reports
    run: Callable[[Bench], list[CaseResult]]
