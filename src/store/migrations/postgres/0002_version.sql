-- The record's version, for compare-and-swap updates.
ALTER TABLE pat_tokens ADD COLUMN IF NOT EXISTS version BIGINT NOT NULL DEFAULT 1;
