//! The SQL shared by the SQLite and PostgreSQL stores: schema migrations, statements and
//! the listing query, written once for both dialects.
//!
//! Ordering agrees with [`ListQuery::compare`]: `id`, `owner` and `name` compare
//! byte-wise (SQLite's `BINARY`, PostgreSQL's `COLLATE "C"`), and the nullable sort keys
//! are indexed and ordered as `coalesce(col, i64::MAX)`, which puts `NULL` last ascending
//! and first descending, on both engines, with an index that serves the order.

use crate::store::codec::{Derived, Flat};
use crate::store::{ListQuery, SortField, Touch};

/// Which SQL engine a statement is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    #[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
    Sqlite,
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    Postgres,
}

/// A bind value.
#[derive(Debug, Clone)]
pub(crate) enum Arg {
    Text(String),
    OptText(Option<String>),
    Int(i64),
    OptInt(Option<i64>),
    Bool(bool),
}

/// Sort key of a nullable column: `NULL` becomes the largest value.
const NULL_LAST: &str = "9223372036854775807";

/// Schema versions, in order. Each is a list of statements run in one transaction; the
/// applied version is kept in `pat_schema`.
pub(crate) fn migrations(d: Dialect) -> &'static [&'static [&'static str]] {
    match d {
        Dialect::Sqlite => &[&[
            "CREATE TABLE IF NOT EXISTS pat_tokens (
                id TEXT PRIMARY KEY NOT NULL,
                owner TEXT NOT NULL,
                owner_lc TEXT NOT NULL,
                name TEXT NOT NULL,
                name_lc TEXT NOT NULL,
                scopes TEXT NOT NULL,
                expiry TEXT NOT NULL,
                sliding INTEGER NOT NULL,
                expires_at INTEGER,
                active INTEGER NOT NULL,
                created INTEGER NOT NULL,
                modified INTEGER NOT NULL,
                last_used INTEGER,
                secret_hash TEXT NOT NULL,
                previous_hash TEXT,
                previous_valid_until INTEGER
            )",
            "CREATE INDEX IF NOT EXISTS pat_tokens_owner ON pat_tokens (owner, created, id)",
            "CREATE INDEX IF NOT EXISTS pat_tokens_created ON pat_tokens (created, id)",
            "CREATE INDEX IF NOT EXISTS pat_tokens_last_used ON pat_tokens (coalesce(last_used, 9223372036854775807), id)",
            "CREATE INDEX IF NOT EXISTS pat_tokens_expires ON pat_tokens (coalesce(expires_at, 9223372036854775807), id)",
            "CREATE INDEX IF NOT EXISTS pat_tokens_name ON pat_tokens (name, id)",
            "CREATE TABLE IF NOT EXISTS pat_changes (
                rev INTEGER PRIMARY KEY AUTOINCREMENT,
                token_id TEXT NOT NULL,
                instance TEXT NOT NULL,
                at INTEGER NOT NULL
            )",
        ], &[
            // The record's version, for compare-and-swap updates.
            "ALTER TABLE pat_tokens ADD COLUMN version INTEGER NOT NULL DEFAULT 1",
        ]],
        Dialect::Postgres => &[&[
            r#"CREATE TABLE IF NOT EXISTS pat_tokens (
                id TEXT COLLATE "C" PRIMARY KEY,
                owner TEXT COLLATE "C" NOT NULL,
                owner_lc TEXT COLLATE "C" NOT NULL,
                name TEXT COLLATE "C" NOT NULL,
                name_lc TEXT COLLATE "C" NOT NULL,
                scopes TEXT COLLATE "C" NOT NULL,
                expiry TEXT NOT NULL,
                sliding BOOLEAN NOT NULL,
                expires_at BIGINT,
                active BOOLEAN NOT NULL,
                created BIGINT NOT NULL,
                modified BIGINT NOT NULL,
                last_used BIGINT,
                secret_hash TEXT NOT NULL,
                previous_hash TEXT,
                previous_valid_until BIGINT
            )"#,
            "CREATE INDEX IF NOT EXISTS pat_tokens_owner ON pat_tokens (owner, created, id)",
            "CREATE INDEX IF NOT EXISTS pat_tokens_created ON pat_tokens (created, id)",
            "CREATE INDEX IF NOT EXISTS pat_tokens_last_used ON pat_tokens ((coalesce(last_used, 9223372036854775807)), id)",
            "CREATE INDEX IF NOT EXISTS pat_tokens_expires ON pat_tokens ((coalesce(expires_at, 9223372036854775807)), id)",
            "CREATE INDEX IF NOT EXISTS pat_tokens_name ON pat_tokens (name, id)",
        ], &[
            "ALTER TABLE pat_tokens ADD COLUMN IF NOT EXISTS version BIGINT NOT NULL DEFAULT 1",
        ]],
    }
}

