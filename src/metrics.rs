//! Prometheus metrics through the [`metrics`](https://docs.rs/metrics) facade (feature
//! `metrics`): what is counted, and the one-line calls that count it.
//!
//! Every helper here compiles to nothing without the feature: the types are empty and the
//! bodies are `#[cfg(feature = "metrics")]`, so a call site costs nothing when it is off.
//!
//! The authenticator registers its handles when it is built ([`Metrics::new`]), so a
//! request increments an atomic instead of looking its counter up by name in the
//! recorder's registry, which is what `metrics::counter!` does on each call: about 550
//! instructions a counter with a Prometheus recorder, against a whole cached request's
//! +168 with the handles (BENCHMARKS.md, "Metrics on and off"). The rare events
//! (lifecycle events, scope refusals, which the layer and the admin API make without an
//! authenticator) use the macros.

#[cfg(feature = "metrics")]
use std::cell::Cell;
#[cfg(feature = "metrics")]
use std::sync::atomic::{AtomicU64, Ordering};
#[cfg(feature = "metrics")]
use std::time::Instant;

#[cfg(feature = "metrics")]
use ::metrics::{Counter, Gauge, Histogram};

use crate::error::AuthError;
#[cfg(feature = "metrics")]
use crate::error::InvalidReason;
use crate::principal::Principal;
use crate::store::StoreError;

#[cfg(feature = "metrics")]
const VALIDATIONS: &str = "pat_validations_total";
#[cfg(feature = "metrics")]
const VALIDATION_DURATION: &str = "pat_validation_duration_seconds";
#[cfg(feature = "metrics")]
const CACHE_REQUESTS: &str = "pat_cache_requests_total";
#[cfg(feature = "metrics")]
const CACHE_ENTRIES: &str = "pat_cache_entries";
#[cfg(feature = "metrics")]
const STORE_DURATION: &str = "pat_store_duration_seconds";
#[cfg(feature = "metrics")]
const STORE_ERRORS: &str = "pat_store_errors_total";
#[cfg(feature = "metrics")]
const WRITE_BEHIND_PENDING: &str = "pat_write_behind_pending";
#[cfg(feature = "metrics")]
const EVENTS: &str = "pat_events_total";
#[cfg(feature = "metrics")]
const EVENTS_DROPPED: &str = "pat_events_dropped_total";

/// One in this many checks decided from memory is timed (a clock read each way).
#[cfg(feature = "metrics")]
const SAMPLE_EVERY: u32 = 64;

