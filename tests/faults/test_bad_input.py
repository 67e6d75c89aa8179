"""Bad input, generated: every rejection is one of footfall's typed errors, nothing is half done.

hypothesis throws values of every shape at `Tracker.record_activity` / `record_many`,
`EventPublisher.publish` / `publish_many` and the `query` handle's parameters (typed calls, SQL
`{name:Type}` parameters, named queries, the SQL text itself), against DynamoDB Local, Kafka and
chDB. For each input:

- it is accepted and stored exactly as the model says (read back from the store), or
- it raises an InvalidActivity (writes) / a QueryError or other FootfallError (reads), and the
  store holds nothing of it: the table partition is read back after each rejected input, the
  topic's end offsets after each rejected batch, and the whole table once at the end.

Any other exception fails the test (hypothesis shrinks it to a minimal example). A store error
for an input that validation accepted fails it too: validation must catch what the store would
refuse, or a batch could be half written.

Short: 800 inputs in all; `--long` (or FOOTFALL_FAULTS_LONG=1): 10,000.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Final

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import query
from footfall import FootfallError, InvalidActivity, Settings, StoreError, load_settings
from footfall._activity import RESERVED_ATTRIBUTES
from footfall._clickhouse import connect
from footfall._dynamodb import DynamoDB
from footfall._kafka import KafkaBridge
from footfall._migrate import migrate
from footfall._table import from_dynamo
from footfall._wire import is_pack
from ingest import Activity, EventPublisher, Tracker
from ingest._tracker import coerce_activities
from query import ParameterError, UnknownName

pytestmark = pytest.mark.faults

NOW: Final = datetime.now(UTC).replace(microsecond=0)
# Generated inputs per test, (short, long); the long column adds up to 10,000.
BUDGET: Final = {
    "record_activity": (220, 3_000),
    "record_many": (120, 1_000),
    "publish": (80, 800),
    "typed_reads": (120, 1_500),
    "sql_parameters": (160, 2_200),
    "named_and_text": (100, 1_500),
}


LONG_TIMEOUT: Final = pytest.mark.timeout(3600)  # the long volumes outlast the 300 s default


def examples(config: pytest.Config, name: str) -> int:
    env = os.environ.get("FOOTFALL_FAULTS_LONG") == "1"
    long = bool(config.getoption("--long", default=False)) or env
    return BUDGET[name][1 if long else 0]


def run_settings(config: pytest.Config, name: str) -> settings:
    return settings(
        max_examples=examples(config, name),
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


# -- strategies ---------------------------------------------------------------------------------

BIG = 400 * 1024
EDGE_TEXTS = [
    "",
    " ",
    "\t\n",
    "\x00",
    "a#b",
    "#",
    "x" * 1024,
    "é" * 512,  # 1024 UTF-8 bytes
    "é" * 513,
    "😀" * 256,
    "😀" * 257,
    "\ud800",  # a lone surrogate: not valid Unicode text
    "a\udfffb",
    "\u2028",
    "'; DROP TABLE x; --",
]
surrogates = st.text(st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), min_size=1)
texts = st.one_of(st.text(max_size=30), st.sampled_from(EDGE_TEXTS), surrogates)
junk = st.one_of(
    st.none(),
    st.integers(),
    st.floats(),
    st.booleans(),
    st.binary(max_size=8),
    st.builds(object),
    st.lists(st.integers(), max_size=2),
    st.just(NOW),
    st.just(b"bytes"),
)
ACTORS = [f"actor-{i}" for i in range(12)] + ["é" * 512, "😀" * 256]
# (valid values are drawn more often, so that the later fields get tested too)
actors = st.one_of(st.sampled_from(ACTORS), st.sampled_from(ACTORS), texts, junk)
TARGETS = ["/p/1", "/p/2", "t" * 1024]
targets = st.one_of(st.sampled_from(TARGETS), st.sampled_from(TARGETS), texts, junk)
type_names = st.one_of(
    st.from_regex(r"[A-Za-z0-9_.:-]{1,130}", fullmatch=True), st.sampled_from(["a b", "a#b"]), junk
)
event_ids = st.one_of(
    st.none(),
    st.from_regex(r"[\x21-\x7e]{1,130}", fullmatch=True),
    st.sampled_from(["e-1", "e-2", "e-3"]),  # repeats: the same activity again
    texts,
    junk,
)
offsets = st.builds(
    timezone,
    st.timedeltas(
        min_value=-timedelta(hours=23, minutes=59), max_value=timedelta(hours=23, minutes=59)
    ),
)
EDGE_MOMENTS = [
    datetime.min.replace(tzinfo=timezone(timedelta(hours=1))),  # before year 1 in UTC
    datetime.max.replace(tzinfo=timezone(timedelta(hours=-1))),  # after year 9999 in UTC
    datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    datetime(2100, 1, 1, tzinfo=UTC),
]
moments = st.one_of(
    st.none(),
    st.sampled_from(EDGE_MOMENTS),
    st.sampled_from(EDGE_MOMENTS),
    st.datetimes(timezones=offsets),  # year 1 .. 9999, any offset
    st.datetimes(
        min_value=datetime(1969, 12, 31), max_value=datetime(2100, 1, 2), timezones=offsets
    ),
    st.datetimes(),  # naive
    st.just(NOW + timedelta(days=2)),  # too far in the future
    st.dates(),
    junk,
)


class Big(str):
    """A long string that shows itself short (hypothesis prints the examples it tries)."""

    def __repr__(self) -> str:
        return f"Big({len(self)} chars)"


set_numbers = st.one_of(st.integers(), st.floats(allow_nan=False), st.decimals(allow_nan=False))
numbers = st.one_of(
    st.integers(),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(),
    st.decimals(),
    st.sampled_from([Decimal("1e126"), Decimal("1e-131"), Decimal("9.99e125"), 10**38 + 1]),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    numbers,
    texts,
    st.sampled_from([Big("x" * (BIG - n)) for n in (3000, 1500, 600, 0)]),
    st.binary(max_size=4),
    st.builds(object),
    st.just(NOW),
)


def containers(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Lists, tuples, maps and sets of `inner` values (maps also with non-string keys)."""
    return st.one_of(
        st.lists(inner, max_size=4),
        st.tuples(inner, inner),
        st.dictionaries(st.one_of(texts, st.integers()), inner, max_size=4),
        st.frozensets(st.one_of(st.text(max_size=4), set_numbers), max_size=4),
        st.sets(st.text(max_size=4), max_size=4),
        st.sets(set_numbers, max_size=3),
    )


