"""The demo's engine: where the stores are, recording, mirroring (no output: the CLI renders).

With nothing configured, everything runs in this process: DynamoDB is moto's in-process server
(`footfall._moto`, in memory), ClickHouse is chDB on a fresh directory `<FOOTFALL_HOME>/demo/chdb`
(emptied at the start of each demo, kept afterwards for `footfall query`), and the mirror is
`sync.EmbeddedSync`. A configured DynamoDB endpoint (`FOOTFALL_DYNAMODB_ENDPOINT`, e.g. from
`footfall services up`) or ClickHouse URL (`FOOTFALL_CLICKHOUSE_URL`) is used instead.
"""

from __future__ import annotations

import contextlib
import logging
import os.path
import shutil
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from ._activity import Activity
from ._errors import ConfigError, StoreUnavailable
from ._settings import Settings
from ._synthetic import synthetic_activities

__all__ = [
    "CHUNK",
    "Mirrored",
    "Recorded",
    "Stores",
    "demo_activities",
    "demo_stores",
    "mirror",
    "record",
    "run_prefix",
]

log = logging.getLogger(__name__)

CHUNK = 2_000  # activities per record_many call (the progress bar's step)
MARKER = ".footfall-demo"  # marks a directory the demo may empty
IDLE_SECONDS = 5.0  # a configured stream that shows nothing new for this long is caught up

Progress = Callable[[int], None]


@dataclass(frozen=True, slots=True)
class Stores:
    """The settings the demo runs with, and where each store is, in words."""

    settings: Settings
    dynamodb: str
    clickhouse: str
    notes: tuple[str, ...]  # where the demo's data went
    standin: bool  # DynamoDB is the in-process moto server


@contextlib.contextmanager
def demo_stores(settings: Settings) -> Iterator[Stores]:
    """The configured stores, with zero-setup stand-ins for those not configured."""
    with contextlib.ExitStack() as stack:
        notes = []
        standin = not settings.dynamodb_endpoint
        if standin:
            from ._moto import MotoDynamoDB

            endpoint = stack.enter_context(MotoDynamoDB())
            update: dict[str, object] = {"dynamodb_endpoint": endpoint}
            if "target_shards" not in settings.model_fields_set:
                # moto answers every Query by sorting all the items it holds (seconds at 100,000
                # items): one Query per target read, not one per write shard.
                update["target_shards"] = 1
            settings = settings.model_copy(update=update)
            dynamodb = (
                f"moto, in this process, in memory ({endpoint}), "
                f"{settings.target_shards} write shard(s) per target"
            )
            notes.append("DynamoDB's items were in memory and are gone")
        else:
            dynamodb = f"{settings.dynamodb_endpoint}, table {settings.table}"
            notes.append(f"the items stay in DynamoDB table {settings.table}")
        if "clickhouse_url" in settings.model_fields_set:
            clickhouse = str(settings.clickhouse)
            notes.append(f"the rows stay in {clickhouse}")
        else:
            path = fresh_directory(settings.home / "demo" / "chdb")
            settings = settings.model_copy(update={"clickhouse_url": f"chdb://{path}"})
            shown, url = _shown(path)
            clickhouse = f"chDB, in this process, at {shown} (emptied at each demo)"
            notes.append(f"ClickHouse's rows stay in {shown}; to query them:")
            notes.append(f'FOOTFALL_CLICKHOUSE_URL={url} footfall query "SELECT ..."')
        yield Stores(settings, dynamodb, clickhouse, tuple(notes), standin)


def _shown(path: Path) -> tuple[str, str]:
    """The directory as a user would type it (relative when below the working directory), and
    its `chdb://` URL."""
    relative = os.path.relpath(path)
    if relative.startswith(".."):
        return str(path), f"chdb://{path}"
    return relative, f"chdb:///./{relative}"


def fresh_directory(path: Path) -> Path:
    """`path` (absolute) emptied, if the demo made it (a marker beside it says so), else new.

    Refuses a directory it did not make, and one that another process has open.
    """
    from ._clickhouse import directory_locked

    path = path.resolve()
    marker = path.parent / MARKER
    if path.exists():
        if not marker.exists():
            raise ConfigError(
                "FOOTFALL_HOME",
                str(path.parent.parent),
                f"a folder whose demo/chdb the demo made itself ({path} was not made by the "
                "demo: move it away, or set FOOTFALL_HOME elsewhere)",
            )
        if directory_locked(path):
            raise StoreUnavailable(
                "ClickHouse",
                f"{path} is open in another process (a demo or query still running?)",
                code="Locked",
            )
        shutil.rmtree(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    marker.touch()
    return path


def demo_activities(size: int, seed: int, end: datetime) -> list[Activity]:
    """`size` synthetic activities of the shared generator, over the two days before `end`."""
    return list(synthetic_activities(size, seed=seed, end=end))


def run_prefix(activities: Sequence[Activity]) -> str:
    """The event-id prefix that this run's activities share (the generator's run id)."""
    first, last = activities[0].event_id, activities[-1].event_id
    same = 0
    while same < min(len(first), len(last)) and first[same] == last[same]:
        same += 1
    return first[:same]


@dataclass(frozen=True, slots=True)
class Recorded:
    written: int
    duplicates: int
    seconds: float
    fresh_table: bool


def record(settings: Settings, activities: Sequence[Activity], on_progress: Progress) -> Recorded:
    """Record `activities` through one `Tracker` per type with `record_many`, CHUNK at a time.

    On a table created just now nothing can be stored yet, so the existence check
    (`skip_existing`, one BatchGetItem per 100 keys) is left out.
    """
    from ingest import Tracker

    from ._dynamodb import DynamoDB

    store = DynamoDB(settings)  # one client (thread-safe) for every tracker
    by_type: dict[str, list[Activity]] = defaultdict(list)
    for activity in activities:
        by_type[activity.type].append(activity)
    trackers = {name: Tracker(name, settings, store=store) for name in by_type}
    fresh = next(iter(trackers.values())).ensure_table()
    started = time.perf_counter()
    written = duplicates = 0
    for name, items in by_type.items():
        for start in range(0, len(items), CHUNK):
            chunk = items[start : start + CHUNK]
            report = trackers[name].record_many(chunk, skip_existing=not fresh)
            written += report.written
            duplicates += report.duplicates
            on_progress(len(chunk))
    return Recorded(written, duplicates, time.perf_counter() - started, fresh)


@dataclass(frozen=True, slots=True)
class Mirrored:
    records: int
    seconds: float


def mirror(settings: Settings, expected: int, on_progress: Progress) -> Mirrored:
    """Mirror the table's stream into ClickHouse with the embedded runner until it is caught up:
    a round finds nothing after `expected` records, or nothing new comes for IDLE_SECONDS."""
    from sync import EmbeddedSync

    started = time.perf_counter()
    total = 0
    idle_since: float | None = None
    with EmbeddedSync(settings) as runner:
        while True:
            handled = runner.run_once()
            total += handled
            if handled:
                on_progress(handled)
                idle_since = None
                runner.pacing.busy()
                continue
            if total >= expected:
                break
            idle_since = idle_since or time.monotonic()
            if time.monotonic() - idle_since > IDLE_SECONDS:
                log.warning("the stream gave %s records, %s expected", total, expected)
                break
            time.sleep(runner.pacing.idle())
    return Mirrored(total, time.perf_counter() - started)
