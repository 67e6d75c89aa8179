"""A scratch ClickHouse database per test: created fresh, dropped after; its parts."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from footfall import Settings
from footfall._clickhouse import ClickHouse, connect
from footfall._migrate import migrate


@contextmanager
def scratch_database(
    settings: Settings, prefix: str, *, migrated: bool = True
) -> Iterator[ClickHouse]:
    """A handle on a new database `<prefix>_<random>` of `settings`' ClickHouse, with every
    migration applied (unless `migrated=False`); the database is dropped afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = connect(settings)
    admin.command(f"CREATE DATABASE {name}")
    handle = connect(settings, database=name)
    try:
        if migrated:
            migrate(handle)
        yield handle
    finally:
        handle.close()
        admin.command(f"DROP DATABASE IF EXISTS {name} SYNC")
        admin.close()


def active_parts(ch: ClickHouse) -> dict[str, int]:
    """Active parts of `activities` per partition id, in `ch`'s database."""
    found = ch.query_arrow(
        "SELECT partition_id, count() AS n FROM system.parts "
        "WHERE database = currentDatabase() AND table = 'activities' AND active "
        "GROUP BY partition_id"
    )
    return {row["partition_id"]: row["n"] for row in found.to_pylist()}
