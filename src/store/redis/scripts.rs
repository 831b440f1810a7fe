//! The Lua scripts of the Redis store: every write, touch and filtered listing runs on the
//! server in one script, so a token and its index entries change together.
//!
//! Invariants:
//! - Every script starts with [`PRELUDE`]: `ARGV[1]` is the key prefix, `ARGV[2]` the
//!   token id; keys are built from the prefix, so the store targets one Redis node.
//! - A script that writes a token also rewrites its index entries ([`PRELUDE`]'s
//!   `unindex` before, `index` after), so listings never see one without the other.
//! - The swap scripts (update, replace) write only when the stored `version` is the one
//!   given, and never move `last_used` or a sliding `expires_at` backwards.

use std::sync::LazyLock;

use redis::Script;

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
pub(super) static INSERT: LazyLock<Script> = LazyLock::new(|| {
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
  local old = redis.call('HMGET', k, 'version', 'last_used', 'expires_at', 'expiry', 'sliding',
    'last_used_ip', 'last_used_user_agent', 'recent_ips')
  if (old[1] or '1') ~= expected then return 2 end
  unindex(tid)
  redis.call('DEL', k)
  redis.call('HSET', k, unpack(ARGV, first, last))
  local new = redis.call('HMGET', k, 'last_used', 'expires_at', 'expiry', 'sliding')
  if old[2] and (not new[1] or tonumber(old[2]) > tonumber(new[1])) then
    redis.call('HSET', k, 'last_used', old[2])
    for i, f in ipairs({'last_used_ip', 'last_used_user_agent', 'recent_ips'}) do
      if old[5 + i] then redis.call('HSET', k, f, old[5 + i]) else redis.call('HDEL', k, f) end
    end
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
pub(super) static UPDATE: LazyLock<Script> = LazyLock::new(|| {
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
pub(super) static REPLACE: LazyLock<Script> = LazyLock::new(|| {
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

pub(super) static DELETE: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
if redis.call('EXISTS', tkey(id)) == 0 then return 0 end
unindex(id)
redis.call('DEL', tkey(id))
return 1
"#,
    )
});

/// `ARGV[3]`: last used; `ARGV[4]`: new sliding expiry or ''; `ARGV[5]`: '1' when
/// `ARGV[6]` (address or '') and `ARGV[7]` (user agent or '') are the last use's origin;
/// `ARGV[8]`: the recent addresses, or '' to keep them. The origin goes with a
/// `last_used` that moves forward.
pub(super) static TOUCH: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local k = tkey(id)
if redis.call('EXISTS', k) == 0 then return 0 end
local h = redis.call('HMGET', k, 'last_used', 'expires_at', 'sliding')
local changed = false
local function put(f, v) if v == '' then redis.call('HDEL', k, f) else redis.call('HSET', k, f, v) end end
if not h[1] or tonumber(h[1]) < tonumber(ARGV[3]) then
  redis.call('HSET', k, 'last_used', ARGV[3]); changed = true
  if ARGV[5] == '1' then put('last_used_ip', ARGV[6]); put('last_used_user_agent', ARGV[7]) end
  if ARGV[8] ~= '' then redis.call('HSET', k, 'recent_ips', ARGV[8]) end
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
/// (`1`/`0`), active (`1`/`0`), search (lower-cased); `ARGV[16]`: last used from this
/// address.
/// Returns `{total, {hash fields…}, …}`.
///
/// `passes` is the Lua form of [`ListQuery::matches`], which defines what each filter
/// means; the store conformance suite checks that the listings agree with it.
pub(super) static LIST: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local field, desc = ARGV[3], ARGV[4] == '1'
local offset, limit = tonumber(ARGV[5]), tonumber(ARGV[6])
local key
if ARGV[7] == '1' then key = P .. 'o:' .. ARGV[2] .. ':' .. field else key = P .. 'z:' .. field end
local function opt(i) local v = ARGV[i]; if string.sub(v, 1, 1) == '+' then return string.sub(v, 2) end return nil end
local f_name, f_scope, f_eb, f_ea = opt(8), opt(9), opt(10), opt(11)
local f_ub, f_never, f_active, f_search = opt(12), opt(13), opt(14), opt(15)
local f_ip = opt(16)
local filtered = f_name or f_scope or f_eb or f_ea or f_ub or f_never or f_active or f_search or f_ip
local function member_id(m) if field == 'name' then return string.sub(m, -16) end return m end
local function range(a, b)
  if desc then return redis.call('ZREVRANGE', key, a, b) end
  return redis.call('ZRANGE', key, a, b)
end
local function has(hay, needle) return string.find(hay, needle, 1, true) ~= nil end
local function num(v) if v then return tonumber(v) end return nil end
local function passes(id)
  local h = redis.call('HMGET', tkey(id), 'name_lc', 'owner_lc', 'scopes', 'expires_at', 'last_used', 'active', 'last_used_ip')
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
  if f_ip and h[7] ~= f_ip then return false end
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

/// Shared by the audit log's scripts: `forget(entry)` deletes one entry of the main
/// stream (as `XRANGE` returns it) from the stream and from its token's and owner's
/// indexes.
const FORGET_EVENT: &str = r#"
local function forget(key, entry)
  local f, tok, owner = entry[2], nil, nil
  for j = 1, #f, 2 do
    if f[j] == 'token' then tok = f[j + 1] elseif f[j] == 'owner' then owner = f[j + 1] end
  end
  if tok then redis.call('XDEL', key .. ':t:' .. tok, entry[1]) end
  if owner then redis.call('XDEL', key .. ':o:' .. owner, entry[1]) end
  redis.call('XDEL', key, entry[1])
end
"#;

/// Appends events to the audit log: the stream `<prefix>events` (fields `at`, `token`,
/// `owner`, `type` and the event's JSON `e`), and, under the same entry id and without
/// the JSON, into the indexes `<prefix>events:t:<token id>` and
/// `<prefix>events:o:<owner>` that a listing by token or by owner reads. The first id so
/// indexed is kept in `<prefix>events:indexed`: older entries (written before the
/// indexes existed) are only in the main stream. Beyond `ARGV[3]` entries the oldest
/// are deleted from the stream and the indexes. `ARGV[4..]`: five values per event: at
/// (unix seconds), token id, owner, type, JSON.
pub(super) static APPEND_EVENTS: LazyLock<Script> = LazyLock::new(|| {
    script(&format!(
        "{FORGET_EVENT}{}",
        r#"
local key = P .. 'events'
local cap = tonumber(ARGV[3])
for i = 4, #ARGV, 5 do
  local at, tok, owner, ty, e = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
  local id = redis.call('XADD', key, '*', 'at', at, 'token', tok, 'owner', owner, 'type', ty, 'e', e)
  redis.call('XADD', key .. ':t:' .. tok, id, 'at', at, 'token', tok, 'owner', owner, 'type', ty)
  redis.call('XADD', key .. ':o:' .. owner, id, 'at', at, 'token', tok, 'owner', owner, 'type', ty)
  redis.call('SET', key .. ':indexed', id, 'NX')
end
local excess = redis.call('XLEN', key) - cap
if excess > 0 then
  for _, entry in ipairs(redis.call('XRANGE', key, '-', '+', 'COUNT', excess)) do forget(key, entry) end
end
return 0
"#
    ))
});

/// The audit log, newest first. `ARGV[3]`, `ARGV[4]`: offset, limit; `ARGV[5..9]`:
/// filters, each `-` (absent) or `+<value>`: token id, owner, type, since, until (unix
/// seconds). Returns `{total, json…}`: the Lua form of
/// [`EventQuery::matches`](crate::store::EventQuery::matches). With a token id it reads
/// that token's index, else with an owner that owner's index, then the main stream only
/// before `<prefix>events:indexed` (entries older than the indexes); the JSON of the
/// page's entries comes from the main stream. Otherwise it reads the whole main stream.
pub(super) static EVENTS: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local key = P .. 'events'
local offset, limit = tonumber(ARGV[3]), tonumber(ARGV[4])
local function opt(i) local v = ARGV[i]; if string.sub(v, 1, 1) == '+' then return string.sub(v, 2) end return nil end
local f_token, f_owner, f_type, f_since, f_until = opt(5), opt(6), opt(7), opt(8), opt(9)
local total, out = 0, {}
-- Walks `stream` newest first from `from` (a range start: '+', or '(' .. id for below
-- that id), counting the matches and keeping the page's JSON (read from the main stream
-- for an index's entries, which have none).
local function walk(stream, from)
  local start = from
  while true do
    local batch = redis.call('XREVRANGE', stream, start, '-', 'COUNT', 500)
    for _, entry in ipairs(batch) do
      local f, h = entry[2], {}
      for i = 1, #f, 2 do h[f[i]] = f[i + 1] end
      local at = tonumber(h['at'])
      if (not f_token or h['token'] == f_token)
         and (not f_owner or h['owner'] == f_owner)
         and (not f_type or h['type'] == f_type)
         and (not f_since or at >= tonumber(f_since)) and (not f_until or at < tonumber(f_until)) then
        total = total + 1
        if total > offset and #out < limit then
          local e = h['e']
          if not e then
            local main = redis.call('XRANGE', key, entry[1], entry[1])
            if main[1] then
              local mf = main[1][2]
              for i = 1, #mf, 2 do if mf[i] == 'e' then e = mf[i + 1] end end
            end
          end
          if e then out[#out + 1] = e end
        end
      end
    end
    if #batch < 500 then return end
    start = '(' .. batch[#batch][1]
  end
end
local indexed = redis.call('GET', key .. ':indexed')
if indexed and (f_token or f_owner) then
  if f_token then walk(key .. ':t:' .. f_token, '+') else walk(key .. ':o:' .. f_owner, '+') end
  -- Entries older than the indexes are only in the main stream.
  walk(key, '(' .. indexed)
else
  walk(key, '+')
end
table.insert(out, 1, tostring(total))
return out
"#,
    )
});

/// Deletes the audit log's entries whose `at` is before `ARGV[3]`, oldest first, up to
/// the first that is not, from the main stream and the indexes. Returns how many it
/// deleted.
pub(super) static PRUNE_EVENTS: LazyLock<Script> = LazyLock::new(|| {
    script(&format!(
        "{FORGET_EVENT}{}",
        r#"
local key = P .. 'events'
local deleted = 0
while true do
  local batch = redis.call('XRANGE', key, '-', '+', 'COUNT', 500)
  if #batch == 0 then return deleted end
  for _, entry in ipairs(batch) do
    local f, at = entry[2], nil
    for i = 1, #f, 2 do if f[i] == 'at' then at = tonumber(f[i + 1]) end end
    if at and at >= tonumber(ARGV[3]) then return deleted end
    forget(key, entry)
    deleted = deleted + 1
  end
end
"#
    ))
});
