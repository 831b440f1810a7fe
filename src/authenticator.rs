//! The one decision point: a token string (and, for Basic, a username) in, a
//! [`Principal`] or an [`AuthError`] out, with a moka cache in front of the store.
//!
//! The HTTP layer, the axum extractor, the password adapter for SFTP/WebDAV gateways and
//! the CLI all call [`Authenticator`]; none of them decides anything on its own.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use std::sync::Arc;
//! use tower_pat::{Authenticator, MemoryStore, NewToken};
//!
//! let auth = Authenticator::builder(Arc::new(MemoryStore::new())).build();
//! let created = auth.create(NewToken::new("alice", "laptop")).await.unwrap();
//! let principal = auth.authenticate(created.token.expose()).await.unwrap();
//! assert_eq!(&*principal.owner, "alice");
//! # }
//! ```
//!
//! # Cache
//!
//! | setting | default | meaning |
//! |---|---|---|
//! | [`with_cache_ttl`](AuthenticatorBuilder::with_cache_ttl) | 30 s | how long a found token is served from memory; the worst-case staleness of a revocation that reaches this replica by no other way |
//! | [`with_negative_ttl`](AuthenticatorBuilder::with_negative_ttl) | 10 s | how long an unknown id is remembered |
//! | [`with_capacity`](AuthenticatorBuilder::with_capacity) | 100,000 | found tokens kept |
//! | [`with_negative_capacity`](AuthenticatorBuilder::with_negative_capacity) | 10,000 | unknown ids kept (separate, so a flood of random ids cannot evict real tokens) |
//! | [`with_store_timeout`](AuthenticatorBuilder::with_store_timeout) | 5 s | a store read slower than this is a store failure (503) |
//! | [`with_refresh_interval`](AuthenticatorBuilder::with_refresh_interval) | `min(window/10, 60 s)` for sliding tokens, 60 s otherwise | at most one `last_used`/expiry write per token per interval |
//!
//! Store errors are never cached. Concurrent misses for one id make one store read.
//! [`Authenticator::invalidate`] wins against a read already in flight: an entry loaded
//! before the invalidation is never served after it.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use moka::future::Cache;
use time::OffsetDateTime;

use crate::clock::{self, Clock, SystemClock};
use crate::error::{AuthError, InvalidReason};
use crate::expiry::Expiry;
use crate::hot::{HotTable, Keyed};
use crate::limit::{AttemptLimiter, Keys};
use crate::principal::{Principal, PrincipalData};
use crate::record::TokenRecord;
use crate::scope::{ScopeHierarchy, ScopeSet};
use crate::store::{StoreError, TokenStore, Touch};
use crate::token::{MintedToken, ParsedToken, Secret, SecretHash, TokenFormat, TokenId};

const STRIPES: usize = 1024;

/// Ids are random, but a client picks the ids it sends: a seeded hash keeps bucket
/// collisions out of its reach at a fraction of SipHash's cost.
type Hasher = foldhash::fast::RandomState;
const NONE_I64: i64 = i64::MIN;

/// Checks tokens. Cheap to clone: clones share the cache and the store.
#[derive(Clone)]
pub struct Authenticator {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn TokenStore>,
    format: TokenFormat,
    hierarchy: Arc<ScopeHierarchy>,
    clock: Arc<dyn Clock>,
    positive: Cache<TokenId, Arc<Live>, Hasher>,
    /// A set-associative front for the positive cache: one lock-free read per request
    /// instead of a moka read, which is far dearer and writes a shared read log (figures
    /// in BENCHMARKS.md). moka
    /// stays the cache of record (capacity, TTL, single-flight loads); an entry is served
    /// from here only while it is younger than the cache TTL and not invalidated.
    hot: HotTable<Live>,
    hot_ttl: i64,
    negative: Cache<TokenId, (), Hasher>,
    /// Invalidation epochs: `epochs[stripe(id)]` is the global epoch of the last
    /// invalidation of an id in that stripe. An entry loaded at an older epoch is stale.
    epoch: AtomicU64,
    epochs: Box<[AtomicU64]>,
    /// Write-behind: the cached tokens whose use is not yet written to the store.
    pending: Mutex<Pending>,
    store_timeout: Duration,
    refresh_interval: Option<Duration>,
    limiter: AttemptLimiter,
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authenticator")
            .field("store", &self.inner.store)
            .field("format", &self.inner.format)
            .field("cached", &self.inner.positive.entry_count())
            .finish_non_exhaustive()
    }
}

