//! The statements of [`SqlStore`](super::SqlStore), built once for both engines.
//!
//! They are built with [`Sql`], a small builder over sqlx's own `Arguments`, rather than
//! sqlx's `QueryBuilder`: `QueryBuilder::build` borrows the builder for as long as its
//! arguments' lifetime, which code generic over the engine cannot satisfy (the builder
//! would be dropped while borrowed, E0597: for a concrete engine the compiler sees that
//! dropping the arguments does not use that lifetime; through `D::Arguments<'q>` it
//! cannot). `Sql` keeps the text and the arguments apart, and the placeholders are
//! sqlx's (`Arguments::format_placeholder`: `?` for SQLite, `$1` for PostgreSQL).
//!
//! Ordering agrees with [`ListQuery::compare`]: `id`, `owner` and `name` compare
//! byte-wise (SQLite's `BINARY`, PostgreSQL's `COLLATE "C"`), and the nullable sort keys
//! are indexed and ordered as `coalesce(col, i64::MAX)`, which puts `NULL` last ascending
//! and first descending, on both engines, with an index that serves the order.

use sqlx::{Arguments as _, Encode, Type};

use super::Dialect;
use crate::events::Event;
use crate::record::TokenRecord;
use crate::store::codec::{self, Flat};
use crate::store::{EventQuery, ListQuery, SortField, StoreError, Touch};
use crate::token::TokenId;

/// Sort key of a nullable column: `NULL` becomes the largest value.
const NULL_LAST: &str = "9223372036854775807";

/// The columns a record is read from, in the order [`Columns`] reads them.
const COLUMNS: &str = "id, owner, name, scopes, expiry, expires_at, active, created, \
     modified, last_used, secret_hash, previous_hash, previous_valid_until, version, \
     created_ip, created_user_agent, last_used_ip, last_used_user_agent, recent_ips";

/// A row of [`COLUMNS`], decoded by position (sqlx's `FromRow`, and rusqlite's `get` on
/// the SQLite fast path): one column order for every driver. (sqlx's `FromRow` for tuples
/// stops at 16 columns; a record has 19.)
pub(crate) struct Columns(pub(crate) Flat);

impl<'r, R: sqlx::Row> sqlx::FromRow<'r, R> for Columns
where
    usize: sqlx::ColumnIndex<R>,
    String: sqlx::Decode<'r, R::Database> + Type<R::Database>,
    Option<String>: sqlx::Decode<'r, R::Database> + Type<R::Database>,
    i64: sqlx::Decode<'r, R::Database> + Type<R::Database>,
    Option<i64>: sqlx::Decode<'r, R::Database> + Type<R::Database>,
    bool: sqlx::Decode<'r, R::Database> + Type<R::Database>,
{
    fn from_row(row: &'r R) -> Result<Self, sqlx::Error> {
        Ok(Columns(Flat {
            id: row.try_get(0)?,
            owner: row.try_get(1)?,
            name: row.try_get(2)?,
            scopes: row.try_get(3)?,
            expiry: row.try_get(4)?,
            expires_at: row.try_get(5)?,
            active: row.try_get(6)?,
            created: row.try_get(7)?,
            modified: row.try_get(8)?,
            last_used: row.try_get(9)?,
            secret_hash: row.try_get(10)?,
            previous_hash: row.try_get(11)?,
            previous_valid_until: row.try_get(12)?,
            version: row.try_get(13)?,
            created_ip: row.try_get(14)?,
            created_user_agent: row.try_get(15)?,
            last_used_ip: row.try_get(16)?,
            last_used_user_agent: row.try_get(17)?,
            recent_ips: row.try_get(18)?,
        }))
    }
}

/// The record of a row of [`COLUMNS`].
pub(crate) fn record(c: Columns) -> Result<TokenRecord, StoreError> {
    c.0.into_record()
}

const WRITE_COLUMNS: &str = "id, owner, owner_lc, name, name_lc, scopes, expiry, sliding, \
     expires_at, active, created, modified, last_used, secret_hash, previous_hash, \
     previous_valid_until, version, created_ip, created_user_agent, last_used_ip, \
     last_used_user_agent, recent_ips";