attribute_values = st.recursive(scalars, containers, max_leaves=10)
deep = st.integers(min_value=30, max_value=40).map(
    lambda depth: _nest(depth)  # around DynamoDB's nesting limit of 32
)
attribute_names = st.one_of(
    st.text(max_size=10), st.sampled_from(sorted(RESERVED_ATTRIBUTES)), st.sampled_from(EDGE_TEXTS)
).filter(lambda name: name not in ("at", "event_id"))  # record_activity's own keywords
attributes = st.dictionaries(attribute_names, st.one_of(attribute_values, deep), max_size=4)


def _nest(depth: int) -> Any:
    value: Any = "leaf"
    for i in range(depth):
        value = {"k": value} if i % 2 else [value]
    return value


small_integers = st.integers(min_value=-(10**30), max_value=10**30)  # always storable


@st.composite
def valid_activities(draw: st.DrawFn, activity_type: str) -> Activity:
    """Activities that validation accepts (with explicit ts and event_id: their keys are known)."""
    return Activity(
        actor=draw(st.sampled_from(ACTORS)),
        type=activity_type,
        target=draw(st.sampled_from(["/p/1", "/p/2", "/p/3"])),
        ts=draw(
            st.datetimes(
                min_value=datetime(2020, 1, 1),
                max_value=datetime(2026, 1, 1),
                timezones=st.just(UTC),
            )
        ),
        event_id=f"v-{draw(st.integers(min_value=0, max_value=10**9))}",
        attributes=draw(st.dictionaries(st.sampled_from("abc"), small_integers, max_size=2)),
    )


def entries(activity_type: str) -> st.SearchStrategy[Any]:
    """An element of a batch: a valid Activity or mapping, or something bad."""
    valid = valid_activities(activity_type)
    as_mapping = valid.map(
        lambda a: {
            "actor": a.actor,
            "target": a.target,
            "ts": a.ts,
            "event_id": a.event_id,
            "attributes": a.attributes,
        }
    )
    bad_mapping = st.fixed_dictionaries(  # ts and event_id given, so that keys are known
        {
            "actor": actors,
            "target": targets,
            "ts": moments.filter(lambda m: m is not None),
            "event_id": event_ids.filter(lambda e: e is not None),
        },
        optional={
            "attributes": st.one_of(attributes, junk),
            "type": type_names,
            "colour": st.just("unknown field"),
        },
    )
    return st.one_of(valid, valid, as_mapping, bad_mapping, junk, st.just("a string"))


