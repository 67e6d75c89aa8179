-- sync_checkpoints.drained: 1 once the relay read the shard to its end (closed, every record
-- handed on). A shard leaves the stream's listing about a day after it closes; the relay tells a
-- shard that expired after it was drained (nothing lost: forget it) from one that expired
-- before (records lost unread: report it) by this flag, across restarts too.
ALTER TABLE sync_checkpoints ADD COLUMN IF NOT EXISTS drained UInt8 DEFAULT 0 AFTER sequence;