/// A cached token: what validation needs of the stored record (no more, to keep the
/// cache small), plus its in-memory use state (write-behind). Times are unix seconds.
/// A [`Principal`] holds its entry, so accepting a token allocates nothing.
///
/// `repr(C)`: what every validation reads comes first, next to the reference count, so a
/// cached token costs as few cache lines as possible; the principal's data comes last.
#[repr(C)]
pub(crate) struct Live {
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
    dirty: AtomicBool,
    /// In [`Pending`]'s list (read and written only under its lock).
    listed: AtomicBool,
    // Every validation reads the fields above: with the reference counts, the first 123
    // bytes of the allocation.
    /// Sliding never passes this (`i64::MAX`: no cap). Read only when sliding.
    not_after: i64,
    pub(crate) principal: PrincipalData,
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

/// Most distinct scope sets shared between cached tokens.
const MAX_INTERNED_SCOPE_SETS: usize = 4096;

/// Tokens mostly hold one of a few scope sets: cached tokens share one copy of each.
fn intern_scopes(scopes: ScopeSet) -> Arc<ScopeSet> {
    static SETS: std::sync::OnceLock<Mutex<HashMap<ScopeSet, Arc<ScopeSet>>>> =
        std::sync::OnceLock::new();
    let sets = SETS.get_or_init(Default::default);
    let mut sets = sets.lock().unwrap_or_else(|p| p.into_inner());
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

impl Live {
    fn id(&self) -> &TokenId {
        &self.id
    }

    fn new(
        record: TokenRecord,
        loaded_epoch: u64,
        now: i64,
        interval: Option<Duration>,
        hierarchy: &Arc<ScopeHierarchy>,
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
        let scopes = intern_scopes(record.scopes);
        Self {
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

    fn is_sliding(&self) -> bool {
        self.window > 0
    }

    pub(crate) fn expires_at(&self) -> Option<OffsetDateTime> {
        match self.expires_at.load(Ordering::Acquire) {
            i64::MAX => None,
            s => Some(clock::from_unix(s)),
        }
    }

    fn touch(&self) -> Touch {
        let last = self.last_used.load(Ordering::Acquire);
        Touch {
            last_used: clock::from_unix(if last == NONE_I64 { 0 } else { last }),
            expires_at: self.is_sliding().then(|| self.expires_at()).flatten(),
        }
    }
}

impl Keyed for Live {
    fn key(&self) -> &TokenId {
        self.id()
    }
}

/// The write-behind list: every cached token whose `dirty` flag went up since it was
/// last written, once each (its `listed` flag), at 8 bytes a token. A token written by
/// the periodic write-back stays listed until the next compaction (when the list is full)
/// drops it, so the list holds at most about four times the tokens with something
/// pending, or 2,048. (A map by id, as before, took about 50 bytes a token.)
#[derive(Default)]
struct Pending {
    list: Vec<Arc<Live>>,
}

impl Pending {
    /// Lists `live` (just made dirty) unless it is listed already.
    fn list(&mut self, live: &Arc<Live>) {
        if live.listed.swap(true, Ordering::Relaxed) {
            return;
        }
        if self.list.len() == self.list.capacity() && self.list.len() >= 1024 {
            self.compact();
        }
        self.list.push(live.clone());
    }

    /// Drops the tokens written since they were listed; a token dirtied again after
    /// this lists itself again, since the lock is held.
    fn compact(&mut self) {
        self.list.retain(|live| {
            let dirty = live.dirty.load(Ordering::Acquire);
            if !dirty {
                live.listed.store(false, Ordering::Relaxed);
            }
            dirty
        });
        // Room to double before the next compaction, and no more.
        let room = self.list.len().max(512) * 2;
        if self.list.capacity() > 2 * room {
            self.list.shrink_to(room);
        }
    }

    /// Empties the list (for a flush): its tokens list themselves again when next dirty.
    fn take(&mut self) -> Vec<Arc<Live>> {
        for live in &self.list {
            live.listed.store(false, Ordering::Relaxed);
        }
        std::mem::take(&mut self.list)
    }
}

enum Decision {
    Accept,
    Refuse(InvalidReason),
    /// An expired sliding token: read the store once before refusing.
    Reload,
}

/// One check's time, and whom its result counts against (no one without a client).
#[derive(Clone, Copy)]
struct Attempt<'a> {
    keys: Option<Keys<'a>>,
    now: i64,
}

/// What [`Authenticator::check_cached_from`] found in memory.
pub(crate) enum Cached {
    /// The decision.
    Decided(Result<Principal, AuthError>),
    /// The token is well formed but the hot table cannot decide: ask
    /// [`Authenticator::check_missed_from`] with what was worked out.
    Missed(Missed),
}

/// A well-formed token the hot table could not decide: its id and its secret's hash (what
/// the store keeps, not the secret), so the cache and store are asked without parsing and
/// hashing again, and the time its attempt started (the limiter has already let it in).
#[derive(Clone, Copy)]
pub(crate) struct Missed {
    id: TokenId,
    hash: SecretHash,
    now: i64,
}

enum Miss {
    /// Not in the store, as read at this invalidation epoch.
    Unknown(u64),
    Store(Arc<StoreError>),
}

/// Builds an [`Authenticator`]. Every setting has a documented default.
#[must_use]
pub struct AuthenticatorBuilder {
    store: Arc<dyn TokenStore>,
    format: TokenFormat,
    hierarchy: ScopeHierarchy,
    clock: Arc<dyn Clock>,
    cache_ttl: Duration,
    negative_ttl: Duration,
    capacity: u64,
    negative_capacity: u64,
    store_timeout: Duration,
    refresh_interval: Option<Duration>,
    limiter: AttemptLimiter,
}

impl fmt::Debug for AuthenticatorBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthenticatorBuilder")
            .field("store", &self.store)
            .field("format", &self.format)
            .field("cache_ttl", &self.cache_ttl)
            .field("negative_ttl", &self.negative_ttl)
            .field("capacity", &self.capacity)
            .field("store_timeout", &self.store_timeout)
            .finish_non_exhaustive()
    }
}

impl AuthenticatorBuilder {
    /// Token format (prefix); default `pat`.
    pub fn with_format(mut self, format: TokenFormat) -> Self {
        self.format = format;
        self
    }