/// The `pat_schema` bookkeeping table.
pub(crate) const SCHEMA_TABLE: &str =
    "CREATE TABLE IF NOT EXISTS pat_schema (version BIGINT NOT NULL)";

fn ph(d: Dialect, n: usize) -> String {
    match d {
        Dialect::Sqlite => format!("?{n}"),
        Dialect::Postgres => format!("${n}"),
    }
}

fn contains(d: Dialect, col: &str, n: usize) -> String {
    match d {
        Dialect::Sqlite => format!("instr({col}, ?{n}) > 0"),
        Dialect::Postgres => format!("strpos({col}, ${n}) > 0"),
    }
}

/// The columns a record is read from, in [`flat_from_row!`] order.
pub(crate) const COLUMNS: &str = "id, owner, name, scopes, expiry, expires_at, active, created, \
     modified, last_used, secret_hash, previous_hash, previous_valid_until, version";

/// A [`Flat`](crate::store::codec::Flat) from a row of [`COLUMNS`], read by index with
/// `$row.$get(i)?` (sqlx's `try_get`, rusqlite's `get`): one column order for every driver.
macro_rules! flat_from_row {
    ($row:expr, $get:ident) => {
        $crate::store::codec::Flat {
            id: $row.$get(0)?,
            owner: $row.$get(1)?,
            name: $row.$get(2)?,
            scopes: $row.$get(3)?,
            expiry: $row.$get(4)?,
            expires_at: $row.$get(5)?,
            active: $row.$get(6)?,
            created: $row.$get(7)?,
            modified: $row.$get(8)?,
            last_used: $row.$get(9)?,
            secret_hash: $row.$get(10)?,
            previous_hash: $row.$get(11)?,
            previous_valid_until: $row.$get(12)?,
            version: $row.$get(13)?,
        }
    };
}
pub(crate) use flat_from_row;

/// Reads a [`Flat`](crate::store::codec::Flat) from a sqlx row of either engine.
macro_rules! decode_row {
    ($row:expr) => {{
        use sqlx::Row as _;
        let row = $row;
        (|| -> Result<$crate::store::codec::Flat, sqlx::Error> {
            Ok($crate::store::sql::flat_from_row!(row, try_get))
        })()
        .map_err(|e| $crate::store::StoreError::Invalid(format!("cannot read a token row: {e}")))
    }};
}
pub(crate) use decode_row;

/// Binds [`Arg`]s to a `sqlx::query`, in order.
macro_rules! bind_args {
    ($query:expr, $args:expr) => {{
        let mut q = $query;
        for a in $args {
            q = match a {
                $crate::store::sql::Arg::Text(v) => q.bind(v),
                $crate::store::sql::Arg::OptText(v) => q.bind(v),
                $crate::store::sql::Arg::Int(v) => q.bind(v),
                $crate::store::sql::Arg::OptInt(v) => q.bind(v),
                $crate::store::sql::Arg::Bool(v) => q.bind(v),
            };
        }
        q
    }};
}
pub(crate) use bind_args;

