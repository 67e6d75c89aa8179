"""Compaction of the closed partitions of `activities` (a maintenance step, run on demand).

Every read of `activities` goes through FINAL, which merges the versions of each activity at
read time across all the parts of a partition. A partition that was merged into one part needs
no merge at read time: FINAL then only drops the tombstones and superseded rows the merge left
(ClickHouse 26.9 reads a lone merged part of a partition without the merging step, and it never
merges across partitions, the partition key `toYYYYMM(ts)` being built from the sorting key).
On 2,000,000 rows in 4 parts a top-targets query took 576 ms with FINAL, 108 ms after
`OPTIMIZE ... FINAL`, 81 ms without FINAL (docs/benchmarks.md).

Only closed partitions (months before the current one) are compacted: they receive few new
rows (late events, updates, deletes of old activities), so one `OPTIMIZE ... FINAL` keeps them
merged for long, whereas the current month keeps receiving parts that ClickHouse's background
merges handle. A later insert into a compacted month makes it a candidate again.

A bulk load (a backfill, an import, the benchmarks' set-up) is the other case: it leaves every
month it touched, the current one too, as a few large parts that all overlap, and ClickHouse's
background merges take their time to combine them (4 parts of 50,000 rows stayed unmerged for
minutes on the chDB server; 10 inserts of 1M rows were left as 5 parts per month). Every FINAL
read then merges them again: on 10M rows in 5 parts per month, the named queries took 4-11 s
under load, and 0.1-1 s once `compact_after_load` had merged each month into one part (36 s for
the 10M rows), with the same answers. So `compact_after_load` merges every partition that holds
several parts, the open month included, and belongs at the end of a bulk load.

Neither is wired into the sync worker; run `compact_closed_partitions` from a scheduler (e.g.
daily) and `compact_after_load` after a bulk load or backfill. OPTIMIZE rewrites the whole
partition: it costs I/O proportional to the month's size and runs synchronously. Rows inserted
meanwhile stay in parts of their own (nothing is lost); a partition that receives them is a
candidate again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING

from ._migrate import read_sql

if TYPE_CHECKING:
    from ._clickhouse import ClickHouse

__all__ = [
    "Compacted",
    "compact_after_load",
    "compact_closed_partitions",
    "compaction_candidates",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Compacted:
    """One partition of `activities` merged into one part: its id, parts and rows before."""

    partition: str
    parts: int
    rows: int


def compaction_candidates(
    ch: ClickHouse, *, today: date | None = None, closed_only: bool = True
) -> list[Compacted]:
    """The partitions of `activities` that hold more than one active part, oldest first: of the
    months before `today`'s (default: the current UTC date), or of every month when not
    `closed_only`."""
    before = f"{(today or datetime.now(UTC).date()):%Y%m}" if closed_only else ""
    found = ch.query_arrow(read_sql("queries/compaction_candidates.sql"), {"before": before})
    return [
        Compacted(str(row["partition_id"]), int(row["parts"]), int(row["rows"]))
        for row in found.to_pylist()
    ]


def compact_closed_partitions(ch: ClickHouse, *, today: date | None = None) -> list[Compacted]:
    """Merge each closed partition of `activities` that holds several parts into one part
    (`OPTIMIZE TABLE activities PARTITION ID ... FINAL`); return what was compacted."""
    return _compact(ch, compaction_candidates(ch, today=today))


def compact_after_load(ch: ClickHouse) -> list[Compacted]:
    """Merge each partition of `activities` that holds several parts into one part, the current
    month too: the last step of a bulk load or backfill. Return what was compacted."""
    return _compact(ch, compaction_candidates(ch, closed_only=False))


def _compact(ch: ClickHouse, candidates: list[Compacted]) -> list[Compacted]:
    for candidate in candidates:
        log.info(
            "compacting activities partition %s (%d parts, %d rows)",
            candidate.partition,
            candidate.parts,
            candidate.rows,
        )
        ch.command(read_sql("queries/compact_partition.sql"), {"partition": candidate.partition})
    return candidates
