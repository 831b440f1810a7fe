//! [`CachedToken`]: what the cache holds of one stored token, and the scope interner an
//! authenticator's entries share.
//!
//! Invariants:
//! - Everything but the use state (`last_used`, `expires_at`, `written_at`, the
//!   write-behind flags, the last client and the origin seen) is fixed when the entry is made from a [`TokenRecord`]; a change
//!   in the store makes a new entry, never an edit of this one.
//! - `loaded_epoch` is the global invalidation epoch read *before* the store read that
//!   produced the record, so an invalidation racing the read makes the entry stale (see
//!   [`Epochs`](super::Epochs)).
//! - `expires_at` and `last_used` only move forward (`fetch_max`), and a sliding token's
//!   `expires_at` never passes `not_after`.
//! - `id == principal.token_id`.
//! - The origin seen changes only under its lock; `client` is the key of its address
//!   or, for a moment, of a newer one (so a change is noticed at worst once too often).
//! - The interner holds at most [`MAX_INTERNED_SCOPE_SETS`] sets, and never changes a set
//!   an entry holds.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use time::OffsetDateTime;

use super::hot::Keyed;
use crate::clock;
use crate::events::Origin;
use crate::expiry::Expiry;
use crate::record::TokenRecord;
use crate::scope::{ScopeHierarchy, ScopeSet};
use crate::store::Touch;
use crate::token::{SecretHash, TokenId};

const NONE_I64: i64 = i64::MIN;

/// What a [`Principal`](crate::Principal) says about its token, shared by every request
/// made with it.
#[derive(Debug)]
pub(crate) struct PrincipalData {
    pub(crate) owner: Arc<str>,
    pub(crate) token_id: TokenId,
    pub(crate) token_name: Arc<str>,
    pub(crate) scopes: Arc<ScopeSet>,
    pub(crate) hierarchy: Arc<ScopeHierarchy>,
}

impl PrincipalData {
    pub(crate) fn new(
        owner: Arc<str>,
        token_id: TokenId,
        token_name: Arc<str>,
        scopes: Arc<ScopeSet>,
        hierarchy: Arc<ScopeHierarchy>,
    ) -> Self {
        Self {
            owner,
            token_id,
            token_name,
            scopes,
            hierarchy,
        }
    }
}

/// A cached token: what validation needs of the stored record (no more, to keep the
/// cache small), plus its in-memory use state (write-behind). Times are unix seconds.
/// A `Principal` holds its entry, so accepting a token allocates nothing.
///
/// `repr(C)`: what every validation reads comes first, next to the reference count, so a
/// cached token costs as few cache lines as possible; the principal's data comes last.
#[repr(C)]
pub(crate) struct CachedToken {
    /// The same as `principal.token_id`, kept here with the fields read on every use.
    id: TokenId,
    secret_hash: SecretHash,
    loaded_epoch: u64,
    loaded_at: i64,
    expires_at: AtomicI64,
    last_used: AtomicI64,
    written_at: AtomicI64,
    /// Sliding window in seconds (at most `u32::MAX`, 136 years); 0 for tokens that do
    /// not slide.
    window: u32,
    /// Seconds between write-behind writes.
    interval: u32,
    /// The secret replaced by an in-place rotation and until when it is still accepted
    /// (rare: boxed, so other tokens pay one pointer).
    previous_secret: Option<Box<(SecretHash, i64)>>,
    active: bool,
    /// A use not yet written to the store.
    pub(super) dirty: AtomicBool,
    /// In [`Pending`](super::Pending)'s list (read and written only under its lock).
    pub(super) listed: AtomicBool,
    // Every validation reads the fields above: with the reference counts, the first 123
    // bytes of the allocation.
    /// Sliding never passes this (`i64::MAX`: no cap). Read only when sliding.
    not_after: i64,
    /// [`client_key`] of the last client address this replica saw use the token (0:
    /// none). Compared on every use that names its client; the rest of the origin is
    /// touched only when it differs.
    client: AtomicU64,
    pub(crate) principal: PrincipalData,
    /// Where the token was last used from and its recent addresses (boxed, and locked
    /// only off the common path: when the client changes, at a write-behind write).
    seen: Mutex<Option<Box<Seen>>>,
}

/// Where a token was used from, as this replica knows it.
#[derive(Debug, Default)]
struct Seen {
    from: Origin,
    /// Newest first, at most the authenticator's `recent_clients`.
    recent: Vec<IpAddr>,
    /// When the last new address was reported (unix seconds; 0: never).
    noticed_at: i64,
}