/// The [`TokenStore`](crate::store::TokenStore) methods that are the same SQL over
/// either sqlx pool, as inherent `pool_*` methods of the store they are expanded in
/// (`$db` its sqlx database, `self.pool` its pool, `D` its dialect, `query_failed` its
/// error mapping); the
/// stores' trait impls call them. One copy for PostgreSQL and SQLite.
macro_rules! pool_methods {
    ($db:ty) => {
        async fn pool_get(&self, id: &TokenId) -> Result<Option<TokenRecord>, StoreError> {
            let row = sqlx::query(&sql::statements(D).get)
                .bind(id.as_str())
                .fetch_optional(&self.pool)
                .await
                .map_err(query_failed)?;
            row.map(|r| decode_row!(&r)?.into_record()).transpose()
        }

        async fn pool_insert(&self, record: &TokenRecord) -> Result<(), StoreError> {
            let args = sql::write_args(Flat::from_record(record)?, Flat::derived(record));
            let done = bind_args!(sqlx::query(&sql::statements(D).insert), args)
                .execute(&self.pool)
                .await
                .map_err(query_failed)?;
            if done.rows_affected() == 0 {
                return Err(StoreError::Conflict(record.id));
            }
            Ok(())
        }

        async fn pool_update(&self, record: &TokenRecord) -> Result<Update, StoreError> {
            let args = sql::write_args(Flat::from_record(record)?, Flat::derived(record));
            let done = bind_args!(sqlx::query(&sql::statements(D).update), args)
                .execute(&self.pool)
                .await
                .map_err(query_failed)?;
            if done.rows_affected() > 0 {
                return Ok(Update::Written);
            }
            self.pool_missed(&self.pool, &record.id).await
        }

        /// Why a versioned write touched no row: no such id, or another version.
        async fn pool_missed<'e, E>(&self, on: E, id: &TokenId) -> Result<Update, StoreError>
        where
            E: sqlx::Executor<'e, Database = $db>,
        {
            let found: Option<i64> = sqlx::query_scalar(&sql::statements(D).version)
                .bind(id.as_str())
                .fetch_optional(on)
                .await
                .map_err(query_failed)?;
            Ok(if found.is_some() {
                Update::Stale
            } else {
                Update::NotFound
            })
        }

        async fn pool_replace(
            &self,
            old: &TokenRecord,
            delete_old: bool,
            new: &TokenRecord,
        ) -> Result<Update, StoreError> {
            let st = sql::statements(D);
            let mut tx = self.pool.begin().await.map_err(query_failed)?;
            let retired = if delete_old {
                sqlx::query(&st.delete_versioned)
                    .bind(old.id.as_str())
                    .bind(i64::try_from(old.version).unwrap_or(i64::MAX))
                    .execute(&mut *tx)
                    .await
            } else {
                let args = sql::write_args(Flat::from_record(old)?, Flat::derived(old));
                bind_args!(sqlx::query(&st.update), args)
                    .execute(&mut *tx)
                    .await
            }
            .map_err(query_failed)?;
            if retired.rows_affected() == 0 {
                let why = self.pool_missed(&mut *tx, &old.id).await?;
                tx.rollback().await.map_err(query_failed)?;
                return Ok(why);
            }
            let args = sql::write_args(Flat::from_record(new)?, Flat::derived(new));
            let inserted = bind_args!(sqlx::query(&st.insert), args)
                .execute(&mut *tx)
                .await
                .map_err(query_failed)?;
            if inserted.rows_affected() == 0 {
                tx.rollback().await.map_err(query_failed)?;
                return Err(StoreError::Conflict(new.id));
            }
            tx.commit().await.map_err(query_failed)?;
            Ok(Update::Written)
        }

        async fn pool_delete(&self, id: &TokenId) -> Result<bool, StoreError> {
            let done = sqlx::query(&sql::statements(D).delete)
                .bind(id.as_str())
                .execute(&self.pool)
                .await
                .map_err(query_failed)?;
            Ok(done.rows_affected() > 0)
        }

        async fn pool_list(&self, query: &ListQuery) -> Result<Page<TokenRecord>, StoreError> {
            let l = sql::list(D, query);
            let total: i64 = bind_args!(sqlx::query_scalar(&l.count), l.args.clone())
                .fetch_one(&self.pool)
                .await
                .map_err(query_failed)?;
            let rows = bind_args!(sqlx::query(&l.page), l.args)
                .fetch_all(&self.pool)
                .await
                .map_err(query_failed)?;
            let items = rows
                .iter()
                .map(|r| decode_row!(r)?.into_record())
                .collect::<Result<_, _>>()?;
            Ok(Page {
                total: u64::try_from(total).unwrap_or(0),
                items,
            })
        }

        async fn pool_touch(&self, id: &TokenId, touch: &Touch) -> Result<(), StoreError> {
            bind_args!(
                sqlx::query(&sql::statements(D).touch),
                sql::touch_args(id, touch)
            )
            .execute(&self.pool)
            .await
            .map_err(query_failed)?;
            Ok(())
        }
    };
}
pub(crate) use pool_methods;

const WRITE_COLUMNS: [&str; 17] = [
    "id",
    "owner",
    "owner_lc",
    "name",
    "name_lc",
    "scopes",
    "expiry",
    "sliding",
    "expires_at",
    "active",
    "created",
    "modified",
    "last_used",
    "secret_hash",
    "previous_hash",
    "previous_valid_until",
    "version",
];

/// The fixed statements of one dialect, built once.
#[derive(Debug)]
pub(crate) struct Statements {
    pub(crate) get: String,
    pub(crate) insert: String,
    pub(crate) update: String,
    pub(crate) delete: String,
    pub(crate) delete_versioned: String,
    pub(crate) version: String,
    pub(crate) touch: String,
}

