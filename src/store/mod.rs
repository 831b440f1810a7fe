//! Where tokens are kept: the [`TokenStore`] trait and its implementations.
//!
//! A store answers `Ok(None)` for an unknown token and `Err` only when it failed; the
//! authenticator turns the first into "invalid token" (401) and the second into "store
//! unavailable" (503), never one into the other.
//!
//! | store | feature | URL for [`open`] | for |
//! |---|---|---|---|
//! | [`MemoryStore`] | always | `memory://` | tests, demos |
//! | `SqliteStore` | `sqlite` (default) | `sqlite://path.db`, `sqlite::memory:` | one process, or a few on one host sharing a file |
//! | `PostgresStore` | `postgres` | `postgres://user:pass@host/db`, `postgresql://…` | many replicas |
//! | `RedisStore` | `redis` | `redis://host:6379`, `rediss://…` | many replicas |
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let store = tower_pat::store::open("memory://").await.unwrap();
//! let auth = tower_pat::Authenticator::new(store);
//! # let _ = auth;
//! # }
//! ```
//!
//! # Revocation across replicas
//!
//! [`Authenticator::invalidate`](crate::Authenticator::invalidate) calls
//! [`TokenStore::publish_change`]; every other authenticator on the same store whose
//! [background task](crate::Authenticator::background) runs learns of it through
//! [`TokenStore::follow_changes`] and drops the token from its cache: PostgreSQL by
//! `LISTEN`/`NOTIFY`, Redis by pub/sub (both within milliseconds), SQLite by polling a
//! change table every 500 ms. After a reconnect the follower reports the gap, and the
//! whole cache is dropped; without the background task, the cache TTL (30 s by default)
//! is the worst-case staleness.

mod changes;
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "redis"))]
mod codec;
mod memory;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "redis")]
mod redis;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod sql;
#[cfg(feature = "sqlite")]
mod sqlite;

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;

pub(crate) use changes::Change;
pub use changes::ChangeFeed;
pub use memory::MemoryStore;
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub use postgres::PostgresStore;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use redis::RedisStore;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
#[cfg_attr(docsrs, doc(cfg(any(feature = "sqlite", feature = "postgres"))))]
pub use sql::{Dialect, SqlStore};
#[cfg(feature = "sqlite")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
pub use sqlite::SqliteStore;

use crate::events::{Event, Origin};
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
    /// Last used from this client address (IPv4-mapped IPv6 addresses compare as IPv4).
    pub last_used_ip: Option<IpAddr>,
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
            last_used_ip: None,
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
        paging(self.page, self.page_size).0
    }

    /// Rows in a page.
    pub fn limit(&self) -> u32 {
        paging(self.page, self.page_size).1
    }

    /// Whether `r` passes every filter: the one definition of what each filter means.
    /// Stores that filter in memory use it; the SQL stores' `WHERE` clause
    /// (`store/sql/query.rs`) and the Redis store's Lua script are its other forms, and
    /// the store conformance suite compares every store's listings with it.
    pub fn matches(&self, r: &TokenRecord) -> bool {
        let icontains =
            |hay: &str, needle: &str| hay.to_lowercase().contains(&needle.to_lowercase());
        self.owner.as_ref().map_or(true, |o| &r.owner == o)
            && self
                .name_contains
                .as_ref()
                .map_or(true, |n| icontains(&r.name, n))
            && self
                .has_scope
                .as_ref()
                .map_or(true, |s| r.scopes.iter().any(|x| x == s))
            && self
                .expires_before
                .map_or(true, |t| r.expires_at.is_some_and(|e| e < t))
            && self
                .expires_after
                .map_or(true, |t| r.expires_at.map_or(true, |e| e > t))
            && self
                .last_used_before
                .map_or(true, |t| r.last_used.is_some_and(|u| u < t))
            && self.never_used.map_or(true, |n| r.last_used.is_none() == n)
            && self.last_used_ip.map_or(true, |ip| {
                r.last_used_from.client.map(|c| c.to_canonical()) == Some(ip.to_canonical())
            })
            && self.active.map_or(true, |a| r.active == a)
            && self
                .search
                .as_ref()
                .map_or(true, |q| icontains(&r.name, q) || icontains(&r.owner, q))
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

/// The rows to skip and the rows to take for page `page` (from 1) of `page_size` items
/// (clamped to 1..=[`ListQuery::MAX_PAGE_SIZE`]): one rule for every listing.
fn paging(page: u32, page_size: u32) -> (u64, u32) {
    let limit = page_size.clamp(1, ListQuery::MAX_PAGE_SIZE);
    (u64::from(page.max(1) - 1) * u64::from(limit), limit)
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    /// Items matching the filters, over all pages.
    pub total: u64,
    /// This page's items.
    pub items: Vec<T>,
}

/// An audit-log listing: filters (all must hold) and page. Events are listed newest
/// first (the order they were recorded in, reversed).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct EventQuery {
    /// Only this token's events.
    pub token_id: Option<TokenId>,
    /// Only events of this owner's tokens.
    pub owner: Option<String>,
    /// Only events of this type ([`EventKind::name`](crate::EventKind::name): `created`,
    /// `disabled`, …).
    pub kind: Option<String>,
    /// Only events at or after this time.
    pub since: Option<OffsetDateTime>,
    /// Only events before this time.
    pub until: Option<OffsetDateTime>,
    /// Page number, from 1.
    pub page: u32,
    /// Items per page (1 to [`ListQuery::MAX_PAGE_SIZE`]).
    pub page_size: u32,
}

