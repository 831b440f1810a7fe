use std::collections::HashMap;
use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, Script};

mod scripts;

use scripts::{APPEND_EVENTS, DELETE, EVENTS, INSERT, LIST, PRUNE_EVENTS, REPLACE, TOUCH, UPDATE};

use crate::events::Event;
use crate::record::TokenRecord;
use crate::store::codec::{self, Flat};
use crate::store::{
    mask_url, ChangeFeed, EventQuery, ListQuery, Page, SortField, StoreError, TokenStore, Touch,
    Update,
};
use crate::token::TokenId;

/// Tokens in Redis, shared by many replicas.
///
/// # Layout
///
/// Every key starts with the prefix (default `pat:`; choose one with
/// [`connect_with_prefix`](Self::connect_with_prefix)):
///
/// | key | type | holds |
/// |---|---|---|
/// | `<p>t:<id>` | hash | the token (secret as SHA-256 hex only; timestamps as unix seconds) |
/// | `<p>z:created`, `<p>z:last_used`, `<p>z:expires` | sorted set | ids scored by the field (`+inf` when never used / never expiring) |
/// | `<p>z:name` | sorted set | `name \0 id`, all scored 0 (lexicographic) |
/// | `<p>o:<owner>:created` … `<p>o:<owner>:name` | sorted sets | the same four, per owner |
/// | `<p>changes` | pub/sub channel | change messages |
/// | `<p>events` | stream | the audit log: `at`, `token`, `owner`, `type`, the event's JSON `e` |
/// | `<p>events:t:<id>`, `<p>events:o:<owner>` | stream | that token's, that owner's events under the same entry ids, without the JSON (the indexes a listing by token or by owner reads) |
/// | `<p>events:indexed` | string | the first entry id indexed (older entries are only in `<p>events`) |
/// | `<p>r:<id>:<lead>:<end>` | string | an expiry reminder already claimed |
///
/// Writes are Lua scripts, so a token and its index entries change atomically; touches
/// move `last_used` and the sliding expiry forward only, atomically too. (The scripts
/// build key names from the prefix, so this store targets a single Redis node, not
/// Redis Cluster.)
///
/// # Listing
///
/// Sorted-set members with equal scores are ordered by member, that is by id, which is
/// the tie-break of [`ListQuery::compare`]. A listing with no filter, or only an
/// `owner` filter, reads the page straight from the matching sorted set (`ZCARD` for the
/// total, `ZRANGE` for the page): O(log n + page). Any other filter is evaluated by a Lua
/// script **on the server** that walks the candidate sorted set (the owner's when
/// `owner` is given, otherwise the global one) in order, checking each token's hash:
/// tokens are never shipped to the application, but the cost is O(candidates), not
/// O(page). Use PostgreSQL if you filter large token sets often.
///
/// # Revocations across replicas
///
/// [`publish_change`](TokenStore::publish_change) `PUBLISH`es `<instance id>:<token id>`
/// on `<p>changes`. [`follow_changes`](TokenStore::follow_changes) (run by the
/// authenticator's background task) keeps a dedicated pub/sub connection and forwards
/// other instances' ids (its own are ignored), typically within milliseconds; when that
/// connection drops it reconnects every 500 ms and reports the gap as lost, so the
/// authenticator drops its whole cache rather than miss a revocation sent meanwhile.
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub struct RedisStore {
    conn: ConnectionManager,
    client: redis::Client,
    prefix: String,
    instance: String,
    audit_capacity: u64,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .field("instance", &self.instance)
            .finish_non_exhaustive()
    }
}

/// `record` as an update writes it: with the next version.
fn next_version(record: &TokenRecord) -> TokenRecord {
    let mut next = record.clone();
    next.version = record.version.wrapping_add(1);
    next
}

/// A swap script's answer.
fn outcome(done: i64) -> Update {
    match done {
        1 => Update::Written,
        2 => Update::Stale,
        _ => Update::NotFound,
    }
}

fn failed(e: redis::RedisError) -> StoreError {
    StoreError::unavailable("redis command failed", e)
}