/// A statement and its bound values, for engine `D`.
pub(crate) struct Sql<'q, D: Dialect> {
    text: String,
    args: D::Arguments<'q>,
    /// The first value that could not be bound (reported by [`into_parts`](Self::into_parts)).
    failed: Option<String>,
}

impl<'q, D: Dialect> Sql<'q, D> {
    pub(crate) fn new(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            args: Default::default(),
            failed: None,
        }
    }

    pub(crate) fn push(&mut self, sql: &str) -> &mut Self {
        self.text.push_str(sql);
        self
    }

    /// Binds `value` and writes its placeholder.
    pub(crate) fn bind<T: 'q + Encode<'q, D> + Type<D>>(&mut self, value: T) -> &mut Self {
        if let Err(e) = self.args.add(value) {
            self.failed.get_or_insert(e.to_string());
        }
        // Writing to a `String` cannot fail.
        let _ = self.args.format_placeholder(&mut self.text);
        self
    }

    /// The text and the arguments, for `sqlx::query_with` (bind them in that order, so
    /// the arguments are dropped before the text they were built for).
    pub(crate) fn into_parts(self) -> Result<(String, D::Arguments<'q>), StoreError> {
        match self.failed {
            None => Ok((self.text, self.args)),
            Some(e) => Err(StoreError::Invalid(format!("cannot bind a value: {e}"))),
        }
    }
}