/// Whether two addresses are one client's: equal, or IPv6 in one /64 (a host picks any
/// address of its /64).
fn same_client(a: IpAddr, b: IpAddr) -> bool {
    match (a.to_canonical(), b.to_canonical()) {
        (IpAddr::V6(a), IpAddr::V6(b)) => a.segments()[..4] == b.segments()[..4],
        (a, b) => a == b,
    }
}

/// A cheap fingerprint of a client address for the change test (never 0). Two addresses
/// with one fingerprint only delay noticing a change to the next write.
#[inline]
pub(crate) fn client_key(ip: IpAddr) -> u64 {
    match ip {
        IpAddr::V4(v4) => u64::from(u32::from(v4)) | 1 << 32,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => u64::from(u32::from(v4)) | 1 << 32,
            None => {
                let bits = u128::from(v6);
                ((bits >> 64) as u64 ^ (bits as u64).rotate_left(29)) | 1 << 63
            }
        },
    }
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

/// Most distinct scope sets shared between one authenticator's cached tokens.
const MAX_INTERNED_SCOPE_SETS: usize = 4096;

/// Tokens mostly hold one of a few scope sets: one authenticator's cached tokens share one
/// copy of each. Per authenticator, so two in one process share nothing.
#[derive(Default)]
pub(crate) struct ScopeInterner {
    sets: Mutex<HashMap<ScopeSet, Arc<ScopeSet>>>,
}

impl ScopeInterner {
    /// The shared copy of `scopes`.
    pub(crate) fn intern(&self, scopes: ScopeSet) -> Arc<ScopeSet> {
        let mut sets = self.sets.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(shared) = sets.get(&scopes) {
            return shared.clone();
        }
        let shared = Arc::new(scopes);
        if sets.len() >= MAX_INTERNED_SCOPE_SETS {
            // Drop the sets no cached token holds any more; if all are held, do not intern.
            sets.retain(|_, v| Arc::strong_count(v) > 1);
        }
        if sets.len() < MAX_INTERNED_SCOPE_SETS {
            sets.insert((*shared).clone(), shared.clone());
        }
        shared
    }
}

impl CachedToken {
    /// The entry for `record`, read from the store at invalidation epoch `loaded_epoch`
    /// (read before the store was), at `now`.
    pub(crate) fn new(
        record: TokenRecord,
        loaded_epoch: u64,
        now: i64,
        interval: Option<Duration>,
        hierarchy: &Arc<ScopeHierarchy>,
        interner: &ScopeInterner,
    ) -> Self {
        let (window, not_after) = match record.expiry {
            Expiry::AutoRefresh { window, not_after } => (
                u32::try_from(secs(window).max(1)).unwrap_or(u32::MAX),
                not_after.map_or(i64::MAX, |t| t.unix_timestamp()),
            ),
            _ => (0, i64::MAX),
        };
        let interval = interval.unwrap_or_else(|| match window {
            0 => Duration::from_secs(60),
            w => Duration::from_secs(u64::from((w / 10).clamp(1, 60))),
        });
        let scopes = interner.intern(record.scopes);
        let client = record.last_used_from.client.map_or(0, client_key);
        let seen =
            (!record.last_used_from.is_empty() || !record.recent_clients.is_empty()).then(|| {
                Box::new(Seen {
                    from: record.last_used_from,
                    recent: record.recent_clients,
                    noticed_at: 0,
                })
            });
        Self {
            client: AtomicU64::new(client),
            seen: Mutex::new(seen),
            id: record.id,
            secret_hash: record.secret_hash,
            previous_secret: record
                .previous_secret
                .map(|p| Box::new((p.hash, p.valid_until.unix_timestamp()))),
            principal: PrincipalData::new(
                record.owner.into(),
                record.id,
                record.name.into(),
                scopes,
                hierarchy.clone(),
            ),
            active: record.active,
            window,
            not_after,
            interval: u32::try_from(secs(interval)).unwrap_or(u32::MAX),
            loaded_epoch,
            loaded_at: now,
            last_used: AtomicI64::new(record.last_used.map_or(NONE_I64, |t| t.unix_timestamp())),
            expires_at: AtomicI64::new(record.expires_at.map_or(i64::MAX, |t| t.unix_timestamp())),
            written_at: AtomicI64::new(now),
            dirty: AtomicBool::new(false),
            listed: AtomicBool::new(false),
        }
    }

    #[inline]
    pub(crate) fn id(&self) -> &TokenId {
        &self.id
    }

    /// The invalidation epoch the entry was loaded at.
    #[inline]
    pub(crate) fn loaded_epoch(&self) -> u64 {
        self.loaded_epoch
    }

