-- Where a token was created and last used from, the audit log of lifecycle events, and
-- the expiry reminders already claimed (one row per token, lead time and expiry, so
-- replicas sharing the file send each reminder once).
ALTER TABLE pat_tokens ADD COLUMN created_ip TEXT;
ALTER TABLE pat_tokens ADD COLUMN created_user_agent TEXT;
ALTER TABLE pat_tokens ADD COLUMN last_used_ip TEXT;
ALTER TABLE pat_tokens ADD COLUMN last_used_user_agent TEXT;
ALTER TABLE pat_tokens ADD COLUMN recent_ips TEXT;
CREATE TABLE IF NOT EXISTS pat_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at INTEGER NOT NULL,
    token_id TEXT NOT NULL,
    owner TEXT NOT NULL,
    type TEXT NOT NULL,
    event TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS pat_events_token ON pat_events (token_id, seq);
CREATE INDEX IF NOT EXISTS pat_events_owner ON pat_events (owner, seq);
CREATE INDEX IF NOT EXISTS pat_events_at ON pat_events (at);
CREATE TABLE IF NOT EXISTS pat_reminders (
    token_id TEXT NOT NULL,
    lead INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (token_id, lead, expires_at)
);