/// The hash fields of a record (absent fields are `None`s).
fn fields(record: &TokenRecord) -> Result<Vec<(&'static str, String)>, StoreError> {
    let f = Flat::from_record(record)?;
    let d = Flat::derived(record);
    let bit = |b: bool| if b { "1" } else { "0" }.to_owned();
    let mut v = vec![
        ("id", f.id),
        ("owner", f.owner),
        ("owner_lc", d.owner_lc),
        ("name", f.name),
        ("name_lc", d.name_lc),
        ("scopes", f.scopes),
        ("expiry", f.expiry),
        ("sliding", bit(d.sliding)),
        ("active", bit(f.active)),
        ("created", f.created.to_string()),
        ("modified", f.modified.to_string()),
        ("secret_hash", f.secret_hash),
        ("version", f.version.to_string()),
    ];
    let opt_int = [
        ("expires_at", f.expires_at),
        ("last_used", f.last_used),
        ("previous_valid_until", f.previous_valid_until),
    ];
    v.extend(
        opt_int
            .into_iter()
            .filter_map(|(k, x)| x.map(|x| (k, x.to_string()))),
    );
    let opt_text = [
        ("previous_hash", f.previous_hash),
        ("created_ip", f.created_ip),
        ("created_user_agent", f.created_user_agent),
        ("last_used_ip", f.last_used_ip),
        ("last_used_user_agent", f.last_used_user_agent),
        ("recent_ips", f.recent_ips),
    ];
    v.extend(opt_text.into_iter().filter_map(|(k, x)| x.map(|x| (k, x))));
    Ok(v)
}

fn from_hash(mut h: HashMap<String, String>) -> Result<TokenRecord, StoreError> {
    let id = h.get("id").cloned().unwrap_or_default();
    let bad = |what: &str| StoreError::Invalid(format!("redis token {id:?}: bad {what}"));
    let mut text = |k: &str| h.remove(k).ok_or_else(|| bad(k));
    let owner = text("owner")?;
    let name = text("name")?;
    let scopes = text("scopes")?;
    let expiry = text("expiry")?;
    let secret_hash = text("secret_hash")?;
    let active = text("active")? == "1";
    let int =
        |v: Option<String>, k: &str| v.map(|s| s.parse::<i64>().map_err(|_| bad(k))).transpose();
    let created = int(h.remove("created"), "created")?.ok_or_else(|| bad("created"))?;
    let modified = int(h.remove("modified"), "modified")?.ok_or_else(|| bad("modified"))?;
    Flat {
        id: id.clone(),
        owner,
        name,
        scopes,
        expiry,
        expires_at: int(h.remove("expires_at"), "expires_at")?,
        active,
        created,
        modified,
        last_used: int(h.remove("last_used"), "last_used")?,
        secret_hash,
        previous_hash: h.remove("previous_hash"),
        previous_valid_until: int(h.remove("previous_valid_until"), "previous_valid_until")?,
        version: int(h.remove("version"), "version")?.unwrap_or(1),
        created_ip: h.remove("created_ip"),
        created_user_agent: h.remove("created_user_agent"),
        last_used_ip: h.remove("last_used_ip"),
        last_used_user_agent: h.remove("last_used_user_agent"),
        recent_ips: h.remove("recent_ips"),
    }
    .into_record()
}

impl RedisStore {
    /// Key prefix used by [`connect`](Self::connect).
    pub const DEFAULT_PREFIX: &'static str = "pat:";

    /// How many events the audit log (a stream, `<prefix>events`) keeps by default; the
    /// oldest go first. See [`with_audit_capacity`](Self::with_audit_capacity).
    pub const AUDIT_CAPACITY: u64 = 100_000;

    /// Seconds a claimed reminder (`<prefix>r:<id>:<lead>:<expiry>`) is kept beyond its
    /// lead time: 30 days.
    const REMINDER_TTL: u64 = 30 * 86_400;

