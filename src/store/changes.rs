//! [`ChangeFeed`]: how a store's change follower reports what other replicas changed to
//! the authenticator's background task.
//!
//! Invariants:
//! - Bounded: a report that does not fit is never waited for; it sets a flag, and the
//!   reader's next report becomes [`Change::Lost`] (the whole cache is dropped), so a slow
//!   reader costs a cache refill, never a missed revocation.
//! - The follower returns once the reader is gone ([`ChangeFeed::is_closed`]).

use std::sync::Arc;

use crate::token::TokenId;

/// Where [`TokenStore::follow_changes`](super::TokenStore::follow_changes) reports what other replicas changed. Bounded:
/// when its reader falls behind, the reports that do not fit become one
/// [`lost`](Self::lost), which drops every cached token instead.
#[derive(Debug, Clone)]
pub struct ChangeFeed {
    tx: tokio::sync::mpsc::Sender<Change>,
    overflowed: Arc<std::sync::atomic::AtomicBool>,
}

/// One report of a [`ChangeFeed`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Change {
    /// This token changed.
    Token(TokenId),
    /// Reports may have been lost: any cached token may be stale.
    Lost,
}

/// The reading end of a [`ChangeFeed`].
#[derive(Debug)]
pub(crate) struct ChangeReceiver {
    rx: tokio::sync::mpsc::Receiver<Change>,
    overflowed: Arc<std::sync::atomic::AtomicBool>,
}

impl ChangeReceiver {
    /// The next report; `None` once every feed is dropped.
    pub(crate) async fn recv(&mut self) -> Option<Change> {
        use std::sync::atomic::Ordering;
        let change = self.rx.recv().await;
        // Reports that did not fit: whatever came, treat it as a loss.
        if change.is_some() && self.overflowed.swap(false, Ordering::AcqRel) {
            return Some(Change::Lost);
        }
        change
    }
}

impl ChangeFeed {
    /// A feed and the receiver of its reports.
    pub(crate) fn channel(capacity: usize) -> (Self, ChangeReceiver) {
        let (tx, rx) = tokio::sync::mpsc::channel(capacity.max(1));
        let overflowed = Arc::new(std::sync::atomic::AtomicBool::new(false));
        (
            Self {
                tx,
                overflowed: overflowed.clone(),
            },
            ChangeReceiver { rx, overflowed },
        )
    }

    fn send(&self, change: Change) {
        use tokio::sync::mpsc::error::TrySendError;
        if let Err(TrySendError::Full(_)) = self.tx.try_send(change) {
            // The queue was full, so the reader was not waiting: it sees the flag with its
            // next report. It may have emptied the queue since and be waiting now, with
            // no next report coming: send one, which it reads as a loss. (Still full: it
            // is not waiting.)
            self.overflowed
                .store(true, std::sync::atomic::Ordering::Release);
            let _ = self.tx.try_send(Change::Lost);
        }
    }

    /// Another replica changed the token `id`.
    pub fn changed(&self, id: TokenId) {
        self.send(Change::Token(id));
    }

    /// Reports may have been missed (the store reconnected): every cached token is
    /// dropped.
    pub fn lost(&self) {
        self.send(Change::Lost);
    }

    /// Whether the reader is gone: the follower should return.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn reports_that_do_not_fit_become_one_loss() {
        let (feed, mut rx) = ChangeFeed::channel(2);
        let (a, b, c) = (
            TokenId::generate(),
            TokenId::generate(),
            TokenId::generate(),
        );
        feed.changed(a);
        feed.changed(b);
        feed.changed(c); // does not fit
        assert_eq!(
            rx.recv().await,
            Some(Change::Lost),
            "the overflow is seen first"
        );
        assert_eq!(rx.recv().await, Some(Change::Token(b)));
        feed.lost();
        assert_eq!(rx.recv().await, Some(Change::Lost));
        assert!(!feed.is_closed());
        drop(rx);
        assert!(feed.is_closed());
    }
}
