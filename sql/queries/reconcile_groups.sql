-- Reconcile, step 1: per (type, UTC day) of the window [{since}, {until}), the number of live
-- activities ClickHouse holds from DynamoDB and a digest of their identities and versions: the
-- XOR of the first 8 bytes (little-endian) of MD5("<actor>\0<event_id>\0<version>") per row.
-- `sync._reconcile.identity_hash` computes the same value in Python for the scanned items, so a
-- group whose count and digest both match holds exactly the same item states on both sides and
-- is not compared row by row. Raw Kafka events (source 'kafka') are never in DynamoDB.
SELECT
    type,
    toDate(ts) AS day,
    count() AS activities,
    groupBitXor(reinterpretAsUInt64(MD5(concat(actor, '\0', event_id, '\0', toString(version)))))
        AS digest
FROM activities FINAL
WHERE ts >= {since:DateTime64(3, 'UTC')}
  AND ts < {until:DateTime64(3, 'UTC')}
  AND source = 'dynamodb'
GROUP BY type, day
