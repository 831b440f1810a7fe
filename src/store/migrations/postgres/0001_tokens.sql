-- Tokens, one row each, with an index per sort field. Text compares byte-wise
-- (COLLATE "C"), as everywhere in tower-pat.
CREATE TABLE IF NOT EXISTS pat_tokens (
    id TEXT COLLATE "C" PRIMARY KEY,
    owner TEXT COLLATE "C" NOT NULL,
    owner_lc TEXT COLLATE "C" NOT NULL,
    name TEXT COLLATE "C" NOT NULL,
    name_lc TEXT COLLATE "C" NOT NULL,
    scopes TEXT COLLATE "C" NOT NULL,
    expiry TEXT NOT NULL,
    sliding BOOLEAN NOT NULL,
    expires_at BIGINT,
    active BOOLEAN NOT NULL,
    created BIGINT NOT NULL,
    modified BIGINT NOT NULL,
    last_used BIGINT,
    secret_hash TEXT NOT NULL,
    previous_hash TEXT,
    previous_valid_until BIGINT
);
CREATE INDEX IF NOT EXISTS pat_tokens_owner ON pat_tokens (owner, created, id);
CREATE INDEX IF NOT EXISTS pat_tokens_created ON pat_tokens (created, id);
CREATE INDEX IF NOT EXISTS pat_tokens_last_used ON pat_tokens ((coalesce(last_used, 9223372036854775807)), id);
CREATE INDEX IF NOT EXISTS pat_tokens_expires ON pat_tokens ((coalesce(expires_at, 9223372036854775807)), id);
CREATE INDEX IF NOT EXISTS pat_tokens_name ON pat_tokens (name, id);
