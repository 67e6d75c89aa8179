"""Mirror DynamoDB Streams and Kafka events into ClickHouse, effectively once.

The pure core (decode, batch, checkpoint) is importable without Faust; `create_app`,
`SyncOptions` and `run_worker` import Faust only when first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._batch import Batch, Batcher, OffsetTracker
from ._decode import (
    Poison,
    Retention,
    Row,
    RowChange,
    decode_cdc,
    decode_event,
    decode_stream_record,
    encode_cdc,
)
from ._embedded import EmbeddedSync
from ._metrics import SyncMetrics
from ._sink import Sink
from ._status import SyncStatus, sync_status
from ._streams import StreamRelay

if TYPE_CHECKING:
    from ._worker import run_worker
    from .app import SyncOptions, create_app

__all__ = [
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
]

_LAZY = {"SyncOptions": ".app", "create_app": ".app", "run_worker": "._worker"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module 'sync' has no attribute {name!r}")
