-- Reconcile, step 2: the live DynamoDB-sourced rows of the window [{since}, {until}) whose type
-- is in {types} and whose UTC day is in {days} (a superset of the groups whose counts or
-- digests differ; the caller keeps only those groups), with everything needed to write a
-- tombstone for them.
SELECT
    event_id,
    actor,
    type,
    target,
    toUnixTimestamp64Milli(ts) AS ts_ms,
    attributes,
    version
FROM activities FINAL
WHERE ts >= {since:DateTime64(3, 'UTC')}
  AND ts < {until:DateTime64(3, 'UTC')}
  AND source = 'dynamodb'
  AND type IN {types:Array(String)}
  AND toDate(ts) IN {days:Array(Date)}