# -- the model of what is stored ------------------------------------------------------------------


def normal(value: Any) -> Any:
    """What a stored attribute value reads back as: numbers int if integral else float, tuples
    as lists, frozensets as sets (the documented round trip through DynamoDB)."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float | Decimal):
        number = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
        return int(number) if number == number.to_integral_value() else float(number)
    if isinstance(value, Mapping):
        return {k: normal(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [normal(v) for v in value]
    if isinstance(value, set | frozenset):
        return {normal(v) for v in value}
    raise AssertionError(f"validation accepted {type(value).__name__}")


Key = tuple[str, str]  # (actor, sk)


@dataclass
class Model:
    """What the table must hold: `(actor, sk)` -> (event_id, normalised attributes)."""

    store: DynamoDB
    items: dict[Key, tuple[str, Any]] = field(default_factory=dict)

    def accept(self, activity: Activity) -> None:
        key = (activity.actor, f"{activity.ts_ms:013d}#{activity.event_id}")
        self.items.setdefault(key, (activity.event_id, normal(activity.attributes)))

    def check_partition(self, actor: object) -> None:
        """The table holds exactly the model's items of `actor` (if it can be a key at all)."""
        if not _keyable(actor):
            return
        assert isinstance(actor, str)
        stored = {
            (str(item["actor"]), str(item["sk"])): (
                str(item["event_id"]),
                from_dynamo(item.get("attributes") or {}),
            )
            for item in self.store.query(key_name="actor", key_value=actor, newest_first=False)
        }
        expected = {k: v for k, v in self.items.items() if k[0] == actor}
        assert stored == expected

    def check_keys(self, batch: object, activity_type: str) -> None:
        """Of the batch's entries that are valid on their own, exactly those the model holds
        are stored (one BatchGetItem)."""
        if not isinstance(batch, list):
            return
        keys: dict[Key, None] = {}
        for entry in batch:
            try:
                (activity,) = coerce_activities([entry], activity_type=activity_type)
            except InvalidActivity:
                continue
            keys[(activity.actor, f"{activity.ts_ms:013d}#{activity.event_id}")] = None
        stored = self.store.existing_keys([{"actor": a, "sk": sk} for a, sk in keys])
        assert stored == {k for k in keys if k in self.items}

    def check_table(self) -> None:
        stored = {
            (str(item["actor"]), str(item["sk"]))
            for item in self.store.scan(segment=0, total_segments=1)
        }
        assert stored == set(self.items)


def _keyable(actor: object) -> bool:
    if not isinstance(actor, str) or not actor:
        return False
    try:
        return len(actor.encode()) <= 1024
    except UnicodeEncodeError:
        return False


def rejected_cleanly(exc: BaseException) -> None:
    """A write rejected by validation, not by the store (which could mean a half-done batch)."""
    if isinstance(exc, StoreError):
        pytest.fail(f"the store refused what validation accepted: {exc!r}")
    assert isinstance(exc, InvalidActivity), repr(exc)
    assert exc.field and exc.rule


# -- fixtures -----------------------------------------------------------------------------------


def fresh_table(dynamodb_endpoint: str) -> Settings:
    settings_ = load_settings(
        dynamodb_endpoint=dynamodb_endpoint, table=f"bad-input-{uuid.uuid4().hex[:8]}"
    )
    DynamoDB(settings_).ensure_table()
    return settings_


@pytest.fixture(scope="module")
def table(dynamodb_endpoint: str) -> Settings:
    return fresh_table(dynamodb_endpoint)


# -- writes -------------------------------------------------------------------------------------