/// Describes every metric tower-pat records to the installed recorder (its help text and
/// unit), so an exporter can print them. Call it once, after installing the recorder.
///
/// Install the recorder before building the [`Authenticator`](crate::Authenticator): the
/// authenticator registers its counters then, and keeps the handles (registering one per
/// request would cost a registry look-up each time). An authenticator built before any
/// recorder was installed records nothing of its own; every series below starts at 0
/// when the authenticator is built.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use std::sync::Arc;
/// use metrics_exporter_prometheus::PrometheusBuilder;
/// use tower_pat::{Authenticator, MemoryStore};
///
/// let prometheus = PrometheusBuilder::new().install_recorder().unwrap();
/// tower_pat::describe_metrics();
/// let auth = Authenticator::new(Arc::new(MemoryStore::new())); // after the recorder
/// assert!(auth.authenticate("pat_wrong").await.is_err());
/// // What to serve on `GET /metrics`:
/// let text = prometheus.render();
/// assert!(text.contains(r#"pat_validations_total{outcome="malformed"} 1"#));
/// # }
/// ```
///
/// | metric | type | labels | meaning |
/// |---|---|---|---|
/// | `pat_validations_total` | counter | `outcome` | checks of a credential, by result (below) |
/// | `pat_validation_duration_seconds` | histogram | `path` = `cached`, `store` | how long a check took: `cached` for those decided from memory, **one in 64 of them** (per thread), `store` for every check the cache could not decide |
/// | `pat_cache_requests_total` | counter | `result` = `hit`, `miss`, `negative_hit` | cache look-ups of well-formed tokens: found a token (the hot table or moka), found nothing and read the store, or found the id in the cache of unknown ids |
/// | `pat_cache_entries` | gauge | | tokens cached (moka's approximate count), summed over the process's authenticators; set by each one's background task once a refresh interval (60 s by default) |
/// | `pat_store_duration_seconds` | histogram | `op` | every store call the authenticator and the manager make, including those that fail or time out |
/// | `pat_store_errors_total` | counter | `op` | those that failed or timed out |
/// | `pat_write_behind_pending` | gauge | | tokens whose last use is not yet written to the store, summed like `pat_cache_entries` and set at the same time, just before the periodic write |
/// | `pat_events_total` | counter | `type` | lifecycle events emitted ([`EventKind::name`](crate::EventKind::name): `created`, `disabled`, …), whether or not a sink takes them |
/// | `pat_events_dropped_total` | counter | | events dropped because the queue was full ([`Authenticator::events_dropped`](crate::Authenticator::events_dropped), summed over the process) |
///
/// `outcome` is one of `valid`, `malformed` (not a token of this format: no store read),
/// `not_found` (no token has this id), `wrong_secret` (or, with Basic, a username that is
/// not the token's owner), `expired`, `disabled`, `rate_limited` (the client was locked
/// out by the failed-attempt limiter, and the token was not looked at), `store_error`
/// (the store failed or timed out: 503), each counted once per check; and
/// `insufficient_scope`, counted when [`RequireScopesLayer`](crate::RequireScopesLayer),
/// the admin API or `pat serve`'s forward auth refuses a request for a scope its token
/// lacks, after its check was counted `valid`. Requests that carry no credential, or an `Authorization` header that
/// cannot be read (400), are not checks and are not counted.
///
/// `op` is one of `get`, `insert`, `update`, `replace`, `delete`, `list`, `touch`,
/// `publish_change`, `list_events`, `prune_events`, `claim_reminder`. The store's change
/// feed (`follow_changes`) runs for as long as the background task and is not timed, nor
/// are the audit log's writes ([`AuditLog`](crate::AuditLog) is a sink that calls
/// `append_events` itself).
///
/// Histograms are rendered as the recorder chooses: metrics-exporter-prometheus makes
/// summaries unless given buckets (`PrometheusBuilder::set_buckets_for_metric`), which are
/// needed to add them up over replicas.
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub fn describe_metrics() {
    use ::metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(
        VALIDATIONS,
        "Checks of a credential, by outcome (valid, malformed, not_found, wrong_secret, \
         expired, disabled, rate_limited, store_error), and scope refusals \
         (insufficient_scope) of requests whose check was valid."
    );
    describe_histogram!(
        VALIDATION_DURATION,
        Unit::Seconds,
        "How long a check took: path=cached for one in 64 of those decided from memory, \
         path=store for every one the cache could not decide."
    );
    describe_counter!(
        CACHE_REQUESTS,
        "Cache look-ups of well-formed tokens: hit, miss (read the store), negative_hit \
         (a remembered unknown id)."
    );
    describe_gauge!(
        CACHE_ENTRIES,
        "Tokens cached (approximate), set once a refresh interval by the background task."
    );
    describe_histogram!(
        STORE_DURATION,
        Unit::Seconds,
        "Store calls by operation, including failed and timed-out ones."
    );
    describe_counter!(
        STORE_ERRORS,
        "Store calls that failed or timed out, by operation."
    );
    describe_gauge!(
        WRITE_BEHIND_PENDING,
        "Tokens whose last use is not yet written to the store, set before each periodic \
         write."
    );
    describe_counter!(EVENTS, "Lifecycle events emitted, by type.");
    describe_counter!(
        EVENTS_DROPPED,
        "Lifecycle events dropped because the queue was full."
    );
}

/// What a check came to, as `pat_validations_total` labels it.
#[cfg(feature = "metrics")]
#[derive(Clone, Copy)]
enum Outcome {
    Valid,
    Malformed,
    NotFound,
    WrongSecret,
    Expired,
    Disabled,
    InsufficientScope,
    RateLimited,
    StoreError,
}