impl Default for EventQuery {
    fn default() -> Self {
        Self {
            token_id: None,
            owner: None,
            kind: None,
            since: None,
            until: None,
            page: 1,
            page_size: 25,
        }
    }
}

impl EventQuery {
    /// Every event, first page of 25, newest first.
    pub fn new() -> Self {
        Self::default()
    }

    /// Only this token's events.
    #[must_use]
    pub fn token(mut self, id: TokenId) -> Self {
        self.token_id = Some(id);
        self
    }

    /// Only events of `owner`'s tokens.
    #[must_use]
    pub fn owner(mut self, owner: impl Into<String>) -> Self {
        self.owner = Some(owner.into());
        self
    }

    /// Page `page` (from 1) of `page_size` items (clamped to 1..=1000).
    #[must_use]
    pub fn page(mut self, page: u32, page_size: u32) -> Self {
        self.page = page.max(1);
        self.page_size = page_size.clamp(1, ListQuery::MAX_PAGE_SIZE);
        self
    }

    /// Rows to skip for the page.
    pub fn offset(&self) -> u64 {
        paging(self.page, self.page_size).0
    }

    /// Rows in a page.
    pub fn limit(&self) -> u32 {
        paging(self.page, self.page_size).1
    }

    /// Whether `e` passes every filter: the one definition of what each filter means,
    /// which the stores' own forms follow (checked by the conformance suite).
    pub fn matches(&self, e: &Event) -> bool {
        self.token_id.map_or(true, |id| e.token_id == id)
            && self.owner.as_ref().map_or(true, |o| &e.owner == o)
            && self.kind.as_ref().map_or(true, |k| e.kind.name() == k)
            && self
                .since
                .map_or(true, |t| e.at.unix_timestamp() >= t.unix_timestamp())
            && self
                .until
                .map_or(true, |t| e.at.unix_timestamp() < t.unix_timestamp())
    }
}

/// A write-behind update after use: the time of the last use, for sliding tokens the new
/// expiry, and where the last use came from. Stores keep the later of the stored and the
/// given values, so touches from several replicas never move a token backwards; the
/// origin and the recent addresses are written only with a `last_used` that moves
/// forward.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Touch {
    /// When the token was last used.
    pub last_used: OffsetDateTime,
    /// The new sliding expiry (`None` for tokens that do not slide).
    pub expires_at: Option<OffsetDateTime>,
    /// Where the last use came from (empty when unknown: then the stored origin stays).
    pub from: Origin,
    /// The token's recent client addresses, newest first, as the writer knows them
    /// (empty: the stored list stays).
    pub recent_clients: Vec<IpAddr>,
}

impl Touch {
    /// A use at `last_used`, sliding the expiry to `expires_at` (if any).
    pub fn new(last_used: OffsetDateTime, expires_at: Option<OffsetDateTime>) -> Self {
        Self {
            last_used,
            expires_at,
            from: Origin::default(),
            recent_clients: Vec::new(),
        }
    }

    /// The same use, from `from`, with the token's recent client addresses.
    #[must_use]
    pub fn with_origin(mut self, from: Origin, recent_clients: Vec<IpAddr>) -> Self {
        self.from = from;
        self.recent_clients = recent_clients;
        self
    }
}

/// What a compare-and-swap write ([`TokenStore::update`], [`TokenStore::replace`]) found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
#[non_exhaustive]
pub enum Update {
    /// Written; the stored version is now one more than the version given.
    Written,
    /// Not written: the stored version is not the one given (someone changed the token
    /// since it was read). Read it again and retry, or report a conflict.
    Stale,
    /// Not written: there is no token with this id.
    NotFound,
}

impl Update {
    /// True for [`Update::Written`].
    pub fn is_written(self) -> bool {
        self == Update::Written
    }
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