    /// Scope hierarchy; default [`ScopeHierarchy::default`].
    pub fn with_hierarchy(mut self, hierarchy: ScopeHierarchy) -> Self {
        self.hierarchy = hierarchy;
        self
    }

    /// Clock; default the system clock. Tests use [`crate::clock::ManualClock`].
    pub fn with_clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// How long a found token is served from the cache (default 30 s). This bounds how
    /// long a revocation made elsewhere can go unseen when no change message arrives.
    pub fn with_cache_ttl(mut self, ttl: Duration) -> Self {
        self.cache_ttl = ttl;
        self
    }

    /// How long an unknown id is remembered (default 10 s).
    pub fn with_negative_ttl(mut self, ttl: Duration) -> Self {
        self.negative_ttl = ttl;
        self
    }

    /// Most tokens cached (default 100,000).
    pub fn with_capacity(mut self, capacity: u64) -> Self {
        self.capacity = capacity;
        self
    }

    /// Most unknown ids cached (default 10,000).
    pub fn with_negative_capacity(mut self, capacity: u64) -> Self {
        self.negative_capacity = capacity;
        self
    }

    /// Longest a store call may take before it counts as a failure (default 5 s).
    pub fn with_store_timeout(mut self, timeout: Duration) -> Self {
        self.store_timeout = timeout;
        self
    }

    /// Fixed interval between write-behind writes of one token (default
    /// `min(window/10, 60 s)` for sliding tokens, 60 s for others; at least 1 s).
    pub fn with_refresh_interval(mut self, interval: Duration) -> Self {
        self.refresh_interval = Some(interval.max(Duration::from_secs(1)));
        self
    }

    /// Failed-attempt limiting for [`Authenticator::authenticate_from`] and
    /// [`Authenticator::authenticate_basic_from`] (and so the HTTP layer); default
    /// [`AttemptLimiter::default`] (20 failures per client per 60 s).
    pub fn with_attempt_limiter(mut self, limiter: AttemptLimiter) -> Self {
        self.limiter = limiter;
        self
    }

    /// Builds the authenticator. When the store can tell about changes made by other
    /// replicas, and a tokio runtime is running, a task follows them and drops changed
    /// tokens from this cache.
    pub fn build(self) -> Authenticator {
        let inner = Arc::new(Inner {
            hot: HotTable::new(usize::try_from(self.capacity).unwrap_or(usize::MAX)),
            hot_ttl: i64::try_from(self.cache_ttl.as_secs()).unwrap_or(i64::MAX),
            positive: Cache::builder()
                .max_capacity(self.capacity)
                .time_to_live(self.cache_ttl)
                .build_with_hasher(Hasher::default()),
            // LRU: a flood of junk ids must not stop the newest ones from being remembered.
            negative: Cache::builder()
                .eviction_policy(moka::policy::EvictionPolicy::lru())
                .max_capacity(self.negative_capacity)
                .time_to_live(self.negative_ttl)
                .build_with_hasher(Hasher::default()),
            epoch: AtomicU64::new(1),
            epochs: (0..STRIPES).map(|_| AtomicU64::new(0)).collect(),
            pending: Mutex::default(),
            store: self.store,
            format: self.format,
            hierarchy: Arc::new(self.hierarchy),
            clock: self.clock,
            store_timeout: self.store_timeout,
            refresh_interval: self.refresh_interval,
            limiter: self.limiter,
        });
        if let (Some(mut rx), Ok(handle)) = (
            inner.store.subscribe_changes(),
            tokio::runtime::Handle::try_current(),
        ) {
            let weak = Arc::downgrade(&inner);
            handle.spawn(async move {
                use tokio::sync::broadcast::error::RecvError;
                loop {
                    let id = match rx.recv().await {
                        Ok(id) => Some(id),
                        Err(RecvError::Lagged(n)) => {
                            tracing::warn!(
                                missed = n,
                                "missed token change messages; clearing the cache"
                            );
                            None
                        }
                        Err(RecvError::Closed) => return,
                    };
                    let Some(inner) = weak.upgrade() else { return };
                    match id {
                        Some(id) => inner.invalidate_local(&id).await,
                        None => inner.invalidate_all_local(),
                    }
                }
            });
        }
        Authenticator { inner }
    }
}

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
}

