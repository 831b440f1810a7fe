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
use crate::record::TokenRecord;
use crate::store::codec::Flat;
use crate::store::{ListQuery, SortField, StoreError, Touch};
use crate::token::TokenId;

/// Sort key of a nullable column: `NULL` becomes the largest value.
const NULL_LAST: &str = "9223372036854775807";

/// The columns a record is read from, in the order of [`Columns`].
const COLUMNS: &str = "id, owner, name, scopes, expiry, expires_at, active, created, \
     modified, last_used, secret_hash, previous_hash, previous_valid_until, version";

/// A row of [`COLUMNS`], decoded by sqlx's `FromRow` for tuples (and by rusqlite's `get`
/// on the SQLite fast path): one column order for every driver.
pub(crate) type Columns = (
    String,
    String,
    String,
    String,
    String,
    Option<i64>,
    bool,
    i64,
    i64,
    Option<i64>,
    String,
    Option<String>,
    Option<i64>,
    i64,
);

/// The record of a row of [`COLUMNS`].
pub(crate) fn record(c: Columns) -> Result<TokenRecord, StoreError> {
    Flat {
        id: c.0,
        owner: c.1,
        name: c.2,
        scopes: c.3,
        expiry: c.4,
        expires_at: c.5,
        active: c.6,
        created: c.7,
        modified: c.8,
        last_used: c.9,
        secret_hash: c.10,
        previous_hash: c.11,
        previous_valid_until: c.12,
        version: c.13,
    }
    .into_record()
}

const WRITE_COLUMNS: &str = "id, owner, owner_lc, name, name_lc, scopes, expiry, sliding, \
     expires_at, active, created, modified, last_used, secret_hash, previous_hash, \
     previous_valid_until, version";

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
        q.push(", last_used = CASE WHEN last_used IS NOT NULL AND (")
            .bind(f.last_used)
            .push(" IS NULL OR last_used > ")
            .bind(f.last_used)
            .push(") THEN last_used ELSE ")
            .bind(f.last_used);
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
    /// statement (so concurrent touches from many replicas keep the latest values).
    pub(crate) fn touch(id: &TokenId, t: &Touch) -> Self {
        let used = t.last_used.unix_timestamp();
        let exp = t.expires_at.map(|e| e.unix_timestamp());
        let mut q = Self::new(
            "UPDATE pat_tokens SET last_used = CASE WHEN last_used IS NULL OR last_used < ",
        );
        q.bind(used).push(" THEN ").bind(used);
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
