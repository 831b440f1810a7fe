//! The stored form of a token: [`TokenRecord`].

use std::net::IpAddr;
use std::time::Duration;

use time::OffsetDateTime;

use crate::events::Origin;
use crate::expiry::Expiry;
use crate::scope::ScopeSet;
use crate::token::{SecretHash, TokenId};

/// Everything a store keeps about one token. The secret itself is never here: only its
/// SHA-256 ([`SecretHash`]), whose `Debug` is redacted too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    /// Public id.
    pub id: TokenId,
    /// The user the token acts for (the login name Basic auth sends).
    pub owner: String,
    /// Label, e.g. "terraform prod". Searchable.
    pub name: String,
    /// What it may do; empty = everything its owner may do.
    pub scopes: ScopeSet,
    /// How it expires.
    pub expiry: Expiry,
    /// The effective expiry now (for auto-refresh tokens, the sliding value); `None` = never.
    pub expires_at: Option<OffsetDateTime>,
    /// Disabled tokens are kept but refused.
    pub active: bool,
    /// Creation time.
    pub created: OffsetDateTime,
    /// Last change through the management API.
    pub modified: OffsetDateTime,
    /// Last successful use; `None` until the first.
    pub last_used: Option<OffsetDateTime>,
    /// SHA-256 of the secret.
    pub secret_hash: SecretHash,
    /// After a rotation with a grace period: the old secret's hash and when it stops working.
    pub previous_secret: Option<PreviousSecret>,
    /// Where the token was created from: the client address and user agent of the
    /// management request (empty when it was made by an operator or server-side code).
    pub created_from: Origin,
    /// Where the token was last used from, as of its last write-behind write (at most
    /// one write per refresh interval, so the newest use of the interval wins).
    pub last_used_from: Origin,
    /// The last distinct client addresses it was used from, newest first (at most
    /// [`TokenRecord::RECENT_CLIENTS`] by default, see
    /// [`with_recent_clients`](crate::AuthenticatorBuilder::with_recent_clients)): a use from an address not among them is a
    /// [`NewClientAddress`](crate::EventKind::NewClientAddress) event.
    pub recent_clients: Vec<IpAddr>,
    /// The record's version: 1 when created, one more with every
    /// [`TokenStore::update`](crate::store::TokenStore::update), which writes only over the
    /// version it was given (compare-and-swap). Use ([`TokenStore::touch`](crate::store::TokenStore::touch))
    /// does not change it. The admin API shows it as the `ETag`.
    pub version: u64,
}

/// The secret a rotated token had, valid until `valid_until`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PreviousSecret {
    /// SHA-256 of the old secret.
    pub hash: SecretHash,
    /// When the old secret stops working.
    pub valid_until: OffsetDateTime,
}

impl TokenRecord {
    /// How many recent client addresses a record keeps by default
    /// ([`TokenRecord::recent_clients`]).
    pub const RECENT_CLIENTS: usize = 5;

    /// A new active record created at `now`.
    pub fn new(
        id: TokenId,
        owner: impl Into<String>,
        name: impl Into<String>,
        scopes: ScopeSet,
        expiry: Expiry,
        secret_hash: SecretHash,
        now: OffsetDateTime,
    ) -> Self {
        Self {
            id,
            owner: owner.into(),
            name: name.into(),
            scopes,
            expires_at: expiry.expires_at_from(now),
            expiry,
            active: true,
            created: now,
            modified: now,
            last_used: None,
            secret_hash,
            previous_secret: None,
            created_from: Origin::default(),
            last_used_from: Origin::default(),
            recent_clients: Vec::new(),
            version: 1,
        }
    }

    /// Whether the token has expired at `now` (a token expiring exactly now has expired).
    pub fn is_expired(&self, now: OffsetDateTime) -> bool {
        self.expires_at.is_some_and(|e| e <= now)
    }

    /// The end of the token's life that no use moves: the hard `expires_at`, or a sliding
    /// token's `not_after` cap; `None` when it has none (never expires, or slides
    /// without a cap).
    pub fn absolute_end(&self) -> Option<OffsetDateTime> {
        match self.expiry {
            Expiry::HardLimit { expires_at } => Some(expires_at),
            Expiry::AutoRefresh { not_after, .. } => not_after,
            _ => None,
        }
    }

    /// The sliding window, for auto-refresh tokens.
    pub fn window(&self) -> Option<Duration> {
        match self.expiry {
            Expiry::AutoRefresh { window, .. } => Some(window),
            _ => None,
        }
    }
}
