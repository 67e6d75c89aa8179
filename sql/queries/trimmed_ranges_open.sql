-- The lost stream ranges of one table not yet repaired and detected before {started} (their lost
-- changes happened before the detection). Only the table's streams: stream ARNs contain
-- ":table/<name>/stream/" ({marker}). A reconcile over all activity time that started at
-- {started} writes them again with repaired = 1 and a higher version.
SELECT stream, shard, after_sequence, until_sequence, reason, detected_at
FROM sync_trimmed_ranges FINAL
WHERE repaired = 0
  AND detected_at < {started:DateTime64(3, 'UTC')}
  AND position(stream, {marker:String}) > 0
ORDER BY stream, shard, detected_at
