//! Lifecycle events: what happened to a token, who did it and from where, delivered to
//! [`EventSink`]s by the authenticator's background task.
//!
//! Invariants:
//! - An event holds no secret and no token string: ids, owners, addresses, names of
//!   fields, times.
//! - Emitting never waits: an event goes into a bounded queue, and one that does not fit
//!   is dropped and counted ([`Authenticator::events_dropped`](crate::Authenticator::events_dropped)).
//! - Sinks run in the background task, one event at a time, each bounded by a timeout,
//!   so a slow or failing sink delays only other sinks, never a request.

use std::fmt;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio::sync::mpsc;

use crate::token::TokenId;

/// Events waiting for the background task by default; more are dropped and counted.
pub(crate) const DEFAULT_EVENT_CAPACITY: usize = 4096;
/// Longest one sink may take over one event before the next sink gets it.
const SINK_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest user agent kept in an event; the rest is cut.
pub(crate) const MAX_USER_AGENT_LEN: usize = 256;

/// One step in a token's life.
///
/// ```
/// use tower_pat::{Event, EventKind};
///
/// fn describe(event: &Event) -> String {
///     match &event.kind {
///         EventKind::Created => format!("{} created {}", event.actor, event.token_id),
///         EventKind::Disabled => format!("{} disabled {}", event.actor, event.token_id),
///         other => format!("{other:?}"),
///     }
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Event {
    /// When it happened.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// The token it happened to.
    pub token_id: TokenId,
    /// The token's owner.
    pub owner: String,
    /// Who did it.
    pub actor: EventActor,
    /// The client's address, where there was a request and its address was known.
    pub client: Option<IpAddr>,
    /// The client's user agent (at most 256 characters, no control characters), where
    /// there was a request that sent one.
    pub user_agent: Option<String>,
    /// What happened.
    #[serde(flatten)]
    pub kind: EventKind,
}

/// What happened to a token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum EventKind {
    /// It was created.
    Created,
    /// Some of its fields changed (of `name`, `scopes`, `expiry`).
    Changed {
        /// The names of the fields that changed.
        fields: Vec<String>,
    },
    /// Its secret was replaced; `new_id` when the new secret came with a new id (the old
    /// id is gone, or ends with the grace period).
    Rotated {
        /// The id of the token that replaces it, if not the same.
        new_id: Option<TokenId>,
    },
    /// It was disabled.
    Disabled,
    /// It was enabled again.
    Enabled,
    /// It was deleted.
    Deleted,
    /// It was disabled because its secret was reported as leaked.
    RevokedAsLeaked,
    /// It was used for the first time.
    FirstUse,
    /// It was used from an address not among its recent ones.
    NewClientAddress,
    /// It expires within `lead`.
    ExpiringSoon {
        /// How long before its end this reminder is.
        #[serde(with = "seconds")]
        lead: Duration,
    },
    /// It expired.
    Expired,
}

mod seconds {
    use serde::Deserialize as _;

    pub(super) fn serialize<S: serde::Serializer>(
        d: &std::time::Duration,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }

    pub(super) fn deserialize<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<std::time::Duration, D::Error> {
        u64::deserialize(d).map(std::time::Duration::from_secs)
    }
}

impl EventKind {
    /// The event's type as it is stored and filtered on: `created`, `changed`, …
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::Created => "created",
            EventKind::Changed { .. } => "changed",
            EventKind::Rotated { .. } => "rotated",
            EventKind::Disabled => "disabled",
            EventKind::Enabled => "enabled",
            EventKind::Deleted => "deleted",
            EventKind::RevokedAsLeaked => "revoked_as_leaked",
            EventKind::FirstUse => "first_use",
            EventKind::NewClientAddress => "new_client_address",
            EventKind::ExpiringSoon { .. } => "expiring_soon",
            EventKind::Expired => "expired",
        }
    }
}

/// Who did what an [`Event`] records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum EventActor {
    /// A trusted operator: the `pat` CLI, server-side code.
    Operator,
    /// The holder of a token, acting through it.
    Token {
        /// The acting token's id.
        id: TokenId,
        /// The acting token's owner.
        owner: String,
    },
    /// Nobody: the system noticed it (a first use, an expiry, a leak report).
    System,
    /// A user signed in to the host application, on the self-service page.
    User {
        /// The user's name.
        name: String,
    },
}

impl fmt::Display for EventActor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EventActor::Operator => f.write_str("operator"),
            EventActor::Token { id, owner } => write!(f, "{owner} (token {id})"),
            EventActor::System => f.write_str("system"),
            EventActor::User { name } => write!(f, "user {name}"),
        }
    }
}

/// A request's `User-Agent`, when it is text: what an [`Origin`] records.
pub(crate) fn user_agent(headers: &http::HeaderMap) -> Option<&str> {
    headers
        .get(http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
}

/// Where a request came from, for the events it causes: its client's address and user
/// agent (cut to 256 characters, control characters dropped).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Origin {
    /// The client's address.
    pub client: Option<IpAddr>,
    /// The client's user agent, cleaned.
    pub user_agent: Option<String>,
}

