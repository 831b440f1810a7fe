//! Leaked-token revocation: anyone who found tokens (a secret scanner, a stranger) reports
//! them, and every one whose secret matches is disabled — not deleted, so its owner sees
//! what happened — with a `revoked_as_leaked` event.
//!
//! Invariants:
//! - Nothing in the answer depends on which entries were valid: the caller learns only
//!   that the report was taken (the HTTP answer is always 202).
//! - Only a matching secret disables a token: an id alone, or a wrong secret, changes
//!   nothing. The comparison is constant time.
//! - A malformed or unknown entry is skipped; at most [`MAX_LEAKED_TOKENS`] are read.

use super::error::ManageError;
use super::manager::Manager;
use crate::events::{EventActor, EventKind};
use crate::metrics::StoreOp;
use crate::store::Update;
use crate::token::SecretHash;

/// Most tokens one report may name.
pub const MAX_LEAKED_TOKENS: usize = 1000;

/// Tries of a disable whose token another writer changed in between.
const TRIES: usize = 4;

impl Manager {
    /// Disables every token in `tokens` whose secret matches (the current one, or a
    /// replaced one still inside its grace period), with a `revoked_as_leaked` event each;
    /// skips malformed, unknown and wrong entries and tokens already disabled. Needs no
    /// rights: holding the token is the right. Returns how many were disabled (the HTTP
    /// route does not tell). A store failure skips the entry (and is logged), so the
    /// answer does not depend on which entries were valid. More than
    /// [`MAX_LEAKED_TOKENS`] entries is a bad input.
    pub async fn revoke_leaked<S: AsRef<str>>(&self, tokens: &[S]) -> Result<usize, ManageError> {
        if tokens.len() > MAX_LEAKED_TOKENS {
            return Err(ManageError::bad_input(
                "tokens",
                format!("at most {MAX_LEAKED_TOKENS} tokens per report"),
            ));
        }
        let auth = self.authenticator();
        let mut disabled = 0;
        for token in tokens {
            let Ok(parsed) = auth.format().parse(token.as_ref()) else {
                continue;
            };
            let hash = parsed.secret_hash();
            for _ in 0..TRIES {
                // A store error skips the entry: the answer must not differ for valid ones.
                let read = self.io(StoreOp::Get, auth.store().get(&parsed.id)).await;
                let Ok(Some(mut record)) = read.inspect_err(store_failed) else {
                    break;
                };
                let now = auth.clock().now();
                if !record.active || !matches(&record, &hash, now) {
                    break;
                }
                record.active = false;
                record.modified = now;
                match self.io(StoreOp::Update, auth.store().update(&record)).await {
                    Ok(Update::Written) => {
                        self.emit_as(EventActor::System, &record, EventKind::RevokedAsLeaked);
                        self.invalidate(&record.id).await;
                        disabled += 1;
                        break;
                    }
                    Ok(Update::Stale) => continue,
                    Ok(_) => break,
                    Err(e) => {
                        store_failed(&e);
                        break;
                    }
                }
            }
        }
        Ok(disabled)
    }
}

fn store_failed(e: &ManageError) {
    tracing::warn!(error = %e, "a leaked-token report entry was skipped: the store failed");
}

/// Whether `hash` is the record's secret, or its replaced secret still in its grace.
fn matches(
    record: &crate::record::TokenRecord,
    hash: &SecretHash,
    now: time::OffsetDateTime,
) -> bool {
    let current = record.secret_hash.ct_eq(hash);
    let previous = record
        .previous_secret
        .as_ref()
        .is_some_and(|p| p.hash.ct_eq(hash) && now < p.valid_until);
    current | previous
}
