-- daily_unique_actors: distinct actors (and activities) per UTC day and activity type in a
-- time window.
--
-- @param start  DateTime64(3, 'UTC')  window start (inclusive)
-- @param end    DateTime64(3, 'UTC')  window end (exclusive)
SELECT
    toDate(ts) AS day,
    type,
    uniqExact(actor) AS actors,
    count() AS activities
FROM activities FINAL
WHERE ts >= {start:DateTime64(3, 'UTC')}
  AND ts < {end:DateTime64(3, 'UTC')}
GROUP BY day, type
ORDER BY day, type
