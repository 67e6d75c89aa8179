-- daily_unique_actors: distinct actors (and activities) per UTC day and activity type in a
-- time window.
--
-- @param start  DateTime64(3, 'UTC')  window start (inclusive)
-- @param end    DateTime64(3, 'UTC')  window end (exclusive)

-- Cost: as top_targets, FINAL's merge of overlapping parts dominates (see the notes there);
-- no FINAL setting measured faster than ClickHouse 26.9's defaults; one part per partition
-- (compaction) took it from 2,302 to 506 ms on 10M rows. uniqExact stays (exact).
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
