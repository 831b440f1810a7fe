//! Where tokens are kept: the [`TokenStore`] trait and its implementations.
//!
//! A store answers `Ok(None)` for an unknown token and `Err` only when it failed; the
//! authenticator turns the first into "invalid token" (401) and the second into "store
//! unavailable" (503), never one into the other.
//!
//! [`MemoryStore`] is always there (tests, demos).

mod memory;

use std::fmt;
use std::time::Duration;

use time::OffsetDateTime;

pub use memory::MemoryStore;

use crate::record::TokenRecord;
use crate::scope::Scope;
use crate::token::TokenId;

/// A boxed error from a store's driver.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A store failed. Never means "unknown token" (that is `Ok(None)`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The backend could not be reached or failed to answer.
    #[error("token store unavailable: {message}")]
    Unavailable {
        /// What failed (no secrets, passwords masked).
        message: String,
        /// The driver's error.
        #[source]
        source: Option<BoxError>,
    },
    /// The backend did not answer in time.
    #[error("token store did not answer within {0:?}")]
    Timeout(Duration),
    /// A token with this id already exists.
    #[error("a token with id {0} already exists")]
    Conflict(TokenId),
    /// The store holds data it cannot decode, or was asked something it cannot do.
    #[error("token store data invalid: {0}")]
    Invalid(String),
}

impl StoreError {
    /// An [`StoreError::Unavailable`] from a driver error.
    pub fn unavailable(message: impl Into<String>, source: impl Into<BoxError>) -> Self {
        StoreError::Unavailable {
            message: message.into(),
            source: Some(source.into()),
        }
    }
}

/// The fields a listing can be ordered by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SortField {
    /// Creation time (default).
    #[default]
    Created,
    /// Last use; never-used tokens come last in ascending order.
    LastUsed,
    /// Effective expiry; never-expiring tokens come last in ascending order.
    Expires,
    /// Name.
    Name,
}

/// A listing order. Ties are broken by id, so pages are stable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Order {
    /// The field.
    pub field: SortField,
    /// Descending when true.
    pub descending: bool,
}

/// A listing request: filters (all must hold), order and page.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ListQuery {
    /// Only this owner's tokens.
    pub owner: Option<String>,
    /// Name contains this, case-insensitively.
    pub name_contains: Option<String>,
    /// The token holds exactly this scope.
    pub has_scope: Option<Scope>,
    /// Expires before this time (never-expiring tokens excluded).
    pub expires_before: Option<OffsetDateTime>,
    /// Expires after this time (never-expiring tokens included).
    pub expires_after: Option<OffsetDateTime>,
    /// Last used before this time (never-used tokens excluded).
    pub last_used_before: Option<OffsetDateTime>,
    /// `Some(true)`: never used; `Some(false)`: used at least once.
    pub never_used: Option<bool>,
    /// The `active` flag.
    pub active: Option<bool>,
    /// Free text matched case-insensitively against name and owner.
    pub search: Option<String>,
    /// Order.
    pub order: Order,
    /// Page number, from 1.
    pub page: u32,
    /// Items per page (1 to [`ListQuery::MAX_PAGE_SIZE`]).
    pub page_size: u32,
}

impl Default for ListQuery {
    fn default() -> Self {
        Self {
            owner: None,
            name_contains: None,
            has_scope: None,
            expires_before: None,
            expires_after: None,
            last_used_before: None,
            never_used: None,
            active: None,
            search: None,
            order: Order::default(),
            page: 1,
            page_size: 25,
        }
    }
}

impl ListQuery {
    /// Largest page size a store serves.
    pub const MAX_PAGE_SIZE: u32 = 1000;

    /// Everything, first page of 25, oldest first.
    pub fn new() -> Self {
        Self::default()
    }

    /// Only `owner`'s tokens.
    #[must_use]
    pub fn owner(mut self, owner: impl Into<String>) -> Self {
        self.owner = Some(owner.into());
        self
    }

    /// Page `page` (from 1) of `page_size` items (clamped to 1..=1000).
    #[must_use]
    pub fn page(mut self, page: u32, page_size: u32) -> Self {
        self.page = page.max(1);
        self.page_size = page_size.clamp(1, Self::MAX_PAGE_SIZE);
        self
    }

    /// Rows to skip for the page.
    pub fn offset(&self) -> u64 {
        u64::from(self.page.max(1) - 1) * u64::from(self.limit())
    }

    /// Rows in a page.
    pub fn limit(&self) -> u32 {
        self.page_size.clamp(1, Self::MAX_PAGE_SIZE)
    }

