"""Where results go: a rich table, `latest.json` and a PNG chart, plus the machine they ran on."""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import subprocess
from collections.abc import Sequence
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from ._harness import CaseResult

__all__ = [
    "chart",
    "machine",
    "margin",
    "markdown",
    "results_json",
    "table",
    "write_results",
]

log = logging.getLogger(__name__)

PACKAGES = (
    "chdb",
    "chdb-core",
    "clickhouse-connect",
    "boto3",
    "faust-streaming",
    "aiokafka",
    "polars",
    "pyarrow",
)


def _java() -> str | None:
    try:
        done = subprocess.run(["java", "-version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = (done.stderr or done.stdout).splitlines()
    return lines[0].strip() if lines else None


def _memory_gib() -> float | None:
    try:
        with open("/proc/meminfo") as info:
            for line in info:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 1024**2, 1)
    except OSError:
        return None
    return None


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def machine(*, mode: str, started: datetime, seconds: float, tools: Path) -> dict[str, Any]:
    """The machine and the run: cores, memory, Python, Java, service and package versions."""
    dynamodb = sorted(p.name for p in (tools / "dynamodb-local").glob("*") if p.is_dir())
    kafka = sorted(p.name for p in (tools / "kafka").glob("*") if p.is_dir())
    return {
        "cores": os.cpu_count(),
        "memory_gib": _memory_gib(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "java": _java(),
        "dynamodb_local_npm": dynamodb[-1] if dynamodb else None,
        "kafka": kafka[-1] if kafka else None,
        "versions": {name: _version(name) for name in PACKAGES},
        "mode": mode,
        "started": started.isoformat(timespec="seconds"),
        "seconds": round(seconds, 1),
        "shared": "runs share a 2-core machine with other work: compare ratios, not absolutes",
    }


def results_json(machine_info: dict[str, Any], results: Sequence[CaseResult]) -> dict[str, Any]:
    return {"machine": machine_info, "cases": [r.to_json() for r in results]}


def _number(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def _ratio(value: float) -> str:
    return f"{value:.3g}x" if value >= 0.01 else f"1/{1 / value:,.0f}x" if value else "0x"


def table(results: Sequence[CaseResult], *, title: str) -> Table:
    """The results as a rich table: medians with min-max, ratio with its per-pair range."""
    out = Table(title=title, show_lines=False)
    for column in ("case", "unit", "product (min-max)", "baseline", "baseline (min-max)"):
        out.add_column(column, overflow="fold")
    out.add_column("ratio (pairs)", overflow="fold")
    out.add_column("goal", overflow="fold")
    out.add_column("met")
    for r in results:
        p = r.product
        product = f"{_number(p.median)} ({_number(p.low)}-{_number(p.high)})"
        baseline = ratio = ""
        if r.baseline is not None and r.ratio is not None:
            b = r.baseline
            baseline = f"{_number(b.median)} ({_number(b.low)}-{_number(b.high)})"
            pairs = r.pair_ratios
            ratio = f"{_ratio(r.ratio)} ({_ratio(min(pairs))}-{_ratio(max(pairs))})"
        out.add_row(
            r.name,
            r.unit,
            product,
            "" if r.baseline is None else r.baseline.name,
            baseline,
            ratio,
            r.goal.text,
            "[green]yes[/]" if r.met else "[red]no[/]",
        )
    return out


def markdown(machine_info: dict[str, Any], results: Sequence[CaseResult]) -> str:
    """The results as a Markdown table (for docs/benchmarks.md), with the machine above it."""
    versions = ", ".join(f"{k} {v}" for k, v in machine_info["versions"].items() if v)
    lines = [
        f"Run: {machine_info['mode']}, {machine_info['started']}, "
        f"{machine_info['seconds'] / 60:.0f} min. Machine: {machine_info['cores']} cores, "
        f"{machine_info['memory_gib']} GiB, Python {machine_info['python']}, "
        f"{machine_info['java']}, DynamoDB Local (npm) {machine_info['dynamodb_local_npm']}, "
        f"Kafka {machine_info['kafka']}; {versions}.",
        "",
        "| case | unit | product: median (min-max) | baseline | baseline: median (min-max) "
        "| ratio: median (pairs min-max) | goal | met |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        p = r.product
        baseline = ratio = ""
        if r.baseline is not None and r.ratio is not None:
            b = r.baseline
            baseline = f"{_number(b.median)} ({_number(b.low)}-{_number(b.high)})"
            pairs = r.pair_ratios
            ratio = f"{_ratio(r.ratio)} ({_ratio(min(pairs))}-{_ratio(max(pairs))})"
        lines.append(
            f"| {r.name} | {r.unit} | {_number(p.median)} ({_number(p.low)}-{_number(p.high)}) "
            f"| {'' if r.baseline is None else r.baseline.name} | {baseline} | {ratio} "
            f"| {r.goal.text} | {'yes' if r.met else '**no**'} |"
        )
    return "\n".join(lines) + "\n"


def margin(result: CaseResult) -> float | None:
    """How far the result is from its goal, as a factor: > 1 met, < 1 missed."""
    goal, ratio, value = result.goal, result.ratio, result.product.median
    if goal.kind == "value_at_most":
        return goal.bound / value if value > 0 else None
    if ratio is None or ratio <= 0:
        return None
    return ratio / goal.bound if goal.kind == "ratio_at_least" else goal.bound / ratio


def chart(results: Sequence[CaseResult], path: Path, *, title: str) -> bool:
    """A PNG of each case's margin over its goal (log scale); False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.warning("matplotlib is not installed: no chart (pip install matplotlib)")
        return False
    rows = [(r, m) for r in results if (m := margin(r)) is not None and math.isfinite(m)]
    fig, ax = plt.subplots(figsize=(10, 0.45 * len(rows) + 1.5))
    names = [r.name for r, _ in rows]
    values = [m for _, m in rows]
    colors = ["#2e7d32" if m >= 1 else "#c62828" for m in values]
    ax.barh(names, values, color=colors)
    ax.set_xscale("log")
    ax.set_xlim(min([*values, 1.0]) / 2, max([*values, 1.0]) * 8)  # room for the labels
    ax.axvline(1.0, color="black", linewidth=1)
    ax.invert_yaxis()
    for y, (r, m) in enumerate(rows):
        shown = _ratio(r.ratio) if r.ratio is not None else f"{_number(r.product.median)} {r.unit}"
        ax.annotate(
            f" {shown}  (goal {r.goal.text})", (m, y), va="center", fontsize=8, clip_on=False
        )
    ax.set_xlabel("margin over the goal (> 1: met; log scale)")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def write_results(
    directory: Path,
    machine_info: dict[str, Any],
    results: Sequence[CaseResult],
    console: Console,
) -> Path:
    """Write `latest.json`, `latest.md` (the table for the docs) and `latest.png` into
    `directory`; print the table."""
    directory.mkdir(parents=True, exist_ok=True)
    title = f"footfall benchmarks ({machine_info['mode']}, {machine_info['started']})"
    console.print(table(results, title=title))
    path = directory / "latest.json"
    path.write_text(json.dumps(results_json(machine_info, results), indent=2) + "\n")
    (directory / "latest.md").write_text(markdown(machine_info, results))
    png = directory / "latest.png"
    if chart(results, png, title=title):
        console.print(f"wrote {path} and {png}")
    else:
        console.print(f"wrote {path} (no chart: matplotlib is not installed)")
    return path
