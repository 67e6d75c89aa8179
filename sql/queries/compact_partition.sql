-- Merge one partition of `activities` into a single part, collapsing the versions of each
-- activity to the latest (tombstones stay, as the latest version of a deleted activity).
OPTIMIZE TABLE activities PARTITION ID {partition:String} FINAL