impl<'q, D: Dialect> Sql<'q, D>
where
    String: Encode<'q, D> + Type<D>,
    Option<String>: Encode<'q, D> + Type<D>,
    i64: Encode<'q, D> + Type<D>,
    Option<i64>: Encode<'q, D> + Type<D>,
    bool: Encode<'q, D> + Type<D>,
{
    /// The record with this id.
    pub(crate) fn get(id: &TokenId) -> Self {
        let mut q = Self::new(format!("SELECT {COLUMNS} FROM pat_tokens WHERE id = "));
        q.bind(id.to_string());
        q
    }

    /// The version of the record with this id.
    pub(crate) fn version(id: &TokenId) -> Self {
        let mut q = Self::new("SELECT version FROM pat_tokens WHERE id = ");
        q.bind(id.to_string());
        q
    }

    /// Deletes the record with this id (and, given one, this version).
    pub(crate) fn delete(id: &TokenId, version: Option<u64>) -> Self {
        let mut q = Self::new("DELETE FROM pat_tokens WHERE id = ");
        q.bind(id.to_string());
        if let Some(v) = version {
            q.push(" AND version = ")
                .bind(i64::try_from(v).unwrap_or(i64::MAX));
        }
        q
    }

    /// `INSERT … ON CONFLICT DO NOTHING`: no row affected means the id is taken.
    pub(crate) fn insert(r: &TokenRecord) -> Result<Self, StoreError> {
        let (f, d) = (Flat::from_record(r)?, Flat::derived(r));
        let mut q = Self::new(format!("INSERT INTO pat_tokens ({WRITE_COLUMNS}) VALUES ("));
        q.bind(f.id).push(", ").bind(f.owner).push(", ");
        q.bind(d.owner_lc).push(", ").bind(f.name).push(", ");
        q.bind(d.name_lc).push(", ").bind(f.scopes).push(", ");
        q.bind(f.expiry).push(", ").bind(d.sliding).push(", ");
        q.bind(f.expires_at).push(", ").bind(f.active).push(", ");
        q.bind(f.created).push(", ").bind(f.modified).push(", ");
        q.bind(f.last_used)
            .push(", ")
            .bind(f.secret_hash)
            .push(", ");
        q.bind(f.previous_hash).push(", ");
        q.bind(f.previous_valid_until).push(", ").bind(f.version);
        q.push(", ").bind(f.created_ip);
        q.push(", ").bind(f.created_user_agent);
        q.push(", ").bind(f.last_used_ip);
        q.push(", ").bind(f.last_used_user_agent);
        q.push(", ").bind(f.recent_ips);
        q.push(") ON CONFLICT (id) DO NOTHING");
        Ok(q)
    }

    /// The compare-and-swap of [`TokenStore::update`](crate::store::TokenStore::update):
    /// replaces every column of the row with this id and the record's version, and counts
    /// the version up. `last_used`, and a sliding `expires_at` under an unchanged expiry
    /// model, keep the later of the stored and the given values.
    pub(crate) fn update(r: &TokenRecord) -> Result<Self, StoreError> {
        let (f, d) = (Flat::from_record(r)?, Flat::derived(r));
        let mut q = Self::new("UPDATE pat_tokens SET owner = ");
        q.bind(f.owner).push(", owner_lc = ").bind(d.owner_lc);
        q.push(", name = ").bind(f.name);
        q.push(", name_lc = ").bind(d.name_lc);
        q.push(", scopes = ").bind(f.scopes);
        q.push(", expiry = ").bind(f.expiry.clone());
        q.push(", sliding = ").bind(d.sliding);
        q.push(", active = ").bind(f.active);
        q.push(", created = ").bind(f.created);
        q.push(", modified = ").bind(f.modified);
        q.push(", secret_hash = ").bind(f.secret_hash);
        q.push(", previous_hash = ").bind(f.previous_hash);
        q.push(", previous_valid_until = ")
            .bind(f.previous_valid_until);
        q.push(", created_ip = ").bind(f.created_ip);
        q.push(", created_user_agent = ").bind(f.created_user_agent);
        // The use columns keep the stored values when the stored use is the later one.
        let used = f.last_used;
        let stored_is_later = |q: &mut Self| {
            q.push(" = CASE WHEN last_used IS NOT NULL AND (")
                .bind(used)
                .push(" IS NULL OR last_used > ")
                .bind(used)
                .push(") THEN ");
        };
        q.push(", last_used_ip");
        stored_is_later(&mut q);
        q.push("last_used_ip ELSE ").bind(f.last_used_ip);
        q.push(" END, last_used_user_agent");
        stored_is_later(&mut q);
        q.push("last_used_user_agent ELSE ")
            .bind(f.last_used_user_agent);
        q.push(" END, recent_ips");
        stored_is_later(&mut q);
        q.push("recent_ips ELSE ").bind(f.recent_ips);
        q.push(" END, last_used");
        stored_is_later(&mut q);
        q.push("last_used ELSE ").bind(f.last_used);
        q.push(" END, expires_at = CASE WHEN sliding AND ")
            .bind(d.sliding)
            .push(" AND expiry = ")
            .bind(f.expiry)
            .push(" AND expires_at IS NOT NULL AND (")
            .bind(f.expires_at)
            .push(" IS NULL OR expires_at > ")
            .bind(f.expires_at)
            .push(") THEN expires_at ELSE ")
            .bind(f.expires_at);
        q.push(" END, version = version + 1 WHERE id = ")
            .bind(f.id)
            .push(" AND version = ")
            .bind(f.version);
        Ok(q)
    }

    /// Moves `last_used` and, for sliding tokens, `expires_at` forward only, in one atomic
    /// statement (so concurrent touches from many replicas keep the latest values); the
    /// origin and the recent addresses go with a `last_used` that moves forward. (Every
    /// `CASE` reads the row as it was before the statement.)
    pub(crate) fn touch(id: &TokenId, t: &Touch) -> Self {
        let used = t.last_used.unix_timestamp();
        let exp = t.expires_at.map(|e| e.unix_timestamp());
        let mut q = Self::new("UPDATE pat_tokens SET ");
        let forward = |q: &mut Self, col: &str| {
            q.push(col)
                .push(" = CASE WHEN last_used IS NULL OR last_used < ")
                .bind(used)
                .push(" THEN ");
        };
        if !t.from.is_empty() {
            forward(&mut q, "last_used_ip");
            q.bind(t.from.client.map(codec::ip_text))
                .push(" ELSE last_used_ip END, ");
            forward(&mut q, "last_used_user_agent");
            q.bind(t.from.user_agent.clone())
                .push(" ELSE last_used_user_agent END, ");
        }
        if let Some(recent) = codec::ips_text(&t.recent_clients) {
            forward(&mut q, "recent_ips");
            q.bind(recent).push(" ELSE recent_ips END, ");
        }
        forward(&mut q, "last_used");
        q.bind(used);
        q.push(" ELSE last_used END, expires_at = CASE WHEN sliding AND ")
            .bind(exp)
            .push(" IS NOT NULL AND (expires_at IS NULL OR expires_at < ")
            .bind(exp)
            .push(") THEN ")
            .bind(exp);
        q.push(" ELSE expires_at END WHERE id = ")
            .bind(id.to_string());
        q
    }

    /// How many records pass the query's filters.
    pub(crate) fn count(query: &ListQuery) -> Self {
        let mut q = Self::new("SELECT COUNT(*) FROM pat_tokens");
        q.filters(query);
        q
    }

    /// The query's page, in its order.
    pub(crate) fn page(query: &ListQuery) -> Self {
        let mut q = Self::new(format!("SELECT {COLUMNS} FROM pat_tokens"));
        q.filters(query);
        q.push(&order_and_page(query));
        q
    }

    /// The `WHERE` clause of the filters, binding each value (nothing when there is no
    /// filter). What each filter means is defined once, by [`ListQuery::matches`]; this
    /// is its SQL form, and the conformance suite checks the two agree.
    fn filters(&mut self, q: &ListQuery) {
        let mut first = true;
        let mut and = |sql: &mut Self, clause: &str| {
            sql.push(if first { " WHERE " } else { " AND " });
            first = false;
            sql.push(clause);
        };
        let contains = |sql: &mut Self, col: &str, v: String| {
            let (before, after) = D::contains(col);
            sql.push(&before).bind(v).push(after);
        };
        if let Some(o) = &q.owner {
            and(self, "owner = ");
            self.bind(o.clone());
        }
        if let Some(s) = &q.name_contains {
            and(self, "");
            contains(self, "name_lc", s.to_lowercase());
        }
        if let Some(s) = &q.has_scope {
            and(self, "");
            contains(self, "(' ' || scopes || ' ')", format!(" {s} "));
        }
        if let Some(t) = q.expires_before {
            and(self, "expires_at IS NOT NULL AND expires_at < ");
            self.bind(t.unix_timestamp());
        }
        if let Some(t) = q.expires_after {
            and(self, "(expires_at IS NULL OR expires_at > ");
            self.bind(t.unix_timestamp()).push(")");
        }
        if let Some(t) = q.last_used_before {
            and(self, "last_used IS NOT NULL AND last_used < ");
            self.bind(t.unix_timestamp());
        }
        if let Some(ip) = q.last_used_ip {
            and(self, "last_used_ip = ");
            self.bind(codec::ip_text(ip));
        }
        match q.never_used {
            Some(true) => and(self, "last_used IS NULL"),
            Some(false) => and(self, "last_used IS NOT NULL"),
            None => {}
        }
        if let Some(a) = q.active {
            and(self, "active = ");
            self.bind(a);
        }
        if let Some(s) = &q.search {
            let s = s.to_lowercase();
            and(self, "(");
            contains(self, "name_lc", s.clone());
            self.push(" OR ");
            contains(self, "owner_lc", s);
            self.push(")");
        }
    }
}

