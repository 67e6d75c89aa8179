"""EventPublisher: send activities to Kafka topic `footfall.events` for analytics only.

For apps whose raw events should reach ClickHouse without a DynamoDB write. Messages are the
Activity wire form (`Activity.to_json()`), keyed by actor (so one actor's events stay ordered
within a partition), sent with acks=all by an idempotent producer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from footfall._activity import Activity
from footfall._errors import BatchWriteError, ConfigError, InvalidActivity
from footfall._kafka import KafkaBridge, translate_kafka_error
from footfall._settings import Settings, load_settings

from ._tracker import coerce_activities

__all__ = ["EventPublisher", "PublishReport"]

log = logging.getLogger(__name__)
HEADERS = [("content-type", b"application/json"), ("footfall-schema", b"activity/1")]


@dataclass(frozen=True, slots=True)
class PublishReport:
    """What `publish_many` did: every activity was acknowledged by the broker."""

    sent: int
    topic: str


class EventPublisher:
    """Publishes activities to Kafka. Use it as a context manager, or call `close()`.

    >>> with EventPublisher() as events:
    ...     events.publish(Activity(actor="bob", type="search", target="goji"))
    """

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or load_settings()
        target = self.settings.kafka
        if target is None:
            raise ConfigError(
                "FOOTFALL_KAFKA_BROKER",
                None,
                "kafka://host:port (`footfall services up` starts one)",
            )
        self.topic = self.settings.topic("events")
        self._bridge = KafkaBridge(target, client_id="footfall-publisher")
        try:
            self._bridge.ensure_topics([self.topic], partitions=self.settings.topic_partitions)
        except BaseException:
            self._bridge.close()
            raise

    def publish(self, activity: Activity) -> None:
        """Send one activity and wait until the broker acknowledged it."""
        self.publish_many([activity])

    def publish_many(self, activities: Iterable[Activity | Mapping[str, Any]]) -> PublishReport:
        """Validate every activity first (nothing is sent if one is invalid), send them all and
        wait for every acknowledgement. Raises BatchWriteError naming those that failed."""
        batch = coerce_activities(activities)
        for index, activity in enumerate(batch):
            if not isinstance(activity, Activity):  # pragma: no cover - coerce guarantees it
                raise InvalidActivity("activity", activity, "must be an Activity", index=index)
        if not batch:
            return PublishReport(0, self.topic)
        producer = self._bridge.producer()

        async def send_one(activity: Activity) -> None:
            delivery = await producer.send(
                self.topic, activity.to_json(), key=activity.actor.encode(), headers=list(HEADERS)
            )
            await delivery

        async def send_all() -> list[BaseException | None]:
            results = await asyncio.gather(*(send_one(a) for a in batch), return_exceptions=True)
            return [r if isinstance(r, BaseException) else None for r in results]

        outcomes = self._bridge.run(send_all(), timeout=120)
        failed = [
            (i, str(translate_kafka_error(exc)))
            for i, exc in enumerate(outcomes)
            if exc is not None
        ]
        if failed:
            raise BatchWriteError("Kafka", failed, len(batch) - len(failed))
        return PublishReport(len(batch), self.topic)

    def close(self) -> None:
        """Flush what is pending and release the connection."""
        self._bridge.close()

    def __enter__(self) -> EventPublisher:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