impl Origin {
    /// An origin with this address (IPv4-mapped IPv6 addresses as IPv4) and user agent
    /// (cleaned: at most 256 characters, no control characters).
    pub fn new(client: Option<IpAddr>, user_agent: Option<&str>) -> Self {
        let client = client.map(|c| c.to_canonical());
        let user_agent = user_agent
            .map(|ua| {
                ua.chars()
                    .filter(|c| !c.is_control())
                    .take(MAX_USER_AGENT_LEN)
                    .collect::<String>()
            })
            .filter(|ua| !ua.is_empty());
        Self { client, user_agent }
    }
}

/// Where events go. Object safe: held as `Arc<dyn EventSink>`; several run at once (see
/// [`AuthenticatorBuilder::with_event_sink`](crate::AuthenticatorBuilder::with_event_sink)).
///
/// Called from the authenticator's background task, one event at a time; a call that
/// takes longer than 5 s is abandoned (the event is lost to that sink only). A sink that
/// fails should log and return: there is nobody to return an error to.
#[async_trait::async_trait]
pub trait EventSink: Send + Sync + fmt::Debug + 'static {
    /// Records one event.
    async fn record(&self, event: &Event);
}

impl Origin {
    /// Whether neither the address nor the user agent is known.
    pub fn is_empty(&self) -> bool {
        self.client.is_none() && self.user_agent.is_none()
    }
}

/// Writes every event to the token store's audit log
/// ([`TokenStore::append_events`](crate::store::TokenStore::append_events)), where the
/// admin API (`GET /personal-access-tokens/events`) and `pat token events` read it.
/// Added by default by [`AuthenticatorBuilder`](crate::AuthenticatorBuilder) (see
/// [`with_audit_log`](crate::AuthenticatorBuilder::with_audit_log)); a failed write is
/// logged, and the event is lost to the audit log only.
#[derive(Debug, Clone)]
pub struct AuditLog {
    store: Arc<dyn crate::store::TokenStore>,
}

impl AuditLog {
    /// The audit log of `store`.
    pub fn new(store: Arc<dyn crate::store::TokenStore>) -> Self {
        Self { store }
    }
}

#[async_trait::async_trait]
impl EventSink for AuditLog {
    async fn record(&self, event: &Event) {
        if let Err(e) = self.store.append_events(std::slice::from_ref(event)).await {
            tracing::warn!(error = %e, event = event.kind.name(), token_id = %event.token_id, "could not write an event to the audit log");
        }
    }
}

/// Logs every event with `tracing` at `INFO` (target `tower_pat::events`): the default
/// sink.
#[derive(Debug, Clone, Copy, Default)]
pub struct TracingSink;

#[async_trait::async_trait]
impl EventSink for TracingSink {
    async fn record(&self, event: &Event) {
        tracing::info!(
            target: "tower_pat::events",
            event = event.kind.name(),
            token_id = %event.token_id,
            owner = %event.owner,
            actor = %event.actor,
            client = ?event.client,
            user_agent = ?event.user_agent,
            detail = ?event.kind,
            "token event"
        );
    }
}

/// An authenticator's event queue: the sending side, the receiver until the background
/// task takes it, the sinks and the count of dropped events.
pub(crate) struct Events {
    tx: mpsc::Sender<Event>,
    rx: Mutex<Option<mpsc::Receiver<Event>>>,
    pub(crate) sinks: Arc<[Arc<dyn EventSink>]>,
    dropped: AtomicU64,
    warned: AtomicBool,
}

impl Events {
    pub(crate) fn new(sinks: Vec<Arc<dyn EventSink>>, capacity: usize) -> Self {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        Self {
            tx,
            rx: Mutex::new(Some(rx)),
            sinks: sinks.into(),
            dropped: AtomicU64::new(0),
            warned: AtomicBool::new(false),
        }
    }

    /// Queues `event` for the sinks, or counts it as dropped when the queue is full.
    pub(crate) fn emit(&self, event: Event) {
        crate::metrics::event(event.kind.name());
        if self.sinks.is_empty() {
            return;
        }
        if self.tx.try_send(event).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            crate::metrics::event_dropped();
            if !self.warned.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    "tower-pat: the event queue is full, so events are dropped (this is logged \
                     once; Authenticator::events_dropped counts them): is the authenticator's \
                     background task running, and are its event sinks fast enough?"
                );
            }
        }
    }

    /// The receiver, for the first background task.
    pub(crate) fn take_receiver(&self) -> Option<mpsc::Receiver<Event>> {
        self.rx.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// Hands `event` to every sink in turn, each within [`SINK_TIMEOUT`].
pub(crate) async fn deliver(sinks: &[Arc<dyn EventSink>], event: &Event) {
    for sink in sinks {
        if tokio::time::timeout(SINK_TIMEOUT, sink.record(event))
            .await
            .is_err()
        {
            tracing::warn!(sink = ?sink, event = event.kind.name(), "an event sink took longer than 5 s; it misses this event");
        }
    }
}