impl<'q, D: Dialect> Sql<'q, D>
where
    String: Encode<'q, D> + Type<D>,
    i64: Encode<'q, D> + Type<D>,
{
    /// Appends one event to the audit log.
    pub(crate) fn append_event(e: &Event) -> Result<Self, StoreError> {
        let json = serde_json::to_string(e)
            .map_err(|err| StoreError::Invalid(format!("cannot encode an event: {err}")))?;
        let mut q = Self::new("INSERT INTO pat_events (at, token_id, owner, type, event) VALUES (");
        q.bind(e.at.unix_timestamp()).push(", ");
        q.bind(e.token_id.to_string()).push(", ");
        q.bind(e.owner.clone()).push(", ");
        q.bind(e.kind.name().to_owned()).push(", ").bind(json);
        q.push(")");
        Ok(q)
    }

    /// How many events pass the query's filters.
    pub(crate) fn count_events(query: &EventQuery) -> Self {
        let mut q = Self::new("SELECT COUNT(*) FROM pat_events");
        q.event_filters(query);
        q
    }

    /// The query's page of events (as JSON), newest first.
    pub(crate) fn page_events(query: &EventQuery) -> Self {
        let mut q = Self::new("SELECT event FROM pat_events");
        q.event_filters(query);
        q.push(&format!(
            " ORDER BY seq DESC LIMIT {} OFFSET {}",
            query.limit(),
            query.offset()
        ));
        q
    }

    /// Deletes the events before `before` (unix seconds).
    pub(crate) fn prune_events(before: i64) -> Self {
        let mut q = Self::new("DELETE FROM pat_events WHERE at < ");
        q.bind(before);
        q
    }

    /// Deletes the reminders claimed for expiries before `before` (unix seconds).
    pub(crate) fn prune_reminders(before: i64) -> Self {
        let mut q = Self::new("DELETE FROM pat_reminders WHERE expires_at < ");
        q.bind(before);
        q
    }

    /// Claims a reminder: one row affected for the one caller that claims it.
    pub(crate) fn claim_reminder(id: &TokenId, lead: u64, expires_at: i64) -> Self {
        let mut q = Self::new("INSERT INTO pat_reminders (token_id, lead, expires_at) VALUES (");
        q.bind(id.to_string()).push(", ");
        q.bind(i64::try_from(lead).unwrap_or(i64::MAX)).push(", ");
        q.bind(expires_at);
        q.push(") ON CONFLICT DO NOTHING");
        q
    }

    /// The `WHERE` clause of [`EventQuery::matches`].
    fn event_filters(&mut self, q: &EventQuery) {
        let mut first = true;
        let mut and = |sql: &mut Self, clause: &str| {
            sql.push(if first { " WHERE " } else { " AND " });
            first = false;
            sql.push(clause);
        };
        if let Some(id) = &q.token_id {
            and(self, "token_id = ");
            self.bind(id.to_string());
        }
        if let Some(o) = &q.owner {
            and(self, "owner = ");
            self.bind(o.clone());
        }
        if let Some(k) = &q.kind {
            and(self, "type = ");
            self.bind(k.clone());
        }
        if let Some(t) = q.since {
            and(self, "at >= ");
            self.bind(t.unix_timestamp());
        }
        if let Some(t) = q.until {
            and(self, "at < ");
            self.bind(t.unix_timestamp());
        }
    }
}

