"""footfall's benchmarks: each case against its baseline, in the same run.

Run with `python -m benchmarks` (full), `--quick` (a CI smoke of a few seconds per case) or
`--only NAME` (one case group; repeatable), or `footfall bench`. Services (DynamoDB Local,
Kafka, the ClickHouse HTTP server over chDB) are started on free loopback ports for the run and
stopped by PID at its end. Results: a table on the terminal, `benchmarks/results/latest.json`
and `latest.png`. See docs/benchmarks.md for the cases, baselines and the last full run.
"""

from ._harness import CaseResult, Goal, Side
from ._runner import CASES, RESULTS, run

__all__ = ["CASES", "RESULTS", "CaseResult", "Goal", "Side", "run"]