impl NewToken {
    /// A never-expiring, full-access token for `owner` named `name`.
    pub fn new(owner: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            owner: owner.into(),
            name: name.into(),
            scopes: ScopeSet::full_access(),
            expiry: Expiry::Never,
        }
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
    /// Starts building an authenticator over `store`.
    pub fn builder(store: Arc<dyn TokenStore>) -> AuthenticatorBuilder {
        AuthenticatorBuilder {
            store,
            format: TokenFormat::default(),
            hierarchy: ScopeHierarchy::default(),
            clock: Arc::new(SystemClock),
            cache_ttl: Duration::from_secs(30),
            negative_ttl: Duration::from_secs(10),
            capacity: 100_000,
            negative_capacity: 10_000,
            store_timeout: Duration::from_secs(5),
            refresh_interval: None,
            limiter: AttemptLimiter::default(),
        }
    }

    /// An authenticator with every default.
    pub fn new(store: Arc<dyn TokenStore>) -> Self {
        Self::builder(store).build()
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn TokenStore> {
        &self.inner.store
    }

    /// The token format.
    pub fn format(&self) -> &TokenFormat {
        &self.inner.format
    }

    /// The scope hierarchy.
    pub fn hierarchy(&self) -> &Arc<ScopeHierarchy> {
        &self.inner.hierarchy
    }

    /// The clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.inner.clock
    }

    /// Mints and stores a new token. The returned [`CreatedToken::token`] is the only
    /// time the token string exists outside its holder.
    pub async fn create(&self, new: NewToken) -> Result<CreatedToken, StoreError> {
        let MintedToken {
            id,
            secret_hash,
            token,
        } = self.inner.format.mint();
        let now = self.inner.clock.now();
        let record = TokenRecord::new(
            id,
            new.owner,
            new.name,
            new.scopes,
            new.expiry,
            secret_hash,
            now,
        );
        self.inner
            .with_timeout(self.inner.store.insert(&record))
            .await?;
        Ok(CreatedToken { record, token })
    }

    /// Checks a token from `Authorization: Bearer`.
    pub async fn authenticate(&self, token: &str) -> Result<Principal, AuthError> {
        self.check_from(None, None, token).await
    }

    /// Checks a username and password (HTTP Basic, SFTP, WebDAV): the password is the
    /// token and the username must be its owner. Same decision as
    /// [`authenticate`](Self::authenticate) otherwise.
    pub async fn authenticate_basic(
        &self,
        username: &str,
        password: &str,
    ) -> Result<Principal, AuthError> {
        self.check_from(None, Some(username), password).await
    }

    /// [`authenticate`](Self::authenticate) for a known client (its IP address): refused
    /// with [`AuthError::TooManyAttempts`] and no store access while the client is locked
    /// out by the [`AttemptLimiter`].
    pub async fn authenticate_from(
        &self,
        client: IpAddr,
        token: &str,
    ) -> Result<Principal, AuthError> {
        self.check_from(Some(client), None, token).await
    }

    /// [`authenticate_basic`](Self::authenticate_basic) for a known client: failures count
    /// against the client and against the client + username pair.
    pub async fn authenticate_basic_from(
        &self,
        client: IpAddr,
        username: &str,
        password: &str,
    ) -> Result<Principal, AuthError> {
        self.check_from(Some(client), Some(username), password)
            .await
    }

    /// Whether failed attempts are limited per client (else the client is not needed).
    pub(crate) fn limits_attempts(&self) -> bool {
        self.inner.limiter.is_enabled()
    }

    /// The decision of the `authenticate*` methods, if it can be made from memory alone:
    /// no await, no allocation. [`Cached::Missed`]: ask
    /// [`check_missed_from`](Self::check_missed_from).
    pub(crate) fn check_cached_from(
        &self,
        client: Option<IpAddr>,
        username: Option<&str>,
        token: &str,
    ) -> Cached {
        let attempt = match self.inner.attempt(client, username) {
            Ok(attempt) => attempt,
            Err(locked) => return Cached::Decided(Err(locked)),
        };
        match self.inner.check_cached(token, username, attempt.now) {
            Cached::Decided(result) => {
                self.inner.count_attempt(attempt, &result);
                Cached::Decided(result)
            }
            missed => missed,
        }
    }

