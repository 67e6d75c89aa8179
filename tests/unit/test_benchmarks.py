"""The benchmark harness without services: statistics, ratios, goals and the results' shape.

No timing is asserted anywhere: benchmarks measure, tests only check the arithmetic.
"""

from __future__ import annotations

import json
import math
import os
import signal
import time

import pytest

from benchmarks import CASES, CaseResult, Goal, Side
from benchmarks._harness import alternate, percentile, repeat
from benchmarks._report import margin, markdown, results_json
from benchmarks._runner import select, stopped_by_sigterm
from benchmarks._worker_memory import memory_results

KEYS = [
    "name",
    "unit",
    "product_median",
    "baseline_name",
    "baseline_median",
    "ratio",
    "goal",
    "met",
]
ISSUE_ROWS = [
    "ingest",
    "sync throughput",
    "freshness",
    "point read",
    "analytics",
    "analytics at scale",
    "hand-off",
    "worker memory",
]


def test_percentile_interpolates_between_closest_ranks() -> None:
    values = [5.0, 1.0, 3.0, 2.0, 4.0]
    assert percentile(values, 50) == 3.0
    assert percentile(values, 0) == 1.0
    assert percentile(values, 100) == 5.0
    assert percentile(values, 25) == 2.0
    assert percentile([10.0, 20.0], 99) == pytest.approx(19.9)
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_a_side_reports_median_and_range_and_needs_samples() -> None:
    side = Side("x", (3.0, 1.0, 2.0, 10.0))
    assert (side.median, side.low, side.high) == (2.5, 1.0, 10.0)
    with pytest.raises(ValueError):
        Side("empty", ())


def test_alternate_runs_warm_up_first_then_abba_rounds() -> None:
    calls: list[tuple[str, int]] = []

    def product(round_: int) -> float:
        calls.append(("p", round_))
        return 10.0 + round_

    def baseline(round_: int) -> float:
        calls.append(("b", round_))
        return 5.0 + round_

    products, baselines = alternate(product, baseline, repetitions=4, warmup=1)
    assert calls == [
        ("p", -1),
        ("b", -1),
        ("p", 0),
        ("b", 0),
        ("b", 1),
        ("p", 1),
        ("p", 2),
        ("b", 2),
        ("b", 3),
        ("p", 3),
    ]
    assert products == [10.0, 11.0, 12.0, 13.0]  # warm-up rounds are discarded
    assert baselines == [5.0, 6.0, 7.0, 8.0]
    with pytest.raises(ValueError):
        alternate(product, baseline, repetitions=0)


def test_repeat_discards_warm_up() -> None:
    assert repeat(float, repetitions=3, warmup=2) == [0.0, 1.0, 2.0]


def test_ratio_is_the_median_of_per_pair_ratios() -> None:
    result = CaseResult(
        "ingest (b)",
        "activities/s",
        Side("product", (90.0, 100.0, 300.0)),
        Goal("ratio_at_least", 0.9, "≥ 90 % of (b)"),
        Side("bare", (100.0, 100.0, 100.0)),
    )
    assert result.pair_ratios == (0.9, 1.0, 3.0)
    assert result.ratio == 1.0
    assert result.met


@pytest.mark.parametrize(
    ("kind", "bound", "product", "baseline", "met"),
    [
        ("ratio_at_least", 5.0, 600.0, 100.0, True),
        ("ratio_at_least", 5.0, 400.0, 100.0, False),
        ("ratio_at_most", 1.15, 5.5, 5.0, True),
        ("ratio_at_most", 1.15, 6.0, 5.0, False),
        ("ratio_at_most", 0.001, 10.0, 20_000.0, True),
        ("value_at_most", 300.0, 250.0, None, True),
        ("value_at_most", 300.0, 301.0, None, False),
    ],
)
def test_goals_judge_the_ratio_or_the_value(
    kind: str, bound: float, product: float, baseline: float | None, met: bool
) -> None:
    result = CaseResult(
        "case",
        "unit",
        Side("p", (product,)),
        Goal(kind, bound, "text"),  # type: ignore[arg-type]
        None if baseline is None else Side("b", (baseline,)),
    )
    assert result.met is met
    factor = margin(result)
    assert factor is not None and (factor >= 1) is met


def test_a_ratio_goal_without_a_baseline_is_not_met() -> None:
    result = CaseResult("c", "u", Side("p", (1.0,)), Goal("ratio_at_least", 1, "t"))
    assert result.ratio is None and not result.met


