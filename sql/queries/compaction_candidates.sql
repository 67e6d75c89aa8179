-- The closed partitions of `activities` (months before {before}, a partition id such as
-- '202611') that still hold more than one active part: the ones `footfall._compaction` merges.
SELECT partition_id, count() AS parts, sum(rows) AS rows
FROM system.parts
WHERE database = currentDatabase()
  AND table = 'activities'
  AND active
  AND partition_id < {before:String}
GROUP BY partition_id
HAVING parts > 1
ORDER BY partition_id
