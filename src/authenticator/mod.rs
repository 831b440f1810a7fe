//! The one decision point: a token string (and, for Basic, a username) in, a
//! (Its longer documentation is on the public item, where rustdoc shows it.)

// The decision and the cold path are here; `check` holds the check protocol, `builder`
// the settings, `background` the work outside requests, `mint` token creation, `attempt`
// the failed-attempt limiter's part. The cache's parts are in `crate::cache`.
mod attempt;
mod background;
mod builder;
mod check;
mod reminders;
#[cfg(test)]
mod tests;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use moka::future::Cache;

use crate::cache::{CachedToken, Epochs, HotTable, ScopeInterner, WriteBehind};
use crate::clock::Clock;
use crate::error::{AuthError, InvalidReason};
use crate::events::{Event, EventActor, EventKind, Events, Origin};
use crate::limit::AttemptLimiter;
use crate::metrics::{Lookup, Metrics, StoreOp};
use crate::principal::Principal;
use crate::record::TokenRecord;
use crate::scope::ScopeHierarchy;
use crate::store::{StoreError, TokenStore};
use crate::token::{ParsedToken, SecretHash, TokenFormat, TokenId};
use background::Tasks;

pub use background::Background;
pub use builder::AuthenticatorBuilder;
pub(crate) use check::UseFrom;
pub use check::{Check, Credential, PendingCheck};

/// What a use needs after the decision ([`Inner::follow_up`]), as bits.
pub(crate) mod followup {
    /// The token's first use.
    pub(crate) const FIRST_USE: u8 = 1;
    /// From another client address than the last one seen.
    pub(crate) const CLIENT_CHANGED: u8 = 2;
    /// Its write-behind write is due.
    pub(crate) const WRITE_DUE: u8 = 4;
}

/// Ids are random, but a client picks the ids it sends: a seeded hash keeps bucket
/// collisions out of its reach at a fraction of SipHash's cost.
type Hasher = foldhash::fast::RandomState;

/// Checks tokens. Cheap to clone: clones share the cache and the store.
///
///
/// The HTTP layer, the axum extractor, the password adapter for SFTP/WebDAV gateways and
/// the CLI all call [`Authenticator`]; none of them decides anything on its own.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use std::sync::Arc;
/// use tower_pat::{Authenticator, MemoryStore, NewToken};
///
/// let auth = Authenticator::builder(Arc::new(MemoryStore::new())).build();
/// let created = auth.create(NewToken::new("alice", "laptop")).await.unwrap();
/// let principal = auth.authenticate(created.token.expose()).await.unwrap();
/// assert_eq!(principal.owner(), "alice");
/// # }
/// ```
///
/// # Cache
///
/// | setting | default | meaning |
/// |---|---|---|
/// | [`with_cache_ttl`](AuthenticatorBuilder::with_cache_ttl) | 30 s | how long a found token is served from memory; the worst-case staleness of a revocation that reaches this replica by no other way |
/// | [`with_negative_ttl`](AuthenticatorBuilder::with_negative_ttl) | 10 s | how long an unknown id is remembered |
/// | [`with_capacity`](AuthenticatorBuilder::with_capacity) | 100,000 | found tokens kept |
/// | [`with_negative_capacity`](AuthenticatorBuilder::with_negative_capacity) | 10,000 | unknown ids kept (separate, so a flood of random ids cannot evict real tokens) |
/// | [`with_store_timeout`](AuthenticatorBuilder::with_store_timeout) | 5 s | a store read slower than this is a store failure (503) |
/// | [`with_refresh_interval`](AuthenticatorBuilder::with_refresh_interval) | `min(window/10, 60 s)` for sliding tokens, 60 s otherwise | at most one `last_used`/expiry write per token per interval |
///
/// Store errors are never cached. Concurrent misses for one id make one store read.
/// [`Authenticator::invalidate`] wins against a read already in flight: an entry loaded
/// before the invalidation is never served after it.
#[derive(Clone)]
pub struct Authenticator {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn TokenStore>,
    format: TokenFormat,
    hierarchy: Arc<ScopeHierarchy>,
    clock: Arc<dyn Clock>,
    positive: Cache<TokenId, Arc<CachedToken>, Hasher>,
    /// A set-associative front for the positive cache: one lock-free read per request
    /// instead of a moka read, which is far dearer and writes a shared read log (figures
    /// in BENCHMARKS.md). moka
    /// stays the cache of record (capacity, TTL, single-flight loads); an entry is served
    /// from here only while it is younger than the cache TTL and not invalidated.
    hot: HotTable<CachedToken>,
    hot_ttl: i64,
    negative: Cache<TokenId, (), Hasher>,
    /// Invalidation epochs: an entry loaded before the last invalidation of its id is
    /// stale.
    epochs: Epochs,
    /// Write-behind: the cached tokens whose use is not yet written to the store.
    write_behind: WriteBehind,
    store_timeout: Duration,
    refresh_interval: Option<Duration>,
    limiter: AttemptLimiter,
    /// The scope sets this cache's tokens share.
    interner: ScopeInterner,
    /// What the background future shares.
    tasks: Tasks,
    /// Lifecycle events waiting for the background future's sinks.
    events: Events,
    /// How long the audit log keeps events.
    audit_retention: Duration,
    /// Lead times of the expiry reminders, longest first.
    reminders: Vec<Duration>,
    /// How often the background task sends reminders.
    reminder_interval: Duration,
    /// How many recent client addresses a token keeps.
    recent_clients: usize,
    metrics: Metrics,
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

enum Decision {
    Accept,
    Refuse(InvalidReason),
    /// An expired sliding token: read the store once before refusing.
    Reload,
}

enum Miss {
    /// Not in the store, as read at this invalidation epoch.
    Unknown(u64),
    Store(Arc<StoreError>),
}

impl Authenticator {
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

