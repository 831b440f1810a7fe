-- Tokens, one row each, with an index per sort field; and the change log other
-- processes sharing the file poll for revocations.
CREATE TABLE IF NOT EXISTS pat_tokens (
    id TEXT PRIMARY KEY NOT NULL,
    owner TEXT NOT NULL,
    owner_lc TEXT NOT NULL,
    name TEXT NOT NULL,
    name_lc TEXT NOT NULL,
    scopes TEXT NOT NULL,
    expiry TEXT NOT NULL,
    sliding INTEGER NOT NULL,
    expires_at INTEGER,
    active INTEGER NOT NULL,
    created INTEGER NOT NULL,
    modified INTEGER NOT NULL,
    last_used INTEGER,
    secret_hash TEXT NOT NULL,
    previous_hash TEXT,
    previous_valid_until INTEGER
);
CREATE INDEX IF NOT EXISTS pat_tokens_owner ON pat_tokens (owner, created, id);
CREATE INDEX IF NOT EXISTS pat_tokens_created ON pat_tokens (created, id);
CREATE INDEX IF NOT EXISTS pat_tokens_last_used ON pat_tokens (coalesce(last_used, 9223372036854775807), id);
CREATE INDEX IF NOT EXISTS pat_tokens_expires ON pat_tokens (coalesce(expires_at, 9223372036854775807), id);
CREATE INDEX IF NOT EXISTS pat_tokens_name ON pat_tokens (name, id);
CREATE TABLE IF NOT EXISTS pat_changes (
    rev INTEGER PRIMARY KEY AUTOINCREMENT,
    token_id TEXT NOT NULL,
    instance TEXT NOT NULL,
    at INTEGER NOT NULL
);
