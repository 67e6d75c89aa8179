"""The write path against a real DynamoDB Local (and Kafka for EventPublisher).

One table per session (DynamoDB Local slows down after stream-enabled tables are deleted), so
every test uses its own actors / targets / types to stay independent.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from footfall import Settings, load_settings
from footfall._dynamodb import DynamoDB
from footfall._kafka import KafkaBridge, partition_of
from footfall._table import TYPE_TARGET_INDEX, type_target_key
from footfall._wire import is_pack
from ingest import (
    Activity,
    ActivityNotFound,
    BatchWriteError,
    EventPublisher,
    InvalidActivity,
    Tracker,
)

NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture(scope="session")
def settings(dynamodb_endpoint: str) -> Settings:
    s = load_settings(
        dynamodb_endpoint=dynamodb_endpoint,
        table=f"footfall-test-{uuid.uuid4().hex[:8]}",
        target_shards=4,
        ttl_days=400,
    )
    DynamoDB(s).ensure_table()
    return s


@pytest.fixture
def unique() -> str:
    return uuid.uuid4().hex[:10]


@pytest.fixture
def tracker(settings: Settings, unique: str) -> Tracker:
    return Tracker(f"pv-{unique}", settings)


def stored_items(settings: Settings, actor: str) -> list[dict[str, Any]]:
    return list(DynamoDB(settings).query(key_name="actor", key_value=actor))


def test_ensure_table_is_idempotent_and_builds_streams_gsis_and_ttl(settings: Settings) -> None:
    db = DynamoDB(settings)
    assert db.ensure_table() is False
    table = db.describe()
    assert table["StreamSpecification"]["StreamViewType"] == "NEW_AND_OLD_IMAGES"
    assert {i["IndexName"] for i in table["GlobalSecondaryIndexes"]} == {
        "by_type_target",
        "by_actor_type",
    }
    ttl = db.client.describe_time_to_live(TableName=settings.table)["TimeToLiveDescription"]
    assert ttl["TimeToLiveStatus"] == "ENABLED" and ttl["AttributeName"] == "expires_at"


def test_record_and_view_activity_round_trip(tracker: Tracker, unique: str) -> None:
    target = f"/store/products/goji-{unique}"
    a = tracker.record_activity(f"bob-{unique}", target, browser="Chrome", price=9.5)
    seen = tracker.view_activity(target, NOW - timedelta(hours=1), NOW + timedelta(hours=1))
    assert seen == [a]
    assert seen[0].attributes == {"browser": "Chrome", "price": 9.5}


def test_recording_the_same_event_id_twice_stores_one_item(
    tracker: Tracker, settings: Settings, unique: str
) -> None:
    actor = f"ann-{unique}"
    a = tracker.record_activity(actor, "/p", at=NOW)
    tracker.record_activity(actor, "/p", at=NOW, event_id=a.event_id, browser="changed")
    items = stored_items(settings, actor)
    assert len(items) == 1 and items[0]["attributes"] == {}


def test_view_activity_is_newest_first_across_all_shards_and_bounded(
    tracker: Tracker, settings: Settings, unique: str
) -> None:
    target = f"hot-{unique}"
    acts = [
        Activity(
            actor=f"u{i}", type=tracker.activity_type, target=target, ts=NOW - timedelta(minutes=i)
        )
        for i in range(120)
    ]
    assert tracker.record_many(acts).written == 120
    db = DynamoDB(settings)
    per_shard = [
        len(
            list(
                db.query(
                    key_name="type_target",
                    index=TYPE_TARGET_INDEX,
                    key_value=type_target_key(tracker.activity_type, target, s),
                )
            )
        )
        for s in range(settings.target_shards)
    ]
    assert sum(per_shard) == 120 and all(n > 10 for n in per_shard)  # really spread
    seen = tracker.view_activity(target, NOW - timedelta(minutes=100), NOW - timedelta(minutes=10))
    assert [a.ts for a in seen] == [NOW - timedelta(minutes=i) for i in range(11, 101)]
    assert tracker.view_activity(target, NOW - timedelta(days=1), NOW, limit=5) == acts[1:6]
    assert tracker.view_activity(target, NOW, NOW - timedelta(days=1)) == []


def test_view_activity_pages_through_large_results(tracker: Tracker, unique: str) -> None:
    target = f"big-{unique}"
    payload = "x" * 3000  # ~3 KB items: well over 1 MB, so several Query pages per shard
    acts = [
        Activity(
            actor=f"u{i % 7}",
            type=tracker.activity_type,
            target=target,
            ts=NOW - timedelta(seconds=i),
            attributes={"blob": payload},
        )
        for i in range(1500)
    ]
    tracker.record_many(acts)
    seen = tracker.view_activity(target, NOW - timedelta(days=1), NOW + timedelta(seconds=1))
    assert len(seen) == 1500 and seen == sorted(acts, key=lambda a: a.ts, reverse=True)


def test_record_many_counts_duplicates_in_input_and_in_table(
    tracker: Tracker, settings: Settings, unique: str
) -> None:
    actor = f"dup-{unique}"
    acts = [
        Activity(actor=actor, type=tracker.activity_type, target="/p", ts=NOW, event_id=f"e{i}")
        for i in range(30)
    ]
    first = tracker.record_many(acts + acts[:5])
    assert (first.written, first.duplicates, first.failed) == (30, 5, [])
    again = tracker.record_many([*acts[:10], acts[0].with_attributes(v=2)])
    assert (again.written, again.duplicates) == (0, 11)
    assert len(stored_items(settings, actor)) == 30


def test_record_many_accepts_mappings_of_the_tracker_type(tracker: Tracker, unique: str) -> None:
    report = tracker.record_many([{"actor": f"m-{unique}", "target": "/x", "attributes": {"k": 1}}])
    assert report.written == 1


def test_a_batch_with_one_bad_activity_writes_nothing_and_names_it(
    tracker: Tracker, settings: Settings, unique: str
) -> None:
    actor = f"bad-{unique}"
    good = [{"actor": actor, "target": "/p", "event_id": f"g{i}"} for i in range(40)]
    bad = {"actor": actor, "target": "/p", "attributes": {"score": float("nan")}}
    with pytest.raises(InvalidActivity) as caught:
        tracker.record_many([*good[:17], bad, *good[17:]])
    assert caught.value.index == 17 and caught.value.field == "attributes.score"
    assert stored_items(settings, actor) == []


def test_a_batch_of_another_type_is_refused(tracker: Tracker, unique: str) -> None:
    other = Activity(actor=f"o-{unique}", type="other-type", target="/p")
    with pytest.raises(InvalidActivity, match="this tracker records"):
        tracker.record_many([other])


BAD_INPUTS: list[tuple[dict[str, Any], str]] = [
    ({"actor": ""}, "actor"),
    ({"actor": "a" * 2000}, "actor"),
    ({"target": ""}, "target"),
    ({"target": "t" * 1100}, "target"),
    ({"at": datetime(2026, 1, 1)}, "ts"),
    ({"at": datetime(1900, 1, 1, tzinfo=UTC)}, "ts"),
    ({"attributes": {"actor": "x"}}, "attributes.actor"),
    ({"attributes": {"n": float("inf")}}, "attributes.n"),
    ({"attributes": {"s": set()}}, "attributes.s"),
    ({"attributes": {"s": {"a", 2}}}, "attributes.s"),
    ({"attributes": {"o": object()}}, "attributes.o"),
    ({"attributes": {"big": "x" * 420_000}}, "attributes"),
]


@pytest.mark.parametrize(("change", "field"), BAD_INPUTS)
def test_every_bad_input_is_refused_with_nothing_written(
    tracker: Tracker, settings: Settings, unique: str, change: dict[str, Any], field: str
) -> None:
    actor = change.get("actor", f"victim-{unique}")
    kwargs: dict[str, Any] = dict(change.get("attributes", {}))
    if "at" in change:
        kwargs["at"] = change["at"]
    with pytest.raises(InvalidActivity) as caught:
        tracker.record_activity(actor, change.get("target", "/p"), **kwargs)
    assert caught.value.field == field
    if actor:
        assert len(actor.encode()) > 1024 or stored_items(settings, actor) == []


def test_update_changes_attributes_only_and_bumps_rev(
    tracker: Tracker, settings: Settings, unique: str
) -> None:
    actor = f"upd-{unique}"
    a = tracker.record_activity(actor, "/p", browser="Chrome", plan="free")
    before = stored_items(settings, actor)[0]["rev"]
    b = tracker.update(a, plan="pro", seats=3)
    assert b.attributes == {"browser": "Chrome", "plan": "pro", "seats": 3}
    assert (b.actor, b.type, b.target, b.ts, b.event_id) == (
        a.actor,
        a.type,
        a.target,
        a.ts,
        a.event_id,
    )
    assert stored_items(settings, actor)[0]["rev"] == before + 1
    with pytest.raises(InvalidActivity):
        tracker.update(a, ts="2020")  # footfall's own name: refused, nothing changed
    with pytest.raises(InvalidActivity):
        tracker.update(a)


def test_update_and_delete_of_a_missing_activity_raise_not_found(
    tracker: Tracker, unique: str
) -> None:
    ghost = Activity(actor=f"ghost-{unique}", type=tracker.activity_type, target="/p")
    with pytest.raises(ActivityNotFound):
        tracker.update(ghost, x=1)
    with pytest.raises(ActivityNotFound):
        tracker.delete(ghost)


def test_delete_removes_the_item(tracker: Tracker, settings: Settings, unique: str) -> None:
    actor = f"del-{unique}"
    a = tracker.record_activity(actor, "/p")
    tracker.delete(a)
    assert stored_items(settings, actor) == []


def test_retention_sets_the_ttl_attribute(
    tracker: Tracker, settings: Settings, unique: str
) -> None:
    actor = f"ttl-{unique}"
    a = tracker.record_activity(actor, "/p", at=NOW)
    expires = stored_items(settings, actor)[0]["expires_at"]
    assert expires == int((a.ts + timedelta(days=400)).timestamp())


def test_unreachable_dynamodb_is_a_typed_transient_error(unique: str) -> None:
    from footfall import StoreUnavailable

    s = load_settings(dynamodb_endpoint="http://127.0.0.1:9", table="nowhere")
    with pytest.raises(StoreUnavailable) as caught:
        Tracker(f"x-{unique}", s).record_activity("a", "b")
    assert caught.value.transient


def test_a_missing_table_says_how_to_create_it(dynamodb_endpoint: str, unique: str) -> None:
    from footfall import StoreError

    s = load_settings(dynamodb_endpoint=dynamodb_endpoint, table=f"missing-{unique}")
    with pytest.raises(StoreError, match="footfall table create"):
        Tracker("x", s).record_activity("a", "b")


def test_batch_write_error_carries_the_report() -> None:
    error = BatchWriteError("DynamoDB", [(3, "throttled")], written=9)
    assert error.failed == [(3, "throttled")] and error.written == 9 and error.transient


# -- EventPublisher -------------------------------------------------------------------------


@pytest.fixture
def kafka_settings(kafka_broker: str, unique: str) -> Settings:
    return load_settings(kafka_broker=kafka_broker, topic_prefix=f"t{unique}", topic_partitions=3)


def consume(settings: Settings, n: int) -> list[Any]:
    target = settings.kafka
    assert target is not None
    bridge = KafkaBridge(target)

    async def read() -> list[Any]:
        consumer = AIOKafkaConsumer(
            settings.topic("events"),
            bootstrap_servers=target.bootstrap,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        await consumer.start()
        out: list[Any] = []
        try:
            while len(out) < n:
                batch = await consumer.getmany(timeout_ms=10_000)
                if not batch:
                    break
                for records in batch.values():
                    out.extend(records)
        finally:
            await consumer.stop()
        return out

    try:
        return bridge.run(read())
    finally:
        bridge.close()


def test_publish_sends_json_keyed_by_actor(kafka_settings: Settings, unique: str) -> None:
    acts = [
        Activity(actor=f"a{i % 3}", type="search", target=f"q{i}", attributes={"i": i})
        for i in range(50)
    ]
    with EventPublisher(kafka_settings) as events:
        events.publish(acts[0])
        report = events.publish_many(acts[1:], pack=False)
    assert report.sent == 49 and report.topic == kafka_settings.topic("events")
    records = consume(kafka_settings, 50)
    assert len(records) == 50 == message_count(kafka_settings)
    by_event = {json.loads(r.value)["event_id"]: r for r in records}
    for a in acts:
        record = by_event[a.event_id]
        assert record.key == a.actor.encode()
        assert json.loads(record.value) == a.to_json_dict()
        assert dict(record.headers)["content-type"] == b"application/json"
    partitions_of_a0 = {r.partition for r in records if r.key == b"a0"}
    assert len(partitions_of_a0) == 1  # one actor, one partition: its order is kept


def test_publish_many_sends_packs_each_activity_in_its_actors_partition(
    kafka_settings: Settings, unique: str
) -> None:
    acts = [
        Activity(actor=f"a{i % 7}", type="search", target=f"q{i}", attributes={"i": i})
        for i in range(1200)
    ]
    with EventPublisher(kafka_settings) as events:
        report = events.publish_many(acts)
    assert report.sent == 1200
    records = consume(kafka_settings, 1200)
    assert all(is_pack(r.headers) for r in records)
    # packs of one partition, at most PACK_MAX_EVENTS each: 7 actors over 3 partitions
    assert 3 <= len(records) == message_count(kafka_settings) < 1200
    lines = [(r.partition, json.loads(line)) for r in records for line in r.value.split(b"\n")]
    assert sorted(d["event_id"] for _, d in lines) == sorted(a.event_id for a in acts)
    partitions = list(range(kafka_settings.topic_partitions))
    for partition, data in lines:  # where a single message keyed by the actor would go
        assert partition == partition_of(data["actor"].encode(), partitions)
    for actor in {a.actor for a in acts}:  # and in the order published
        sent = [a.event_id for a in acts if a.actor == actor]
        read = [
            d["event_id"]
            for r in sorted(records, key=lambda r: r.offset)
            for d in (json.loads(line) for line in r.value.split(b"\n"))
            if d["actor"] == actor
        ]
        assert read == sent


def test_publish_many_with_one_bad_activity_sends_nothing(
    kafka_settings: Settings, unique: str
) -> None:
    good = [{"actor": "a", "type": "search", "target": "q"}] * 5
    with EventPublisher(kafka_settings) as events, pytest.raises(InvalidActivity) as caught:
        events.publish_many([*good, {"actor": "a", "type": "bad type", "target": "q"}])
    assert caught.value.index == 5
    assert message_count(kafka_settings) == 0


def message_count(settings: Settings) -> int:
    target = settings.kafka
    assert target is not None
    bridge = KafkaBridge(target)

    async def count() -> int:
        consumer = AIOKafkaConsumer(bootstrap_servers=target.bootstrap)
        await consumer.start()
        try:
            # the publisher created the topic with the settings' partition count
            tps = [
                TopicPartition(settings.topic("events"), p)
                for p in range(settings.topic_partitions)
            ]
            return sum((await consumer.end_offsets(tps)).values())
        finally:
            await consumer.stop()

    try:
        return bridge.run(count())
    finally:
        bridge.close()


def test_publisher_without_a_broker_setting_is_a_config_error() -> None:
    from footfall import ConfigError

    with pytest.raises(ConfigError, match="FOOTFALL_KAFKA_BROKER"):
        EventPublisher(load_settings(kafka_broker=None))


def test_unreachable_broker_is_a_typed_error(unique: str) -> None:
    from footfall import StoreUnavailable

    with pytest.raises(StoreUnavailable):
        EventPublisher(load_settings(kafka_broker="kafka://127.0.0.1:9"))


@pytest.fixture(autouse=True)
def _no_leaked_threads() -> Iterator[None]:
    import threading

    before = {t.name for t in threading.enumerate()}
    yield
    leaked = {t.name for t in threading.enumerate() if t.is_alive()} - before
    assert not {n for n in leaked if n.startswith("footfall-kafka")}