/// The statements for `d`.
pub(crate) fn statements(d: Dialect) -> &'static Statements {
    use std::sync::LazyLock;
    fn build(d: Dialect) -> Statements {
        Statements {
            get: get(d),
            insert: insert(d),
            update: update(d),
            delete: delete(d),
            delete_versioned: format!("{} AND version = {}", delete(d), ph(d, 2)),
            version: format!("SELECT version FROM pat_tokens WHERE id = {}", ph(d, 1)),
            touch: touch(d),
        }
    }
    static SQLITE: LazyLock<Statements> = LazyLock::new(|| build(Dialect::Sqlite));
    static POSTGRES: LazyLock<Statements> = LazyLock::new(|| build(Dialect::Postgres));
    match d {
        Dialect::Sqlite => &SQLITE,
        Dialect::Postgres => &POSTGRES,
    }
}

/// The bind values of [`insert`] and [`update`], in [`WRITE_COLUMNS`] order.
pub(crate) fn write_args(f: Flat, d: Derived) -> Vec<Arg> {
    vec![
        Arg::Text(f.id),
        Arg::Text(f.owner),
        Arg::Text(d.owner_lc),
        Arg::Text(f.name),
        Arg::Text(d.name_lc),
        Arg::Text(f.scopes),
        Arg::Text(f.expiry),
        Arg::Bool(d.sliding),
        Arg::OptInt(f.expires_at),
        Arg::Bool(f.active),
        Arg::Int(f.created),
        Arg::Int(f.modified),
        Arg::OptInt(f.last_used),
        Arg::Text(f.secret_hash),
        Arg::OptText(f.previous_hash),
        Arg::OptInt(f.previous_valid_until),
        Arg::Int(f.version),
    ]
}

/// `INSERT … ON CONFLICT DO NOTHING`: no row affected means the id is taken.
fn insert(d: Dialect) -> String {
    let values: Vec<String> = (1..=WRITE_COLUMNS.len()).map(|n| ph(d, n)).collect();
    format!(
        "INSERT INTO pat_tokens ({}) VALUES ({}) ON CONFLICT (id) DO NOTHING",
        WRITE_COLUMNS.join(", "),
        values.join(", ")
    )
}

/// The compare-and-swap of [`TokenStore::update`](crate::store::TokenStore::update):
/// replaces every column of the row whose id is argument 1 and whose version is the last
/// argument, and counts the version up. `last_used`, and a sliding `expires_at` under an
/// unchanged expiry model, keep the later of the stored and the given values.
fn update(d: Dialect) -> String {
    let n = |c: &str| {
        let i = WRITE_COLUMNS.iter().position(|w| *w == c).unwrap_or(0);
        ph(d, i + 1)
    };
    let sets: Vec<String> = WRITE_COLUMNS
        .iter()
        .filter(|c| !matches!(**c, "id" | "version" | "last_used" | "expires_at"))
        .map(|c| format!("{c} = {}", n(c)))
        .collect();
    let (used, exp) = (n("last_used"), n("expires_at"));
    format!(
        "UPDATE pat_tokens SET {}, \
         last_used = CASE WHEN last_used IS NOT NULL AND ({used} IS NULL OR last_used > {used}) \
         THEN last_used ELSE {used} END, \
         expires_at = CASE WHEN sliding AND {} AND expiry = {} AND expires_at IS NOT NULL \
         AND ({exp} IS NULL OR expires_at > {exp}) THEN expires_at ELSE {exp} END, \
         version = version + 1 \
         WHERE id = {} AND version = {}",
        sets.join(", "),
        n("sliding"),
        n("expiry"),
        n("id"),
        n("version"),
    )
}

/// One row by id (argument 1).
fn get(d: Dialect) -> String {
    format!("SELECT {COLUMNS} FROM pat_tokens WHERE id = {}", ph(d, 1))
}

/// Deletes by id (argument 1).
fn delete(d: Dialect) -> String {
    format!("DELETE FROM pat_tokens WHERE id = {}", ph(d, 1))
}

/// Moves `last_used` and, for sliding tokens, `expires_at` forward only, in one atomic
/// statement (so concurrent touches from many replicas keep the latest values).
fn touch(d: Dialect) -> String {
    let (id, used, exp) = (ph(d, 1), ph(d, 2), ph(d, 3));
    format!(
        "UPDATE pat_tokens SET \
         last_used = CASE WHEN last_used IS NULL OR last_used < {used} THEN {used} ELSE last_used END, \
         expires_at = CASE WHEN sliding AND {exp} IS NOT NULL AND (expires_at IS NULL OR expires_at < {exp}) \
         THEN {exp} ELSE expires_at END \
         WHERE id = {id}"
    )
}

