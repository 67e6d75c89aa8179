-- State of the sync relay, kept beside the data it describes.
--
-- sync_checkpoints: the last DynamoDB Streams sequence number per shard that is durably handed
-- on (to Kafka `footfall.cdc` in the worker, to `activities` in the embedded runner). Written
-- only after that hand-off; the newest write of a (stream, shard) wins.
CREATE TABLE IF NOT EXISTS sync_checkpoints
(
    stream     String,
    shard      String,
    sequence   String,
    version    UInt64,
    updated_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (stream, shard);

-- sync_trimmed_ranges: stream records lost unread (TrimmedDataAccessException, or a shard that
-- expired before it was drained). Reported loudly by the relay; `footfall sync reconcile` /
-- a backfill repairs the analytics copy and marks the range repaired.
CREATE TABLE IF NOT EXISTS sync_trimmed_ranges
(
    stream         String,
    shard          String,
    after_sequence Nullable(String),
    until_sequence Nullable(String),
    reason         String,
    detected_at    DateTime64(3, 'UTC'),
    repaired       UInt8 DEFAULT 0,
    version        UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (stream, shard, detected_at);

-- sync_dead_letters: records that can never become rows, with the reason. The worker sends them
-- to Kafka `footfall.dlq`; the embedded runner (no Kafka) keeps them here.
CREATE TABLE IF NOT EXISTS sync_dead_letters
(
    source      LowCardinality(String),
    position    String,
    reason      String,
    payload     String,
    received_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = MergeTree
ORDER BY (source, received_at);
