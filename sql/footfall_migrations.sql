-- The record of applied migrations, created by `footfall._migrate.migrate` before it applies any
-- file of migrations/. One row per applied file; read it with FINAL (a retried record of the same
-- file replaces the earlier one).
CREATE TABLE IF NOT EXISTS footfall_migrations
(
    name       String,
    sha256     String,
    applied_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(applied_at)
ORDER BY name
