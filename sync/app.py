"""The Faust app: one sink agent over `footfall.cdc` + `footfall.events`, and the Streams relay.

Data flow (docs/architecture.md):

    DynamoDB Streams --relay (leader-only timer)--> footfall.cdc --+
    apps --EventPublisher-----------------------> footfall.events --+--> sink agent --> ClickHouse
                                                                    +--> footfall.dlq (poison)

The sink agent consumes with manual acknowledgement (`stream.noack()`): each message is decoded
(`_decode`; a pack of events, `footfall._wire`, by `_packs`: its rows join one batch, each bad line
is dead-lettered, and the message is acknowledged when all of them are durable), rows are cut into
batches by size and age (`_batch.Batcher`) and written by the shared `_sink.Sink`. A message is
acknowledged to Faust, which commits its offset, only when it and every message before it in its
partition is durable (written to ClickHouse, or dead-lettered with an acknowledged DLQ send): acks
go out in offset order (`_batch.OffsetTracker`), so Faust's commit never jumps a gap. ClickHouse
calls are blocking and run on the default executor.

Each input has at most one batch being written at a time, in the background: the agent goes on
decoding into the next batch, which is cut when the write is done (or when it is full: then the
agent waits for the write). So batches grow with the write's latency - a backlog after an outage is
written in few large inserts, not in many small ones cut by age - and memory stays bounded by
`max_rows` per input plus Faust's stream buffer and aiokafka's fetched records (up to
`fetch_bytes_per_partition` each) while ClickHouse is away. Poison is handed to the
DLQ producer the same way: the agent goes on, and the poison's offset is acknowledged when the
broker took the dead letter (at most `MAX_LETTERS_IN_FLIGHT` per input wait at a time). A batch is
also cut as soon as the agent has taken everything Faust fetched (its stream's buffer is empty)
while no write is in flight: a steady trickle is written at once, without waiting for a pause of
`idle_cut_s` that it may never make.

The daily rollup is not refreshed per batch: the sink marks it out of date and the `rollup_refresh`
task refreshes it coalesced (`_rollup.RollupKeeper`): when the inputs are idle (at most every 0.25
s), else `rollup_interval_s` after the last refresh, and once more on shutdown; its persisted
watermark lets the next start finish what a killed worker left.

The relay runs on the leader only. Per round it reads every readable shard, produces the changes to
`footfall.cdc` keyed by actor, waits for every acknowledgement (acks=all) and only then stores the
shards' checkpoints (`_state.ClickHouseCheckpoints`, from a task every 0.2 s, so the next read does
not wait for the insert). While ClickHouse is away those stay pending in memory
(`_state.DeferredCheckpoints`) and the relay keeps handing changes to Kafka, so the DynamoDB
backlog is in Kafka, not in the stream, when ClickHouse returns.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import faust
from aiokafka.errors import KafkaError, MessageSizeTooLargeError

from footfall._clickhouse import ClickHouse, connect
from footfall._errors import ConfigError, StoreError
from footfall._settings import Settings, load_settings
from footfall._wire import is_pack

from ._batch import Batch, Batcher, OffsetTracker
from ._decode import (
    EventPosition,
    Poison,
    Retention,
    Row,
    RowChange,
    cdc_key,
    decode_cdc,
    decode_event,
    encode_cdc,
)
from ._metrics import SyncMetrics
from ._packs import decode_pack
from ._rollup import RollupKeeper
from ._sink import Sink, Source
from ._state import ClickHouseCheckpoints, DeferredCheckpoints
from ._streams import IdlePacing, StreamRelay

__all__ = ["SyncOptions", "create_app"]

log = logging.getLogger(__name__)
RETRY_CAP_S = 2.0  # the longest pause between relay retries: it resumes soon after a store is back
MAX_LETTERS_IN_FLIGHT = 1000  # dead letters per input awaiting the broker's acknowledgement


@dataclass(frozen=True, slots=True)
class SyncOptions:
    """Tuning of the worker. Defaults: large batches under load, < 0.5 s freshness when idle."""

    max_rows: int = 20_000
    max_wait_s: float = 0.25
    # A batch is also cut as soon as its input paused this long (and no write is in flight):
    # a trickle is written when it pauses, not max_wait_s later; a backlog never pauses.
    idle_cut_s: float = 0.02
    relay: bool = True
    relay_interval_s: float = 0.05  # the wait after a relay round that found nothing ...
    relay_idle_max_s: float = 0.25  # ... doubling while rounds stay empty, up to this (IdlePacing)
    checkpoint_interval_s: float = 0.2  # the relay's checkpoints are stored this often
    shard_refresh_s: float = 1.0  # the stream's shards are listed this often (and on a drain)
    metrics_port: int = 6066  # Faust's web server serves /metrics here (0: pick a free port)
    metrics_host: str = "127.0.0.1"  # 0.0.0.0 in a container
    rollup_interval_s: float = 1.0  # under load, refresh the daily rollup at most this often
    # A crashed worker's partitions (and the relay, if it led) move to the others after this
    # long without its heartbeat; Faust's default of 60 s left them unread for a minute.
    session_timeout_s: float = 10.0
    # Bytes one fetch brings per partition (aiokafka's request total stays capped at 50 MiB).
    # aiokafka asks a partition for more only once its last fetch is consumed: with Faust's
    # 1 MiB (about ten packs) the agent waited on fetches, idle half the time (29,000 events/s
    # against 50,000 with 8 MiB, docs/benchmarks.md).
    fetch_bytes_per_partition: int = 8 << 20


@dataclass
class _Lane:
    """One input topic: its decoder, batcher, and the messages not yet acknowledged."""

    topic: str
    source: Source
    decode: Callable[[bytes | None, EventPosition], Row | Poison]
    batcher: Batcher[EventPosition]
    tracker: OffsetTracker[EventPosition] = field(default_factory=OffsetTracker)
    pending: dict[int, deque[Any]] = field(default_factory=dict)  # partition -> events
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    writing: asyncio.Future[None] | None = None  # the batch being written, at most one
    letters: set[asyncio.Future[None]] = field(default_factory=set)  # dead letters in flight
    last_in: float = 0.0  # when the newest message arrived (time.monotonic)
    packs: bool = False  # messages marked as packs (`footfall._wire`) hold many events

    def idle(self) -> bool:
        """No batch is being written."""
        return self.writing is None or self.writing.done()


def create_app(settings: Settings | None = None, options: SyncOptions | None = None) -> faust.App:
    """The sync worker's Faust app for these settings (run it with `footfall sync worker`)."""
    settings = settings or load_settings()
    options = options or SyncOptions()
    kafka = settings.kafka
    if kafka is None:
        raise ConfigError(
            "FOOTFALL_KAFKA_BROKER", None, "kafka://host:port (the worker needs Kafka)"
        )
    relay_pacing = IdlePacing(  # checked here, at start, not first inside the relay's task
        options.relay_interval_s,
        options.relay_idle_max_s,
        names=("SyncOptions.relay_interval_s", "relay_idle_max_s"),
    )
    app = faust.App(
        f"{settings.topic_prefix}-sync",
        broker=";".join(f"kafka://{server}" for server in kafka.bootstrap_servers),
        key_serializer="raw",
        value_serializer="raw",
        store="memory://",
        autodiscover=False,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        producer_max_request_size=2 << 20,  # the DLQ re-sends records up to the broker's limit
        broker_commit_interval=1.0,
        # Messages Faust buffers per stream: packs of up to 64 KiB (`footfall._wire`) make its
        # default of 4,096 a 256 MiB bound; 1,024 keeps memory flat and the agent busy.
        stream_buffer_maxsize=1024,
        consumer_max_fetch_size=options.fetch_bytes_per_partition,
        broker_session_timeout=options.session_timeout_s,
        broker_heartbeat_interval=options.session_timeout_s / 5,
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=1,
        web_port=options.metrics_port or _free_port(),
        web_bind=options.metrics_host,
        web_host="127.0.0.1",
        datadir=str(settings.home / "faust"),
    )
    metrics = SyncMetrics()
    state: dict[str, Any] = {}
    cdc_topic = app.topic(settings.topic("cdc"), value_type=bytes, internal=False)
    dlq_topic = app.topic(settings.topic("dlq"), value_type=bytes, internal=False)

    def clickhouse() -> ClickHouse:
        if "ch" not in state:
            state["ch"] = connect(settings)
        ch: ClickHouse = state["ch"]
        return ch

    def rollup() -> RollupKeeper:
        if "rollup" not in state:
            state["rollup"] = RollupKeeper(clickhouse(), interval_s=options.rollup_interval_s)
        keeper: RollupKeeper = state["rollup"]
        return keeper

    def sink() -> Sink:
        if "sink" not in state:
            state["sink"] = Sink(clickhouse(), metrics, rollup=rollup())
        sink_: Sink = state["sink"]
        return sink_

    lanes = {
        settings.topic("events"): _Lane(
            settings.topic("events"),
            "kafka",
            lambda v, p: decode_event(v, partition=p.partition, offset=p.offset),
            Batcher(
                f"kafka:{settings.topic('events')}",
                max_rows=options.max_rows,
                max_wait_s=options.max_wait_s,
            ),
            packs=True,
        ),
        settings.topic("cdc"): _Lane(
            settings.topic("cdc"),
            "dynamodb",
            lambda v, p: _row_of(decode_cdc(v, partition=p.partition, offset=p.offset)),
            Batcher(
                f"kafka:{settings.topic('cdc')}",
                max_rows=options.max_rows,
                max_wait_s=options.max_wait_s,
            ),
        ),
    }

    async def release(lane: _Lane, stream: Any) -> None:
        """Acknowledge, in offset order, every message now safe to commit."""
        for safe in lane.tracker.committable():
            queue = lane.pending.get(safe.partition)
            while queue and queue[0].message.offset <= safe.offset:
                await stream.ack(queue.popleft())

    async def write(lane: _Lane, batch: Batch[EventPosition], stream: Any) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, sink().write, batch, lane.source)
        lane.tracker.ack_all(batch.positions)
        await release(lane, stream)

    async def drained(lane: _Lane) -> None:
        """Wait for the lane's write in flight (its failure is raised here)."""
        if lane.writing is not None:
            writing, lane.writing = lane.writing, None
            await writing

    async def submit(lane: _Lane, batch: Batch[EventPosition] | None, stream: Any) -> None:
        """Start writing `batch` once the lane's previous write is done (one in flight)."""
        if batch is None:
            return
        await drained(lane)
        lane.writing = asyncio.ensure_future(write(lane, batch, stream))

    async def reap(lane: _Lane, *, wait: bool = False) -> None:
        """Forget delivered dead letters (raising a failed one's error); with `wait`, wait for
        all of them first."""
        if wait and lane.letters:
            await asyncio.wait(lane.letters)
        for done in [letter for letter in lane.letters if letter.done()]:
            lane.letters.discard(done)
            done.result()

    async def dead_letter(lane: _Lane, delivery: Coroutine[Any, Any, None]) -> None:
        """Run a `deliver` (to the DLQ) in the background; its offset is acknowledged once the
        broker took it. The agent waits only while MAX_LETTERS_IN_FLIGHT are unacknowledged."""
        lane.letters.add(asyncio.ensure_future(delivery))
        await reap(lane)
        if len(lane.letters) >= MAX_LETTERS_IN_FLIGHT:
            await asyncio.wait(lane.letters, return_when=asyncio.FIRST_COMPLETED)

    async def deliver(
        lane: _Lane,
        key: bytes | None,
        value: bytes | None,
        position: EventPosition,
        poison: Poison,
        stream: Any,
    ) -> None:
        """Send the record to the DLQ with its reason; retried until the broker took it."""
        headers = [*poison.headers(), ("footfall-topic", lane.topic.encode())]
        attempt = 0
        while True:
            try:
                await (await dlq_topic.send(key=key, value=value, headers=headers))
                break
            except MessageSizeTooLargeError:
                headers.append(("footfall-payload", b"dropped: too large for the DLQ topic"))
                value = b""
            except KafkaError as exc:
                attempt += 1
                log.warning("DLQ send failed (%s); retry %d", exc, attempt)
                await asyncio.sleep(min(10.0, 0.1 * 2**attempt))
        metrics.dead_lettered.labels(lane.source).inc()
        log.warning("dead-lettered %s@%s: %s", lane.topic, poison.position, poison.reason)
        lane.tracker.ack(position)
        await release(lane, stream)

    async def take_pack(lane: _Lane, event: Any, position: EventPosition, stream: Any) -> None:
        """A pack's rows go into one batch, each bad line to the DLQ; the message is
        acknowledged when the batch and every dead letter are durable."""
        rows, poisons = decode_pack(
            event.value, partition=position.partition, offset=position.offset
        )
        metrics.events_in.labels(lane.source).inc(len(rows) + len(poisons))
        async with lane.lock:
            lane.tracker.expect(position, len(poisons) + (1 if rows else 0))
            for line, poison in poisons:
                await dead_letter(lane, deliver(lane, event.key, line, position, poison, stream))
            if rows:  # by age only when no write is in flight
                batch = lane.batcher.add_many(rows, position, by_age=lane.idle())
                await submit(lane, batch, stream)

    @app.agent(app.topic(settings.topic("events"), settings.topic("cdc"), value_type=bytes))
    async def sink_agent(stream: Any) -> None:
        state["stream"] = stream
        buffered = stream.channel.queue  # what Faust fetched and the agent has not taken yet
        async for event in stream.noack().events():
            message = event.message
            lane = lanes[message.topic]
            position = EventPosition(message.partition, message.offset)
            if not lane.tracker.track(position):
                await stream.ack(event)  # a redelivery the first reading covers
                continue
            lane.pending.setdefault(message.partition, deque()).append(event)
            lane.last_in = time.monotonic()
            if lane.packs and is_pack(message.headers):
                await take_pack(lane, event, position, stream)
            else:
                await take(lane, event, position, stream)
            if lane.idle() and len(lane.batcher) and buffered.empty():
                # caught up with what Faust fetched, and the writer is free: write now
                async with lane.lock:
                    await submit(lane, lane.batcher.flush(), stream)

    async def take(lane: _Lane, event: Any, position: EventPosition, stream: Any) -> None:
        metrics.events_in.labels(lane.source).inc()
        decoded = lane.decode(event.value, position)
        async with lane.lock:
            if isinstance(decoded, Poison):
                delivery = deliver(lane, event.key, event.value, position, decoded, stream)
                await dead_letter(lane, delivery)
            elif isinstance(decoded, Row):  # by age only when no write is in flight
                batch = lane.batcher.add(decoded, position, by_age=lane.idle())
                await submit(lane, batch, stream)
            else:  # a retention/skip marker: nothing to write, but the offset is done
                lane.tracker.ack(position)
                await release(lane, stream)

    @app.task  # type: ignore[untyped-decorator]
    async def flush_due() -> None:
        """Cut batches by age, so an idle input is written within `max_wait_s`, or sooner when
        its input paused for `idle_cut_s` (a batch due while the previous one is being written
        is cut as soon as that write is done)."""
        while not app.should_stop:
            stream = state.get("stream")
            waits = [options.max_wait_s]
            for lane in lanes.values():
                if lane.writing is not None and lane.writing.done():
                    await drained(lane)  # a failed write raises here and stops the worker
                await reap(lane)
                due = lane.batcher.due_in()
                if due is None:
                    continue
                paused = time.monotonic() - lane.last_in
                due = min(due, max(0.0, options.idle_cut_s - paused))
                if due > 0:
                    waits.append(due)
                elif not lane.idle():
                    waits.append(0.005)
                elif stream is not None:
                    async with lane.lock:
                        await submit(lane, lane.batcher.flush(), stream)
            await asyncio.sleep(max(0.005, min(waits)))

    @app.task  # type: ignore[untyped-decorator]
    async def rollup_refresh() -> None:
        """Refresh the daily rollup off the acknowledgement path: when every input is idle
        (nothing batched, no write in flight), else at most every `rollup_interval_s`."""
        loop = asyncio.get_running_loop()
        failures = 0
        while not app.should_stop:
            await asyncio.sleep(0.05 if not failures else min(RETRY_CAP_S, 0.2 * 2**failures))
            idle = all(lane.idle() and not len(lane.batcher) for lane in lanes.values())
            keeper = rollup()
            if not keeper.due(idle=idle):
                continue
            try:
                await loop.run_in_executor(None, keeper.refresh)
                failures = 0
            except StoreError as exc:  # stays due; the watermark keeps nothing from being lost
                failures += 1
                log.warning("rollup refresh failed (%s); retrying", exc)

    @app.on_before_shutdown.connect  # type: ignore[arg-type]
    async def flush_rollup(app_: Any, **kwargs: Any) -> None:
        """On a clean stop (the consumer stopped: what it read is written), leave the rollup
        exact; if ClickHouse is away, the next start catches up from the watermark."""
        keeper: RollupKeeper | None = state.get("rollup")
        if keeper is None:
            return
        try:
            await asyncio.get_running_loop().run_in_executor(None, keeper.flush)
        except StoreError as exc:
            log.warning("could not bring the rollup up to date on shutdown: %s", exc)

    @app.task  # type: ignore[untyped-decorator]
    async def lag_gauge() -> None:
        """Consumer lag per topic: the partitions' high watermarks minus what is committable."""
        while not app.should_stop:
            await asyncio.sleep(2.0)
            for lane in lanes.values():
                lag = 0
                for tp in app.consumer.assignment():
                    if tp.topic != lane.topic:
                        continue
                    high = app.consumer.highwater(tp)
                    safe = lane.tracker.safe(tp.partition)
                    if high is not None and safe is not None:
                        lag += max(0, high - (safe.offset + 1))
                metrics.consumer_lag.labels(lane.topic).set(lag)

    async def relay_round() -> int:
        """One relay round on the leader; returns the stream records handed on."""
        loop = asyncio.get_running_loop()
        relay: StreamRelay | None = state.get("relay")
        if relay is None:
            store = state.get("checkpoints") or DeferredCheckpoints(
                ClickHouseCheckpoints(clickhouse()), eager=False
            )
            relay = await loop.run_in_executor(
                None,
                lambda: StreamRelay(settings, store, shard_refresh_s=options.shard_refresh_s),
            )
            state["relay"], state["checkpoints"] = relay, store
        reads = await loop.run_in_executor(None, relay.poll)
        handled = 0
        for read in reads:
            sent = []
            for change in read.changes:
                if isinstance(change, RowChange):
                    sent.append(await cdc_topic.send(key=cdc_key(change), value=encode_cdc(change)))
                elif isinstance(change, Retention):
                    metrics.retention_skipped.inc()
                elif isinstance(change, Poison):
                    headers = [*change.headers(), ("footfall-topic", b"dynamodb-streams")]
                    sent.append(await dlq_topic.send(value=b"", headers=headers))
                    metrics.dead_lettered.labels("dynamodb").inc()
            await asyncio.gather(*sent)  # acks=all: every change is in Kafka
            await loop.run_in_executor(None, relay.commit, read)  # only then the checkpoint
            handled += len(read.changes)
        return handled

    @app.task  # type: ignore[untyped-decorator]
    async def store_checkpoints() -> None:
        """Store the relay's checkpoints off its path, every `checkpoint_interval_s` (the
        changes behind them are in Kafka already); a failure keeps them pending."""
        if not options.relay:
            return
        loop = asyncio.get_running_loop()
        while not app.should_stop:
            await asyncio.sleep(options.checkpoint_interval_s)
            checkpoints: DeferredCheckpoints | None = state.get("checkpoints")
            if checkpoints is not None and checkpoints.pending:
                await loop.run_in_executor(None, checkpoints.flush)

    @app.on_before_shutdown.connect  # type: ignore[arg-type]
    async def flush_checkpoints(app_: Any, **kwargs: Any) -> None:
        """On a clean stop, store what the relay handed on (else the next start re-sends it)."""
        checkpoints: DeferredCheckpoints | None = state.get("checkpoints")
        if checkpoints is not None and checkpoints.pending:
            await asyncio.get_running_loop().run_in_executor(None, checkpoints.flush)

    @app.task  # type: ignore[untyped-decorator]
    async def relay_loop() -> None:
        if not options.relay:
            return
        failures = 0
        while not app.should_stop:
            handled = 0
            try:
                if app.is_leader():
                    handled = await relay_round()
                else:
                    state.pop("relay", None)  # reload checkpoints if leadership comes back
                failures = 0
            except StoreError as exc:
                failures += 1
                state.pop("relay", None)
                log.warning("relay round failed (%s); retrying", exc)
                await asyncio.sleep(min(RETRY_CAP_S, 0.2 * 2**failures))
                continue
            if handled:
                relay_pacing.busy()
            else:
                await asyncio.sleep(relay_pacing.idle())

    @app.page("/metrics")
    async def metrics_page(web: Any, request: Any) -> Any:
        return web.bytes(metrics.exposition(), content_type="text/plain; version=0.0.4")

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def on_revoked(app_: Any, revoked: set[Any], **kwargs: Any) -> None:
        # Before partitions move, write what is batched and acknowledge it, so the offsets
        # Faust commits on revocation cover exactly what is durable. If ClickHouse is down the
        # write blocks; the group then drops this member and the new owner re-reads.
        stream = state.get("stream")
        for lane in lanes.values():
            async with lane.lock:
                if stream is not None:
                    await submit(lane, lane.batcher.flush(), stream)
                await drained(lane)
                await reap(lane, wait=True)
                for tp in revoked:
                    if tp.topic == lane.topic:
                        lane.tracker.reset(tp.partition)
                        lane.pending.pop(tp.partition, None)
        state.pop("relay", None)  # leadership may move: reload checkpoints when leader again

    app.footfall_metrics = metrics  # type: ignore[attr-defined]
    app.footfall_settings = settings  # type: ignore[attr-defined]
    return app


def _free_port() -> int:
    from footfall.services import free_port

    return free_port()


def _row_of(change: RowChange | Poison) -> Row | Poison:
    return change.row if isinstance(change, RowChange) else change
