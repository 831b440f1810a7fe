use std::collections::HashMap;
use std::sync::LazyLock;
use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, Script};

use crate::record::TokenRecord;
use crate::store::codec::{self, Flat};
use crate::store::{
    mask_url, ChangeFeed, ListQuery, Page, SortField, StoreError, TokenStore, Touch, Update,
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
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .field("instance", &self.instance)
            .finish_non_exhaustive()
    }
}

/// Shared by every script: key names and index maintenance. `ARGV[1]` is the prefix,
/// `ARGV[2]` the token id.
const PRELUDE: &str = r#"
local P = ARGV[1]
local function tkey(id) return P .. 't:' .. id end
local function score(v) if not v then return '+inf' end return v end
local function unindex(id)
  local h = redis.call('HMGET', tkey(id), 'owner', 'name')
  if not h[1] then return end
  local o = P .. 'o:' .. h[1] .. ':'
  for _, f in ipairs({'created', 'last_used', 'expires'}) do
    redis.call('ZREM', P .. 'z:' .. f, id)
    redis.call('ZREM', o .. f, id)
  end
  redis.call('ZREM', P .. 'z:name', h[2] .. '\0' .. id)
  redis.call('ZREM', o .. 'name', h[2] .. '\0' .. id)
end
local function index(id)
  local h = redis.call('HMGET', tkey(id), 'owner', 'name', 'created', 'last_used', 'expires_at')
  local o = P .. 'o:' .. h[1] .. ':'
  for _, k in ipairs({P .. 'z:', o}) do
    redis.call('ZADD', k .. 'created', h[3], id)
    redis.call('ZADD', k .. 'last_used', score(h[4]), id)
    redis.call('ZADD', k .. 'expires', score(h[5]), id)
    redis.call('ZADD', k .. 'name', 0, h[2] .. '\0' .. id)
  end
end
local id = ARGV[2]
"#;

fn script(body: &str) -> Script {
    Script::new(&format!("{PRELUDE}{body}"))
}

/// `ARGV[3..]`: field, value pairs.
static INSERT: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
if redis.call('EXISTS', tkey(id)) == 1 then return 0 end
redis.call('HSET', tkey(id), unpack(ARGV, 3))
index(id)
return 1
"#,
    )
});

/// Shared by [`UPDATE`] and [`REPLACE`]: the compare-and-swap of `TokenStore::update`
/// for token `tid`, whose new fields are `ARGV[first..last]` (with the next version).
/// Keeps the later `last_used`, and the later sliding `expires_at` under an unchanged
/// expiry model. Returns 1 written, 0 no such token, 2 another version.
const SWAP: &str = r#"
local function swap(tid, expected, first, last)
  local k = tkey(tid)
  if redis.call('EXISTS', k) == 0 then return 0 end
  local old = redis.call('HMGET', k, 'version', 'last_used', 'expires_at', 'expiry', 'sliding')
  if (old[1] or '1') ~= expected then return 2 end
  unindex(tid)
  redis.call('DEL', k)
  redis.call('HSET', k, unpack(ARGV, first, last))
  local new = redis.call('HMGET', k, 'last_used', 'expires_at', 'expiry', 'sliding')
  if old[2] and (not new[1] or tonumber(old[2]) > tonumber(new[1])) then
    redis.call('HSET', k, 'last_used', old[2])
  end
  if old[5] == '1' and new[4] == '1' and old[4] == new[3] and old[3]
     and (not new[2] or tonumber(old[3]) > tonumber(new[2])) then
    redis.call('HSET', k, 'expires_at', old[3])
  end
  index(tid)
  return 1
end
"#;

/// `ARGV[3]`: the version read; `ARGV[4..]`: field, value pairs.
static UPDATE: LazyLock<Script> = LazyLock::new(|| {
    script(&format!(
        "{SWAP}{}",
        r#"
return swap(id, ARGV[3], 4, #ARGV)
"#
    ))
});

/// `ARGV[2]`, `ARGV[3]`: the old token's id and the version read; `ARGV[4]`: '1' to
/// delete it; `ARGV[5]`: the new id; `ARGV[6]`: n, the old token's field count, whose
/// pairs follow (`2n` values), then the new token's pairs. Returns 1 written, 0 no old
/// token, 2 another version, 3 the new id is taken; nothing is changed unless 1.
static REPLACE: LazyLock<Script> = LazyLock::new(|| {
    script(&format!(
        "{SWAP}{}",
        r#"
local new_id = ARGV[5]
if redis.call('EXISTS', tkey(new_id)) == 1 then return 3 end
local k = tkey(id)
if redis.call('EXISTS', k) == 0 then return 0 end
if (redis.call('HGET', k, 'version') or '1') ~= ARGV[3] then return 2 end
local n = tonumber(ARGV[6])
if ARGV[4] == '1' then
  unindex(id)
  redis.call('DEL', k)
else
  swap(id, ARGV[3], 7, 6 + 2 * n)
end
redis.call('HSET', tkey(new_id), unpack(ARGV, 7 + 2 * n))
index(new_id)
return 1
"#
    ))
});

static DELETE: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
if redis.call('EXISTS', tkey(id)) == 0 then return 0 end
unindex(id)
redis.call('DEL', tkey(id))
return 1
"#,
    )
});

