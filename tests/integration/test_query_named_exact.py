"""Named queries give the exact answer of `activities FINAL` over parts that still hold
duplicates, superseded versions, late older versions and tombstones.

Rows go straight into ClickHouse, as sync writes them, in separate inserts (separate parts, no
merge in between), so every query must collapse versions itself. Each answer is compared with
the same aggregate computed in Python over the activities as they stand (the latest version of
each identity, tombstones gone). Runs on the embedded engine and on the HTTP server.
"""

from __future__ import annotations

import itertools
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import polars as pl
import pytest

import query
from footfall import Activity, Settings, load_settings
from footfall._clickhouse import ClickHouse, connect
from footfall._migrate import migrate
from footfall._synthetic import synthetic_activities
from sync._batch import rows_to_arrow
from sync._decode import Row, flatten_attributes

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
START = NOW - timedelta(days=6)
STEPS = ["store-pageviews", "add-to-cart", "purchase"]


@dataclass
class Stored:
    """The rows as inserted and the activities they leave (latest version, not deleted)."""

    live: list[Row]
    deleted: list[Row]
    updated: list[Row]


def _row(activity: Activity, *, version: int, deleted: int = 0, **attrs: str) -> Row:
    attributes = flatten_attributes({**activity.attributes, **attrs})
    return Row(
        activity.event_id,
        activity.actor,
        activity.type,
        activity.target,
        activity.ts_ms,
        attributes,
        "dynamodb",
        version,
        deleted,
    )


def _load(ch: ClickHouse) -> Stored:
    acts = list(synthetic_activities(1500, seed=29, actors=40, days=9, end=NOW))
    base = [_row(a, version=10) for a in acts]
    # five inserts, five parts: the activities; replays of some; newer versions of others
    # (attribute changes, tombstones); older versions that arrive late and must lose
    replays = base[:200]
    updated = [_row(a, version=11, browser="Lynx") for a in acts[200:260]]
    tombstones = [_row(a, version=11, deleted=1) for a in acts[260:330]]
    late = [_row(a, version=3, browser="old") for a in acts[330:400]]
    # an activity deleted and then restored keeps counting
    restored = [_row(a, version=12) for a in acts[260:270]]
    for rows in (base, replays, updated + late, tombstones, restored):
        ch.insert_arrow("activities", rows_to_arrow(rows), dedup_token=None)
    latest: dict[str, Row] = {}
    for row in itertools.chain(base, replays, updated, late, tombstones, restored):
        if row.event_id not in latest or row.version >= latest[row.event_id].version:
            latest[row.event_id] = row
    live = [r for r in latest.values() if not r.is_deleted]
    gone = [r for r in latest.values() if r.is_deleted]
    return Stored(live, gone, updated)


@dataclass
class Env:
    ff: query.Footfall
    stored: Stored
    settings: Settings
    database: str


@pytest.fixture(scope="module", params=["embedded", "server"])
def env(request: pytest.FixtureRequest, chdb_url: str) -> Iterator[Env]:
    url = chdb_url if request.param == "embedded" else request.getfixturevalue("clickhouse_url")
    name = f"nq_{uuid.uuid4().hex[:10]}"
    admin = connect(load_settings(clickhouse_url=url))
    admin.command(f"CREATE DATABASE {name}")
    settings = load_settings(clickhouse_url=url)
    writer = connect(settings, database=name)
    try:
        migrate(writer)
        stored = _load(writer)
        parts = writer.query_arrow(
            "SELECT count() AS n FROM system.parts WHERE database = currentDatabase() "
            "AND table = 'activities' AND active"
        ).column("n")[0]
        assert parts.as_py() >= 5, "the versions must sit in separate parts"
        with query.connect(settings, database=name) as ff:
            yield Env(ff, stored, settings, name)
    finally:
        writer.close()
        admin.command(f"DROP DATABASE IF EXISTS {name} SYNC")
        admin.close()


def _ts(row: Row) -> datetime:
    return datetime.fromtimestamp(row.ts_ms / 1000, UTC)


def _in_window(row: Row, start: datetime = START, end: datetime = NOW) -> bool:
    return start <= _ts(row) < end


def test_the_fixture_holds_every_kind_of_version(env: Env) -> None:
    assert env.stored.deleted and env.stored.updated
    total = env.ff.sql("SELECT count() AS n FROM activities")["n"][0]
    assert total == len(env.stored.live)


