"""Poison events: invalid JSON, missing fields, wrong types, a 1 MB payload, invalid UTF-8, future
and ancient timestamps. Every one lands in `footfall.dlq` with its reason; the good events
around them arrive, and at the same rate as good events without poison in the same run.

Throughput is measured in rounds on one running worker, in pairs of a clean round (good events
only) and a mixed one (as many good events, one poison message per 50 interleaved, under keys
of their own), the pair's order alternating (ABBA) so the drift of a shared machine falls on
both: a round's rate is its good events over the time from its first publish until ClickHouse
holds all of them, and the median of the pairs' mixed/clean ratios is held to RATE_KEPT. (Each
poison message costs the worker a DLQ produce, a few ms here: at one in ten, all under one key,
the mixed rate fell to about half - see docs/reliability.md. Single rounds of a few seconds
swing by +-30 % on this machine; a ratio of medians over three rounds failed CI at 0.55 once the
clean path got faster.)
"""

from __future__ import annotations

import json
import statistics
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from footfall import Activity, Settings
from footfall._kafka import KafkaBridge
from tests.faults._support import Pipeline, Results, eventually, read_topic

# The mixed rounds keep at least this share of the clean rate (median pair). Measured: 0.65-0.8
# here (each dead letter costs the worker a few ms; where, is not pinned down), 0.63
# in CI; a stall of 25 ms per poison message (measured: 0.46), or a partition held up behind one,
# takes it under.
RATE_KEPT = 0.5
KINDS = (
    "invalid JSON",
    "missing fields",
    "wrong types",
    "1 MB payload",
    "invalid UTF-8",
    "future timestamp",
    "ancient timestamp",
)


def good_events(phase: str, count: int) -> list[Activity]:
    now = datetime.now(UTC)
    return [
        Activity(
            actor=f"{phase}-{i % 500}",
            type=f"good-{phase}",
            target=f"/t/{i % 37}",
            ts=now - timedelta(seconds=i % 3600),
            attributes={"n": i},
        )
        for i in range(count)
    ]


def poison_of(kind: str, i: int) -> bytes:
    """One poison message of `kind` (the i-th: every one distinct)."""
    now = datetime.now(UTC)
    good = Activity(actor=f"p{i}", type="poison", target="/p", ts=now).to_json_dict()
    if kind == "invalid JSON":
        return b'{"actor": "p%d", not json' % i
    if kind == "missing fields":
        return json.dumps({"actor": f"p{i}", "type": "poison", "target": "/p"}).encode()
    if kind == "wrong types":
        return json.dumps({**good, "actor": i, "attributes": [i]}).encode()
    if kind == "1 MB payload":
        return json.dumps({**good, "attributes": {"blob": "x" * 1_000_000}}).encode()
    if kind == "invalid UTF-8":
        return json.dumps(good).encode().replace(b'"/p"', b'"/p\xff\xfe"')
    if kind == "future timestamp":
        ts = (now + timedelta(days=3)).isoformat().replace("+00:00", "Z")
        return json.dumps({**good, "ts": ts}).encode()
    if kind == "ancient timestamp":
        return json.dumps({**good, "ts": "1969-07-20T20:17:40Z"}).encode()
    raise AssertionError(kind)


def publish(settings: Settings, messages: list[tuple[bytes, bytes]]) -> None:
    """Send (key, value) messages in order with acks=all and wait for every acknowledgement."""
    assert settings.kafka is not None
    bridge = KafkaBridge(settings.kafka)
    producer = bridge.producer()
    topic = settings.topic("events")

    async def send() -> None:
        deliveries = [await producer.send(topic, value, key=key) for key, value in messages]
        for delivery in deliveries:
            await delivery

    try:
        bridge.run(send(), timeout=300)
    finally:
        bridge.close()


