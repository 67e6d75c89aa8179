"""The fault suite: real services under faults, every count compared with the sources.

Every test under tests/faults is marked `faults` (the marker is registered here as well, so the
directory runs on its own). Volumes are short by default; `--long` (or FOOTFALL_FAULTS_LONG=1)
runs the long ones.
"""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "faults: the fault matrix against real services (short; --long for volume)"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in item.path.resolve().parents:
            item.add_marker(pytest.mark.faults)