#[cfg(feature = "metrics")]
impl Outcome {
    const ALL: [Outcome; 9] = [
        Outcome::Valid,
        Outcome::Malformed,
        Outcome::NotFound,
        Outcome::WrongSecret,
        Outcome::Expired,
        Outcome::Disabled,
        Outcome::InsufficientScope,
        Outcome::RateLimited,
        Outcome::StoreError,
    ];

    fn label(self) -> &'static str {
        match self {
            Outcome::Valid => "valid",
            Outcome::Malformed => "malformed",
            Outcome::NotFound => "not_found",
            Outcome::WrongSecret => "wrong_secret",
            Outcome::Expired => "expired",
            Outcome::Disabled => "disabled",
            Outcome::InsufficientScope => "insufficient_scope",
            Outcome::RateLimited => "rate_limited",
            Outcome::StoreError => "store_error",
        }
    }

    #[inline]
    fn of(result: &Result<Principal, AuthError>) -> Self {
        match result {
            Ok(_) => Outcome::Valid,
            Err(AuthError::Malformed(_)) => Outcome::Malformed,
            Err(AuthError::Invalid(reason)) => match reason {
                InvalidReason::Unknown => Outcome::NotFound,
                InvalidReason::WrongSecret | InvalidReason::WrongUser => Outcome::WrongSecret,
                InvalidReason::Disabled => Outcome::Disabled,
                InvalidReason::Expired => Outcome::Expired,
            },
            Err(AuthError::TooManyAttempts { .. }) => Outcome::RateLimited,
            Err(AuthError::StoreUnavailable(_)) => Outcome::StoreError,
        }
    }
}

/// Where a cache look-up found its answer (`pat_cache_requests_total{result}`).
#[derive(Clone, Copy)]
pub(crate) enum Lookup {
    /// A token: the hot table or moka.
    Hit,
    /// Nothing: the store is read (or a read in flight for the same id is joined).
    Miss,
    /// The id is remembered as unknown.
    NegativeHit,
}

#[cfg(feature = "metrics")]
impl Lookup {
    const ALL: [Lookup; 3] = [Lookup::Hit, Lookup::Miss, Lookup::NegativeHit];

    fn label(self) -> &'static str {
        match self {
            Lookup::Hit => "hit",
            Lookup::Miss => "miss",
            Lookup::NegativeHit => "negative_hit",
        }
    }
}

/// A store call, as `pat_store_duration_seconds{op}` and `pat_store_errors_total{op}`
/// label it.
#[derive(Clone, Copy)]
pub(crate) enum StoreOp {
    Get,
    Insert,
    Update,
    Replace,
    Delete,
    List,
    Touch,
    PublishChange,
    ListEvents,
    PruneEvents,
    ClaimReminder,
}

#[cfg(feature = "metrics")]
impl StoreOp {
    const ALL: [StoreOp; 11] = [
        StoreOp::Get,
        StoreOp::Insert,
        StoreOp::Update,
        StoreOp::Replace,
        StoreOp::Delete,
        StoreOp::List,
        StoreOp::Touch,
        StoreOp::PublishChange,
        StoreOp::ListEvents,
        StoreOp::PruneEvents,
        StoreOp::ClaimReminder,
    ];

    fn label(self) -> &'static str {
        match self {
            StoreOp::Get => "get",
            StoreOp::Insert => "insert",
            StoreOp::Update => "update",
            StoreOp::Replace => "replace",
            StoreOp::Delete => "delete",
            StoreOp::List => "list",
            StoreOp::Touch => "touch",
            StoreOp::PublishChange => "publish_change",
            StoreOp::ListEvents => "list_events",
            StoreOp::PruneEvents => "prune_events",
            StoreOp::ClaimReminder => "claim_reminder",
        }
    }
}

/// The start of a check, if it is timed: every check the store decides, one in
/// [`SAMPLE_EVERY`] of those decided from memory. Empty without the feature.
#[derive(Clone, Copy)]
pub(crate) struct CheckTimer {
    #[cfg(feature = "metrics")]
    start: Option<Instant>,
    #[cfg(feature = "metrics")]
    cold: bool,
}