    /// Replaces a token **if its stored version is `record.version`** (compare-and-swap),
    /// and makes the stored version `record.version + 1`. Of two updates made from the
    /// same read, exactly one is [`Update::Written`]; the other is [`Update::Stale`] and
    /// changes nothing. [`Update::NotFound`] when there is no token with this id.
    ///
    /// Use is not a change: `last_used` keeps the later of the stored and the given value,
    /// and so does a sliding token's `expires_at` when its expiry model is unchanged, so
    /// an update never moves what [`touch`](Self::touch) wrote backwards.
    async fn update(&self, record: &TokenRecord) -> Result<Update, StoreError>;

    /// Replaces `old` by `new` in one atomic step (a rotation to a new id): inserts `new`
    /// and, if `old`'s stored version is `old.version`, either deletes `old`
    /// (`delete_old`) or updates it as [`update`](Self::update) does. Afterwards either
    /// both steps happened ([`Update::Written`]) or neither did: never both tokens
    /// without the change to the old one, never neither. [`StoreError::Conflict`] when
    /// `new`'s id is taken.
    async fn replace(
        &self,
        old: &TokenRecord,
        delete_old: bool,
        new: &TokenRecord,
    ) -> Result<Update, StoreError>;

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

    /// Follows the changes other replicas publish with
    /// [`publish_change`](Self::publish_change), reporting each changed id to `feed`,
    /// reconnecting as needed, until `feed` is closed (or the future is dropped). Stores
    /// that cannot tell return at once.
    ///
    /// Run by the authenticator's background task
    /// ([`Authenticator::background`](crate::Authenticator::background)); a store never
    /// starts it by itself. A store that may have missed messages (a reconnect) calls
    /// [`ChangeFeed::lost`], and the follower drops every cached token.
    async fn follow_changes(&self, feed: ChangeFeed) {
        let _ = feed;
    }

    /// Appends events to the store's audit log, in order. Called by the
    /// [`AuditLog`](crate::AuditLog) sink from the background task, never on a request's
    /// path. The default keeps nothing (and [`list_events`](Self::list_events) finds
    /// nothing).
    async fn append_events(&self, events: &[Event]) -> Result<(), StoreError> {
        let _ = events;
        Ok(())
    }

    /// One page of the audit log's events that pass the query's filters, newest first
    /// (the reverse of the order they were appended in). The default: an empty page.
    async fn list_events(&self, query: &EventQuery) -> Result<Page<Event>, StoreError> {
        let _ = query;
        Ok(Page {
            total: 0,
            items: Vec::new(),
        })
    }

    /// Deletes the audit log's events older than `before` (and the expiry reminders
    /// claimed for expiries before it); returns how many events it deleted. Run by the
    /// background task once an hour with the retention
    /// ([`AuthenticatorBuilder::with_audit_retention`](crate::AuthenticatorBuilder::with_audit_retention)).
    async fn prune_events(&self, before: OffsetDateTime) -> Result<u64, StoreError> {
        let _ = before;
        Ok(0)
    }

    /// Claims the expiry reminder `lead` (seconds before the end; 0 for *expired*) of
    /// token `id` for its expiry `expires_at`: `Ok(true)` for exactly one caller across
    /// every replica sharing the store, which then sends it; `Ok(false)` for the others.
    /// A new expiry (a sliding token, a changed one) is a new reminder. The default
    /// claims everything, so with a store that does not implement it each replica
    /// reminds once.
    async fn claim_reminder(
        &self,
        id: &TokenId,
        lead: u64,
        expires_at: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let _ = (id, lead, expires_at);
        Ok(true)
    }
}

