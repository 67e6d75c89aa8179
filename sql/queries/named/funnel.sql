-- funnel: how many actors went through activity types in order (ClickHouse's windowFunnel):
-- step 1 counts the actors who did steps[1], step k those who then did steps[2], ..., steps[k],
-- in that order, within window_seconds of their steps[1]. `conversion` is relative to step 1.
--
-- @param steps           Array(String) [2..10]  activity types in funnel order, e.g.
--                                               ['store-pageviews', 'add-to-cart', 'purchase']
-- @param start           DateTime64(3, 'UTC')   window start (inclusive)
-- @param end             DateTime64(3, 'UTC')   window end (exclusive)
-- @param window_seconds  UInt32 = 86400         how long after steps[1] the later steps count

-- Cost: as top_targets, FINAL's merge of overlapping parts dominates (see the notes there);
-- one part per partition (compaction) took it from 3,025 to 821 ms on 10M rows. The type
-- filter `has(steps, type)` is used by the primary key (505 of 1,181 granules of a week).
WITH per_actor AS (
    SELECT
        actor,
        windowFunnel({window_seconds:UInt32})(
            toDateTime(ts),
            type = {steps:Array(String)}[1], type = {steps:Array(String)}[2],
            type = {steps:Array(String)}[3], type = {steps:Array(String)}[4],
            type = {steps:Array(String)}[5], type = {steps:Array(String)}[6],
            type = {steps:Array(String)}[7], type = {steps:Array(String)}[8],
            type = {steps:Array(String)}[9], type = {steps:Array(String)}[10]
        ) AS reached
    FROM activities FINAL
    WHERE ts >= {start:DateTime64(3, 'UTC')}
      AND ts < {end:DateTime64(3, 'UTC')}
      AND has({steps:Array(String)}, type)
    GROUP BY actor
)
SELECT
    step,
    {steps:Array(String)}[step] AS type,
    countIf(reached >= step) AS actors,
    actors / first_value(actors) OVER (ORDER BY step) AS conversion
FROM per_actor
ARRAY JOIN range(1, length({steps:Array(String)}) + 1) AS step
GROUP BY step
ORDER BY step
