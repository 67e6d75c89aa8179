-- The daily rollup: per (type, target, UTC day) the number of activities and of distinct actors,
-- equal to the same aggregate over `activities FINAL`.
--
-- An insert-triggered materialized view cannot produce that: it sees each inserted row once, so
-- it counts replayed duplicates and superseded versions and cannot take back a deleted activity.
-- Instead `footfall._rollup.refresh_rollup` recomputes the days a batch touched from
-- `activities FINAL` (queries/rollup_refresh_days.sql) and writes one row per group with a newer
-- `version`; a group that has no activities left is written with is_deleted = 1. Reading the
-- rows through FINAL (the `activities_daily` view) shows the latest computation of each group.
CREATE TABLE IF NOT EXISTS activities_daily_rows
(
    type       LowCardinality(String),
    target     String,
    day        Date,
    activities UInt64,
    actors     UInt64,
    version    UInt64,
    is_deleted UInt8
)
ENGINE = ReplacingMergeTree(version, is_deleted)
PARTITION BY toYYYYMM(day)
ORDER BY (type, day, target);

CREATE VIEW IF NOT EXISTS activities_daily AS
SELECT type, target, day, activities, actors
FROM activities_daily_rows FINAL;
