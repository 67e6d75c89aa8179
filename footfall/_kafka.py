"""The Kafka adapter for blocking callers: aiokafka on a private event loop in a daemon thread.

The only module outside `sync`'s Faust app that imports aiokafka. Its errors are translated here
by exception type (aiokafka's classes carry Kafka's error codes) into footfall's tree.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Coroutine, Sequence
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import (
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    NoBrokersAvailable,
    RequestTimedOutError,
    TopicAlreadyExistsError,
)
from aiokafka.partitioner import DefaultPartitioner

from ._errors import FootfallError, StoreError, StoreUnavailable
from ._settings import KafkaTarget

__all__ = ["KafkaBridge", "partition_of", "translate_kafka_error"]

log = logging.getLogger(__name__)
T = TypeVar("T")
STORE = "Kafka"
_PLACE = DefaultPartitioner()


def partition_of(key: bytes, partitions: Sequence[int]) -> int:
    """The partition a message with this key goes to: Kafka's default placement (murmur2 of
    the key), the one footfall's producers use when they name no partition."""
    return int(_PLACE(key, list(partitions), list(partitions)))


def translate_kafka_error(exc: BaseException) -> FootfallError:
    """The footfall error for an aiokafka error."""
    if isinstance(exc, FootfallError):
        return exc
    if isinstance(
        exc,
        KafkaConnectionError | NoBrokersAvailable | KafkaTimeoutError | RequestTimedOutError,
    ):
        return StoreUnavailable(
            STORE,
            f"cannot reach the broker ({type(exc).__name__}); check FOOTFALL_KAFKA_BROKER "
            "(`footfall services up` starts a local Kafka)",
            code=type(exc).__name__,
        )
    if isinstance(exc, MessageSizeTooLargeError):
        return StoreError(STORE, "message larger than the broker accepts", code="MessageTooLarge")
    if isinstance(exc, KafkaError):
        error = StoreError(STORE, f"{type(exc).__name__}: {exc}", code=type(exc).__name__)
        error.transient = bool(getattr(exc, "retriable", False))
        return error
    return StoreError(STORE, f"{type(exc).__name__}: {exc}", code=type(exc).__name__)


class KafkaBridge:
    """Runs aiokafka clients on one event loop thread and exposes blocking calls."""

    def __init__(self, target: KafkaTarget, *, client_id: str = "footfall") -> None:
        self.target = target
        self.client_id = client_id
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="footfall-kafka", daemon=True
        )
        self._thread.start()
        self._producer: AIOKafkaProducer | None = None

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
        """Run a coroutine on the bridge's loop and wait for it, translating Kafka errors."""
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(timeout)
        except TimeoutError as exc:
            future.cancel()
            raise StoreUnavailable(STORE, f"no answer within {timeout}s", code="Timeout") from exc
        except (KafkaError, OSError) as exc:
            raise translate_kafka_error(exc) from exc

    def ensure_topics(self, names: Sequence[str], *, partitions: int) -> list[str]:
        """Create the topics that do not exist yet, with `partitions` each; returns the new."""
        return self.run(self._ensure_topics(list(names), partitions))

    async def _ensure_topics(self, names: list[str], partitions: int) -> list[str]:
        admin = AIOKafkaAdminClient(
            bootstrap_servers=self.target.bootstrap, client_id=self.client_id
        )
        await admin.start()
        try:
            existing = set(await admin.list_topics())
            missing = [n for n in names if n not in existing]
            if missing:
                with contextlib.suppress(TopicAlreadyExistsError):  # another process won
                    await admin.create_topics(
                        [
                            NewTopic(n, num_partitions=partitions, replication_factor=1)
                            for n in missing
                        ]
                    )
                log.info("created Kafka topics %s (%d partitions)", missing, partitions)
            return missing
        finally:
            await admin.close()

    def group_lag(self, group: str, topics: Sequence[str]) -> dict[str, int | None]:
        """Per topic: messages the consumer group has not committed yet (None: topic missing)."""
        return self.run(self._group_lag(group, list(topics)))

    async def _group_lag(self, group: str, topics: list[str]) -> dict[str, int | None]:
        admin = AIOKafkaAdminClient(
            bootstrap_servers=self.target.bootstrap, client_id=self.client_id
        )
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.target.bootstrap, client_id=self.client_id
        )
        await admin.start()
        await consumer.start()
        try:
            committed = await admin.list_consumer_group_offsets(group)
            existing = await consumer.topics()
            lag: dict[str, int | None] = {}
            for topic in topics:
                if topic not in existing:
                    lag[topic] = None
                    continue
                partitions = consumer.partitions_for_topic(topic) or set()
                tps = [TopicPartition(topic, p) for p in sorted(partitions)]
                ends = await consumer.end_offsets(tps)
                lag[topic] = sum(
                    end - max(committed[tp].offset, 0) if tp in committed else end
                    for tp, end in ends.items()
                )
            return lag
        finally:
            await consumer.stop()
            await admin.close()

    def producer(self) -> AIOKafkaProducer:
        """The bridge's idempotent producer (acks=all), started on first use."""
        if self._producer is None:
            self._producer = self.run(self._start_producer())
        return self._producer

    async def _start_producer(self) -> AIOKafkaProducer:
        producer = AIOKafkaProducer(
            bootstrap_servers=self.target.bootstrap,
            client_id=self.client_id,
            acks="all",
            enable_idempotence=True,
            linger_ms=5,
            max_batch_size=256 * 1024,
            request_timeout_ms=30_000,
        )
        try:
            await producer.start()
        except BaseException:
            await producer.stop()
            raise
        return producer

    def close(self) -> None:
        """Flush and stop the producer, then stop the loop thread. Safe to call twice."""
        if self._loop.is_closed():
            return
        try:
            if self._producer is not None:
                self.run(self._producer.stop(), timeout=30)
                self._producer = None
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
            self._loop.close()