    /// Connects to `url` (`redis://[:password@]host:6379[/db]`) with key prefix `pat:`.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with_prefix(url, Self::DEFAULT_PREFIX).await
    }

    /// Connects to `url` and keeps every key under `prefix` (e.g. `myapp:pat:`), so
    /// several token sets, or test runs, can share one Redis.
    pub async fn connect_with_prefix(url: &str, prefix: &str) -> Result<Self, StoreError> {
        let client = redis::Client::open(url)
            .map_err(|e| StoreError::Invalid(format!("bad Redis URL {}: {e}", mask_url(url))))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Duration::from_secs(2))
            .set_response_timeout(Duration::from_secs(5))
            .set_number_of_retries(2)
            .set_factor(100)
            .set_max_delay(500);
        let conn = ConnectionManager::new_with_config(client.clone(), config)
            .await
            .map_err(|e| {
                StoreError::unavailable(format!("cannot connect to {}", mask_url(url)), e)
            })?;
        Ok(Self {
            conn,
            client,
            prefix: prefix.to_owned(),
            instance: codec::instance_id(),
            audit_capacity: Self::AUDIT_CAPACITY,
        })
    }

    /// Keeps at most `events` in the audit log (default [`AUDIT_CAPACITY`](Self::AUDIT_CAPACITY));
    /// beyond, each append deletes the oldest. At least 1.
    #[must_use]
    pub fn with_audit_capacity(mut self, events: u64) -> Self {
        self.audit_capacity = events.max(1);
        self
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// A connection (the store's own, reconnecting) for commands of your own.
    pub fn connection(&self) -> ConnectionManager {
        self.conn.clone()
    }

    fn token_key(&self, id: &TokenId) -> String {
        format!("{}t:{id}", self.prefix)
    }

    fn channel(&self) -> String {
        format!("{}changes", self.prefix)
    }

    async fn write(&self, s: &Script, record: &TokenRecord) -> Result<bool, StoreError> {
        let mut inv = s.prepare_invoke();
        inv.arg(&self.prefix).arg(record.id.as_str());
        for (k, v) in fields(record)? {
            inv.arg(k).arg(v);
        }
        let done: i64 = inv
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(failed)?;
        Ok(done == 1)
    }
}

/// Forwards other instances' messages on `channel` to `feed`, reconnecting, until the
/// feed is closed.
async fn subscribe(client: &redis::Client, channel: &str, instance: &str, feed: &ChangeFeed) {
    const RETRY: Duration = Duration::from_millis(500);
    let mut reconnected = false;
    while !feed.is_closed() {
        let connected =
            tokio::time::timeout(Duration::from_secs(2), client.get_async_pubsub()).await;
        let mut pubsub = match connected {
            Ok(Ok(p)) => p,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot subscribe to token changes; retrying");
                tokio::time::sleep(RETRY).await;
                continue;
            }
            Err(_) => {
                tracing::warn!("subscribing to token changes timed out; retrying");
                continue;
            }
        };
        if let Err(e) = pubsub.subscribe(channel).await {
            tracing::warn!(error = %e, "cannot subscribe to token changes; retrying");
            tokio::time::sleep(RETRY).await;
            continue;
        }
        // What was published while no one listened is lost: also what was cached meanwhile.
        if std::mem::replace(&mut reconnected, true) {
            feed.lost();
        }
        let mut messages = pubsub.into_on_message();
        while let Some(msg) = messages.next().await {
            if let Ok(payload) = msg.get_payload::<String>() {
                if let Some(id) = codec::foreign_change(instance, &payload) {
                    feed.changed(id);
                }
            }
        }
        tracing::warn!("lost the token change channel; reconnecting");
        tokio::time::sleep(RETRY).await;
    }
}

#[async_trait::async_trait]
impl TokenStore for RedisStore {
    async fn get(&self, id: &TokenId) -> Result<Option<TokenRecord>, StoreError> {
        let h: HashMap<String, String> = self
            .conn
            .clone()
            .hgetall(self.token_key(id))
            .await
            .map_err(failed)?;
        if h.is_empty() {
            return Ok(None);
        }
        from_hash(h).map(Some)
    }