impl CheckTimer {
    /// A check that memory may decide: timed once in [`SAMPLE_EVERY`] on this thread
    /// (a thread-local count, so no cache line is shared between threads).
    #[inline]
    pub(crate) fn cached() -> Self {
        Self {
            #[cfg(feature = "metrics")]
            start: sampled().then(Instant::now),
            #[cfg(feature = "metrics")]
            cold: false,
        }
    }

    /// A check that reads the cache and perhaps the store: always timed.
    #[inline]
    pub(crate) fn cold() -> Self {
        Self {
            #[cfg(feature = "metrics")]
            start: Some(Instant::now()),
            #[cfg(feature = "metrics")]
            cold: true,
        }
    }
}

/// Whether this check is the one in [`SAMPLE_EVERY`] to time.
#[cfg(feature = "metrics")]
#[inline]
fn sampled() -> bool {
    thread_local! {
        static CHECKS: Cell<u32> = const { Cell::new(0) };
    }
    CHECKS.with(|n| {
        let next = n.get().wrapping_add(1);
        n.set(next);
        next % SAMPLE_EVERY == 0
    })
}

/// The start of a store call. Empty without the feature.
#[derive(Clone, Copy)]
pub(crate) struct Timer {
    #[cfg(feature = "metrics")]
    start: Instant,
}

impl Timer {
    #[inline]
    pub(crate) fn start() -> Self {
        Self {
            #[cfg(feature = "metrics")]
            start: Instant::now(),
        }
    }
}

/// One authenticator's metric handles, registered when it is built. Empty without the
/// feature.
pub(crate) struct Metrics {
    #[cfg(feature = "metrics")]
    handles: Handles,
}

#[cfg(feature = "metrics")]
struct Handles {
    // Read on every request first.
    outcomes: [Counter; Outcome::ALL.len()],
    lookups: [Counter; Lookup::ALL.len()],
    cached_duration: Histogram,
    store_duration: Histogram,
    store_ops: [Histogram; StoreOp::ALL.len()],
    store_errors: [Counter; StoreOp::ALL.len()],
    cache_entries: Gauge,
    write_behind_pending: Gauge,
    /// What this authenticator last added to each gauge, taken back when it is dropped:
    /// the gauges are sums over the process's authenticators.
    reported_entries: AtomicU64,
    reported_pending: AtomicU64,
}

impl Metrics {
    /// Registers the handles with the recorder installed now (none: they do nothing).
    pub(crate) fn new() -> Self {
        Self {
            #[cfg(feature = "metrics")]
            handles: Handles {
                outcomes: Outcome::ALL
                    .map(|o| ::metrics::counter!(VALIDATIONS, "outcome" => o.label())),
                lookups: Lookup::ALL
                    .map(|l| ::metrics::counter!(CACHE_REQUESTS, "result" => l.label())),
                cached_duration: ::metrics::histogram!(VALIDATION_DURATION, "path" => "cached"),
                store_duration: ::metrics::histogram!(VALIDATION_DURATION, "path" => "store"),
                store_ops: StoreOp::ALL
                    .map(|op| ::metrics::histogram!(STORE_DURATION, "op" => op.label())),
                store_errors: StoreOp::ALL
                    .map(|op| ::metrics::counter!(STORE_ERRORS, "op" => op.label())),
                cache_entries: ::metrics::gauge!(CACHE_ENTRIES),
                write_behind_pending: ::metrics::gauge!(WRITE_BEHIND_PENDING),
                reported_entries: AtomicU64::new(0),
                reported_pending: AtomicU64::new(0),
            },
        }
    }

    /// Counts a decided check by its outcome, and records its time if it was timed.
    #[inline]
    pub(crate) fn checked(&self, result: &Result<Principal, AuthError>, timer: CheckTimer) {
        #[cfg(feature = "metrics")]
        {
            let h = &self.handles;
            h.outcomes[Outcome::of(result) as usize].increment(1);
            if let Some(start) = timer.start {
                let histogram = if timer.cold {
                    &h.store_duration
                } else {
                    &h.cached_duration
                };
                histogram.record(start.elapsed());
            }
        }
        #[cfg(not(feature = "metrics"))]
        let _ = (result, timer);
    }

