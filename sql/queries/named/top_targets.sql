-- top_targets: the most active targets of one activity type in a time window, with their share
-- of all activity of that type in the window.
--
-- @param type   String                the activity type, e.g. 'store-pageviews'
-- @param start  DateTime64(3, 'UTC')  window start (inclusive)
-- @param end    DateTime64(3, 'UTC')  window end (exclusive)
-- @param limit  UInt32 = 10           how many targets to return
SELECT
    target,
    count() AS activities,
    uniqExact(actor) AS actors,
    count() / sum(count()) OVER () AS share
FROM activities FINAL
WHERE type = {type:String}
  AND ts >= {start:DateTime64(3, 'UTC')}
  AND ts < {end:DateTime64(3, 'UTC')}
GROUP BY target
ORDER BY activities DESC, target
LIMIT {limit:UInt32}
