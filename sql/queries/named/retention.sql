-- retention: day-N retention of daily cohorts. An actor's cohort is the UTC day of their first
-- activity (of `type`, or of any type when `type` is ''); for each cohort day from `start` to
-- before `end` and each day_n from 0 to `days`, how many of the cohort were active (any type)
-- day_n days later, and which share of the cohort that is. Days on which nobody of a cohort
-- was active have no row.
--
-- @param start  DateTime64(3, 'UTC')  the first cohort day (its UTC date)
-- @param end    DateTime64(3, 'UTC')  cohorts of days before this one
-- @param days   UInt16 = 7            the last day N to report
-- @param type   String = ''           the activity that puts an actor into a cohort ('' = any)

-- One pass over `activities FINAL`, grouped by actor: each actor's cohort day (the first day of
-- a qualifying activity) and the set of days they were active since `start`, then one row per
-- (actor, active day) by ARRAY JOIN. An actor-day is counted once, so count() is the exact
-- number of distinct actors. The first version read `activities FINAL` twice (cohorts over all
-- time, then the active days of the cohort's actors through `IN`) and joined the two: 10M rows
-- in 10 unmerged parts, on the loaded 2-core machine, about 200 s, this one 52 s (same rows).
-- `countIf(...) > 0` keeps out actors without a qualifying activity (minIf would give them
-- 1970-01-01).
-- On 10M rows after compaction (one part per month: FINAL no longer merges) it is bound by the
-- GROUP BY actor over the whole table (250k actors): 0.85-2.3 s with the machine's load, vs
-- 7.6 s on the load's unmerged parts. The cohort step alone (min per actor) is 1.0-1.6 s of it.
-- Tried on compacted data, same answers, not faster: cohorts first and the active days through
-- `IN` + JOIN (1.5-1.8x, the CTE is evaluated twice), or through one JOIN of the rows since
-- `start` with the cohorts (1.03x); a UInt256 bitmask of active days instead of the array
-- (0.91x, but it bounds the span to 256 days). Faster on compacted data but not kept: leave out
-- `actor NOT IN (actors with a qualifying activity before start)` and group only the rows from
-- `start` to `end` + `days` by actor (0.71x compacted, 1.46x on unmerged parts, where each of
-- its two reads pays FINAL's merge); worth it once compaction runs on a schedule.
WITH per_actor AS (
    SELECT
        actor,
        minIf(toDate(ts), {type:String} = '' OR type = {type:String}) AS cohort_day,
        countIf({type:String} = '' OR type = {type:String}) AS qualifying,
        groupUniqArrayIf(toDate(ts), ts >= toStartOfDay({start:DateTime64(3, 'UTC')})) AS days
    FROM activities FINAL
    GROUP BY actor
    HAVING qualifying > 0
       AND cohort_day >= toDate({start:DateTime64(3, 'UTC')})
       AND cohort_day < toDate({end:DateTime64(3, 'UTC')})
)
SELECT
    cohort_day,
    toUInt16(dateDiff('day', cohort_day, day)) AS day_n,
    count() AS actors,
    actors / max(actors) OVER (PARTITION BY cohort_day) AS retained
FROM per_actor
ARRAY JOIN days AS day
WHERE day >= cohort_day
  AND dateDiff('day', cohort_day, day) <= {days:UInt16}
GROUP BY cohort_day, day_n
ORDER BY cohort_day, day_n
