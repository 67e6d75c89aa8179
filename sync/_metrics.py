"""Prometheus metrics of the sync runners, in a registry of footfall's own.

Per source (`dynamodb` for stream changes, `kafka` for raw events): events in, rows written,
records dead-lettered, TTL expiries skipped, the newest event time written to ClickHouse (the
freshness watermark), consumer lag, and the latency of ClickHouse inserts.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["SyncMetrics"]


class SyncMetrics:
    """One set of sync metrics (each runner owns one; tests make their own)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.events_in = Counter(
            "footfall_sync_events_in", "Records read from a source", ["source"], registry=r
        )
        self.rows_written = Counter(
            "footfall_sync_rows_written", "Rows inserted into ClickHouse", ["source"], registry=r
        )
        self.dead_lettered = Counter(
            "footfall_sync_dead_lettered", "Records sent to the DLQ", ["source"], registry=r
        )
        self.retention_skipped = Counter(
            "footfall_sync_ttl_expiries",
            "TTL expiries seen on the stream (retention: not mirrored as deletes)",
            registry=r,
        )
        self.insert_retries = Counter(
            "footfall_sync_insert_retries", "ClickHouse inserts retried", registry=r
        )
        self.batch_seconds = Histogram(
            "footfall_sync_batch_seconds",
            "Seconds per ClickHouse insert (with retries)",
            ["source"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )
        self.newest_event_ts = Gauge(
            "footfall_sync_newest_event_timestamp_seconds",
            "Event time of the newest row written to ClickHouse",
            ["source"],
            registry=r,
        )
        self.consumer_lag = Gauge(
            "footfall_sync_consumer_lag",
            "Messages not yet committed by the sink, per topic",
            ["topic"],
            registry=r,
        )

    def exposition(self) -> bytes:
        """The metrics in Prometheus' text format."""
        return bytes(generate_latest(self.registry))
