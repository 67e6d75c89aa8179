"""The measuring core (pure: no services, no clock of its own): samples, goals, results.

A case measures the product and its baseline in the same run, alternating them (ABBA order:
product first in even rounds, baseline first in odd ones), so that drift on a shared machine
hits both sides alike. Each side is a list of samples in the case's unit; a case reports the
medians, the min-max range and the ratio per pair (product / baseline, same unit), whose
median is the case's ratio.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "CaseResult",
    "Goal",
    "Side",
    "alternate",
    "percentile",
    "repeat",
]

GoalKind = Literal["ratio_at_least", "ratio_at_most", "value_at_most"]


def percentile(values: Sequence[float], q: float) -> float:
    """The `q`-th percentile (0..100) by linear interpolation between closest ranks."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} outside 0..100")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True, slots=True)
class Side:
    """One side of a case (the product or a baseline): its name and its samples."""

    name: str
    samples: tuple[float, ...]

    def __post_init__(self) -> None:
        if not self.samples:
            raise ValueError(f"{self.name}: no samples")

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def low(self) -> float:
        return min(self.samples)

    @property
    def high(self) -> float:
        return max(self.samples)


@dataclass(frozen=True, slots=True)
class Goal:
    """What the product side holds: a bound on the ratio (product / baseline) or on the value.

    `text` is how the issue states it, e.g. "≥ 5x (a)" or "p50 ≤ 300 ms".
    """

    kind: GoalKind
    bound: float
    text: str

    def met(self, value: float, ratio: float | None) -> bool:
        if self.kind == "value_at_most":
            return value <= self.bound
        if ratio is None:
            return False
        if self.kind == "ratio_at_least":
            return ratio >= self.bound
        return ratio <= self.bound


@dataclass(frozen=True, slots=True)
class CaseResult:
    """One row of the results table (one entry of `latest.json`)."""

    name: str
    unit: str
    product: Side
    goal: Goal
    baseline: Side | None = None
    note: str = ""

    @property
    def pair_ratios(self) -> tuple[float, ...]:
        """product / baseline per alternating pair (empty without a baseline)."""
        if self.baseline is None:
            return ()
        return tuple(
            p / b if b else math.inf
            for p, b in zip(self.product.samples, self.baseline.samples, strict=False)
        )

    @property
    def ratio(self) -> float | None:
        """The median of the per-pair ratios; None without a baseline."""
        ratios = self.pair_ratios
        return statistics.median(ratios) if ratios else None

    @property
    def met(self) -> bool:
        return self.goal.met(self.product.median, self.ratio)

    def to_json(self) -> dict[str, Any]:
        """The entry of `latest.json`: exactly the keys the issue names."""
        ratio = self.ratio
        return {
            "name": self.name,
            "unit": self.unit,
            "product_median": _finite(self.product.median),
            "baseline_name": None if self.baseline is None else self.baseline.name,
            "baseline_median": None if self.baseline is None else _finite(self.baseline.median),
            "ratio": None if ratio is None else _finite(ratio),
            "goal": self.goal.text,
            "met": self.met,
        }


def _finite(value: float) -> float | None:
    """JSON has no infinity or NaN: those become null."""
    return round(value, 6) if math.isfinite(value) else None


def alternate(
    product: Callable[[int], float],
    baseline: Callable[[int], float],
    *,
    repetitions: int,
    warmup: int = 1,
) -> tuple[list[float], list[float]]:
    """Run warm-up rounds (discarded), then `repetitions` measured rounds of both sides.

    Each callable gets the round number (warm-up rounds are negative) and returns one sample.
    Rounds alternate the order (ABBA) so neither side always runs on a warmer machine.
    """
    if repetitions < 1:
        raise ValueError("repetitions must be >= 1")
    for round_ in range(-warmup, 0):
        product(round_)
        baseline(round_)
    products: list[float] = []
    baselines: list[float] = []
    for round_ in range(repetitions):
        if round_ % 2 == 0:
            products.append(product(round_))
            baselines.append(baseline(round_))
        else:
            baselines.append(baseline(round_))
            products.append(product(round_))
    return products, baselines


def repeat(measure: Callable[[int], float], *, repetitions: int, warmup: int = 1) -> list[float]:
    """`alternate` for a case without a baseline: warm-up rounds, then measured rounds."""
    if repetitions < 1:
        raise ValueError("repetitions must be >= 1")
    for round_ in range(-warmup, 0):
        measure(round_)
    return [measure(round_) for round_ in range(repetitions)]
