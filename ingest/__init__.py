"""The write path: record activities into DynamoDB (Tracker) or publish them to Kafka."""

from footfall._activity import Activity
from footfall._errors import ActivityNotFound, BatchWriteError, InvalidActivity

from ._publisher import EventPublisher, PublishReport
from ._tracker import Tracker, WriteReport

__all__ = [
    "Activity",
    "ActivityNotFound",
    "BatchWriteError",
    "EventPublisher",
    "InvalidActivity",
    "PublishReport",
    "Tracker",
    "WriteReport",
]