    /// The decision for a token [`check_cached_from`](Self::check_cached_from) found
    /// well formed but could not decide, from the cache and the store: the rest of the
    /// attempt that call started (same `client` and `username`), not a new one.
    pub(crate) async fn check_missed_from(
        &self,
        client: Option<IpAddr>,
        username: Option<&str>,
        missed: Missed,
    ) -> Result<Principal, AuthError> {
        let attempt = Attempt {
            keys: client.map(|client| Keys { client, username }),
            now: missed.now,
        };
        let result = self
            .inner
            .check_cold(&missed.id, &missed.hash, username, missed.now)
            .await;
        self.inner.count_attempt(attempt, &result);
        result
    }

    /// Any `authenticate*` method: `client` (an IP address) turns on the attempt limiter,
    /// `username` the Basic owner check.
    pub(crate) async fn check_from(
        &self,
        client: Option<IpAddr>,
        username: Option<&str>,
        token: &str,
    ) -> Result<Principal, AuthError> {
        let attempt = self.inner.attempt(client, username)?;
        let result = self.inner.check(token, username, attempt.now).await;
        self.inner.count_attempt(attempt, &result);
        result
    }

    /// Drops `id` from this cache, also winning against a store read already in flight,
    /// and tells other replicas through the store. Call after changing the token in the
    /// store.
    pub async fn invalidate(&self, id: &TokenId) -> Result<(), StoreError> {
        self.inner.invalidate_local(id).await;
        self.inner
            .with_timeout(self.inner.store.publish_change(id))
            .await
    }

    /// Drops every cached token (used when change messages may have been lost).
    pub fn invalidate_all(&self) {
        self.inner.invalidate_all_local();
    }

