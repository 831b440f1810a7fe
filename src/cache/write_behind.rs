//! [`WriteBehind`]: the cached tokens whose use is not yet written to the store.
//!
//! Invariants:
//! - Once [`WriteBehind::mark_dirty`] returns, a token whose `dirty` flag is up is in
//!   the list (its `listed` flag is up), or held by a flush that writes it or, if the
//!   write fails, marks it again: no pending use is lost.
//! - A token is in the list at most once: `listed` is read and written only under the
//!   list's lock.
//! - The list holds at most about four times the tokens with something pending, or
//!   2,048: when full it drops the tokens written since they were listed.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};

use super::CachedToken;

/// The write-behind list of one authenticator's cache.
#[derive(Default)]
pub(crate) struct WriteBehind {
    pending: Mutex<Pending>,
}

impl WriteBehind {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Marks `token` as having a use to write, listing it when the mark is new.
    #[inline]
    pub(crate) fn mark_dirty(&self, token: &Arc<CachedToken>) {
        if !token.dirty.load(Ordering::Acquire) && !token.dirty.swap(true, Ordering::AcqRel) {
            self.lock().list(token);
        }
    }

    /// Empties the list (for a flush), returning the tokens with something pending: they
    /// list themselves again when next dirty.
    pub(crate) fn take(&self) -> Vec<Arc<CachedToken>> {
        let mut taken = self.lock().take();
        // Tokens written since they were listed have nothing pending.
        taken.retain(|t| t.is_dirty());
        taken
    }

    /// Tokens with a use not yet written (for the metrics: walks the list).
    pub(crate) fn pending(&self) -> usize {
        self.lock().list.iter().filter(|t| t.is_dirty()).count()
    }

    /// Tokens listed now (pending or written since listed).
    #[cfg(test)]
    pub(crate) fn listed(&self) -> usize {
        self.lock().list.len()
    }

    /// Whether every listed token has been written.
    #[cfg(test)]
    pub(crate) fn all_written(&self) -> bool {
        self.lock().list.iter().all(|t| !t.is_dirty())
    }
}

/// The list itself: every cached token whose `dirty` flag went up since it was last
/// written, once each (its `listed` flag), at 8 bytes a token. A token written by the
/// periodic write-back stays listed until the next compaction (when the list is full)
/// drops it. (A map by id, as before, took about 50 bytes a token.)
#[derive(Default)]
struct Pending {
    list: Vec<Arc<CachedToken>>,
}

impl Pending {
    /// Lists `token` (just made dirty) unless it is listed already.
    fn list(&mut self, token: &Arc<CachedToken>) {
        if token.listed.swap(true, Ordering::Relaxed) {
            return;
        }
        if self.list.len() == self.list.capacity() && self.list.len() >= 1024 {
            self.compact();
        }
        self.list.push(token.clone());
    }

    /// Drops the tokens written since they were listed; a token dirtied again after
    /// this lists itself again, since the lock is held.
    fn compact(&mut self) {
        self.list.retain(|token| {
            let dirty = token.dirty.load(Ordering::Acquire);
            if !dirty {
                token.listed.store(false, Ordering::Relaxed);
            }
            dirty
        });
        // Room to double before the next compaction, and no more.
        let room = self.list.len().max(512) * 2;
        if self.list.capacity() > 2 * room {
            self.list.shrink_to(room);
        }
    }

    /// Empties the list: its tokens list themselves again when next dirty.
    fn take(&mut self) -> Vec<Arc<CachedToken>> {
        for token in &self.list {
            token.listed.store(false, Ordering::Relaxed);
        }
        std::mem::take(&mut self.list)
    }
}