/// `ARGV[3]`: last used; `ARGV[4]`: new sliding expiry or ''.
static TOUCH: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local k = tkey(id)
if redis.call('EXISTS', k) == 0 then return 0 end
local h = redis.call('HMGET', k, 'last_used', 'expires_at', 'sliding')
local changed = false
if not h[1] or tonumber(h[1]) < tonumber(ARGV[3]) then
  redis.call('HSET', k, 'last_used', ARGV[3]); changed = true
end
if ARGV[4] ~= '' and h[3] == '1' and (not h[2] or tonumber(h[2]) < tonumber(ARGV[4])) then
  redis.call('HSET', k, 'expires_at', ARGV[4]); changed = true
end
if changed then unindex(id); index(id) end
return 1
"#,
    )
});

/// `ARGV[2]`: owner or ''; `ARGV[3]`: sort field; `ARGV[4]`: '1' descending;
/// `ARGV[5]`, `ARGV[6]`: offset, limit; `ARGV[7]`: '1' when `ARGV[2]` is an owner;
/// `ARGV[8..15]`: filters, each `-` (absent) or `+<value>`: name (lower-cased), scope
/// (padded with spaces), expires before, expires after, last used before, never used
/// (`1`/`0`), active (`1`/`0`), search (lower-cased).
/// Returns `{total, {hash fields…}, …}`.
///
/// `passes` is the Lua form of [`ListQuery::matches`], which defines what each filter
/// means; the store conformance suite checks that the listings agree with it.
static LIST: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local field, desc = ARGV[3], ARGV[4] == '1'
local offset, limit = tonumber(ARGV[5]), tonumber(ARGV[6])
local key
if ARGV[7] == '1' then key = P .. 'o:' .. ARGV[2] .. ':' .. field else key = P .. 'z:' .. field end
local function opt(i) local v = ARGV[i]; if string.sub(v, 1, 1) == '+' then return string.sub(v, 2) end return nil end
local f_name, f_scope, f_eb, f_ea = opt(8), opt(9), opt(10), opt(11)
local f_ub, f_never, f_active, f_search = opt(12), opt(13), opt(14), opt(15)
local filtered = f_name or f_scope or f_eb or f_ea or f_ub or f_never or f_active or f_search
local function member_id(m) if field == 'name' then return string.sub(m, -16) end return m end
local function range(a, b)
  if desc then return redis.call('ZREVRANGE', key, a, b) end
  return redis.call('ZRANGE', key, a, b)
end
local function has(hay, needle) return string.find(hay, needle, 1, true) ~= nil end
local function num(v) if v then return tonumber(v) end return nil end
local function passes(id)
  local h = redis.call('HMGET', tkey(id), 'name_lc', 'owner_lc', 'scopes', 'expires_at', 'last_used', 'active')
  local exp, used = num(h[4]), num(h[5])
  if f_name and not has(h[1], f_name) then return false end
  if f_scope and not has(' ' .. h[3] .. ' ', f_scope) then return false end
  if f_eb and not (exp and exp < tonumber(f_eb)) then return false end
  if f_ea and exp and not (exp > tonumber(f_ea)) then return false end
  if f_ub and not (used and used < tonumber(f_ub)) then return false end
  if f_never == '1' and used then return false end
  if f_never == '0' and not used then return false end
  if f_active and h[6] ~= f_active then return false end
  if f_search and not (has(h[1], f_search) or has(h[2], f_search)) then return false end
  return true
end
local ids = {}
local total = 0
if not filtered then
  total = redis.call('ZCARD', key)
  if limit > 0 then
    for _, m in ipairs(range(offset, offset + limit - 1)) do ids[#ids + 1] = member_id(m) end
  end
else
  local start, chunk = 0, 500
  while true do
    local ms = range(start, start + chunk - 1)
    if #ms == 0 then break end
    for _, m in ipairs(ms) do
      local tid = member_id(m)
      if passes(tid) then
        total = total + 1
        if total > offset and #ids < limit then ids[#ids + 1] = tid end
      end
    end
    start = start + chunk
  end
end
local out = {total}
for _, tid in ipairs(ids) do out[#out + 1] = redis.call('HGETALL', tkey(tid)) end
return out
"#,
    )
});

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
    if let Some(h) = f.previous_hash {
        v.push(("previous_hash", h));
    }
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
    }
    .into_record()
}

impl RedisStore {
    /// Key prefix used by [`connect`](Self::connect).
    pub const DEFAULT_PREFIX: &'static str = "pat:";

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
        })
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
            .arg(opt(q.search.as_ref().map(|s| s.to_lowercase())));
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
}
