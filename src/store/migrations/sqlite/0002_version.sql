-- The record's version, for compare-and-swap updates.
ALTER TABLE pat_tokens ADD COLUMN version INTEGER NOT NULL DEFAULT 1;