def test_top_targets_is_exact(env: Env) -> None:
    rows = [r for r in env.stored.live if r.type == "store-pageviews" and _in_window(r)]
    counts = Counter(r.target for r in rows)
    actors: dict[str, set[str]] = defaultdict(set)
    for r in rows:
        actors[r.target].add(r.actor)
    expected = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:7]
    top = env.ff.named("top_targets", type="store-pageviews", start=START, end=NOW, limit=7)
    assert list(zip(top["target"], top["activities"], strict=True)) == expected
    assert top["actors"].to_list() == [len(actors[t]) for t, _n in expected]
    assert top["share"].to_list() == pytest.approx([n / len(rows) for _t, n in expected])


def test_daily_unique_actors_is_exact(env: Env) -> None:
    groups: dict[tuple[date, str], list[Row]] = defaultdict(list)
    for r in env.stored.live:
        if _in_window(r):
            groups[_ts(r).date(), r.type].append(r)
    expected = [
        (day, kind, len({r.actor for r in rows}), len(rows))
        for (day, kind), rows in sorted(groups.items())
    ]
    daily = env.ff.named("daily_unique_actors", start=START, end=NOW)
    assert daily.rows() == expected


def test_funnel_first_step_is_exact(env: Env) -> None:
    funnel = env.ff.named("funnel", steps=STEPS, start=START, end=NOW)
    first = {r.actor for r in env.stored.live if r.type == STEPS[0] and _in_window(r)}
    assert funnel["type"].to_list() == STEPS
    assert funnel["actors"][0] == len(first)
    assert funnel["actors"].is_sorted(descending=True)


@pytest.mark.parametrize("kind", ["", "add-to-cart"])
def test_retention_is_exact(env: Env, kind: str) -> None:
    start, end, days = NOW - timedelta(days=7), NOW - timedelta(days=3), 3
    cohort: dict[str, date] = {}
    active: dict[str, set[date]] = defaultdict(set)
    for r in env.stored.live:
        day = _ts(r).date()
        if kind in ("", r.type):
            cohort[r.actor] = min(cohort.get(r.actor, day), day)
        if day >= start.date():
            active[r.actor].add(day)
    counts: Counter[tuple[date, int]] = Counter()
    for actor, first in cohort.items():
        if start.date() <= first < end.date():
            for day in active[actor]:
                if 0 <= (day - first).days <= days:
                    counts[first, (day - first).days] += 1
    expected = [
        (first, n, actors, actors / max(c for (f, _), c in counts.items() if f == first))
        for (first, n), actors in sorted(counts.items())
    ]
    retention = env.ff.named("retention", start=start, end=end, days=days, type=kind)
    assert expected, "the fixture must hold cohorts in the window"
    assert [row[:3] for row in retention.rows()] == [row[:3] for row in expected]
    assert retention["retained"].to_list() == pytest.approx([row[3] for row in expected])


def test_sessions_are_exact_for_an_actor_with_updates_and_deletes(env: Env) -> None:
    touched = {r.actor for r in env.stored.deleted} & {r.actor for r in env.stored.updated}
    actor = sorted(touched)[0]
    rows = [r for r in env.stored.live if r.actor == actor]
    rows.sort(key=lambda r: (r.ts_ms, r.event_id))
    sessions: list[list[Row]] = [[rows[0]]]
    for before, after in itertools.pairwise(rows):
        if after.ts_ms - before.ts_ms > 30 * 60_000:
            sessions.append([])
        sessions[-1].append(after)
    expected = [
        (
            n,
            _ts(group[0]),
            _ts(group[-1]),
            (group[-1].ts_ms - group[0].ts_ms) / 1000,
            len(group),
            len({r.target for r in group}),
            sorted({r.type for r in group}),
        )
        for n, group in enumerate(sessions, 1)
    ]
    found = env.ff.named("sessions", actor=actor)
    assert found.with_columns(pl.col("types").list.sort()).rows() == expected


@pytest.mark.parametrize("readonly", [True, False])
def test_final_reads_only_the_granules_the_actor_bloom_filter_keeps(
    env: Env, readonly: bool
) -> None:
    """Without exact mode's expansion (footfall's query settings): the actor is part of the
    sorting key, so every version of the actor's activities is in a granule the index keeps."""
    actor = sorted({r.actor for r in env.stored.deleted})[0]
    with connect(env.settings, database=env.database, readonly=readonly) as ch:
        plan = ch.query_arrow(
            "EXPLAIN indexes = 1 SELECT count() AS n FROM activities FINAL "
            "WHERE actor = {actor:String}",
            {"actor": actor},
        ).column("explain")
        lines = [str(line) for line in plan.to_pylist()]
        found = ch.query_arrow(
            "SELECT count() AS n FROM activities FINAL WHERE actor = {actor:String}",
            {"actor": actor},
        ).column("n")[0]
    assert any("actor_bloom" in line for line in lines), lines
    assert not any("PrimaryKeyExpand" in line for line in lines), lines
    assert found.as_py() == sum(r.actor == actor for r in env.stored.live)
