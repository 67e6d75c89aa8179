-- sessions: one actor's activity split into sessions at `gap_minutes` of inactivity (Airbnb's
-- session analysis), each with its start, end, duration in seconds, number of activities,
-- distinct targets and the activity types it holds.
--
-- @param actor        String                                      the actor
-- @param start        DateTime64(3, 'UTC') = 1970-01-01 00:00:00  from (inclusive)
-- @param end          DateTime64(3, 'UTC') = 2100-01-01 00:00:00  until (exclusive)
-- @param gap_minutes  UInt32 = 30                                 inactivity that ends a session

-- The actor's rows are found through the `actor_bloom` skip index (granules of other actors are
-- not read). Under FINAL that needs footfall's query setting
-- use_skip_indexes_if_final_exact_mode = 0 (footfall/_clickhouse.py): in exact mode ClickHouse
-- added back every range of every part overlapping a kept granule by primary key, i.e. nearly
-- the whole table when parts overlap, and this query took 24 s on 10M rows in 10 parts instead
-- of 0.9 s. It is exact here because `actor` is an immutable sorting-key column.
SELECT
    session,
    min(ts) AS started,
    max(ts) AS ended,
    dateDiff('millisecond', started, ended) / 1000 AS duration_seconds,
    count() AS activities,
    uniqExact(target) AS targets,
    arraySort(groupUniqArray(type)) AS types
FROM (
    SELECT
        ts, type, target,
        1 + sum(starts_session) OVER (
            ORDER BY ts, event_id ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
        ) AS session
    FROM (
        SELECT
            ts, type, target, event_id,
            toUInt64(dateDiff('millisecond', lagInFrame(ts, 1, ts) OVER (
                ORDER BY ts, event_id ROWS BETWEEN 1 PRECEDING AND CURRENT ROW
            ), ts) > {gap_minutes:UInt32} * 60000) AS starts_session
        FROM activities FINAL
        WHERE actor = {actor:String}
          AND ts >= {start:DateTime64(3, 'UTC')}
          AND ts < {end:DateTime64(3, 'UTC')}
    )
)
GROUP BY session
ORDER BY session
