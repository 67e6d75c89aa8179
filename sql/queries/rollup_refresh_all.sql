-- Recompute the whole daily rollup from activities FINAL (repair, or the first fill of an
-- existing table). Same shape as rollup_refresh_days.sql, without the day filter.
INSERT INTO activities_daily_rows (type, target, day, activities, actors, version, is_deleted)
SELECT
    type,
    target,
    day,
    sum(n) AS activities,
    sum(u) AS actors,
    toUnixTimestamp64Nano(now64(9)) AS version,
    sum(n) = 0 AS is_deleted
FROM
(
    SELECT type, target, toDate(ts) AS day, count() AS n, uniqExact(actor) AS u
    FROM activities FINAL
    GROUP BY type, target, day

    UNION ALL

    SELECT type, target, day, toUInt64(0) AS n, toUInt64(0) AS u
    FROM activities_daily_rows FINAL
)
GROUP BY type, target, day