    /// When the entry was made (unix seconds).
    #[inline]
    pub(crate) fn loaded_at(&self) -> i64 {
        self.loaded_at
    }

    /// Whether `hash` is the secret's, or the previous secret's while it is still
    /// accepted at `now`. Constant time in the hashes.
    #[inline]
    pub(crate) fn secret_matches(&self, hash: &SecretHash, now: i64) -> bool {
        self.secret_hash.ct_eq(hash)
            | self
                .previous_secret
                .as_deref()
                .is_some_and(|(old, until)| old.ct_eq(hash) && now < *until)
    }

    /// Whether the token is enabled.
    #[inline]
    pub(crate) fn is_active(&self) -> bool {
        self.active
    }

    /// Whether the token has expired at `now` (as far as this replica knows).
    #[inline]
    pub(crate) fn is_expired_at(&self, now: i64) -> bool {
        self.expires_at.load(Ordering::Acquire) <= now
    }

    #[inline]
    pub(crate) fn is_sliding(&self) -> bool {
        self.window > 0
    }

    pub(crate) fn expires_at(&self) -> Option<OffsetDateTime> {
        match self.expires_at.load(Ordering::Acquire) {
            i64::MAX => None,
            s => Some(clock::from_unix(s)),
        }
    }

    /// Records a use at `now` in memory: `last_used`, and a sliding token's expiry.
    /// `true` for the token's first use (to exactly one caller).
    #[inline]
    pub(crate) fn note_use(&self, now: i64) -> bool {
        let mut first = false;
        if self.last_used.load(Ordering::Relaxed) < now {
            first = self.last_used.fetch_max(now, Ordering::AcqRel) == NONE_I64;
        }
        if self.is_sliding() {
            let new = crate::expiry::sliding_end(now, i64::from(self.window), self.not_after);
            self.expires_at.fetch_max(new, Ordering::AcqRel);
        }
        first
    }

    /// Whether `client` is not the last client address this replica saw use the token.
    #[inline]
    pub(crate) fn client_changed(&self, client: Option<IpAddr>) -> bool {
        client.is_some_and(|ip| self.client.load(Ordering::Relaxed) != client_key(ip))
    }

    /// Notes where a use came from at `now`: it is now the last origin, and its address
    /// the newest of the recent ones. `true` when the address was not among the recent
    /// ones (and there were some: a first address is not a new one), at most once per
    /// write-behind interval (a client cycling through addresses makes one event an
    /// interval, not one a request). IPv6 addresses in one /64 count as one.
    pub(crate) fn note_origin(&self, origin: &Origin, keep: usize, now: i64) -> bool {
        let Some(ip) = origin.client else {
            return false;
        };
        self.client.store(client_key(ip), Ordering::Relaxed);
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let seen = seen.get_or_insert_with(Box::default);
        seen.from = origin.clone();
        let known = seen.recent.iter().any(|x| same_client(*x, ip));
        let mut new = !seen.recent.is_empty() && !known;
        if new {
            if now.saturating_sub(seen.noticed_at) < i64::from(self.interval) {
                new = false;
            } else {
                seen.noticed_at = now;
            }
        }
        seen.recent.retain(|x| !same_client(*x, ip));
        seen.recent.insert(0, ip);
        seen.recent.truncate(keep.max(1));
        new
    }

    /// Whether a write-behind write is due at `now`; `true` to exactly one caller per
    /// interval, which then writes.
    #[inline]
    pub(crate) fn claim_write(&self, now: i64) -> bool {
        let written = self.written_at.load(Ordering::Acquire);
        now.saturating_sub(written) >= i64::from(self.interval)
            && self
                .written_at
                .compare_exchange(written, now, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
    }

    /// Whether a use is not yet written to the store.
    pub(crate) fn is_dirty(&self) -> bool {
        self.dirty.load(Ordering::Acquire)
    }

    /// What to write to the store for the uses so far, clearing the dirty mark (set it
    /// again with [`WriteBehind::mark_dirty`](super::WriteBehind::mark_dirty) if the write
    /// fails).
    pub(crate) fn take_touch(&self) -> Touch {
        self.dirty.store(false, Ordering::Release);
        let last = self.last_used.load(Ordering::Acquire);
        let touch = Touch::new(
            clock::from_unix(if last == NONE_I64 { 0 } else { last }),
            self.is_sliding().then(|| self.expires_at()).flatten(),
        );
        match self
            .seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_deref()
        {
            Some(seen) => touch.with_origin(seen.from.clone(), seen.recent.clone()),
            None => touch,
        }
    }
}

impl Keyed for CachedToken {
    #[inline]
    fn key(&self) -> &TokenId {
        &self.id
    }
}