@LONG_TIMEOUT
def test_record_activity_stores_valid_input_exactly_and_rejects_the_rest_cleanly(
    request: pytest.FixtureRequest, table: Settings
) -> None:
    tracker = Tracker("bad-single", table)
    model = Model(DynamoDB(table))

    @run_settings(request.config, "record_activity")
    @given(actor=actors, target=targets, at=moments, event_id=event_ids, attrs=attributes)
    def check(actor: Any, target: Any, at: Any, event_id: Any, attrs: dict[str, Any]) -> None:
        try:
            activity = tracker.record_activity(actor, target, at=at, event_id=event_id, **attrs)
        except FootfallError as exc:
            rejected_cleanly(exc)
        else:
            assert (activity.actor, activity.target) == (actor, target)
            model.accept(activity)
        model.check_partition(actor)

    check()
    model.check_table()


@LONG_TIMEOUT
def test_record_many_writes_a_valid_batch_whole_and_nothing_of_a_bad_one(
    request: pytest.FixtureRequest, dynamodb_endpoint: str
) -> None:
    settings_ = fresh_table(dynamodb_endpoint)
    tracker = Tracker("bad-batch", settings_)
    model = Model(DynamoDB(settings_))
    batches = st.one_of(
        st.lists(entries("bad-batch"), max_size=40),
        st.lists(valid_activities("bad-batch"), min_size=20, max_size=40),
        st.lists(valid_activities("bad-batch"), max_size=30).map(lambda b: [*b, {"actor": "a"}]),
        junk,
        st.just("abc"),
        st.just({"actor": "a", "target": "t"}),
    )

    @run_settings(request.config, "record_many")
    @given(batch=batches)
    def check(batch: Any) -> None:
        try:
            report = tracker.record_many(batch)
        except FootfallError as exc:
            rejected_cleanly(exc)
            if isinstance(batch, list):
                assert exc.index is not None and 0 <= exc.index < len(batch)
        else:
            assert report.failed == [] and report.written + report.duplicates == len(batch)
            for activity in coerce_activities(batch, activity_type="bad-batch"):
                model.accept(activity)
        model.check_keys(batch, "bad-batch")

    check()
    model.check_table()


@LONG_TIMEOUT
def test_event_publisher_sends_a_valid_batch_whole_and_nothing_of_a_bad_one(
    request: pytest.FixtureRequest, kafka_broker: str
) -> None:
    settings_ = load_settings(kafka_broker=kafka_broker, topic_prefix=f"bad{uuid.uuid4().hex[:8]}")
    batches = st.one_of(
        st.lists(entries("published"), max_size=12),
        st.lists(valid_activities("published"), max_size=8).map(lambda b: [*b, 42]),
        junk,
    )
    with EventPublisher(settings_) as events, contextlib.closing(TopicTally(settings_)) as topic:
        sent = 0

        @run_settings(request.config, "publish")
        @given(batch=batches, one=st.booleans())
        def check(batch: Any, one: bool) -> None:
            nonlocal sent
            try:
                if one:
                    events.publish(batch)
                    count = 1
                else:
                    count = events.publish_many(batch).sent
            except FootfallError as exc:
                rejected_cleanly(exc)
            else:
                sent += count
            assert topic.count() == sent  # activities, whatever packs carried them

        check()


class TopicTally:
    """How many activities the events topic holds: a pack's lines, or one a single message.

    Each count reads only what arrived since the last, with a consumer of its own that is
    stopped before the count returns: a consumer left running would draw on `random` in its
    thread while hypothesis generates the next example, which hypothesis refuses.
    """

    def __init__(self, settings_: Settings) -> None:
        from aiokafka import TopicPartition

        target = settings_.kafka
        assert target is not None
        self.bootstrap = target.bootstrap
        self.bridge = KafkaBridge(target)
        topic = settings_.topic("events")
        self.read_to = {TopicPartition(topic, p): 0 for p in range(settings_.topic_partitions)}
        self.activities = 0

    def count(self) -> int:
        return self.bridge.run(self._read())

    async def _read(self) -> int:
        from aiokafka import AIOKafkaConsumer

        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, enable_auto_commit=False, fetch_max_wait_ms=10
        )
        await consumer.start()
        try:
            consumer.assign(list(self.read_to))
            ends = await consumer.end_offsets(list(self.read_to))
            for tp, end in ends.items():
                consumer.seek(tp, self.read_to[tp])
                while self.read_to[tp] < end:
                    batch = await consumer.getmany(tp, timeout_ms=1000)
                    for record in batch.get(tp, []):
                        if is_pack(record.headers):
                            self.activities += len([x for x in record.value.split(b"\n") if x])
                        else:
                            self.activities += 1
                        self.read_to[tp] = record.offset + 1
        finally:
            await consumer.stop()
        return self.activities

    def close(self) -> None:
        self.bridge.close()


