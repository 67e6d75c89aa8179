"""The public surface of each package is pinned: a change to it is a deliberate change here."""

from __future__ import annotations

import importlib

import pytest

EXPECTED = {
    "footfall": {
        "Activity",
        "ActivityNotFound",
        "BatchWriteError",
        "ClickHouseTarget",
        "ConfigError",
        "FootfallError",
        "InvalidActivity",
        "KafkaTarget",
        "ServiceError",
        "Settings",
        "StoreError",
        "StoreThrottled",
        "StoreUnavailable",
        "__version__",
        "load_settings",
        "new_event_id",
    },
    "sync": {
        "Batch",
        "Batcher",
        "EmbeddedSync",
        "OffsetTracker",
        "Poison",
        "Retention",
        "Row",
        "RowChange",
        "Sink",
        "StreamRelay",
        "SyncMetrics",
        "SyncOptions",
        "SyncStatus",
        "create_app",
        "decode_cdc",
        "decode_event",
        "decode_stream_record",
        "encode_cdc",
        "run_worker",
        "sync_status",
    },
    "ingest": {
        "Activity",
        "ActivityNotFound",
        "BatchWriteError",
        "EventPublisher",
        "InvalidActivity",
        "PublishReport",
        "Tracker",
        "WriteReport",
    },
}


@pytest.mark.parametrize("package", sorted(EXPECTED))
def test_exported_names_are_pinned_and_importable(package: str) -> None:
    module = importlib.import_module(package)
    assert set(module.__all__) == EXPECTED[package]
    for name in module.__all__:
        assert getattr(module, name) is not None


def test_every_footfall_error_derives_from_the_root() -> None:
    import footfall

    for name in footfall.__all__:
        obj = getattr(footfall, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, footfall.FootfallError), name


def test_importing_sync_and_query_does_not_import_faust() -> None:
    import subprocess
    import sys

    code = "import sync, query, sys; print('faust' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