def phase(built: Pipeline, name: str, good: int, poison: list[bytes]) -> float:
    """Publish `good` events of type good-<name> with `poison` spread among them; returns the
    good events per second from the first publish until ClickHouse holds them all."""
    events = good_events(name, good)
    step = max(1, good // (len(poison) + 1))
    messages: list[tuple[bytes, bytes]] = []
    for i, activity in enumerate(events):
        messages.append((activity.actor.encode(), activity.to_json()))
        if poison and i % step == step - 1:
            messages.append((b"poison-%d" % i, poison.pop()))
    messages.extend((b"poison", p) for p in poison)
    sql = f"SELECT count() FROM activities WHERE type = 'good-{name}'"
    started = time.monotonic()
    publish(built.settings, messages)
    eventually(
        lambda: built.scalar(sql) >= good,
        f"the good events of round {name}",
        timeout=300,
        interval=0.05,
        abort=built.any_died,
    )
    return good / (time.monotonic() - started)


@pytest.mark.timeout(1800)  # a safety net: the long volume took >600 s at load 50-80
def test_poison_is_dead_lettered_with_reasons_and_good_events_keep_their_rate(
    shared_pipeline: Pipeline, long_volume: bool, fault_results: Results
) -> None:
    result = fault_results.new("poison events")
    started = time.monotonic()
    built = shared_pipeline
    rounds, good = (5, 8_000) if long_volume else (5, 3_000)
    per_kind = rounds * good // 300  # with six small kinds: one poison message per 50 good
    poison = [poison_of(kind, i) for kind in KINDS for i in range(per_kind)]
    big = [p for p in poison if len(p) > 100_000][:2]  # two 1 MB payloads per run
    poison = [p for p in poison if len(p) <= 100_000] + big
    share = -(-len(poison) // rounds)
    worker = built.worker()
    worker.start()
    phase(built, "warmup", 500, [])
    rates: dict[str, list[float]] = {"clean": [], "mixed": []}
    for n in range(rounds):
        order = ("clean", "mixed") if n % 2 == 0 else ("mixed", "clean")
        for kind in order:
            mixed_in = poison[n * share : (n + 1) * share] if kind == "mixed" else []
            rates[kind].append(phase(built, f"{kind}{n}", good, mixed_in))
    expected_good = {"kafka/good-warmup": 500} | {
        f"kafka/good-{kind}{n}": good for n in range(rounds) for kind in ("clean", "mixed")
    }

    letters: list[Any] = []

    def all_dead_lettered() -> bool:
        letters[:] = read_topic(built.settings, built.settings.topic("dlq"))
        return len(letters) >= len(poison)

    eventually(all_dead_lettered, "every poison message in the DLQ", timeout=60)
    reasons = [dict(r.headers).get("footfall-reason", b"").decode() for r in letters]
    by_kind = Counter(kind_of(r) for r in reasons)
    expected = dict(Counter(kind_of_poison(p) for p in poison))
    tally_good = built.counts()
    kept = statistics.median(m / c for m, c in zip(rates["mixed"], rates["clean"], strict=True))
    sent_good = sum(expected_good.values())
    result.sent = sent_good + len(poison)
    result.rows_final = sum(tally_good.values())
    result.rows_raw = int(built.scalar("SELECT count() FROM activities"))
    result.lost = sent_good - result.rows_final
    result.duplicated = result.rows_raw - result.rows_final
    result.measured = True
    result.seconds = round(time.monotonic() - started, 1)
    result.details = {
        "poison_sent": len(poison),
        "dead_lettered": len(letters),
        "dead_lettered_by_kind": dict(by_kind),
        "good_per_s": {k: [round(r) for r in v] for k, v in rates.items()},
        "mixed_vs_clean": round(kept, 2),
    }
    assert tally_good == expected_good
    assert len(letters) == len(poison), result.details
    assert sorted(r.value for r in letters) == sorted(poison)
    assert dict(by_kind) == expected, (by_kind, reasons[:10])
    assert kept >= RATE_KEPT, result.details


def kind_of(reason: str) -> str:
    """The poison kind a DLQ reason names (the reasons are footfall's, see sync/_decode.py)."""
    text = reason.lower()
    checks: list[tuple[str, Any]] = [
        ("invalid UTF-8", "utf-8"),
        ("1 MB payload", "item limit"),
        ("invalid JSON", "not valid json"),
        ("missing fields", "missing field"),
        ("future timestamp", "future"),
        ("ancient timestamp", "1970"),
        ("wrong types", ""),
    ]
    return next(kind for kind, needle in checks if needle in text)


def kind_of_poison(value: bytes) -> str:
    """The kind a poison message was made as (by its shape)."""
    if len(value) > 100_000:
        return "1 MB payload"
    if b"not json" in value:
        return "invalid JSON"
    if b"\xff" in value:
        return "invalid UTF-8"
    data = json.loads(value)
    if "ts" not in data:
        return "missing fields"
    if data["ts"].startswith("1969"):
        return "ancient timestamp"
    if isinstance(data["actor"], int):
        return "wrong types"
    return "future timestamp"
