-- The daily rollup's watermark, kept as a row of sync_checkpoints (stream {scope}): every row of
-- activities ingested before it (epoch ms in `sequence`) is reflected in activities_daily_rows.
-- No row: no sync runner refreshed the rollup yet. See sync/_rollup.py.
SELECT argMax(sequence, version) AS ingested_until_ms
FROM sync_checkpoints
WHERE stream = {scope:String}
GROUP BY stream