# -- reads --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def reader(table: Settings, chdb_url: str) -> Iterator[query.Footfall]:
    database = f"bad_{uuid.uuid4().hex[:10]}"
    settings_ = table.model_copy(update={"clickhouse_url": chdb_url})
    root = connect(settings_)
    root.command(f"CREATE DATABASE {database}")
    with connect(settings_, database=database) as admin:
        migrate(admin)
    ff = query.connect(settings_, database=database)
    try:
        yield ff
    finally:
        ff.close()
        root.command(f"DROP DATABASE IF EXISTS {database} SYNC")
        root.close()


def read_cleanly(call: Callable[[], Any]) -> None:
    """A read returns a frame (or a Route) or raises one of footfall's errors; nothing else."""
    with contextlib.suppress(FootfallError):
        call()


counts = st.one_of(st.integers(min_value=-5, max_value=10**12), junk, st.none())


@LONG_TIMEOUT
def test_typed_reads_answer_or_raise_a_typed_error(
    request: pytest.FixtureRequest, reader: query.Footfall
) -> None:
    @run_settings(request.config, "typed_reads")
    @given(
        actor=actors,
        target=targets,
        kind=st.one_of(st.none(), type_names),
        n=counts,
        start=moments,
        end=moments,
        which=st.sampled_from(["latest", "actor_range", "target_range"]),
    )
    def check(actor: Any, target: Any, kind: Any, n: Any, start: Any, end: Any, which: str) -> None:
        if which == "latest":
            read_cleanly(lambda: reader.latest(actor, n, kind))
        elif which == "actor_range":
            read_cleanly(lambda: reader.actor_range(actor, start, end, kind, limit=n))
        else:
            read_cleanly(lambda: reader.target_range(kind, target, start, end, limit=n))

    check()


# Statements with placeholders of many types; both routes (the first two are point reads).
STATEMENTS = [
    "SELECT event_id, ts FROM activities WHERE actor = {a:String} "
    "ORDER BY ts DESC LIMIT {n:UInt32}",
    "SELECT event_id FROM activities WHERE type = {t:String} AND target = {x:String} "
    "AND ts >= {s:DateTime64(3, 'UTC')} AND ts < {e:DateTime64(3, 'UTC')}",
    "SELECT {a:String} AS a, {i:Int64} AS i, {u:UInt8} AS u, {f:Float64} AS f",
    "SELECT {d:Date} AS d, {t:DateTime} AS t, {b:Bool} AS b, {m:Decimal(10, 2)} AS m",
    "SELECT {xs:Array(String)} AS xs, {n:Nullable(String)} AS n, {id:UUID} AS id",
    "SELECT {ys:Array(Nullable(Int32))} AS ys, {lc:LowCardinality(String)} AS lc",
    "SELECT count() AS n FROM activities WHERE ts >= {s:DateTime64(3, 'UTC')} LIMIT {l:UInt64}",
]
parameter_values = st.one_of(
    texts,
    junk,
    numbers,
    moments,
    st.lists(st.one_of(texts, st.integers(), st.none()), max_size=4),
    st.uuids(),
    st.sampled_from(
        ["1", "-1", "2.5", "true", "2026-01-01", "2026-01-01T00:00:00", "nan", "1e400"]
    ),
)


@st.composite
def statement_and_parameters(draw: st.DrawFn) -> tuple[str, Any]:
    text = draw(st.sampled_from(STATEMENTS))
    names = [name.split(":")[0] for name in text.split("{")[1:]]
    params: dict[Any, Any] = {name: draw(parameter_values) for name in names}
    if draw(st.booleans()):
        params[draw(st.one_of(st.text(max_size=5), st.sampled_from(["__ff_actor", "zz"])))] = 1
    if draw(st.booleans()) and params:
        params.pop(draw(st.sampled_from(sorted(params, key=str))))
    wrapped = draw(st.sampled_from(["dict", "dict", "pairs", "junk"]))
    if wrapped == "pairs":
        return text, list(params.items())
    if wrapped == "junk":
        return text, draw(junk)
    return text, params


