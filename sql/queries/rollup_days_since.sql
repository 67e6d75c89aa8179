-- The UTC days of the activities ingested at or after {since}, and the server's time when this
-- query started (`now`: every row ingested before it and visible to this query is counted).
SELECT
    arraySort(groupUniqArray(toDate(ts))) AS days,
    now64(3, 'UTC') AS now
FROM activities
WHERE ingested_at >= {since:DateTime64(3, 'UTC')}
