//! Expiry reminders and the audit log's retention: the periodic work of the background
//! task that reads the store rather than the cache.
//!
//! Invariants:
//! - A reminder is emitted only after the store granted its claim
//!   ([`TokenStore::claim_reminder`](crate::store::TokenStore::claim_reminder)), so
//!   replicas sharing a store send each one once; a failed claim sends nothing (it is
//!   tried again next round).
//! - Only active tokens are reminded of, and only of an end within the longest lead
//!   time, or (*expired*) passed less than [`EXPIRED_HORIZON`] ago (and within the
//!   retention, so a pruned claim is never claimed again).

use std::time::Duration;

use super::{Authenticator, Inner};
use crate::clock;
use crate::events::{Event, EventActor, EventKind};
use crate::metrics::StoreOp;
use crate::store::{ListQuery, Order, SortField, StoreError};
use time::OffsetDateTime;

/// How long after its end a token's *expired* event is still sent (to a replica that was
/// down at the time, or a store first watched).
pub(crate) const EXPIRED_HORIZON: Duration = Duration::from_secs(7 * 86_400);

/// Tokens read per page while looking for reminders.
const PAGE: u32 = 500;

impl Authenticator {
    /// Sends the expiry reminders due now: *expiring soon* for the shortest lead time
    /// ([`with_expiry_reminders`](super::AuthenticatorBuilder::with_expiry_reminders),
    /// default 7 days and 1 day) whose window a token's end has entered (for a sliding
    /// token, its cap's), and *expired* for a token whose end has passed. Each is sent once per token, lead time and expiry,
    /// across every replica sharing the store. The background task calls it every
    /// [`with_reminder_interval`](super::AuthenticatorBuilder::with_reminder_interval);
    /// call it yourself to send them now. Returns how many events it emitted.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use tower_pat::{Authenticator, Clock, Expiry, ManualClock, MemoryStore, NewToken};
    ///
    /// let clock = ManualClock::new(time::macros::datetime!(2030-01-01 0:00 UTC));
    /// let auth = Authenticator::builder(Arc::new(MemoryStore::new()))
    ///     .with_clock(clock.clone())
    ///     .build();
    /// let ends = clock.now() + Duration::from_secs(10 * 86_400);
    /// auth.create(NewToken::new("alice", "ci").with_expiry(Expiry::HardLimit { expires_at: ends }))
    ///     .await
    ///     .unwrap();
    /// assert_eq!(auth.send_reminders().await.unwrap(), 0); // 10 days left
    /// clock.advance(Duration::from_secs(4 * 86_400));
    /// assert_eq!(auth.send_reminders().await.unwrap(), 1); // within 7 days
    /// assert_eq!(auth.send_reminders().await.unwrap(), 0); // sent once
    /// # }
    /// ```
    pub async fn send_reminders(&self) -> Result<usize, StoreError> {
        self.inner.send_reminders().await
    }
}

impl Inner {
    pub(super) async fn send_reminders(&self) -> Result<usize, StoreError> {
        let Some(longest) = self.reminders.first().copied() else {
            return Ok(0);
        };
        let now = self.clock.now();
        let horizon = EXPIRED_HORIZON.min(self.audit_retention);
        let mut query = ListQuery::new();
        query.expires_before = Some(clock::add(now, longest + Duration::from_secs(1)));
        query.expires_after = Some(clock::sub(now, horizon));
        query.active = Some(true);
        query.order = Order {
            field: SortField::Expires,
            descending: false,
        };
        let mut sent = 0;
        for page in 1.. {
            query = query.page(page, PAGE);
            let found = self
                .with_timeout(StoreOp::List, self.store.list(&query))
                .await?;
            for record in &found.items {
                let Some(end) = record.expires_at else {
                    continue;
                };
                // A sliding token's end moves with every use: only its cap, which does
                // not, is reminded of; one without a cap is reminded of nothing until it
                // lapses. Of the lead times whose window the end has entered, only the
                // shortest is sent (a token made with 12 hours left gets the 1-day
                // reminder, not the 7-day one as well).
                let mut due: Vec<(u64, EventKind, OffsetDateTime)> = Vec::new();
                if end <= now {
                    due.push((0, EventKind::Expired, end));
                } else if let Some(soon) = if record.expiry.is_sliding() {
                    record.absolute_end()
                } else {
                    Some(end)
                } {
                    if let Some(lead) = self
                        .reminders
                        .iter()
                        .rev()
                        .find(|lead| soon - now <= **lead)
                    {
                        due.push((
                            lead.as_secs(),
                            EventKind::ExpiringSoon { lead: *lead },
                            soon,
                        ));
                    }
                }
                for (lead, kind, end) in due {
                    let claimed = self
                        .with_timeout(
                            StoreOp::ClaimReminder,
                            self.store.claim_reminder(&record.id, lead, end),
                        )
                        .await?;
                    if claimed {
                        sent += 1;
                        self.events.emit(Event {
                            at: now,
                            token_id: record.id,
                            owner: record.owner.clone(),
                            actor: EventActor::System,
                            client: None,
                            user_agent: None,
                            kind,
                        });
                    }
                }
            }
            if found.items.len() < PAGE as usize {
                break;
            }
        }
        Ok(sent)
    }

    /// Deletes the audit log's events older than the retention.
    pub(super) async fn prune_audit_log(&self) -> Result<u64, StoreError> {
        let before = clock::sub(self.clock.now(), self.audit_retention);
        self.with_timeout(StoreOp::PruneEvents, self.store.prune_events(before))
            .await
    }
}