    /// A call to the store, failing as [`StoreError::Timeout`] after the store timeout.
    pub(crate) async fn store_call<T>(
        &self,
        op: StoreOp,
        call: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        self.inner.with_timeout(op, call).await
    }

    /// Queues a lifecycle event for the sinks; never waits (a full queue drops it, counted
    /// by [`events_dropped`](Self::events_dropped)).
    pub(crate) fn emit(&self, event: Event) {
        self.inner.events.emit(event);
    }

    /// Events dropped because the queue was full (the background task not running, or
    /// its sinks too slow).
    pub fn events_dropped(&self) -> u64 {
        self.inner.events.dropped()
    }

    /// Whether failed attempts are limited per client (else the client is not needed).
    pub(crate) fn limits_attempts(&self) -> bool {
        self.inner.limiter.is_enabled()
    }

    /// Drops `id` from this cache, also winning against a store read already in flight,
    /// and tells other replicas through the store. Call after changing the token in the
    /// store.
    pub async fn invalidate(&self, id: &TokenId) -> Result<(), StoreError> {
        self.inner.invalidate_local(id).await;
        self.inner
            .with_timeout(StoreOp::PublishChange, self.inner.store.publish_change(id))
            .await
    }

    /// Finishes a use the HTTP layer's check left for it ([`Principal`]'s follow-up): its
    /// origin with the request's user agent, its events, its due write.
    #[cold]
    pub(crate) fn follow_up(
        &self,
        principal: &mut Principal,
        client: Option<std::net::IpAddr>,
        user_agent: Option<&str>,
    ) {
        let bits = principal.take_followup();
        if bits != 0 {
            self.inner
                .follow_up(principal.entry(), bits, &Origin::new(client, user_agent));
        }
    }

    /// Drops every cached token (used when change messages may have been lost).
    pub fn invalidate_all(&self) {
        self.inner.invalidate_all_local();
    }

    /// Writes every pending `last_used`/sliding-expiry update to the store. Call on
    /// shutdown. Returns how many tokens were written; the first error is returned after
    /// trying them all (failed ones stay pending).
    pub async fn flush(&self) -> Result<usize, StoreError> {
        self.inner.flush().await
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
        op: StoreOp,
        fut: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let timer = crate::metrics::Timer::start();
        let result = match tokio::time::timeout(self.store_timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err(StoreError::Timeout(self.store_timeout)),
        };
        self.metrics.store_call(op, timer, &result);
        result
    }