@LONG_TIMEOUT
def test_sql_parameters_bind_or_raise_a_typed_error(
    request: pytest.FixtureRequest, reader: query.Footfall
) -> None:
    @run_settings(request.config, "sql_parameters")
    @given(
        case=statement_and_parameters(),
        route=st.sampled_from(["auto", "dynamodb", "clickhouse", "elsewhere"]),
        fresh=st.booleans(),
    )
    def check(case: tuple[str, Any], route: Any, fresh: bool) -> None:
        text, params = case
        read_cleanly(lambda: reader.sql(text, params, route=route, fresh=fresh))
        read_cleanly(lambda: reader.explain(text, params))

    check()


@LONG_TIMEOUT
def test_named_queries_and_sql_text_answer_or_raise_a_typed_error(
    request: pytest.FixtureRequest, reader: query.Footfall
) -> None:
    names = st.one_of(st.sampled_from([q.name for q in query.named_queries()]), texts, junk)
    params = st.dictionaries(
        st.sampled_from(["start", "end", "type", "limit", "steps", "days", "actor", "x"]),
        parameter_values,
        max_size=5,
    )
    sql_texts = st.one_of(texts, st.text(max_size=200), st.sampled_from(STATEMENTS), junk)

    @run_settings(request.config, "named_and_text")
    @given(name=names, parameters=params, text=sql_texts)
    def check(name: Any, parameters: dict[str, Any], text: Any) -> None:
        read_cleanly(lambda: reader.named(name, **parameters))
        read_cleanly(lambda: reader.sql(text))

    check()


# -- what the generated inputs found, pinned --------------------------------------------------


@pytest.mark.parametrize("batch", [None, 42, object(), Activity(actor="a", type="t", target="x")])
def test_a_batch_that_is_not_a_list_of_activities_is_invalid(batch: Any, table: Settings) -> None:
    with pytest.raises(InvalidActivity, match="list"):
        Tracker("t", table).record_many(batch)
    with pytest.raises(InvalidActivity, match="list"):
        coerce_activities(batch)  # what EventPublisher.publish_many runs first


def test_parameters_that_are_not_a_mapping_are_a_parameter_error(reader: query.Footfall) -> None:
    for values in (object(), [("a", "b")], "a=b"):
        with pytest.raises(ParameterError, match="dict"):
            reader.sql("SELECT {a:String} AS a", values)  # type: ignore[arg-type]


def test_a_named_query_that_does_not_exist_is_unknown_whatever_its_name(
    reader: query.Footfall,
) -> None:
    for name in (None, 42, "x" * 300, "../queries/named/top_targets", "top_targets\x00"):
        with pytest.raises(UnknownName):
            reader.named(name)  # type: ignore[arg-type]


FAR_AWAY = [
    datetime.min.replace(tzinfo=timezone(timedelta(hours=1))),
    datetime.max.replace(tzinfo=timezone(timedelta(hours=-1))),
]


@pytest.mark.parametrize("moment", FAR_AWAY, ids=["before year 1", "after year 9999"])
def test_times_outside_years_1_to_9999_in_utc_are_refused_not_overflowing(
    moment: datetime, table: Settings, reader: query.Footfall
) -> None:
    with pytest.raises(InvalidActivity, match="ts"):
        Tracker("t", table).record_activity("a", "x", at=moment)
    with pytest.raises(InvalidActivity):
        reader.actor_range("a", moment, datetime.now(UTC))
    with pytest.raises(ParameterError):
        reader.sql("SELECT {s:DateTime64(3, 'UTC')} AS s", {"s": moment})
    with pytest.raises(ParameterError):
        reader.sql("SELECT {s:DateTime64(3, 'UTC')} AS s", {"s": moment.isoformat()})


def test_record_many_stores_activities_that_share_an_event_id_but_not_a_time(
    table: Settings,
) -> None:
    """An activity's identity is (actor, ts, event_id), as record_activity and the table's key
    have it: two of one batch that differ in ts are two activities, not a duplicate."""
    actor = f"same-id-{uuid.uuid4().hex[:6]}"
    twins = [
        Activity(actor=actor, type="t", target="x", ts=NOW - timedelta(seconds=s), event_id="e")
        for s in (1, 2)
    ]
    report = Tracker("t", table).record_many([*twins, twins[0]])
    assert (report.written, report.duplicates) == (2, 1)
    assert len(list(DynamoDB(table).query(key_name="actor", key_value=actor))) == 2
