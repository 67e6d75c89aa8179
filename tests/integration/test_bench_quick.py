"""CI smoke of the benchmarks: `python -m benchmarks --quick` runs every case's code path against
real services (it starts and stops its own) and writes a results file with every case in it.

Timings are never asserted: only that the harness works and the results have their shape.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import CASES

REPO = Path(__file__).resolve().parents[2]
KEYS = {
    "name",
    "unit",
    "product_median",
    "baseline_name",
    "baseline_median",
    "ratio",
    "goal",
    "met",
}


@pytest.mark.timeout(1800)
def test_quick_run_writes_every_case(tmp_path: Path) -> None:
    log = tmp_path / "bench.log"
    with log.open("wb") as out:
        done = subprocess.run(
            [sys.executable, "-m", "benchmarks", "--quick", "--results", str(tmp_path)],
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=1700,
            check=False,
        )
    output = log.read_text(errors="replace")
    assert done.returncode == 0, output[-6000:]
    document = json.loads((tmp_path / "latest.json").read_text())
    assert set(document) == {"machine", "cases"}
    assert document["machine"]["mode"] == "quick" and document["machine"]["cores"]
    names = [case["name"] for case in document["cases"]]
    assert names == [row for case in CASES for row in case.rows]
    for case in document["cases"]:
        assert set(case) == KEYS
        assert isinstance(case["met"], bool)
        assert case["product_median"] is not None
        assert (case["baseline_name"] is None) == (case["ratio"] is None)
