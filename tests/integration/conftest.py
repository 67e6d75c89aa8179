"""Every test under tests/integration is marked `integration`.

The service fixtures (`dynamodb_endpoint`, `kafka_broker`, `clickhouse_url`, `chdb_url`) live in
`tests/_services.py`, loaded for the whole tree by `tests/conftest.py`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in item.path.resolve().parents:
            item.add_marker(pytest.mark.integration)
