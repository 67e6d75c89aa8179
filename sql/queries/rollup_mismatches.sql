-- The (type, target, day) groups where the daily rollup differs from the same aggregate over
-- activities FINAL; empty when the rollup is up to date.
SELECT
    if(empty(r.type), f.type, r.type) AS type,
    if(empty(r.type), f.target, r.target) AS target,
    if(empty(r.type), f.day, r.day) AS day,
    f.activities AS expected_activities,
    r.activities AS rollup_activities,
    f.actors AS expected_actors,
    r.actors AS rollup_actors
FROM
(
    SELECT type, target, toDate(ts) AS day, count() AS activities, uniqExact(actor) AS actors
    FROM activities FINAL
    GROUP BY type, target, day
) AS f
FULL OUTER JOIN
(
    SELECT type, target, day, activities, actors
    FROM activities_daily
) AS r
ON f.type = r.type AND f.target = r.target AND f.day = r.day
WHERE f.activities != r.activities OR f.actors != r.actors
ORDER BY type, target, day
