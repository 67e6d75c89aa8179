-- Recompute the daily rollup of the UTC days {days} from activities FINAL and supersede their
-- rows. {start} and {end} bound the days ([first day, last day + 1)) so whole partitions and
-- parts are skipped; groups that vanished (every activity deleted) come from the second branch
-- with zero counts and are written as deleted. The version is the query's start time in ns, so
-- a later refresh, which sees at least the same data, wins.
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
    WHERE ts >= {start:DateTime64(3, 'UTC')}
      AND ts < {end:DateTime64(3, 'UTC')}
      AND toDate(ts) IN {days:Array(Date)}
    GROUP BY type, target, day

    UNION ALL

    SELECT type, target, day, toUInt64(0) AS n, toUInt64(0) AS u
    FROM activities_daily_rows FINAL
    WHERE day IN {days:Array(Date)}
)
GROUP BY type, target, day
