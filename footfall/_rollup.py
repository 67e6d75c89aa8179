"""The daily rollup (`activities_daily`): kept equal to the aggregate over `activities FINAL`.

Per (type, target, UTC day): `activities` (count) and `actors` (distinct actors), after
duplicates are collapsed, the latest version of each activity wins and user-deleted activities
are gone. An insert-triggered materialized view cannot do that (it would count replays and old
versions and never take back a delete), so the rollup is recomputed per day instead:

    ch.insert_arrow("activities", batch, dedup_token=token)
    refresh_rollup(ch, days)   # the days of rows inserted since the last refresh

`refresh_rollup` reads only the given days of `activities FINAL` and writes one new row per
group (the newest write wins by its version), so it is exact for those days, including late
rows for old days, and is idempotent: refreshing a day again recomputes the same rows.
`refresh_rollup(ch, None)` rebuilds everything (repair, first fill).

Who calls it: the sync runners through `sync._rollup.RollupKeeper`, coalesced and off the
acknowledgement path, with a persisted watermark over `activities.ingested_at` that makes a
crash between an insert and its refresh harmless; the backfill and reconcile per batch.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any

from ._migrate import read_sql

if TYPE_CHECKING:
    import pyarrow  # type: ignore[import-untyped, unused-ignore]  # no stubs yet

    from ._clickhouse import ClickHouse

__all__ = ["ROLLUP", "days_of", "refresh_rollup", "rollup_mismatches"]

log = logging.getLogger(__name__)

ROLLUP = "activities_daily"  # the view to read; its rows live in activities_daily_rows


def refresh_rollup(ch: ClickHouse, days: Collection[date] | None) -> None:
    """Bring the daily rollup of `days` (UTC dates; None: all days) up to date.

    Call it after the rows of those days were inserted; calling it again for the same days is
    harmless.
    """
    if days is None:
        ch.command(read_sql("queries/rollup_refresh_all.sql"))
        log.info("rebuilt the daily rollup")
        return
    if not days:
        return
    ordered = sorted(days)
    parameters: dict[str, Any] = {
        "days": ordered,
        "start": datetime.combine(ordered[0], time(), UTC),
        "end": datetime.combine(ordered[-1] + timedelta(days=1), time(), UTC),
    }
    ch.command(read_sql("queries/rollup_refresh_days.sql"), parameters)
    log.debug(
        "refreshed the daily rollup of %s day(s), %s to %s", len(ordered), ordered[0], ordered[-1]
    )


def days_of(rows: pyarrow.Table) -> set[date]:
    """The UTC days of the `ts` column of a batch of `activities` rows."""
    import pyarrow.compute as pc  # type: ignore[import-untyped, unused-ignore]

    column = rows.column("ts")
    days = pc.unique(pc.cast(column, "date32"))  # ts is UTC, so its date is the UTC day
    return {day for day in days.to_pylist() if day is not None}


def rollup_mismatches(ch: ClickHouse) -> pyarrow.Table:
    """The groups where the rollup differs from the aggregate over `activities FINAL` (none: empty).

    Reads the whole table; meant for tests and an occasional check, not for every batch.
    """
    return ch.query_arrow(read_sql("queries/rollup_mismatches.sql"))
