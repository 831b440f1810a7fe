//! [`Epochs`]: invalidation epochs, which let an invalidation win against a store read
//! already in flight.
//!
//! A global epoch counts invalidations; each of [`STRIPES`] stripes holds the global
//! epoch of the last invalidation of an id in it. A load reads [`Epochs::current`]
//! *before* reading the store, and its entry carries that epoch.
//!
//! Invariants:
//! - The global epoch and every stripe only grow, and no stripe is ahead of the global
//!   epoch.
//! - An entry loaded at an epoch older than its stripe's is never served, positive or
//!   negative: [`Epochs::is_stale`] is checked after every cache read and load.
//! - [`Epochs::bump`] raises the stripe before the caches drop the id, so a load that
//!   started before the bump and lands after it is stale.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::token::TokenId;

const STRIPES: usize = 1024;

/// The invalidation epochs of one authenticator's cache.
pub(crate) struct Epochs {
    global: AtomicU64,
    stripes: Box<[AtomicU64]>,
}

impl Default for Epochs {
    fn default() -> Self {
        Self {
            global: AtomicU64::new(1),
            stripes: (0..STRIPES).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

impl Epochs {
    /// The epoch to tag a load with: read it before reading the store.
    pub(crate) fn current(&self) -> u64 {
        self.global.load(Ordering::SeqCst)
    }

    /// The epoch of the last invalidation of an id in `id`'s stripe.
    #[inline]
    pub(crate) fn of(&self, id: &TokenId) -> u64 {
        self.stripes[id.stripe(STRIPES)].load(Ordering::SeqCst)
    }

    /// Whether an entry for `id` loaded at `loaded_epoch` must not be served.
    #[inline]
    pub(crate) fn is_stale(&self, id: &TokenId, loaded_epoch: u64) -> bool {
        loaded_epoch < self.of(id)
    }

    /// Records an invalidation of `id`: every entry for it loaded so far is stale.
    pub(crate) fn bump(&self, id: &TokenId) {
        let e = self.global.fetch_add(1, Ordering::SeqCst) + 1;
        self.stripes[id.stripe(STRIPES)].fetch_max(e, Ordering::SeqCst);
    }

    /// Records an invalidation of every id.
    pub(crate) fn bump_all(&self) {
        let e = self.global.fetch_add(1, Ordering::SeqCst) + 1;
        for s in self.stripes.iter() {
            s.fetch_max(e, Ordering::SeqCst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bump_makes_earlier_loads_stale() {
        let epochs = Epochs::default();
        let id = TokenId::generate();
        let loaded = epochs.current();
        assert!(!epochs.is_stale(&id, loaded));
        epochs.bump(&id);
        assert!(epochs.is_stale(&id, loaded));
        assert!(!epochs.is_stale(&id, epochs.current()));
        let loaded = epochs.current();
        epochs.bump_all();
        assert!(epochs.is_stale(&TokenId::generate(), loaded));
    }
}
