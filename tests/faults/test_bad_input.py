"""Bad input: the cases the generated inputs of this suite found, pinned (the generated-input
suites come with the last of these fixes)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Final

import pytest

import query
from footfall import InvalidActivity, Settings, load_settings
from footfall._clickhouse import connect
from footfall._dynamodb import DynamoDB
from footfall._migrate import migrate
from ingest import Activity, Tracker
from ingest._tracker import coerce_activities
from query import ParameterError, UnknownName

pytestmark = pytest.mark.faults

NOW: Final = datetime.now(UTC).replace(microsecond=0)


def fresh_table(dynamodb_endpoint: str) -> Settings:
    settings_ = load_settings(
        dynamodb_endpoint=dynamodb_endpoint, table=f"bad-input-{uuid.uuid4().hex[:8]}"
    )
    DynamoDB(settings_).ensure_table()
    return settings_


@pytest.fixture(scope="module")
def table(dynamodb_endpoint: str) -> Settings:
    return fresh_table(dynamodb_endpoint)


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
