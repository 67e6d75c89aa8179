-- The partitions of `activities` that still hold more than one active part: the ones
-- `footfall._compaction` merges. `before` (a partition id such as '202611') keeps only the
-- months before it, the closed ones; '' keeps every partition (after a bulk load).
SELECT partition_id, count() AS parts, sum(rows) AS rows
FROM system.parts
WHERE database = currentDatabase()
  AND table = 'activities'
  AND active
  AND ({before:String} = '' OR partition_id < {before:String})
GROUP BY partition_id
HAVING parts > 1
ORDER BY partition_id
