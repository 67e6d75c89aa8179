"""Run the selected cases against services started for the run, then write the results."""

from __future__ import annotations

import contextlib
import logging
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console

from ._context import Bench, Case
from ._harness import CaseResult
from ._report import machine, write_results
from ._services import REPO, TOOLS, Services

__all__ = ["CASES", "RESULTS", "run"]

log = logging.getLogger(__name__)

RESULTS = REPO / "benchmarks" / "results"


def _cases() -> tuple[Case, ...]:
    from ._ingest import run_ingest
    from ._reads import run_analytics, run_point_read
    from ._scale import SCALE_QUERIES, run_at_scale, run_hand_off
    from ._sync import run_freshness, run_sync_throughput
    from ._worker_memory import run_worker_memory

    return (
        Case("ingest", ("ingest (a)", "ingest (b)"), run_ingest),
        Case(
            "sync-throughput",
            ("sync throughput", "sync throughput (one event per message)"),
            run_sync_throughput,
        ),
        Case("freshness", ("freshness (p50)", "freshness (p99)"), run_freshness),
        Case("point-read", ("point read (typed)", "point read (routed SQL)"), run_point_read),
        Case("analytics", ("analytics",), run_analytics),
        Case(
            "analytics-at-scale",
            tuple(f"analytics at scale ({name})" for name in SCALE_QUERIES),
            run_at_scale,
        ),
        Case("hand-off", ("hand-off",), run_hand_off),
        Case(
            "worker-memory", ("worker memory (peak)", "worker memory (growth)"), run_worker_memory
        ),
    )


CASES = _cases()


def select(only: Sequence[str]) -> list[Case]:
    """The cases named (all when none are); ValueError names the known ones."""
    if not only:
        return list(CASES)
    known = {case.name: case for case in CASES}
    unknown = [name for name in only if name not in known]
    if unknown:
        raise ValueError(f"unknown case(s) {', '.join(unknown)}; choose from {', '.join(known)}")
    return [case for case in CASES if case.name in only]


def _console() -> Console:
    """Rich's console; wide enough for the table when the output is not a terminal."""
    console = Console()
    return console if console.is_terminal else Console(width=180)


@contextlib.contextmanager
def stopped_by_sigterm() -> Iterator[None]:
    """While inside, SIGTERM exits as Ctrl-C would, through `finally` blocks, so the services a
    run started are stopped (Python's default for SIGTERM ends the process where it stands)."""

    def stop(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may set a handler
        return
    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run(
    *,
    quick: bool = False,
    only: Sequence[str] = (),
    results: Path = RESULTS,
    console: Console | None = None,
) -> int:
    """Run the cases; returns 0, or 1 when a case failed (a missed goal is not a failure)."""
    console = console or _console()
    cases = select(only)
    started_at = datetime.now(UTC)
    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="footfall-bench-"))
    services = Services(work)
    bench = Bench(quick=quick, services=services, work=work, console=console)
    rows: list[CaseResult] = []
    failed: list[str] = []
    with stopped_by_sigterm():
        try:
            for case in cases:
                console.rule(f"{case.name} ({'quick' if quick else 'full'})")
                case_started = time.perf_counter()
                try:
                    rows.extend(case.run(bench))
                except Exception:
                    log.exception("case %s failed", case.name)
                    console.print_exception(max_frames=8)
                    failed.append(case.name)
                console.log(f"{case.name}: {time.perf_counter() - case_started:.1f}s")
        finally:
            services.close()
            shutil.rmtree(work, ignore_errors=True)
    info = machine(
        mode="quick" if quick else "full",
        started=started_at,
        seconds=time.perf_counter() - started,
        tools=TOOLS,
    )
    write_results(results, info, rows, console)
    if failed:
        console.print(f"[bold red]failed cases:[/] {', '.join(failed)}")
        return 1
    return 0