/// The bind values of [`touch`].
pub(crate) fn touch_args(id: &crate::token::TokenId, t: &Touch) -> Vec<Arg> {
    vec![
        Arg::Text(id.to_string()),
        Arg::Int(t.last_used.unix_timestamp()),
        Arg::OptInt(t.expires_at.map(|e| e.unix_timestamp())),
    ]
}

/// A listing: the `COUNT(*)` statement, the page statement, and their shared arguments.
#[derive(Debug)]
pub(crate) struct ListSql {
    pub(crate) count: String,
    pub(crate) page: String,
    pub(crate) args: Vec<Arg>,
}

/// Builds the listing for `q`: every filter of [`ListQuery::matches`] as a `WHERE`
/// clause, the order of [`ListQuery::compare`] as an index-backed `ORDER BY`, and the
/// page as `LIMIT`/`OFFSET`.
pub(crate) fn list(d: Dialect, q: &ListQuery) -> ListSql {
    let mut conds: Vec<String> = Vec::new();
    let mut args: Vec<Arg> = Vec::new();
    let next = |args: &mut Vec<Arg>, a: Arg| {
        args.push(a);
        args.len()
    };
    if let Some(o) = &q.owner {
        let n = next(&mut args, Arg::Text(o.clone()));
        conds.push(format!("owner = {}", ph(d, n)));
    }
    if let Some(s) = &q.name_contains {
        let n = next(&mut args, Arg::Text(s.to_lowercase()));
        conds.push(contains(d, "name_lc", n));
    }
    if let Some(s) = &q.has_scope {
        let n = next(&mut args, Arg::Text(format!(" {s} ")));
        conds.push(contains(d, "(' ' || scopes || ' ')", n));
    }
    if let Some(t) = q.expires_before {
        let n = next(&mut args, Arg::Int(t.unix_timestamp()));
        conds.push(format!(
            "expires_at IS NOT NULL AND expires_at < {}",
            ph(d, n)
        ));
    }
    if let Some(t) = q.expires_after {
        let n = next(&mut args, Arg::Int(t.unix_timestamp()));
        conds.push(format!("(expires_at IS NULL OR expires_at > {})", ph(d, n)));
    }
    if let Some(t) = q.last_used_before {
        let n = next(&mut args, Arg::Int(t.unix_timestamp()));
        conds.push(format!(
            "last_used IS NOT NULL AND last_used < {}",
            ph(d, n)
        ));
    }
    match q.never_used {
        Some(true) => conds.push("last_used IS NULL".into()),
        Some(false) => conds.push("last_used IS NOT NULL".into()),
        None => {}
    }
    if let Some(a) = q.active {
        let n = next(&mut args, Arg::Bool(a));
        conds.push(format!("active = {}", ph(d, n)));
    }
    if let Some(s) = &q.search {
        let n = next(&mut args, Arg::Text(s.to_lowercase()));
        conds.push(format!(
            "({} OR {})",
            contains(d, "name_lc", n),
            contains(d, "owner_lc", n)
        ));
    }
    let where_sql = if conds.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conds.join(" AND "))
    };
    let key = match q.order.field {
        SortField::LastUsed => format!("coalesce(last_used, {NULL_LAST})"),
        SortField::Expires => format!("coalesce(expires_at, {NULL_LAST})"),
        SortField::Name => "name".to_owned(),
        // `SortField` is non-exhaustive; `Created` is the default order.
        _ => "created".to_owned(),
    };
    let dir = if q.order.descending { "DESC" } else { "ASC" };
    ListSql {
        count: format!("SELECT COUNT(*) FROM pat_tokens{where_sql}"),
        page: format!(
            "SELECT {COLUMNS} FROM pat_tokens{where_sql} ORDER BY {key} {dir}, id {dir} LIMIT {} OFFSET {}",
            q.limit(),
            q.offset()
        ),
        args,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_per_dialect() {
        let q = ListQuery::new().owner("alice");
        let s = list(Dialect::Sqlite, &q);
        assert!(s.page.contains("owner = ?1"), "{}", s.page);
        let p = list(Dialect::Postgres, &q);
        assert!(p.page.contains("owner = $1"), "{}", p.page);
        assert!(update(Dialect::Postgres).ends_with("WHERE id = $1 AND version = $17"));
        assert!(insert(Dialect::Sqlite).contains("?17"));
    }
}
