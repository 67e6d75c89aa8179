"""Seeded, reproducible synthetic activity for the demo, tests and benchmarks (one generator).

Shape of the data: actors browse in sessions (a few to a few dozen activities, seconds to
minutes apart, sessions hours apart), targets are Zipf-skewed (a handful of hot products), and
activity types follow a funnel (many pageviews, fewer add-to-carts, few purchases).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from ._activity import Activity

__all__ = ["TYPES", "synthetic_activities"]

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
