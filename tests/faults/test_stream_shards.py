"""DynamoDB Streams iterator expiry and a shard split during sync: nothing skipped, parents
before children.

DynamoDB Local never splits a shard (one open shard per stream, however many records), so the
split is made on the wire: the worker's DynamoDB endpoint is a stand-in
(`_streams_standin.py`) that serves the table's real stream records re-cut into shards - one
open shard, then, mid-sync, that shard closed and two children opened (twice with `--long`: a
grandchild generation) - and answers every third `GetRecords` on a chained iterator with
`ExpiredIteratorException`, as DynamoDB does to an iterator older than 15 minutes. Everything
else (DescribeTable, ...) reaches DynamoDB Local. The relay inside a real worker reads it, the
activities go through Kafka into ClickHouse, and:

- ClickHouse equals the table (nothing skipped at the split, at an expiry, or by a reopened
  iterator), and every record of the real stream was served;
- on the wire, no child shard was read before its parent had been read to its end;
- every injected expiry was survived (the relay reopened after the last record it handed on).

What the stand-in cannot show: how real DynamoDB times a split, or the 15-minute clock. The
relay's lineage rules are unit-tested in tests/unit/test_sync_lineage.py, and iterator expiry
against the emulator's own iterators in tests/integration/test_sync_embedded.py.
"""

from __future__ import annotations

import time

import pytest

from tests.faults._streams_standin import SplitStreams, split_streams
from tests.faults._support import Pipeline, Results, eventually, synthetic

EXPIRIES = 4  # at least this many iterators expire under the relay during the run


def dynamodb_rows(built: Pipeline) -> int:
    return int(built.scalar("SELECT count() FROM activities WHERE source = 'dynamodb'"))


@pytest.mark.timeout(600)
def test_shard_split_and_iterator_expiry_during_sync_skip_nothing_parents_first(
    shared_pipeline: Pipeline, faults_dynamodb: str, long_volume: bool, fault_results: Results
) -> None:
    result = fault_results.new("DynamoDB Streams iterator expiry and a shard split during sync")
    started = time.monotonic()
    built = shared_pipeline
    rate, splits = (400.0, 2) if long_volume else (200.0, 1)
    load = built.load(stored=synthetic(int(rate * 300), seed=601), rate=rate)
    with split_streams(faults_dynamodb, expire_every=3) as (endpoint, stream):
        worker = built.worker(dynamodb=endpoint)
        worker.start()
        load.start()
        marks = {"started": round(time.monotonic() - started, 1)}
        for _ in range(splits):  # split while the relay is busy with the open shard(s)
            before = dynamodb_rows(built)
            eventually(
                lambda b=before: dynamodb_rows(built) > b + 200,  # type: ignore[misc]
                "the relay to mirror records of the open shard(s)",
                timeout=120,
                abort=worker.died,
            )
            marks[f"split{stream.splits}"] = round(time.monotonic() - started, 1)
            children = stream.split()
            eventually(
                lambda c=children: all(stream.records_in(s) > 0 for s in c),  # type: ignore[misc]
                "records in every child shard",
                timeout=60,
                abort=worker.died,
            )
            marks[f"children{stream.splits}"] = round(time.monotonic() - started, 1)
            eventually(
                lambda c=children: all(stream.first_read_at(s) for s in c),  # type: ignore[misc]
                "the relay to read the children",
                timeout=120,
                abort=worker.died,
            )
        marks["children_read"] = round(time.monotonic() - started, 1)
        eventually(
            lambda: stream.expired >= EXPIRIES,
            "iterator expiries to be injected",
            timeout=120,
            abort=worker.died,
        )
        marks["expired"] = round(time.monotonic() - started, 1)
        load.stop()
        marks["load_stopped"] = round(time.monotonic() - started, 1)
        tally = built.wait_exact(load.accepted, timeout=240, abort=worker.died)
        marks["exact"] = round(time.monotonic() - started, 1)
        unserved = stream.unserved()
        order = parent_child_order(stream)
    result.record(tally)
    result.seconds = round(time.monotonic() - started, 1)
    result.details = {
        "splits": stream.splits,
        "shards": len(stream.shards()),
        "expired_iterators": stream.expired,
        "records_served": len(stream.served),
        "children_read_after_parent_drained": order,
        "timeline_s": marks,
    }
    assert tally.exact, tally.describe()
    assert unserved == 0, f"{unserved} stream records were never read"
    assert all(order.values()), f"a child was read before its parent was drained: {order}"


def parent_child_order(stream: SplitStreams) -> dict[str, bool]:
    """Per child shard: was its first read after its parent's last (ending) read?"""
    order = {}
    for shard, parent in stream.shards().items():
        if parent is None:
            continue
        drained, first = stream.drained_at(parent), stream.first_read_at(shard)
        order[shard] = drained is not None and first is not None and first >= drained
    return order