    async fn insert(&self, record: &TokenRecord) -> Result<(), StoreError> {
        if self.write(&INSERT, record).await? {
            Ok(())
        } else {
            Err(StoreError::Conflict(record.id))
        }
    }

    async fn update(&self, record: &TokenRecord) -> Result<Update, StoreError> {
        let mut inv = UPDATE.prepare_invoke();
        inv.arg(&self.prefix)
            .arg(record.id.as_str())
            .arg(record.version.to_string());
        for (k, v) in fields(&next_version(record))? {
            inv.arg(k).arg(v);
        }
        let done: i64 = inv
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(failed)?;
        Ok(outcome(done))
    }

    async fn replace(
        &self,
        old: &TokenRecord,
        delete_old: bool,
        new: &TokenRecord,
    ) -> Result<Update, StoreError> {
        let old_fields = if delete_old {
            Vec::new()
        } else {
            fields(&next_version(old))?
        };
        let mut inv = REPLACE.prepare_invoke();
        inv.arg(&self.prefix)
            .arg(old.id.as_str())
            .arg(old.version.to_string())
            .arg(if delete_old { "1" } else { "0" })
            .arg(new.id.as_str())
            .arg(old_fields.len());
        for (k, v) in old_fields.into_iter().chain(fields(new)?) {
            inv.arg(k).arg(v);
        }
        let done: i64 = inv
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(failed)?;
        if done == 3 {
            return Err(StoreError::Conflict(new.id));
        }
        Ok(outcome(done))
    }

    async fn delete(&self, id: &TokenId) -> Result<bool, StoreError> {
        let done: i64 = DELETE
            .prepare_invoke()
            .arg(&self.prefix)
            .arg(id.as_str())
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(failed)?;
        Ok(done == 1)
    }

    async fn list(&self, q: &ListQuery) -> Result<Page<TokenRecord>, StoreError> {
        let field = match q.order.field {
            SortField::LastUsed => "last_used",
            SortField::Expires => "expires",
            SortField::Name => "name",
            _ => "created",
        };
        let opt = |v: Option<String>| v.map_or_else(|| "-".to_owned(), |v| format!("+{v}"));
        let ts = |t: Option<time::OffsetDateTime>| opt(t.map(|t| t.unix_timestamp().to_string()));
        let bit = |b: Option<bool>| opt(b.map(|b| if b { "1" } else { "0" }.to_owned()));
        let mut inv = LIST.prepare_invoke();
        inv.arg(&self.prefix)
            .arg(q.owner.as_deref().unwrap_or(""))
            .arg(field)
            .arg(if q.order.descending { "1" } else { "0" })
            .arg(q.offset())
            .arg(q.limit())
            .arg(if q.owner.is_some() { "1" } else { "0" })
            .arg(opt(q.name_contains.as_ref().map(|s| s.to_lowercase())))
            .arg(opt(q.has_scope.as_ref().map(|s| format!(" {s} "))))
            .arg(ts(q.expires_before))
            .arg(ts(q.expires_after))
            .arg(ts(q.last_used_before))
            .arg(bit(q.never_used))
            .arg(bit(q.active))
            .arg(opt(q.search.as_ref().map(|s| s.to_lowercase())))
            .arg(opt(q.last_used_ip.map(codec::ip_text)));
        let v: redis::Value = inv
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(failed)?;
        let bad = || StoreError::Invalid("unexpected answer to the redis list script".into());
        let redis::Value::Array(mut parts) = v else {
            return Err(bad());
        };
        if parts.is_empty() {
            return Err(bad());
        }
        let total: i64 = redis::from_redis_value(&parts.remove(0)).map_err(|_| bad())?;
        let items = parts
            .iter()
            .map(|p| {
                let h: HashMap<String, String> = redis::from_redis_value(p).map_err(|_| bad())?;
                from_hash(h)
            })
            .collect::<Result<_, _>>()?;
        Ok(Page {
            total: u64::try_from(total).unwrap_or(0),
            items,
        })
    }