    /// The whole decision when the token is in the hot table: no await, no allocation.
    /// `Err` with the token's id and secret hash: not decidable from memory (a miss, or an
    /// expired sliding token that another replica may have slid); ask
    /// [`check_cold`](Self::check_cold).
    #[allow(clippy::type_complexity)]
    pub(crate) fn check_cached(
        self: &Arc<Self>,
        token: &str,
        username: Option<&str>,
        now: i64,
        from: UseFrom<'_>,
    ) -> Result<Result<Principal, AuthError>, (TokenId, SecretHash)> {
        let parsed = match self.parse(token) {
            Ok(parsed) => parsed,
            Err(e) => return Ok(Err(e)),
        };
        let hash = parsed.secret_hash();
        match self.decide_cached(&parsed, &hash, username, now, from) {
            Some(result) => {
                self.metrics.lookup(Lookup::Hit);
                Ok(result)
            }
            None => Err((parsed.id, hash)),
        }
    }

    /// The decision from the cache and the store (the hot table could not decide).
    async fn check_cold(
        self: &Arc<Self>,
        id: &TokenId,
        hash: &SecretHash,
        username: Option<&str>,
        now: i64,
        from: UseFrom<'_>,
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
                Decision::Accept => return Ok(self.accept(live, now, from)),
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
        from: UseFrom<'_>,
    ) -> Option<Result<Principal, AuthError>> {
        let epoch = self.epochs.of(&parsed.id);
        let found = self.hot.find(&parsed.id, |live| {
            if live.loaded_epoch() < epoch || now.saturating_sub(live.loaded_at()) >= self.hot_ttl {
                return None; // stale: the cold path reloads it
            }
            let decision = self.decide(live, hash, username, now);
            let keep = matches!(decision, Decision::Accept).then(|| live.clone());
            Some((decision, keep))
        });
        match found.flatten()? {
            (Decision::Accept, Some(live)) => Some(Ok(self.accept(live, now, from))),
            (Decision::Refuse(reason), _) => Some(Err(self.refuse(&parsed.id, reason))),
            _ => None,
        }
    }

