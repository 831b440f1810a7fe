-- Where a token was created and last used from, the audit log of lifecycle events, and
-- the expiry reminders already claimed (one row per token, lead time and expiry, so
-- replicas sharing the database send each reminder once).
ALTER TABLE pat_tokens ADD COLUMN IF NOT EXISTS created_ip TEXT;
ALTER TABLE pat_tokens ADD COLUMN IF NOT EXISTS created_user_agent TEXT;
ALTER TABLE pat_tokens ADD COLUMN IF NOT EXISTS last_used_ip TEXT COLLATE "C";
ALTER TABLE pat_tokens ADD COLUMN IF NOT EXISTS last_used_user_agent TEXT;
ALTER TABLE pat_tokens ADD COLUMN IF NOT EXISTS recent_ips TEXT;
CREATE TABLE IF NOT EXISTS pat_events (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at BIGINT NOT NULL,
    token_id TEXT COLLATE "C" NOT NULL,
    owner TEXT COLLATE "C" NOT NULL,
    type TEXT COLLATE "C" NOT NULL,
    event TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS pat_events_token ON pat_events (token_id, seq);
CREATE INDEX IF NOT EXISTS pat_events_owner ON pat_events (owner, seq);
CREATE INDEX IF NOT EXISTS pat_events_at ON pat_events (at);
CREATE TABLE IF NOT EXISTS pat_reminders (
    token_id TEXT COLLATE "C" NOT NULL,
    lead BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (token_id, lead, expires_at)
);
