//! Minting: [`NewToken`] in, [`CreatedToken`] (the record and the token string, shown
//! once) out. The lowest step of the lifecycle: [`Manager::create`](super::Manager::create)
//! adds rights and the expiry policy on top.

use crate::authenticator::Authenticator;
use crate::events::Origin;
use crate::expiry::Expiry;
use crate::metrics::StoreOp;
use crate::record::TokenRecord;
use crate::scope::ScopeSet;
use crate::store::StoreError;
use crate::token::{MintedToken, Secret};

/// What to create: see [`Authenticator::create`]. The management API offers more
/// (policies, rights); this is the minimum.
#[derive(Debug, Clone)]
#[must_use]
pub struct NewToken {
    /// Owner (login name).
    pub owner: String,
    /// Label.
    pub name: String,
    /// Scopes; empty = full access of the owner.
    pub scopes: ScopeSet,
    /// Expiry; default never.
    pub expiry: Expiry,
    /// Where the request that creates it came from (recorded as the token's
    /// [`created_from`](crate::TokenRecord::created_from)); default unknown.
    pub from: Origin,
}

impl NewToken {
    /// A never-expiring, full-access token for `owner` named `name`.
    pub fn new(owner: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            owner: owner.into(),
            name: name.into(),
            scopes: ScopeSet::full_access(),
            expiry: Expiry::Never,
            from: Origin::default(),
        }
    }

    /// Created by a request from `from`.
    pub fn with_origin(mut self, from: Origin) -> Self {
        self.from = from;
        self
    }

    /// With these scopes.
    pub fn with_scopes(mut self, scopes: ScopeSet) -> Self {
        self.scopes = scopes;
        self
    }

    /// With this expiry.
    pub fn with_expiry(mut self, expiry: Expiry) -> Self {
        self.expiry = expiry;
        self
    }
}

/// A created token: its record, and the token string, shown this once.
#[derive(Debug)]
pub struct CreatedToken {
    /// What was stored (the secret's hash only).
    pub record: TokenRecord,
    /// The full token. Show it once; it cannot be recovered.
    pub token: Secret,
}

impl Authenticator {
    /// Mints and stores a new token. The returned [`CreatedToken::token`] is the only
    /// time the token string exists outside its holder.
    pub async fn create(&self, new: NewToken) -> Result<CreatedToken, StoreError> {
        let MintedToken {
            id,
            secret_hash,
            token,
        } = self.format().mint();
        let now = self.clock().now();
        let mut record = TokenRecord::new(
            id,
            new.owner,
            new.name,
            new.scopes,
            new.expiry,
            secret_hash,
            now,
        );
        record.created_from = new.from;
        self.store_call(StoreOp::Insert, self.store().insert(&record))
            .await?;
        Ok(CreatedToken { record, token })
    }
}