    fn decide(
        &self,
        live: &CachedToken,
        hash: &SecretHash,
        username: Option<&str>,
        now: i64,
    ) -> Decision {
        if !live.secret_matches(hash, now) {
            Decision::Refuse(InvalidReason::WrongSecret)
        } else if username.is_some_and(|u| u != &*live.principal.owner) {
            Decision::Refuse(InvalidReason::WrongUser)
        } else if !live.is_active() {
            Decision::Refuse(InvalidReason::Disabled)
        } else if live.is_expired_at(now) {
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

    fn accept(self: &Arc<Self>, live: Arc<CachedToken>, now: i64, from: UseFrom<'_>) -> Principal {
        let followup = self.record_use(&live, now, from.client);
        tracing::trace!(token_id = %live.id(), owner = %live.principal.owner, "token accepted");
        let expires_at = live.expires_at();
        let mut principal = Principal::new(live, expires_at);
        if followup != 0 {
            if from.deferred {
                principal.set_followup(followup);
            } else {
                self.follow_up(
                    principal.entry(),
                    followup,
                    &Origin::new(from.client, from.user_agent),
                );
            }
        }
        principal
    }

    /// What a use needs beyond the cache's counters ([`followup`] bits): noting where it
    /// came from, its first-use or new-address event, and its due write-behind write.
    #[cold]
    fn follow_up(self: &Arc<Self>, live: &Arc<CachedToken>, bits: u8, origin: &Origin) {
        let new_address = live.note_origin(origin, self.recent_clients, self.clock.unix_now());
        let kind = if bits & followup::FIRST_USE != 0 {
            Some(EventKind::FirstUse)
        } else if new_address {
            Some(EventKind::NewClientAddress)
        } else {
            None
        };
        if let Some(kind) = kind {
            self.events.emit(Event {
                at: self.clock.now(),
                token_id: *live.id(),
                owner: live.principal.owner.to_string(),
                actor: EventActor::Token {
                    id: *live.id(),
                    owner: live.principal.owner.to_string(),
                },
                client: origin.client,
                user_agent: origin.user_agent.clone(),
                kind,
            });
        }
        if bits & followup::WRITE_DUE != 0 {
            self.write_due(live);
        }
    }

    async fn cold_lookup(self: &Arc<Self>, id: &TokenId) -> Result<Arc<CachedToken>, AuthError> {
        if let Some(live) = self.positive.get(id).await {
            if !self.epochs.is_stale(id, live.loaded_epoch()) {
                self.hot.put(live.clone());
                self.metrics.lookup(Lookup::Hit);
                return Ok(live);
            }
        }
        if self.negative.contains_key(id) {
            self.metrics.lookup(Lookup::NegativeHit);
            return Err(AuthError::Invalid(InvalidReason::Unknown));
        }
        self.metrics.lookup(Lookup::Miss);
        for _ in 0..3 {
            let load = async {
                let epoch = self.epochs.current();
                match self.with_timeout(StoreOp::Get, self.store.get(id)).await {
                    Ok(Some(record)) => Ok(Arc::new(self.entry(record, epoch))),
                    Ok(None) => Err(Miss::Unknown(epoch)),
                    Err(e) => Err(Miss::Store(Arc::new(e))),
                }
            };
            match self.positive.try_get_with(*id, load).await {
                Ok(live) if !self.epochs.is_stale(id, live.loaded_epoch()) => {
                    self.hot.put(live.clone());
                    return Ok(live);
                }
                // Loaded before an invalidation of this id: never serve it.
                Ok(_) => self.positive.invalidate(id).await,
                Err(miss) => return Err(self.miss(id, &miss).await),
            }
        }
        // Invalidations keep racing our loads: read the store directly, uncached.
        let epoch = self.epochs.current();
        match self.with_timeout(StoreOp::Get, self.store.get(id)).await {
            Ok(Some(record)) => Ok(Arc::new(self.entry(record, epoch))),
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
                if self.epochs.is_stale(id, *loaded) {
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

    async fn invalidate_local(&self, id: &TokenId) {
        self.epochs.bump(id);
        self.hot.remove(id);
        self.positive.invalidate(id).await;
        self.negative.invalidate(id).await;
    }

    fn invalidate_all_local(&self) {
        self.epochs.bump_all();
        self.hot.clear();
        self.positive.invalidate_all();
        self.negative.invalidate_all();
    }

    fn entry(&self, record: TokenRecord, epoch: u64) -> CachedToken {
        CachedToken::new(
            record,
            epoch,
            self.clock.unix_now(),
            self.refresh_interval,
            &self.hierarchy,
            &self.interner,
        )
    }

    /// Write-behind: update the cached values now, the store at most once per interval.
    /// Returns what the use still needs ([`followup`] bits, 0 for most uses).
    #[inline]
    fn record_use(
        &self,
        live: &Arc<CachedToken>,
        now: i64,
        client: Option<std::net::IpAddr>,
    ) -> u8 {
        let mut bits = 0;
        if live.note_use(now) {
            bits |= followup::FIRST_USE;
        }
        self.write_behind.mark_dirty(live);
        if live.client_changed(client) {
            bits |= followup::CLIENT_CHANGED;
        }
        if live.claim_write(now) {
            bits |= followup::WRITE_DUE;
        }
        bits
    }

    /// [`Authenticator::flush`].
    async fn flush(&self) -> Result<usize, StoreError> {
        let pending = self.write_behind.take();
        let mut written = 0;
        let mut first_err = None;
        for live in &pending {
            match self.write_back(live).await {
                Ok(()) => written += 1,
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        first_err.map_or(Ok(written), Err)
    }

    async fn write_back(&self, live: &Arc<CachedToken>) -> Result<(), StoreError> {
        // It stays listed until the list is next compacted, unless used again by then.
        let touch = live.take_touch();
        let res = self
            .with_timeout(StoreOp::Touch, self.store.touch(live.id(), &touch))
            .await;
        if let Err(e) = &res {
            tracing::warn!(token_id = %live.id(), error = %e, "could not record token use; will retry");
            self.write_behind.mark_dirty(live);
        }
        res
    }
}
