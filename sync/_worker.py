"""`footfall sync worker`: prepare ClickHouse and Kafka, then run the Faust worker."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys

from footfall._clickhouse import connect
from footfall._errors import ConfigError
from footfall._kafka import KafkaBridge
from footfall._migrate import migrate
from footfall._settings import Settings

from ._batch import warm_up_arrow
from .app import SyncOptions, create_app

__all__ = ["pin_mmap_threshold", "prepare", "run_worker"]

log = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number
MMAP_THRESHOLD = 128 * 1024  # glibc's initial value


def pin_mmap_threshold(threshold: int = MMAP_THRESHOLD) -> bool:
    """Keep glibc's mmap threshold fixed; False where that does not apply (not glibc).

    glibc raises the threshold (up to 32 MiB) each time a block it had mapped is freed. The
    worker's large transient buffers (Kafka fetches, stream pages, HTTP bodies) then come from
    the heap and fragment it: its RSS ratcheted up by ~2 MB a minute under sustained load while
    the Python heap stayed flat (issue #5). A fixed threshold gives them back to the system.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, threshold))


def prepare(settings: Settings) -> None:
    """Apply the ClickHouse migrations and create the topics with explicit partition counts."""
    with connect(settings) as ch:
        applied = migrate(ch)
        if applied:
            log.info("applied ClickHouse migrations %s", applied)
    target = settings.kafka
    if target is None:
        raise ConfigError("FOOTFALL_KAFKA_BROKER", None, "kafka://host:port")
    bridge = KafkaBridge(target, client_id="footfall-admin")
    try:
        names = [settings.topic("events"), settings.topic("cdc"), settings.topic("dlq")]
        bridge.ensure_topics(names, partitions=settings.topic_partitions)
    finally:
        bridge.close()


def run_worker(settings: Settings, options: SyncOptions, *, loglevel: str = "warning") -> None:
    """Run a worker until it is stopped (SIGTERM / Ctrl-C stop it gracefully).

    Scale out by running more workers with the same settings: Kafka spreads the partitions of
    `footfall.cdc` and `footfall.events` over them; the relay runs on the group's leader.
    """
    if not pin_mmap_threshold():
        log.info("glibc's mmap threshold could not be pinned; RSS may creep under load")
    if settings.clickhouse.mode == "embedded":
        log.warning(
            "the worker writes to embedded chDB at %s: only this process may use that "
            "directory; use a ClickHouse server (FOOTFALL_CLICKHOUSE_URL=http://...) to query "
            "while it runs or to run several workers",
            settings.clickhouse.path,
        )
    prepare(settings)
    warm_up_arrow()
    (settings.home / "faust").mkdir(parents=True, exist_ok=True)
    import faust

    app = create_app(settings, options)
    worker = faust.Worker(app, loglevel=loglevel, quiet=True, redirect_stdouts=False)
    worker.execute_from_commandline()
