"""DynamoDB throttling and 5xx on writes, injected on the wire by a proxy before DynamoDB Local.

The fault-matrix row "DynamoDB throttling and 5xx on writes": every activity `record_many`
accepted is stored exactly once, the caller sees every retry (`WriteReport.retries`), and what
DynamoDB never takes is named in a BatchWriteError, never silently lost. Verification reads go
to DynamoDB Local directly, around the proxy.

Short by default; `--long` (or FOOTFALL_FAULTS_LONG=1) runs the heavier load.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import botocore.config
import botocore.exceptions
import pytest

from footfall import Settings, StoreUnavailable, load_settings
from footfall._dynamodb import DynamoDB
from ingest import Activity, BatchWriteError, Tracker, WriteReport
from tests.faults._throttle_proxy import FaultPlan, ThrottleProxy, throttle_proxy

pytestmark = pytest.mark.faults
log = logging.getLogger(__name__)

TYPE = "throttled-views"
NOW = datetime.now(UTC).replace(microsecond=0)


@dataclass(frozen=True)
class Volume:
    batches: int
    batch_size: int
    resent_per_batch: int
    singles: int


SHORT = Volume(batches=4, batch_size=200, resent_per_batch=10, singles=16)
LONG = Volume(batches=40, batch_size=500, resent_per_batch=25, singles=200)


@pytest.fixture(scope="module")
def volume(request: pytest.FixtureRequest) -> Volume:
    long = bool(request.config.getoption("--long", default=False))
    return LONG if long or os.environ.get("FOOTFALL_FAULTS_LONG") == "1" else SHORT


@pytest.fixture(scope="module")
def direct(dynamodb_endpoint: str) -> Settings:
    """Settings that reach DynamoDB Local itself (for set-up and verification)."""
    settings = load_settings(
        dynamodb_endpoint=dynamodb_endpoint, table=f"throttle-{uuid.uuid4().hex[:8]}"
    )
    DynamoDB(settings).ensure_table()
    return settings


@pytest.fixture(scope="module")
def proxy(dynamodb_endpoint: str) -> Iterator[ThrottleProxy]:
    with throttle_proxy(dynamodb_endpoint) as running:
        yield running


@pytest.fixture(scope="module")
def proxied(direct: Settings, proxy: ThrottleProxy) -> Settings:
    """The same table, reached through the throttling proxy."""
    return direct.model_copy(update={"dynamodb_endpoint": proxy.endpoint})


ACTORS_PER_PREFIX = 37


def stored(direct: Settings, *prefixes: str) -> list[dict[str, Any]]:
    """Every item of the actors `activities(prefix, ...)` can make, read from DynamoDB Local
    directly (a Query per actor: the table grows large in the long run)."""
    table = DynamoDB(direct)
    actors = [f"{p}-{i:02d}" for p in prefixes for i in range(ACTORS_PER_PREFIX)]
    return [item for actor in actors for item in table.query(key_name="actor", key_value=actor)]


def activities(prefix: str, count: int, *, start: int = 0) -> list[Activity]:
    return [
        Activity(
            actor=f"{prefix}-{i % ACTORS_PER_PREFIX:02d}",
            type=TYPE,
            target=f"/p/{i % 11}",
            ts=NOW - timedelta(seconds=i),
            event_id=f"{prefix}-{i:08d}",
            attributes={"n": i, "note": "x" * (i % 50)},
        )
        for i in range(start, start + count)
    ]


def assert_stored_exactly_once(
    direct: Settings, prefixes: str | tuple[str, ...], sent: list[Activity]
) -> None:
    items = stored(direct, *((prefixes,) if isinstance(prefixes, str) else prefixes))
    per_event = Counter(str(item["event_id"]) for item in items)
    duplicated = {e: n for e, n in per_event.items() if n > 1}
    expected = {a.event_id: a for a in sent}
    lost = set(expected) - set(per_event)
    unexpected = set(per_event) - set(expected)
    assert not duplicated, f"stored more than once: {sorted(duplicated)[:5]}"
    assert not lost, f"{len(lost)} accepted activities lost, e.g. {sorted(lost)[:5]}"
    assert not unexpected, f"stored but never sent: {sorted(unexpected)[:5]}"
    for item in items:  # retries did not corrupt what was stored
        activity = expected[str(item["event_id"])]
        assert (item["actor"], int(item["attributes"]["n"])) == (
            activity.actor,
            activity.attributes["n"],
        )


WRITE_PATH = frozenset({"BatchWriteItem", "BatchGetItem"})  # record_many's calls
MIXED = dict(throughput_exceeded=0.08, throttling=0.04, internal_error=0.04, lost_reply=0.04)


def test_record_many_under_throttling_stores_every_activity_once_and_reports_every_retry(
    proxy: ThrottleProxy, proxied: Settings, direct: Settings, volume: Volume
) -> None:
    """Throttling (both codes), 500s before and after the write, and partial BatchWriteItem
    results: each batch is written completely, `retries` equals the faults on the write calls,
    and the table holds every activity exactly once. Each batch also resends activities of the
    previous one (their existence check is throttled too): they are counted as duplicates and
    not stored twice."""
    prefix = f"tm{uuid.uuid4().hex[:6]}"
    tracker = Tracker(TYPE, proxied)
    sent: list[Activity] = []
    figures = Counter[str]()
    started = time.monotonic()
    for number in range(volume.batches):
        fresh = activities(prefix, volume.batch_size, start=number * volume.batch_size)
        resent = sent[-volume.resent_per_batch :] if sent else []
        proxy.set_plan(FaultPlan(**MIXED, partial=0.15, operations=WRITE_PATH, seed=number))
        report = tracker.record_many([*fresh, *resent])
        faults = proxy.counts.faults_of("BatchWriteItem")
        assert report == WriteReport(
            written=len(fresh), duplicates=len(resent), failed=[], retries=faults
        )
        sent.extend(fresh)
        figures.update(sent=len(fresh) + len(resent), retries=report.retries, faults=faults)
        figures.update({f"{op}:{kind}": n for (op, kind), n in proxy.counts.faults.items()})
    proxy.set_plan(FaultPlan())
    # the plans did inject faults into the writes (over the run: a batch of 200 is ~8 write
    # calls over 16 threads, and one in about 30 batches drew none, which failed CI)
    assert figures["faults"] > 0
    assert_stored_exactly_once(direct, prefix, sent)
    log.warning(
        "throttling figures: %d activities sent (%d unique), %d stored, 0 duplicates, 0 lost, "
        "%d retries seen by the caller for %d injected faults %s, %.1f s",
        figures["sent"],
        len(sent),
        len(sent),
        figures["retries"],
        figures["faults"],
        {k: v for k, v in figures.items() if ":" in k},
        time.monotonic() - started,
    )


def test_items_dynamodb_never_takes_are_named_when_the_retries_run_out(
    proxy: ThrottleProxy, proxied: Settings, direct: Settings
) -> None:
    """Items DynamoDB keeps returning as unprocessed: BatchWriteError (or, with
    `on_failure="report"`, the report) lists exactly them by their index in the input, shows the
    retries, and everything else is written once. Both calls run at once (the backoff dominates).
    """
    prefix = f"ts{uuid.uuid4().hex[:6]}"
    raised, reported = activities(f"{prefix}r", 120), activities(f"{prefix}p", 60)
    stuck_actors = ("-03", "-29")
    proxy.set_plan(FaultPlan(partial=0.2, stuck=lambda actor: actor.endswith(stuck_actors)))
    tracker = Tracker(TYPE, proxied)

    def record_raising() -> BatchWriteError:
        with pytest.raises(BatchWriteError) as caught:
            tracker.record_many(raised)
        return caught.value

    with ThreadPoolExecutor(2) as pool:
        error_call = pool.submit(record_raising)
        report = pool.submit(tracker.record_many, reported, on_failure="report").result()
        error = error_call.result()
    proxy.set_plan(FaultPlan())
    for batch, failed, written, retries in (
        (raised, error.failed, error.written, error.report.retries),  # type: ignore[attr-defined]
        (reported, report.failed, report.written, report.retries),
    ):
        stuck = {i for i, a in enumerate(batch) if a.actor.endswith(stuck_actors)}
        assert stuck and {index for index, _reason in failed} == stuck
        assert all("unprocessed" in reason and "gave up" in reason for _i, reason in failed)
        assert written == len(batch) - len(stuck)
        assert retries >= 9  # a stuck item is retried until the attempts run out
    kept = [a for a in [*raised, *reported] if not a.actor.endswith(stuck_actors)]
    assert_stored_exactly_once(direct, (f"{prefix}r", f"{prefix}p"), kept)


def test_record_activity_under_throttling_stores_once_or_raises_a_transient_error(
    proxy: ThrottleProxy, proxied: Settings, direct: Settings, volume: Volume
) -> None:
    """A single write that stays throttled after the SDK's retries raises a transient, typed
    error (never returns as if stored); retried by the caller with the same event_id, it is
    stored exactly once, also when a 500 hid a write that had happened."""
    prefix = f"ta{uuid.uuid4().hex[:6]}"
    proxy.set_plan(FaultPlan(throughput_exceeded=0.15, throttling=0.05, lost_reply=0.1, seed=5))
    tracker = Tracker(TYPE, proxied)
    raised = Counter[str]()

    def record(activity: Activity) -> None:
        for _attempt in range(20):
            try:
                tracker.record_activity(
                    activity.actor,
                    activity.target,
                    at=activity.ts,
                    event_id=activity.event_id,
                    **activity.attributes,
                )
                return
            except StoreUnavailable as exc:
                assert exc.transient
                raised[type(exc).__name__] += 1
        raise AssertionError(f"{activity.event_id} still refused after 20 attempts")

    batch = activities(prefix, volume.singles)
    with ThreadPoolExecutor(16) as pool:  # the SDK's backoff dominates: overlap it
        list(pool.map(record, batch))
    counts = proxy.counts
    proxy.set_plan(FaultPlan())
    assert counts.faults_of("PutItem") > 0
    assert_stored_exactly_once(direct, prefix, batch)
    log.warning(
        "record_activity under throttling: %d activities, %d PutItem calls, %d faults, "
        "%d calls raised to the caller %s",
        len(batch),
        counts.calls["PutItem"],
        counts.faults_of("PutItem"),
        sum(raised.values()),
        dict(raised),
    )


def test_a_throttled_existence_check_is_retried_like_the_writes(
    proxy: ThrottleProxy, proxied: Settings, direct: Settings
) -> None:
    """record_many first asks which activities are stored (BatchGetItem); a burst of throttling
    there that outlasts the SDK's retries is retried with backoff like the writes, not turned
    into a failed call. (An SDK client without retries of its own makes the burst short.)"""
    prefix = f"tg{uuid.uuid4().hex[:6]}"
    batch = activities(prefix, 40)
    no_sdk_retries = boto3.session.Session(region_name=proxied.region).client(
        "dynamodb",
        endpoint_url=proxied.dynamodb_endpoint,
        aws_access_key_id="footfalllocal",
        aws_secret_access_key="footfalllocal",
        config=botocore.config.Config(retries={"mode": "standard", "total_max_attempts": 1}),
    )
    tracker = Tracker(TYPE, proxied, store=DynamoDB(proxied, client=no_sdk_retries))
    proxy.set_plan(FaultPlan(first=3, operations=frozenset({"BatchGetItem"})))
    report = tracker.record_many(batch)
    counts = proxy.counts
    proxy.set_plan(FaultPlan())
    assert counts.faults[("BatchGetItem", "throttling")] == 3
    assert (report.written, report.duplicates, report.failed) == (len(batch), 0, [])
    assert_stored_exactly_once(direct, prefix, batch)


def test_the_proxy_speaks_dynamodbs_error_protocol(proxy: ThrottleProxy, proxied: Settings) -> None:
    """boto3 itself parses the proxy's replies as DynamoDB's throttling and 5xx errors."""
    client = boto3.session.Session(region_name=proxied.region).client(
        "dynamodb",
        endpoint_url=proxied.dynamodb_endpoint,
        aws_access_key_id="footfalllocal",
        aws_secret_access_key="footfalllocal",
        config=botocore.config.Config(retries={"mode": "standard", "max_attempts": 2}),
    )
    expected = {
        "throughput_exceeded": (400, "ProvisionedThroughputExceededException"),
        "throttling": (400, "ThrottlingException"),
        "internal_error": (500, "InternalServerError"),
    }
    for kind, (status, code) in expected.items():
        proxy.set_plan(FaultPlan(**{kind: 1.0}, operations=frozenset({"DescribeTable"})))
        with pytest.raises(botocore.exceptions.ClientError) as caught:
            client.describe_table(TableName=proxied.table)
        response = caught.value.response
        assert (response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]["Code"]) == (
            status,
            code,
        )
        assert response["ResponseMetadata"]["RetryAttempts"] == 2  # retried by the SDK
    proxy.set_plan(FaultPlan())
    assert client.describe_table(TableName=proxied.table)["Table"]["TableStatus"] == "ACTIVE"