def test_json_entry_has_exactly_the_issue_keys_and_no_infinities() -> None:
    with_baseline = CaseResult(
        "sync throughput",
        "events/s",
        Side("worker", (100.0, 120.0)),
        Goal("ratio_at_least", 0.5, "≥ 50 % of bare"),
        Side("bare", (0.0, 200.0)),
    )
    without = CaseResult(
        "freshness (p50)", "ms", Side("w", (120.0,)), Goal("value_at_most", 300, "t")
    )
    document = results_json({"cores": 2}, [with_baseline, without])
    assert list(document) == ["machine", "cases"]
    first, second = document["cases"]
    assert list(first) == KEYS and list(second) == KEYS
    assert first["baseline_name"] == "bare" and first["baseline_median"] == 100.0
    assert first["ratio"] is None or math.isfinite(first["ratio"])
    assert second["baseline_name"] is None and second["ratio"] is None
    assert second["met"] is True
    json.loads(json.dumps(document, allow_nan=False))  # strict JSON


def test_cases_cover_every_row_of_the_issue_table() -> None:
    rows = [row for case in CASES for row in case.rows]
    for issue_row in ISSUE_ROWS:
        assert any(row == issue_row or row.startswith(issue_row + " (") for row in rows), issue_row
    assert len(rows) == len(set(rows))


def test_select_picks_named_cases_in_run_order_and_refuses_unknown() -> None:
    assert [c.name for c in select([])] == [c.name for c in CASES]
    assert [c.name for c in select(["hand-off", "ingest"])] == ["ingest", "hand-off"]
    with pytest.raises(ValueError, match="choose from"):
        select(["nope"])


def test_worker_memory_windows_give_peaks_and_growth() -> None:
    duration = 100.0
    # warm-up (first 20 s) is ignored; then RSS climbs 1 MB per 10 s
    samples = [(t, 500.0 if t < 20 else 200.0 + (t - 20) / 10) for t in range(100)]
    peak, growth = memory_results([(float(t), m) for t, m in samples], duration)
    assert peak.product.samples == pytest.approx((201.5, 203.1, 204.7, 206.3, 207.9))
    assert peak.met  # ≤ 400 MB
    assert growth.product.median == pytest.approx(6.4)
    assert growth.met  # within 10 MB


def test_worker_memory_growth_beyond_the_allowance_is_not_flat() -> None:
    samples = [(float(t), 100.0 + 2 * t) for t in range(100)]
    _peak, growth = memory_results(samples, 100.0)
    assert not growth.met


def test_worker_memory_leaves_out_an_explicit_warm_up() -> None:
    """Buffers that fill for the first minutes are warm-up, not growth, when `warm_up` says so."""
    samples = [(float(t), 100.0 + t if t < 240 else 400.0) for t in range(0, 600, 2)]
    _peak, default_growth = memory_results(samples, 600.0)
    _peak, growth = memory_results(samples, 600.0, warm_up=240.0)
    assert not default_growth.met
    assert growth.product.median == 0.0
    assert growth.met


def test_markdown_table_has_a_row_per_case_and_names_the_machine() -> None:
    machine = {
        "mode": "full",
        "started": "2026-11-29T00:00:00+00:00",
        "seconds": 600.0,
        "cores": 2,
        "memory_gib": 23.5,
        "python": "3.11.7",
        "java": "openjdk 17",
        "dynamodb_local_npm": "10.3.0",
        "kafka": "3.9.1",
        "versions": {"chdb": "4.4.0", "faust-streaming": None},
    }
    results = [
        CaseResult(
            "hand-off", "s", Side("p", (1.1,)), Goal("ratio_at_most", 1.2, "t"), Side("b", (1.0,))
        ),
        CaseResult("freshness (p50)", "ms", Side("p", (400.0,)), Goal("value_at_most", 300, "t")),
    ]
    text = markdown(machine, results)
    assert "2 cores" in text and "chdb 4.4.0" in text and "faust-streaming" not in text
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    assert len(rows) == 1 + len(results)  # the header and one per case
    assert rows[1].startswith("| hand-off |") and rows[1].endswith("| yes |")
    assert rows[2].endswith("| **no** |")


def test_sigterm_during_a_run_unwinds_through_finally_so_services_stop() -> None:
    before = signal.getsignal(signal.SIGTERM)
    unwound = []
    with pytest.raises(SystemExit) as caught, stopped_by_sigterm():
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler runs here, at once
        finally:
            unwound.append(True)
    assert caught.value.code == 128 + signal.SIGTERM and unwound == [True]
    assert signal.getsignal(signal.SIGTERM) is before
