//! [`AuthenticatorBuilder`]: the settings of an [`Authenticator`], each with its
//! documented default.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use moka::future::Cache;

use super::{Authenticator, Hasher, Inner, Tasks};
use crate::cache::{Epochs, HotTable, ScopeInterner, WriteBehind};
use crate::clock::{Clock, SystemClock};
use crate::events::{AuditLog, EventSink, Events, TracingSink, DEFAULT_EVENT_CAPACITY};
use crate::limit::AttemptLimiter;
use crate::metrics::Metrics;
use crate::scope::ScopeHierarchy;
use crate::store::TokenStore;
use crate::token::TokenFormat;

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
    sinks: Vec<Arc<dyn EventSink>>,
    event_capacity: usize,
    audit_log: bool,
    audit_retention: Duration,
    reminders: Vec<Duration>,
    reminder_interval: Duration,
    recent_clients: usize,
}

/// How long the audit log keeps events by default: 90 days.
pub(crate) const DEFAULT_AUDIT_RETENTION: Duration = Duration::from_secs(90 * 86_400);

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

    /// Failed-attempt limiting for checks that name their client
    /// ([`Credential::with_client`](crate::Credential::with_client), as the HTTP layer
    /// does); default
    /// [`AttemptLimiter::default`] (20 failures per client per 60 s).
    pub fn with_attempt_limiter(mut self, limiter: AttemptLimiter) -> Self {
        self.limiter = limiter;
        self
    }

    /// Adds a sink for lifecycle events (created, changed, rotated, disabled, …); the
    /// default has one, [`TracingSink`]. Sinks run in the background task
    /// ([`Authenticator::background`]), never on a request's path.
    pub fn with_event_sink(mut self, sink: impl EventSink) -> Self {
        self.sinks.push(Arc::new(sink));
        self
    }

    /// Replaces every event sink but the audit log (none and
    /// [`with_audit_log(false)`](Self::with_audit_log): events are not kept at all).
    pub fn with_event_sinks(mut self, sinks: Vec<Arc<dyn EventSink>>) -> Self {
        self.sinks = sinks;
        self
    }

    /// Most events waiting for the sinks (default 4,096); more are dropped and counted
    /// ([`Authenticator::events_dropped`]).
    pub fn with_event_capacity(mut self, capacity: usize) -> Self {
        self.event_capacity = capacity.max(1);
        self
    }

    /// Whether events go to the store's audit log too ([`AuditLog`]; default on): listed
    /// by [`TokenStore::list_events`](crate::store::TokenStore::list_events), the admin
    /// API's `GET /personal-access-tokens/events` and `pat token events`.
    pub fn with_audit_log(mut self, on: bool) -> Self {
        self.audit_log = on;
        self
    }

    /// How long the audit log keeps events (default 90 days); the background task
    /// deletes older ones once an hour.
    pub fn with_audit_retention(mut self, retention: Duration) -> Self {
        self.audit_retention = retention.max(Duration::from_secs(1));
        self
    }

    /// The lead times of the *expiring soon* reminders (default 7 days and 1 day before
    /// the end; none turns reminders off, *expired* included). The background task sends
    /// them ([`Authenticator::send_reminders`]) once per token, lead time and expiry,
    /// also with several replicas on one store: each is claimed in the store first.
    pub fn with_expiry_reminders(mut self, leads: impl IntoIterator<Item = Duration>) -> Self {
        let mut leads: Vec<Duration> = leads.into_iter().filter(|d| !d.is_zero()).collect();
        leads.sort_unstable_by(|a, b| b.cmp(a));
        leads.dedup();
        self.reminders = leads;
        self
    }

    /// How often the background task looks for tokens to remind of (default every 5
    /// minutes; at least 1 s).
    pub fn with_reminder_interval(mut self, interval: Duration) -> Self {
        self.reminder_interval = interval.max(Duration::from_secs(1));
        self
    }

    /// How many distinct client addresses a token remembers (default 5,
    /// [`TokenRecord::RECENT_CLIENTS`](crate::TokenRecord::RECENT_CLIENTS); at least 1): a
    /// use from an address not among them is a
    /// [`NewClientAddress`](crate::EventKind::NewClientAddress) event.
    pub fn with_recent_clients(mut self, n: usize) -> Self {
        self.recent_clients = n.max(1);
        self
    }

    /// Builds the authenticator. It starts nothing: spawn
    /// [`Authenticator::background`] for the work outside requests.
    pub fn build(mut self) -> Authenticator {
        if self.audit_log {
            self.sinks.push(Arc::new(AuditLog::new(self.store.clone())));
        }
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
            epochs: Epochs::default(),
            write_behind: WriteBehind::default(),
            store: self.store,
            format: self.format,
            hierarchy: Arc::new(self.hierarchy),
            clock: self.clock,
            store_timeout: self.store_timeout,
            refresh_interval: self.refresh_interval,
            limiter: self.limiter,
            interner: ScopeInterner::default(),
            tasks: Tasks::default(),
            events: Events::new(self.sinks, self.event_capacity),
            audit_retention: self.audit_retention,
            reminders: self.reminders,
            reminder_interval: self.reminder_interval,
            recent_clients: self.recent_clients,
            metrics: Metrics::new(),
        });
        Authenticator { inner }
    }
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
            sinks: vec![Arc::new(TracingSink)],
            event_capacity: DEFAULT_EVENT_CAPACITY,
            audit_log: true,
            audit_retention: DEFAULT_AUDIT_RETENTION,
            reminders: vec![Duration::from_secs(7 * 86_400), Duration::from_secs(86_400)],
            reminder_interval: Duration::from_secs(300),
            recent_clients: crate::record::TokenRecord::RECENT_CLIENTS,
        }
    }
}
