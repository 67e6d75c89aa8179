"""Seeded, reproducible synthetic activity for the demo, tests and benchmarks (one generator).

Shape of the data: actors browse in sessions (a few to a few dozen activities, seconds to
minutes apart, sessions hours apart), targets are Zipf-skewed (a handful of hot products), and
activity types follow a funnel (many pageviews, fewer add-to-carts, few purchases).
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa  # type: ignore[import-untyped, unused-ignore]  # no stubs yet

from ._activity import Activity

__all__ = ["TYPES", "synthetic_activities", "synthetic_table"]

# type -> relative weight; the funnel narrows from views to purchases
TYPES: dict[str, float] = {
    "store-pageviews": 0.62,
    "search": 0.18,
    "add-to-cart": 0.12,
    "purchase": 0.05,
    "review": 0.03,
}
BROWSERS = ("Chrome", "Safari", "Firefox", "Edge")
COUNTRIES = ("US", "DE", "FR", "BR", "IN", "JP", "GB")


def synthetic_activities(
    count: int,
    *,
    seed: int = 7,
    actors: int | None = None,
    targets: int = 500,
    days: float = 2.0,
    end: datetime | None = None,
) -> Iterator[Activity]:
    """`count` activities spread over the `days` before `end` (default: now), in time order
    within each session. The same arguments always give the same activities (event ids too)."""
    rng = random.Random(seed)
    end = (end or datetime.now(UTC)).replace(microsecond=0)
    span = timedelta(days=days).total_seconds()
    n_actors = actors or max(10, count // 40)
    # Zipf-like target popularity: weight 1/rank^1.1
    target_weights = [1.0 / (rank**1.1) for rank in range(1, targets + 1)]
    type_names = list(TYPES)
    type_weights = list(TYPES.values())
    run = f"syn{seed}-{int(end.timestamp()):x}"  # same seed and end: the same event ids
    produced = 0
    while produced < count:
        actor = f"user-{rng.randrange(n_actors):06d}"
        session_len = min(count - produced, max(1, int(rng.expovariate(1 / 12))))
        at = end - timedelta(seconds=rng.uniform(0, span))
        browser = rng.choice(BROWSERS)
        country = rng.choice(COUNTRIES)
        for _ in range(session_len):
            at += timedelta(seconds=rng.expovariate(1 / 40))
            if at >= end:
                at = end - timedelta(milliseconds=rng.randrange(1, 1000))
            kind = rng.choices(type_names, type_weights)[0]
            product = rng.choices(range(targets), target_weights)[0]
            target = f"/store/products/{product:04d}" if kind != "search" else f"q:{product}"
            attributes: dict[str, object] = {"browser": browser, "country": country}
            if kind == "purchase":
                attributes["amount"] = round(rng.uniform(3, 250), 2)
            produced += 1
            yield Activity(
                actor=actor,
                type=kind,
                target=target,
                ts=at,
                event_id=f"{run}-{produced:010d}",
                attributes=attributes,
                now=end,
            )


def synthetic_table(
    count: int,
    *,
    seed: int = 7,
    actors: int | None = None,
    targets: int = 500,
    days: float = 2.0,
    end: datetime | None = None,
) -> pa.Table:
    """The columnar fast path (for millions of rows): `count` activities with the distributions
    of `synthetic_activities` (sessions, Zipf targets, the type funnel, attributes), drawn with
    numpy and built as Arrow columns, without Activity objects (~30 times faster).

    Seeded and reproducible, but not the same rows as `synthetic_activities` with the same
    arguments (another random stream). Columns: `event_id`, `actor`, `type`, `target`, `ts`
    (ms, UTC) and `attributes` (`map<string, string>` with keys sorted, values as sync writes
    them: strings as is, `amount` as JSON text).
    """
    import numpy as np
    import pyarrow.compute as pc  # type: ignore[import-untyped, unused-ignore]

    rng = np.random.default_rng(seed)
    end = (end or datetime.now(UTC)).replace(microsecond=0)
    end_ms = int(end.timestamp() * 1000)
    span_ms = timedelta(days=days).total_seconds() * 1000
    n_actors = actors or max(10, count // 40)
    # sessions: lengths max(1, floor(Exp(12))), cut so that they add up to `count`
    lengths = np.maximum(1, np.floor(rng.exponential(12.0, size=count // 8 + 16))).astype(np.int64)
    while int(lengths.sum()) < count:  # pragma: no cover - the first draw almost always suffices
        more = np.maximum(1, np.floor(rng.exponential(12.0, size=count // 8 + 16)))
        lengths = np.concatenate([lengths, more.astype(np.int64)])
    ends = np.cumsum(lengths)
    sessions = int(np.searchsorted(ends, count)) + 1
    lengths = lengths[:sessions]
    lengths[-1] -= int(ends[sessions - 1]) - count
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    session = np.repeat(np.arange(sessions), lengths)
    # time: a session starts uniformly in the span; activities follow at Exp(40 s) gaps
    gaps = rng.exponential(40_000.0, size=count)
    within = np.cumsum(gaps) - np.repeat(np.cumsum(gaps)[starts] - gaps[starts], lengths)
    ts = end_ms - rng.uniform(0, span_ms, size=sessions)[session] + within
    late = ts >= end_ms
    ts[late] = end_ms - rng.integers(1, 1000, size=int(late.sum()))
    # what: the funnel of types, Zipf-skewed products (1/rank^1.1), searches as `q:<n>`
    type_names = list(TYPES)
    weights = np.array(list(TYPES.values()))
    kind = rng.choice(len(type_names), size=count, p=weights / weights.sum())
    popularity = 1.0 / np.arange(1, targets + 1) ** 1.1
    product = rng.choice(targets, size=count, p=popularity / popularity.sum())
    search = type_names.index("search")
    target_names = [f"/store/products/{p:04d}" for p in range(targets)]
    target_names += [f"q:{p}" for p in range(targets)]
    target_code = product + targets * (kind == search)
    actor_code = rng.integers(0, n_actors, size=sessions)[session]
    browser = rng.integers(0, len(BROWSERS), size=sessions)[session]
    country = rng.integers(0, len(COUNTRIES), size=sessions)[session]
    purchase = kind == type_names.index("purchase")
    amount = np.round(rng.uniform(3, 250, size=int(purchase.sum())), 2)
    run = f"syn{seed}-{int(end.timestamp()):x}"
    numbers = pc.utf8_lpad(pc.cast(pa.array(np.arange(1, count + 1)), pa.string()), 10, "0")
    return pa.table(
        {
            "event_id": pc.binary_join_element_wise(f"{run}-", numbers, ""),
            "actor": _decoded(actor_code, (f"user-{a:06d}" for a in range(n_actors))),
            "type": _decoded(kind, type_names),
            "target": _decoded(target_code, target_names),
            "ts": pa.array(ts.astype(np.int64), pa.timestamp("ms", tz="UTC")),
            "attributes": _attribute_maps(browser, country, purchase, amount),
        }
    )


def _decoded(codes: Any, names: Iterable[str]) -> pa.Array:
    """Strings by code: a dictionary array decoded to plain strings (in Arrow's C++)."""
    return pa.DictionaryArray.from_arrays(pa.array(codes, pa.int32()), list(names)).cast(
        pa.string()
    )


def _attribute_maps(browser: Any, country: Any, purchase: Any, amount: Any) -> pa.MapArray:
    """`{amount?, browser, country}` per row (keys sorted, as sync flattens attributes)."""
    import numpy as np

    n = len(browser)
    sizes = 2 + purchase.astype(np.int64)
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    first = offsets[:-1]
    # flat positions: [amount] browser country, per row
    key_code = np.empty(int(offsets[-1]), np.int32)
    value_index = np.empty(int(offsets[-1]), np.int64)
    buyers = np.flatnonzero(purchase)
    key_code[first[buyers]] = 0
    value_index[first[buyers]] = 2 * n + np.arange(len(buyers))
    key_code[first + sizes - 2] = 1
    value_index[first + sizes - 2] = np.arange(n)
    key_code[first + sizes - 1] = 2
    value_index[first + sizes - 1] = n + np.arange(n)
    amounts = [json.dumps(float(a)) for a in amount]
    values = pa.concat_arrays(
        [
            _decoded(browser, BROWSERS),
            _decoded(country, COUNTRIES),
            pa.array(amounts, pa.string()),
        ]
    ).take(pa.array(value_index))
    keys = _decoded(key_code, ["amount", "browser", "country"])
    return pa.MapArray.from_arrays(pa.array(offsets, pa.int32()), keys, values)