    /// Writes every pending `last_used`/sliding-expiry update to the store. Call on
    /// shutdown. Returns how many tokens were written; the first error is returned after
    /// trying them all (failed ones stay pending).
    pub async fn flush(&self) -> Result<usize, StoreError> {
        let pending = self.inner.lock_pending().take();
        let mut written = 0;
        let mut first_err = None;
        // Tokens written since they were listed have nothing pending.
        for live in pending.iter().filter(|l| l.dirty.load(Ordering::Acquire)) {
            match self.inner.write_back(live).await {
                Ok(()) => written += 1,
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        first_err.map_or(Ok(written), Err)
    }

    /// Tokens in the cache now (approximate).
    pub fn cached_tokens(&self) -> u64 {
        self.inner.positive.entry_count()
    }

    /// Unknown ids remembered now (approximate).
    pub fn cached_unknown_ids(&self) -> u64 {
        self.inner.negative.entry_count()
    }

    /// Runs the cache's pending maintenance (useful before reading
    /// [`cached_tokens`](Self::cached_tokens)).
    pub async fn sync_cache(&self) {
        self.inner.positive.run_pending_tasks().await;
        self.inner.negative.run_pending_tasks().await;
    }
}

impl Inner {
    async fn with_timeout<T>(
        &self,
        fut: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(self.store_timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err(StoreError::Timeout(self.store_timeout)),
        }
    }

    fn lock_pending(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts an attempt: reads the clock and, for a known `client`, refuses it while the
    /// limiter locks it out. The clock comes first in every check: a precise read
    /// (`SystemTime`, where the coarse clock is not used) waits for earlier loads, so it
    /// must not follow the request for the hot-table line.
    fn attempt<'a>(
        &self,
        client: Option<IpAddr>,
        username: Option<&'a str>,
    ) -> Result<Attempt<'a>, AuthError> {
        let now = self.clock.unix_now();
        let keys = client.map(|client| Keys { client, username });
        if let Some(keys) = keys {
            self.limiter.check(keys, now).map_err(|retry_after| {
                tracing::debug!(retry_after = ?retry_after, "client locked out after failed attempts");
                AuthError::TooManyAttempts { retry_after }
            })?;
        }
        Ok(Attempt { keys, now })
    }

    /// Counts an attempt's result for its client. Store failures count for nobody: the
    /// client did nothing wrong.
    fn count_attempt(&self, attempt: Attempt<'_>, result: &Result<Principal, AuthError>) {
        let Some(keys) = attempt.keys else { return };
        match result {
            Ok(_) => self.limiter.success(keys),
            Err(AuthError::Invalid(_) | AuthError::Malformed(_)) => {
                self.limiter.failure(keys, attempt.now)
            }
            Err(_) => {}
        }
    }

    /// The whole decision when the token is in the hot table: no await, no allocation.
    /// [`Cached::Missed`]: not decidable from memory (a miss, or an expired sliding token
    /// that another replica may have slid); ask [`check_cold`](Self::check_cold).
    pub(crate) fn check_cached(
        self: &Arc<Self>,
        token: &str,
        username: Option<&str>,
        now: i64,
    ) -> Cached {
        let parsed = match self.parse(token) {
            Ok(parsed) => parsed,
            Err(e) => return Cached::Decided(Err(e)),
        };
        let hash = parsed.secret_hash();
        match self.decide_cached(&parsed, &hash, username, now) {
            Some(result) => Cached::Decided(result),
            None => Cached::Missed(Missed {
                id: parsed.id,
                hash,
                now,
            }),
        }
    }

    async fn check(
        self: &Arc<Self>,
        token: &str,
        username: Option<&str>,
        now: i64,
    ) -> Result<Principal, AuthError> {
        match self.check_cached(token, username, now) {
            Cached::Decided(result) => result,
            Cached::Missed(missed) => {
                self.check_cold(&missed.id, &missed.hash, username, missed.now)
                    .await
            }
        }
    }

    /// The decision from the cache and the store (the hot table could not decide).
    async fn check_cold(
        self: &Arc<Self>,
        id: &TokenId,
        hash: &SecretHash,
        username: Option<&str>,
        now: i64,
    ) -> Result<Principal, AuthError> {
        let mut reloaded = false;
        loop {
            // Boxed so the (large) cache and store futures are not part of every request's
            // future.
            let live = Box::pin(self.cold_lookup(id)).await.inspect_err(|e| {
                tracing::debug!(token_id = %id, error = %e, "token refused");
            })?;
            match self.decide(&live, hash, username, now) {
                // Another replica may have slid it: ask the store once before refusing.
                Decision::Reload if !reloaded => {
                    reloaded = true;
                    self.invalidate_local(id).await;
                }
                Decision::Reload => return Err(self.refuse(id, InvalidReason::Expired)),
                Decision::Refuse(reason) => return Err(self.refuse(id, reason)),
                Decision::Accept => return Ok(self.accept(live, now)),
            }
        }
    }

    /// Checks the token's format, having started the read of its hot-table line first.
    fn parse<'t>(&self, token: &'t str) -> Result<ParsedToken<'t>, AuthError> {
        if let Some(id) = self.format.peek_id(token) {
            self.hot.touch(&id);
        }
        self.format.parse(token).map_err(|e| {
            tracing::debug!(error = %e, "refused a malformed token");
            e.into()
        })
    }

    /// The decision from the hot table, if it holds a fresh entry for the token: younger
    /// than the cache TTL and loaded after the last invalidation of its id. The caller
    /// hashes the secret after [`parse`](Self::parse) asked for the table line, so the
    /// hashing overlaps that read; the entry is cloned only when the token is accepted.
    fn decide_cached(
        self: &Arc<Self>,
        parsed: &ParsedToken<'_>,
        hash: &SecretHash,
        username: Option<&str>,
        now: i64,
    ) -> Option<Result<Principal, AuthError>> {
        let epoch = self.stripe_epoch(&parsed.id);
        let found = self.hot.find(&parsed.id, |live| {
            if live.loaded_epoch < epoch || now.saturating_sub(live.loaded_at) >= self.hot_ttl {
                return None; // stale: the cold path reloads it
            }
            let decision = self.decide(live, hash, username, now);
            let keep = matches!(decision, Decision::Accept).then(|| live.clone());
            Some((decision, keep))
        });
        match found.flatten()? {
            (Decision::Accept, Some(live)) => Some(Ok(self.accept(live, now))),
            (Decision::Refuse(reason), _) => Some(Err(self.refuse(&parsed.id, reason))),
            _ => None,
        }
    }

    fn decide(&self, live: &Live, hash: &SecretHash, username: Option<&str>, now: i64) -> Decision {
        let secret_ok = live.secret_hash.ct_eq(hash)
            | live
                .previous_secret
                .as_deref()
                .is_some_and(|(old, until)| old.ct_eq(hash) && now < *until);
        if !secret_ok {
            Decision::Refuse(InvalidReason::WrongSecret)
        } else if username.is_some_and(|u| u != &*live.principal.owner) {
            Decision::Refuse(InvalidReason::WrongUser)
        } else if !live.active {
            Decision::Refuse(InvalidReason::Disabled)
        } else if live.expires_at.load(Ordering::Acquire) <= now {
            if live.is_sliding() {
                Decision::Reload
            } else {
                Decision::Refuse(InvalidReason::Expired)
            }
        } else {
            Decision::Accept
        }
    }

    fn refuse(&self, id: &TokenId, reason: InvalidReason) -> AuthError {
        tracing::debug!(token_id = %id, %reason, "token refused");
        AuthError::Invalid(reason)
    }

    fn accept(self: &Arc<Self>, live: Arc<Live>, now: i64) -> Principal {
        self.record_use(&live, now);
        tracing::trace!(token_id = %live.id(), owner = %live.principal.owner, "token accepted");
        let expires_at = live.expires_at();
        Principal::new(live, expires_at)
    }

    async fn cold_lookup(self: &Arc<Self>, id: &TokenId) -> Result<Arc<Live>, AuthError> {
        if let Some(live) = self.positive.get(id).await {
            if live.loaded_epoch >= self.stripe_epoch(id) {
                self.hot.put(live.clone());
                return Ok(live);
            }
        }
        if self.negative.contains_key(id) {
            return Err(AuthError::Invalid(InvalidReason::Unknown));
        }
        for _ in 0..3 {
            let load = async {
                let epoch = self.epoch.load(Ordering::SeqCst);
                match self.with_timeout(self.store.get(id)).await {
                    Ok(Some(record)) => Ok(Arc::new(self.live(record, epoch))),
                    Ok(None) => Err(Miss::Unknown(epoch)),
                    Err(e) => Err(Miss::Store(Arc::new(e))),
                }
            };
            match self.positive.try_get_with(*id, load).await {
                Ok(live) if live.loaded_epoch >= self.stripe_epoch(id) => {
                    self.hot.put(live.clone());
                    return Ok(live);
                }
                // Loaded before an invalidation of this id: never serve it.
                Ok(_) => self.positive.invalidate(id).await,
                Err(miss) => return Err(self.miss(id, &miss).await),
            }
        }
        // Invalidations keep racing our loads: read the store directly, uncached.
        let epoch = self.epoch.load(Ordering::SeqCst);
        match self.with_timeout(self.store.get(id)).await {
            Ok(Some(record)) => Ok(Arc::new(self.live(record, epoch))),
            Ok(None) => Err(AuthError::Invalid(InvalidReason::Unknown)),
            Err(e) => Err(AuthError::StoreUnavailable(Arc::new(e))),
        }
    }

    async fn miss(&self, id: &TokenId, miss: &Miss) -> AuthError {
        match miss {
            Miss::Unknown(loaded) => {
                // Like positive entries, a negative one read before an invalidation of
                // this id must not outlive it: insert, then drop it if one came since.
                self.negative.insert(*id, ()).await;
                if self.stripe_epoch(id) > *loaded {
                    self.negative.invalidate(id).await;
                }
                AuthError::Invalid(InvalidReason::Unknown)
            }
            Miss::Store(e) => {
                tracing::warn!(token_id = %id, error = %e, "token store failed");
                AuthError::StoreUnavailable(e.clone())
            }
        }
    }

    fn stripe_epoch(&self, id: &TokenId) -> u64 {
        self.epochs[id.stripe(STRIPES)].load(Ordering::SeqCst)
    }

    async fn invalidate_local(&self, id: &TokenId) {
        let e = self.epoch.fetch_add(1, Ordering::SeqCst) + 1;
        self.epochs[id.stripe(STRIPES)].fetch_max(e, Ordering::SeqCst);
        self.hot.remove(id);
        self.positive.invalidate(id).await;
        self.negative.invalidate(id).await;
    }

    fn invalidate_all_local(&self) {
        let e = self.epoch.fetch_add(1, Ordering::SeqCst) + 1;
        for s in self.epochs.iter() {
            s.fetch_max(e, Ordering::SeqCst);
        }
        self.hot.clear();
        self.positive.invalidate_all();
        self.negative.invalidate_all();
    }

    fn live(&self, record: TokenRecord, epoch: u64) -> Live {
        Live::new(
            record,
            epoch,
            self.clock.unix_now(),
            self.refresh_interval,
            &self.hierarchy,
        )
    }

    /// Write-behind: update the cached values now, the store at most once per interval.
    fn record_use(self: &Arc<Self>, live: &Arc<Live>, now: i64) {
        if live.last_used.load(Ordering::Relaxed) < now {
            live.last_used.fetch_max(now, Ordering::AcqRel);
        }
        if live.is_sliding() {
            let new = crate::expiry::sliding_end(now, i64::from(live.window), live.not_after);
            live.expires_at.fetch_max(new, Ordering::AcqRel);
        }
        self.mark_dirty(live);
        let written = live.written_at.load(Ordering::Acquire);
        if now.saturating_sub(written) >= i64::from(live.interval)
            && live
                .written_at
                .compare_exchange(written, now, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                let (inner, live) = (self.clone(), live.clone());
                handle.spawn(async move {
                    let _ = inner.write_back(&live).await;
                });
            }
        }
    }

    async fn write_back(&self, live: &Arc<Live>) -> Result<(), StoreError> {
        // It stays listed until the list is next compacted, unless used again by then.
        live.dirty.store(false, Ordering::Release);
        let touch = live.touch();
        let res = self.with_timeout(self.store.touch(live.id(), &touch)).await;
        if let Err(e) = &res {
            tracing::warn!(token_id = %live.id(), error = %e, "could not record token use; will retry");
            self.mark_dirty(live);
        }
        res
    }

    /// Marks `live` as having a use to write, listing it when the mark is new.
    fn mark_dirty(&self, live: &Arc<Live>) {
        if !live.dirty.load(Ordering::Acquire) && !live.dirty.swap(true, Ordering::AcqRel) {
            self.lock_pending().list(live);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::store::MemoryStore;

    /// A 2 s window used every 1.4 s: the seconds clock reads floor(t), as the system
    /// clock does, at t = 0.9, 2.3, 3.7, … Each use is inside the window of the one
    /// before, so each is accepted; an idle spell longer than window + 1 s is not.
    #[tokio::test(flavor = "current_thread")]
    async fn a_sliding_token_used_once_per_window_is_never_refused() {
        let start = 1_800_000_000;
        let clock = ManualClock::new(clock::from_unix(start));
        let store = Arc::new(MemoryStore::new());
        let auth = Authenticator::builder(store.clone())
            .with_clock(clock.clone())
            .build();
        let window = Duration::from_secs(2);
        let new = |cap| {
            NewToken::new("alice", "sliding").with_expiry(Expiry::auto_refresh(
                clock.now(),
                window,
                cap,
            ))
        };
        let token = auth.create(new(None)).await.unwrap().token;
        let mut uses = 0;
        // Tenths of a second since `start`.
        let mut t = 9;
        while t <= 100 {
            clock.set(clock::from_unix(start + t / 10));
            let used = auth.authenticate(token.expose()).await;
            assert!(
                used.is_ok(),
                "refused at t = {}.{} s: {used:?}",
                t / 10,
                t % 10
            );
            uses += 1;
            t += 14;
        }
        assert_eq!(uses, 7);
        // Through the store too, as another replica (or a restart) would see it.
        auth.flush().await.unwrap();
        let fresh = Authenticator::builder(store.clone())
            .with_clock(clock.clone())
            .build();
        assert!(fresh.authenticate(token.expose()).await.is_ok());
        // Last used at 9.3 s (second 9): at 12.x s it has been idle for more than 3 s.
        clock.set(clock::from_unix(start + 12));
        assert!(matches!(
            auth.authenticate(token.expose()).await,
            Err(AuthError::Invalid(InvalidReason::Expired))
        ));
        // The cap is never passed, not even by the extra second.
        clock.set(clock::from_unix(start));
        let capped = auth
            .create(new(Some(Duration::from_secs(3))))
            .await
            .unwrap();
        clock.set(clock::from_unix(start + 2));
        let p = auth.authenticate(capped.token.expose()).await.unwrap();
        assert_eq!(p.expires_at, Some(clock::from_unix(start + 3)));
        clock.set(clock::from_unix(start + 3));
        assert!(auth.authenticate(capped.token.expose()).await.is_err());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn the_write_behind_list_drops_written_tokens() {
        let clock = ManualClock::starting_now();
        let store = Arc::new(MemoryStore::new());
        let auth = Authenticator::builder(store.clone())
            .with_clock(clock.clone())
            .with_refresh_interval(Duration::from_secs(1))
            .build();
        let mut tokens = Vec::new();
        for i in 0..3_000 {
            let created = auth.create(NewToken::new(format!("u{i}"), "t")).await;
            tokens.push(created.unwrap().token);
        }
        let listed = || auth.inner.lock_pending().list.len();
        let (first, second) = tokens.split_at(2_000);
        for t in first {
            auth.authenticate(t.expose()).await.unwrap();
        }
        assert_eq!(listed(), 2_000, "each used token is listed once");
        // Used again after the refresh interval: each is written back in the background,
        // and stays listed, clean.
        clock.advance(Duration::from_secs(2));
        for t in first {
            auth.authenticate(t.expose()).await.unwrap();
        }
        for _ in 0..10_000 {
            let clean = auth
                .inner
                .lock_pending()
                .list
                .iter()
                .all(|l| !l.dirty.load(Ordering::Acquire));
            if clean {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(listed(), 2_000);
        // Ten of them used again: pending again, still listed once.
        for t in &first[..10] {
            auth.authenticate(t.expose()).await.unwrap();
        }
        assert_eq!(listed(), 2_000);
        for t in &first[10..] {
            let id = auth.format().parse(t.expose()).unwrap().id;
            let stored = store.get(&id).await.unwrap().unwrap();
            assert_eq!(
                stored.last_used.map(|u| u.unix_timestamp()),
                Some(clock.unix_now())
            );
        }
        // The list fills up with new tokens: compaction drops the written ones.
        for t in second {
            auth.authenticate(t.expose()).await.unwrap();
        }
        assert_eq!(listed(), 1_010, "written tokens were dropped from the list");
        // Only what is pending is written, once.
        assert_eq!(auth.flush().await.unwrap(), 1_010);
        assert_eq!(listed(), 0);
        assert_eq!(auth.flush().await.unwrap(), 0);
        // A flushed token used again is listed again.
        auth.authenticate(second[0].expose()).await.unwrap();
        assert_eq!(listed(), 1);
    }
}