    /// Counts a check refused because the failed-attempt limiter locked its client out.
    #[inline]
    pub(crate) fn rate_limited(&self) {
        #[cfg(feature = "metrics")]
        self.handles.outcomes[Outcome::RateLimited as usize].increment(1);
    }

    /// Counts a cache look-up.
    #[inline]
    pub(crate) fn lookup(&self, lookup: Lookup) {
        #[cfg(feature = "metrics")]
        self.handles.lookups[lookup as usize].increment(1);
        #[cfg(not(feature = "metrics"))]
        let _ = lookup;
    }

    /// Records a store call started at `timer`, and counts it if it failed.
    #[inline]
    pub(crate) fn store_call<T>(&self, op: StoreOp, timer: Timer, result: &Result<T, StoreError>) {
        #[cfg(feature = "metrics")]
        {
            self.handles.store_ops[op as usize].record(timer.start.elapsed());
            if result.is_err() {
                self.handles.store_errors[op as usize].increment(1);
            }
        }
        #[cfg(not(feature = "metrics"))]
        let _ = (op, timer, result);
    }

    /// Sets this authenticator's share of `pat_cache_entries` and
    /// `pat_write_behind_pending` (the closures run only with the feature).
    pub(crate) fn set_gauges(
        &self,
        cache_entries: impl FnOnce() -> u64,
        write_behind_pending: impl FnOnce() -> usize,
    ) {
        #[cfg(feature = "metrics")]
        {
            let h = &self.handles;
            let pending = u64::try_from(write_behind_pending()).unwrap_or(u64::MAX);
            report(&h.cache_entries, &h.reported_entries, cache_entries());
            report(&h.write_behind_pending, &h.reported_pending, pending);
        }
        #[cfg(not(feature = "metrics"))]
        let _ = (cache_entries, write_behind_pending);
    }
}

/// Moves `gauge` by the change from what this authenticator `reported` last to `now`.
#[cfg(feature = "metrics")]
fn report(gauge: &Gauge, reported: &AtomicU64, now: u64) {
    let before = reported.swap(now, Ordering::Relaxed);
    gauge.increment(now as f64 - before as f64);
}

#[cfg(feature = "metrics")]
impl Drop for Metrics {
    /// Takes this authenticator's share out of the gauges.
    fn drop(&mut self) {
        self.set_gauges(|| 0, || 0);
    }
}

/// Counts a request refused for a scope its (valid) token lacks.
#[inline]
pub(crate) fn insufficient_scope() {
    #[cfg(feature = "metrics")]
    ::metrics::counter!(VALIDATIONS, "outcome" => Outcome::InsufficientScope.label()).increment(1);
}

/// Counts an emitted lifecycle event of type `kind` ([`EventKind::name`](crate::EventKind::name)).
#[inline]
pub(crate) fn event(kind: &'static str) {
    #[cfg(feature = "metrics")]
    ::metrics::counter!(EVENTS, "type" => kind).increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = kind;
}

/// Counts a lifecycle event dropped because the queue was full.
#[inline]
pub(crate) fn event_dropped() {
    #[cfg(feature = "metrics")]
    ::metrics::counter!(EVENTS_DROPPED).increment(1);
}

#[cfg(all(test, feature = "metrics"))]
mod tests {
    use super::*;

    #[test]
    fn labels_are_distinct_and_in_index_order() {
        for (i, o) in Outcome::ALL.iter().enumerate() {
            assert_eq!(*o as usize, i, "{}", o.label());
        }
        for (i, l) in Lookup::ALL.iter().enumerate() {
            assert_eq!(*l as usize, i, "{}", l.label());
        }
        for (i, op) in StoreOp::ALL.iter().enumerate() {
            assert_eq!(*op as usize, i, "{}", op.label());
        }
    }

    #[test]
    fn one_cached_check_in_64_is_timed() {
        std::thread::spawn(|| {
            let timed = (0..640)
                .filter(|_| CheckTimer::cached().start.is_some())
                .count();
            assert_eq!(timed, 10);
            assert!(CheckTimer::cold().start.is_some());
        })
        .join()
        .unwrap();
    }
}