/// The order of [`ListQuery::compare`] as an index-backed `ORDER BY`, and the page as
/// `LIMIT`/`OFFSET`.
fn order_and_page(q: &ListQuery) -> String {
    let key = match q.order.field {
        SortField::LastUsed => format!("coalesce(last_used, {NULL_LAST})"),
        SortField::Expires => format!("coalesce(expires_at, {NULL_LAST})"),
        SortField::Name => "name".to_owned(),
        // `SortField` is non-exhaustive; `Created` is the default order.
        _ => "created".to_owned(),
    };
    let dir = if q.order.descending { "DESC" } else { "ASC" };
    format!(
        " ORDER BY {key} {dir}, id {dir} LIMIT {} OFFSET {}",
        q.limit(),
        q.offset()
    )
}

/// The point read of `id`, as the SQLite fast path runs it (rusqlite's `?1`).
#[cfg(feature = "sqlite")]
pub(crate) fn get_text() -> String {
    format!("SELECT {COLUMNS} FROM pat_tokens WHERE id = ?1")
}

#[cfg(all(test, feature = "sqlite", feature = "postgres"))]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_the_engines() {
        let id = TokenId::generate();
        let (s, _) = Sql::<sqlx::Sqlite>::delete(&id, Some(3))
            .into_parts()
            .unwrap();
        assert!(s.ends_with("WHERE id = ? AND version = ?"), "{s}");
        let (p, _) = Sql::<sqlx::Postgres>::delete(&id, Some(3))
            .into_parts()
            .unwrap();
        assert!(p.ends_with("WHERE id = $1 AND version = $2"), "{p}");
        assert!(get_text().ends_with("WHERE id = ?1"));
    }
}