    /// Whether `r` passes every filter. Stores that filter in memory use this; SQL stores
    /// must agree with it (the conformance suite checks).
    pub fn matches(&self, r: &TokenRecord) -> bool {
        let icontains =
            |hay: &str, needle: &str| hay.to_lowercase().contains(&needle.to_lowercase());
        self.owner.as_ref().is_none_or(|o| &r.owner == o)
            && self
                .name_contains
                .as_ref()
                .is_none_or(|n| icontains(&r.name, n))
            && self
                .has_scope
                .as_ref()
                .is_none_or(|s| r.scopes.iter().any(|x| x == s))
            && self
                .expires_before
                .is_none_or(|t| r.expires_at.is_some_and(|e| e < t))
            && self
                .expires_after
                .is_none_or(|t| r.expires_at.is_none_or(|e| e > t))
            && self
                .last_used_before
                .is_none_or(|t| r.last_used.is_some_and(|u| u < t))
            && self.never_used.is_none_or(|n| r.last_used.is_none() == n)
            && self.active.is_none_or(|a| r.active == a)
            && self
                .search
                .as_ref()
                .is_none_or(|q| icontains(&r.name, q) || icontains(&r.owner, q))
    }

    /// The listing order of two records (ties broken by id).
    pub fn compare(&self, a: &TokenRecord, b: &TokenRecord) -> std::cmp::Ordering {
        use std::cmp::Ordering;
        // `None` sorts after every value in ascending order.
        fn opt<T: Ord>(a: Option<T>, b: Option<T>) -> Ordering {
            match (a, b) {
                (Some(a), Some(b)) => a.cmp(&b),
                (None, None) => Ordering::Equal,
                (None, Some(_)) => Ordering::Greater,
                (Some(_), None) => Ordering::Less,
            }
        }
        let primary = match self.order.field {
            SortField::Created => a.created.cmp(&b.created),
            SortField::LastUsed => opt(a.last_used, b.last_used),
            SortField::Expires => opt(a.expires_at, b.expires_at),
            SortField::Name => a.name.cmp(&b.name),
        };
        let ord = primary.then_with(|| a.id.cmp(&b.id));
        if self.order.descending {
            ord.reverse()
        } else {
            ord
        }
    }
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    /// Items matching the filters, over all pages.
    pub total: u64,
    /// This page's items.
    pub items: Vec<T>,
}

/// A write-behind update after use: the time of the last use and, for sliding tokens,
/// the new expiry. Stores keep the later of the stored and the given values, so touches
/// from several replicas never move a token backwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Touch {
    /// When the token was last used.
    pub last_used: OffsetDateTime,
    /// The new sliding expiry (`None` for tokens that do not slide).
    pub expires_at: Option<OffsetDateTime>,
}

/// Where tokens are kept. Object safe: held as `Arc<dyn TokenStore>`.
///
/// Implementations keep only [`TokenRecord::secret_hash`], never a secret. Every method
/// answers `Err` only when the store itself failed.
#[async_trait::async_trait]
pub trait TokenStore: Send + Sync + fmt::Debug + 'static {
    /// The token with this id, or `Ok(None)` when there is none.
    async fn get(&self, id: &TokenId) -> Result<Option<TokenRecord>, StoreError>;

    /// Adds a token; [`StoreError::Conflict`] when the id is taken.
    async fn insert(&self, record: &TokenRecord) -> Result<(), StoreError>;

    /// Replaces a token; `Ok(false)` when there is none with this id.
    async fn update(&self, record: &TokenRecord) -> Result<bool, StoreError>;

    /// Deletes a token; `Ok(false)` when there was none.
    async fn delete(&self, id: &TokenId) -> Result<bool, StoreError>;

    /// One page of the tokens that pass the query's filters, in its order.
    async fn list(&self, query: &ListQuery) -> Result<Page<TokenRecord>, StoreError>;

    /// Records use: `last_used` and, for sliding tokens, `expires_at`, each only moved
    /// forward. Touching an unknown id does nothing and is not an error.
    async fn touch(&self, id: &TokenId, touch: &Touch) -> Result<(), StoreError>;

    /// Tells the other replicas sharing this store that `id` changed, so they drop it
    /// from their caches. Stores without replicas do nothing.
    async fn publish_change(&self, id: &TokenId) -> Result<(), StoreError> {
        let _ = id;
        Ok(())
    }

    /// Ids changed by other replicas, for stores that can tell (PostgreSQL, Redis).
    fn subscribe_changes(&self) -> Option<tokio::sync::broadcast::Receiver<TokenId>> {
        None
    }
}
