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
WITH
    cohorts AS (
        SELECT actor, min(toDate(ts)) AS cohort_day
        FROM activities FINAL
        WHERE {type:String} = '' OR type = {type:String}
        GROUP BY actor
        HAVING cohort_day >= toDate({start:DateTime64(3, 'UTC')})
           AND cohort_day < toDate({end:DateTime64(3, 'UTC')})
    ),
    active AS (
        SELECT DISTINCT actor, toDate(ts) AS day
        FROM activities FINAL
        WHERE ts >= toStartOfDay({start:DateTime64(3, 'UTC')})
          AND actor IN (SELECT actor FROM cohorts)
    )
SELECT
    c.cohort_day AS cohort_day,
    toUInt16(dateDiff('day', c.cohort_day, a.day)) AS day_n,
    uniqExact(c.actor) AS actors,
    actors / max(actors) OVER (PARTITION BY cohort_day) AS retained
FROM cohorts AS c
INNER JOIN active AS a ON a.actor = c.actor
WHERE a.day >= c.cohort_day
  AND dateDiff('day', c.cohort_day, a.day) <= {days:UInt16}
GROUP BY cohort_day, day_n
ORDER BY cohort_day, day_n