    async fn touch(&self, id: &TokenId, touch: &Touch) -> Result<(), StoreError> {
        let _: i64 = TOUCH
            .prepare_invoke()
            .arg(&self.prefix)
            .arg(id.as_str())
            .arg(touch.last_used.unix_timestamp())
            .arg(
                touch
                    .expires_at
                    .map(|e| e.unix_timestamp().to_string())
                    .unwrap_or_default(),
            )
            .arg(if touch.from.is_empty() { "0" } else { "1" })
            .arg(touch.from.client.map(codec::ip_text).unwrap_or_default())
            .arg(touch.from.user_agent.as_deref().unwrap_or(""))
            .arg(codec::ips_text(&touch.recent_clients).unwrap_or_default())
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(failed)?;
        Ok(())
    }

    async fn publish_change(&self, id: &TokenId) -> Result<(), StoreError> {
        let _: i64 = self
            .conn
            .clone()
            .publish(self.channel(), codec::change_payload(&self.instance, id))
            .await
            .map_err(failed)?;
        Ok(())
    }

    async fn follow_changes(&self, feed: ChangeFeed) {
        subscribe(&self.client, &self.channel(), &self.instance, &feed).await;
    }

    async fn append_events(&self, events: &[Event]) -> Result<(), StoreError> {
        // A few hundred events per script call: one round trip each, short scripts.
        for chunk in events.chunks(256) {
            let mut call = APPEND_EVENTS.prepare_invoke();
            call.arg(&self.prefix).arg("").arg(self.audit_capacity);
            for e in chunk {
                let json = serde_json::to_string(e)
                    .map_err(|err| StoreError::Invalid(format!("cannot encode an event: {err}")))?;
                call.arg(e.at.unix_timestamp())
                    .arg(e.token_id.as_str())
                    .arg(&e.owner)
                    .arg(e.kind.name())
                    .arg(json);
            }
            call.invoke_async::<i64>(&mut self.conn.clone())
                .await
                .map_err(failed)?;
        }
        Ok(())
    }

    async fn list_events(&self, q: &EventQuery) -> Result<Page<Event>, StoreError> {
        let opt = |v: Option<String>| v.map_or_else(|| "-".to_owned(), |v| format!("+{v}"));
        let ts = |t: Option<time::OffsetDateTime>| opt(t.map(|t| t.unix_timestamp().to_string()));
        let v: Vec<String> = EVENTS
            .prepare_invoke()
            .arg(&self.prefix)
            .arg("")
            .arg(q.offset())
            .arg(q.limit())
            .arg(opt(q.token_id.map(|id| id.to_string())))
            .arg(opt(q.owner.clone()))
            .arg(opt(q.kind.clone()))
            .arg(ts(q.since))
            .arg(ts(q.until))
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(failed)?;
        let mut v = v.into_iter();
        let total = v
            .next()
            .and_then(|t| t.parse::<u64>().ok())
            .ok_or_else(|| {
                StoreError::Invalid("unexpected answer to the redis events script".into())
            })?;
        Ok(Page {
            total,
            items: v
                .map(|json| codec::event(&json))
                .collect::<Result<_, _>>()?,
        })
    }

    async fn prune_events(&self, before: time::OffsetDateTime) -> Result<u64, StoreError> {
        PRUNE_EVENTS
            .prepare_invoke()
            .arg(&self.prefix)
            .arg("")
            .arg(before.unix_timestamp())
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(failed)
    }

    async fn claim_reminder(
        &self,
        id: &TokenId,
        lead: u64,
        expires_at: time::OffsetDateTime,
    ) -> Result<bool, StoreError> {
        // Kept past the reminder's window (its lead and the expired horizon), then gone.
        let ttl = lead.saturating_add(Self::REMINDER_TTL);
        let key = format!(
            "{}r:{id}:{lead}:{}",
            self.prefix,
            expires_at.unix_timestamp()
        );
        let set: Option<String> = redis::cmd("SET")
            .arg(key)
            .arg("1")
            .arg("NX")
            .arg("EX")
            .arg(ttl)
            .query_async(&mut self.conn.clone())
            .await
            .map_err(failed)?;
        Ok(set.is_some())
    }
}
