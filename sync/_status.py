"""What `footfall sync status` reports: freshness and lag per source, relay and repair state."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from footfall._clickhouse import ClickHouse
from footfall._errors import FootfallError
from footfall._kafka import KafkaBridge
from footfall._settings import Settings

from ._rollup import WATERMARK_PREFIX

__all__ = ["SourceStatus", "SyncStatus", "sync_status"]


@dataclass(frozen=True, slots=True)
class SourceStatus:
    source: str  # dynamodb | kafka
    rows: int  # rows in `activities FINAL` from this source
    newest_event: datetime | None  # newest event time written to ClickHouse
    newest_ingest: datetime | None  # when the newest row arrived
    lag_messages: int | None  # consumer lag of the worker on this source's topic
    lag_error: str | None = None


@dataclass(frozen=True, slots=True)
class SyncStatus:
    sources: list[SourceStatus]
    shards_checkpointed: int
    unrepaired_ranges: int
    dead_letters: int  # kept in ClickHouse (embedded runner); the worker's go to the DLQ topic
    notes: list[str] = field(default_factory=list)


def sync_status(settings: Settings, ch: ClickHouse) -> SyncStatus:
    """Read freshness from ClickHouse and consumer lag from Kafka (when configured)."""
    rows = ch.query_arrow(
        "SELECT source, count() AS n, max(ts) AS newest, max(ingested_at) AS ingested "
        "FROM activities FINAL GROUP BY source"
    ).to_pylist()
    by_source = {r["source"]: r for r in rows}
    lags: dict[str, int | None] = {}
    notes: list[str] = []
    lag_error = None
    topics = {"dynamodb": settings.topic("cdc"), "kafka": settings.topic("events")}
    if settings.kafka is not None:
        bridge = KafkaBridge(settings.kafka, client_id="footfall-status")
        try:
            by_topic = bridge.group_lag(f"{settings.topic_prefix}-sync", list(topics.values()))
            lags = {source: by_topic.get(topic) for source, topic in topics.items()}
        except FootfallError as exc:
            lag_error = str(exc)
        finally:
            bridge.close()
    else:
        notes.append("no FOOTFALL_KAFKA_BROKER: consumer lag not measured (embedded mode)")
    sources = []
    for source in ("dynamodb", "kafka"):
        r = by_source.get(source, {})
        sources.append(
            SourceStatus(
                source=source,
                rows=int(r.get("n", 0)),
                newest_event=r.get("newest"),
                newest_ingest=r.get("ingested"),
                lag_messages=lags.get(source),
                lag_error=lag_error,
            )
        )
    state = ch.query_arrow(
        "SELECT (SELECT uniqExact(stream, shard) FROM sync_checkpoints "
        "WHERE NOT startsWith(stream, {rollup:String})) AS shards, "
        "(SELECT countIf(repaired = 0) FROM sync_trimmed_ranges FINAL) AS ranges, "
        "(SELECT count() FROM sync_dead_letters) AS dead",
        {"rollup": WATERMARK_PREFIX},  # the rollup's watermark is no relay shard
    ).to_pylist()[0]
    return SyncStatus(
        sources, int(state["shards"]), int(state["ranges"]), int(state["dead"]), notes
    )
