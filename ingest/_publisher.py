"""EventPublisher: send activities to Kafka topic `footfall.events` for analytics only.

For apps whose raw events should reach ClickHouse without a DynamoDB write. `publish` sends one
message, the Activity wire form (`Activity.to_json()`), keyed by actor (so one actor's events
stay ordered within a partition). `publish_many` places each activity by its actor key the same
way and sends the activities of a partition as packs, many per message (`footfall._wire`): the
sync worker's cost is per message, so packs reach ClickHouse several times faster. Everything
is sent with acks=all by an idempotent producer.
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
from footfall._kafka import KafkaBridge, partition_of, translate_kafka_error
from footfall._settings import Settings, load_settings
from footfall._wire import EVENT_HEADERS, PACK_HEADERS, pack_lines

from ._tracker import coerce_activities

__all__ = ["EventPublisher", "PublishReport"]

log = logging.getLogger(__name__)


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
        """Send one activity, as a message of its own, and wait until the broker acknowledged
        it."""
        self.publish_many([activity], pack=False)

    def publish_many(
        self, activities: Iterable[Activity | Mapping[str, Any]], *, pack: bool = True
    ) -> PublishReport:
        """Validate every activity first (nothing is sent if one is invalid), send them all and
        wait for every acknowledgement. Raises BatchWriteError naming those that failed.

        With `pack` (the default) the activities of each partition travel as packs of up to
        500 (`footfall._wire`); `pack=False` sends one message per activity, for consumers of
        the topic other than footfall's worker that expect that form."""
        batch = coerce_activities(activities)
        for index, activity in enumerate(batch):
            if not isinstance(activity, Activity):  # pragma: no cover - coerce guarantees it
                raise InvalidActivity("activity", activity, "must be an Activity", index=index)
        if not batch:
            return PublishReport(0, self.topic)
        producer = self._bridge.producer()
        forms = [activity.to_json() for activity in batch]

        async def send(value: bytes, key: bytes | None, partition: int | None, pack: bool) -> None:
            headers = list(PACK_HEADERS if pack else EVENT_HEADERS)
            delivery = await producer.send(
                self.topic, value, key=key, partition=partition, headers=headers
            )
            await delivery

        async def send_all() -> list[BaseException | None]:
            if pack:
                sends = await self._packs(producer, batch, forms, send)
            else:
                sends = [
                    (send(form, activity.actor.encode(), None, False), range(i, i + 1))
                    for i, (form, activity) in enumerate(zip(forms, batch, strict=True))
                ]
            results = await asyncio.gather(*(s for s, _ in sends), return_exceptions=True)
            outcomes: list[BaseException | None] = [None] * len(batch)
            for result, (_, indexes) in zip(results, sends, strict=True):
                if isinstance(result, BaseException):
                    for index in indexes:
                        outcomes[index] = result
            return outcomes

        outcomes = self._bridge.run(send_all(), timeout=120)
        failed = [
            (i, str(translate_kafka_error(exc)))
            for i, exc in enumerate(outcomes)
            if exc is not None
        ]
        if failed:
            raise BatchWriteError("Kafka", failed, len(batch) - len(failed))
        return PublishReport(len(batch), self.topic)

    async def _packs(
        self, producer: Any, batch: list[Activity], forms: list[bytes], send: Any
    ) -> list[tuple[Any, range | list[int]]]:
        """The sends of `batch` as packs per partition, each activity placed by its actor key
        as a single message would be (Kafka's default partitioner, which the producer uses),
        and the indexes of `batch` each send carries."""
        partitions = sorted(await producer.partitions_for(self.topic))
        by_partition: dict[int, list[int]] = {}
        for index, activity in enumerate(batch):
            partition = partition_of(activity.actor.encode(), partitions)
            by_partition.setdefault(partition, []).append(index)
        sends: list[tuple[Any, range | list[int]]] = []
        for partition, indexes in by_partition.items():
            for value, lines in pack_lines([forms[i] for i in indexes]):
                sends.append((send(value, None, partition, True), [indexes[i] for i in lines]))
        return sends

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
