"""Root of the test tree: the service fixtures for every directory, and the fault-suite volume.

`pytest_plugins` may only be declared here (the root conftest), so the session fixtures of real
services live in `tests/_services.py` and are shared by `tests/integration` and `tests/faults`.
"""

from __future__ import annotations

import pytest

pytest_plugins = ["tests._services"]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--long",
        action="store_true",
        default=False,
        help="fault suite (tests/faults): run the long volumes (also FOOTFALL_FAULTS_LONG=1)",
    )