/// Opens the store a URL names, migrating SQL schemas:
///
/// | URL | store | feature |
/// |---|---|---|
/// | `memory://` | [`MemoryStore`] | always |
/// | `sqlite://path.db`, `sqlite:path.db`, `sqlite::memory:` | `SqliteStore` (file created if missing) | `sqlite` (default) |
/// | `postgres://…`, `postgresql://…` | `PostgresStore` (schema `public`) | `postgres` |
/// | `redis://…`, `rediss://…` | `RedisStore` (key prefix `pat:`) | `redis` |
///
/// An unknown scheme, or one whose feature is not compiled in, is
/// [`StoreError::Invalid`] naming the scheme (and the feature to enable); a store that
/// cannot be reached is [`StoreError::Unavailable`] naming the URL with its password
/// masked.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use tower_pat::store::{open, StoreError};
///
/// let store = open("sqlite::memory:").await.unwrap();
/// assert!(store.get(&tower_pat::TokenId::generate()).await.unwrap().is_none());
/// assert!(matches!(open("mysql://db/pat").await, Err(StoreError::Invalid(_))));
/// # }
/// ```
pub async fn open(url: &str) -> Result<Arc<dyn TokenStore>, StoreError> {
    let scheme = url
        .split_once(':')
        .map(|(s, _)| s.to_ascii_lowercase())
        .unwrap_or_default();
    #[allow(unused_variables)]
    let missing = |feature: &str| {
        StoreError::Invalid(format!(
            "store URL scheme `{scheme}` needs tower-pat's `{feature}` feature, which is not enabled"
        ))
    };
    match scheme.as_str() {
        "memory" => Ok(Arc::new(MemoryStore::new())),
        #[cfg(feature = "sqlite")]
        "sqlite" => Ok(Arc::new(SqliteStore::connect(url).await?)),
        #[cfg(not(feature = "sqlite"))]
        "sqlite" => Err(missing("sqlite")),
        #[cfg(feature = "postgres")]
        "postgres" | "postgresql" => Ok(Arc::new(PostgresStore::connect(url).await?)),
        #[cfg(not(feature = "postgres"))]
        "postgres" | "postgresql" => Err(missing("postgres")),
        #[cfg(feature = "redis")]
        "redis" | "rediss" => Ok(Arc::new(RedisStore::connect(url).await?)),
        #[cfg(not(feature = "redis"))]
        "redis" | "rediss" => Err(missing("redis")),
        _ => Err(StoreError::Invalid(format!(
            "unknown store URL scheme `{scheme}` in {}: use memory://, sqlite://, postgres:// or redis://",
            mask_url(url)
        ))),
    }
}

/// `url` with any password replaced by `****`: the one in `user:password@host` and any
/// `password=` query parameter. Safe to log and to put in error messages: use it wherever
/// a store URL is printed (a start-up line, an error), as the quickstart and `pat` do.
///
/// ```
/// use tower_pat::store::mask_url;
///
/// assert_eq!(mask_url("postgres://app:s3cret@db:5432/pat"), "postgres://app:****@db:5432/pat");
/// assert_eq!(mask_url("redis://:s3cret@cache"), "redis://:****@cache");
/// assert_eq!(mask_url("sqlite://tokens.db"), "sqlite://tokens.db");
/// ```
pub fn mask_url(url: &str) -> String {
    let (head, rest) = match url.find("://") {
        Some(i) => url.split_at(i + 3),
        None => ("", url),
    };
    let auth_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(auth_end);
    let authority = match authority.rfind('@') {
        Some(at) => {
            let (userinfo, host) = authority.split_at(at);
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{user}:****{host}"),
                None => authority.to_owned(),
            }
        }
        None => authority.to_owned(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let params: Vec<String> = query
                .split('&')
                .map(|p| match p.split_once('=') {
                    Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=****"),
                    _ => p.to_owned(),
                })
                .collect();
            format!("{path}?{}", params.join("&"))
        }
        None => tail.to_owned(),
    };
    format!("{head}{authority}{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_url_hides_passwords_only() {
        for (url, masked) in [
            (
                "postgres://app:s3cret@db:5432/pat",
                "postgres://app:****@db:5432/pat",
            ),
            (
                "postgresql://app:p%40ss:w@db/pat?sslmode=require",
                "postgresql://app:****@db/pat?sslmode=require",
            ),
            (
                "redis://:s3cret@127.0.0.1:6379/0",
                "redis://:****@127.0.0.1:6379/0",
            ),
            ("redis://default:a@b@host", "redis://default:****@host"),
            (
                "postgres://db/pat?user=app&password=s3cret&x=1",
                "postgres://db/pat?user=app&password=****&x=1",
            ),
            ("postgres://app@db/pat", "postgres://app@db/pat"),
            ("sqlite://tokens.db", "sqlite://tokens.db"),
            ("sqlite::memory:", "sqlite::memory:"),
            ("", ""),
        ] {
            let m = mask_url(url);
            assert_eq!(m, masked, "{url}");
            assert!(!m.contains("s3cret"), "{m}");
        }
    }

    #[tokio::test]
    async fn open_refuses_unknown_schemes_by_name() {
        for url in ["mysql://u:s3cret@db/x", "nonsense", "file:///tmp/x"] {
            match open(url).await {
                Err(StoreError::Invalid(m)) => {
                    assert!(m.contains("scheme"), "{m}");
                    assert!(!m.contains("s3cret"), "{m}");
                }
                other => panic!("{url}: {other:?}"),
            }
        }
        assert!(open("memory://").await.is_ok());
    }

    #[cfg(not(feature = "postgres"))]
    #[tokio::test]
    async fn open_names_the_missing_feature() {
        match open("postgres://db/x").await {
            Err(StoreError::Invalid(m)) => assert!(m.contains("`postgres` feature"), "{m}"),
            other => panic!("{other:?}"),
        }
    }
}
