"""`python -m benchmarks [--quick] [--only NAME ...] [--results DIR]`."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from . import CASES, RESULTS, run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description="footfall against its baselines, same run."
    )
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run: small data, a few seconds per case"
    )
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="NAME",
        choices=[case.name for case in CASES],
        help="run only this case group (repeatable): " + ", ".join(c.name for c in CASES),
    )
    parser.add_argument(
        "--results", type=Path, default=RESULTS, help=f"where to write (default {RESULTS})"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    return run(quick=args.quick, only=args.only, results=args.results)


if __name__ == "__main__":
    sys.exit(main())
