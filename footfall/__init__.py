"""footfall's shared kernel: settings, the Activity model and the error tree."""

from ._activity import Activity, new_event_id
from ._errors import (
    ActivityNotFound,
    BatchWriteError,
    ConfigError,
    FootfallError,
    InvalidActivity,
    ServiceError,
    StoreError,
    StoreThrottled,
    StoreUnavailable,
)
from ._settings import ClickHouseTarget, KafkaTarget, Settings, load_settings

__version__ = "0.1.0.dev0"

__all__ = [
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
]
