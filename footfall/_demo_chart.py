"""The demo's chart: activity per hour by type, and the top targets, as one PNG.

Drawn with matplotlib's Agg canvas on a Figure of its own: no pyplot, no GUI backend, no global
state, so it works headless and in any thread.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import polars

__all__ = ["write_chart"]


def write_chart(
    per_hour: polars.DataFrame, top_targets: polars.DataFrame, path: Path, *, title: str
) -> Path:
    """Write the chart to `path` (PNG; folders created) and return it.

    `per_hour` has columns `hour`, `type`, `activities`; `top_targets` has `target` and
    `activities`, most active first.
    """
    import polars
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    wide = per_hour.pivot(on="type", index="hour", values="activities").sort("hour").fill_null(0)
    totals = per_hour.group_by("type").agg(polars.col("activities").sum())
    types = totals.sort(["activities", "type"], descending=[True, False])["type"].to_list()
    hours = wide["hour"].to_list()

    figure = Figure(figsize=(12, 5), layout="constrained")
    FigureCanvasAgg(figure)
    figure.suptitle(title)
    left, right = figure.subplots(1, 2, width_ratios=[2, 1])
    left.stackplot(hours, *(wide[t].to_list() for t in types), labels=types, alpha=0.85)
    left.set_title("activity per hour, by type (UTC)")
    left.set_ylabel("activities")
    left.legend(loc="upper left", fontsize="small")
    left.tick_params(axis="x", labelrotation=30)

    ranked = top_targets.head(10)
    names = ranked["target"].to_list()[::-1]
    right.barh(names, ranked["activities"].to_list()[::-1], color="tab:blue")
    right.set_title("top targets (store-pageviews)")
    right.set_xlabel("pageviews")
    right.tick_params(axis="y", labelsize="small")

    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png", dpi=110)
    return path
