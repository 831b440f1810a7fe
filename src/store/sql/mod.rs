//! The SQL shared by the SQLite and PostgreSQL stores: statements and the listing query,
//! written once for both dialects; the schema migrations are in [`migrate`].
//!
//! Ordering agrees with [`ListQuery::compare`]: `id`, `owner` and `name` compare
//! byte-wise (SQLite's `BINARY`, PostgreSQL's `COLLATE "C"`), and the nullable sort keys
//! are indexed and ordered as `coalesce(col, i64::MAX)`, which puts `NULL` last ascending
//! and first descending, on both engines, with an index that serves the order.

pub(crate) mod migrate;

use sqlx::QueryBuilder;

use crate::record::TokenRecord;
use crate::store::codec::Flat;
use crate::store::StoreError;
use crate::store::{ListQuery, SortField, Touch};
use crate::token::TokenId;

/// Which SQL engine a statement is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    #[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
    Sqlite,
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    Postgres,
}

/// Sort key of a nullable column: `NULL` becomes the largest value.
const NULL_LAST: &str = "9223372036854775807";

/// `col` contains the next bound value, as `(before, after)` around the bind.
fn contains(d: Dialect, col: &str) -> (String, &'static str) {
    match d {
        Dialect::Sqlite => (format!("instr({col}, "), ") > 0"),
        Dialect::Postgres => (format!("strpos({col}, "), ") > 0"),
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
            let done = sql::insert::<$db>(record)?
                .build()
                .execute(&self.pool)
                .await
                .map_err(query_failed)?;
            if done.rows_affected() == 0 {
                return Err(StoreError::Conflict(record.id));
            }
            Ok(())
        }

        async fn pool_update(&self, record: &TokenRecord) -> Result<Update, StoreError> {
            let done = sql::update::<$db>(record)?
                .build()
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
                sql::update::<$db>(old)?.build().execute(&mut *tx).await
            }
            .map_err(query_failed)?;
            if retired.rows_affected() == 0 {
                let why = self.pool_missed(&mut *tx, &old.id).await?;
                tx.rollback().await.map_err(query_failed)?;
                return Ok(why);
            }
            let inserted = sql::insert::<$db>(new)?
                .build()
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
            let mut count = sqlx::QueryBuilder::<$db>::new("SELECT COUNT(*) FROM pat_tokens");
            sql::push_filters(&mut count, D, query);
            let total: i64 = count
                .build_query_scalar()
                .fetch_one(&self.pool)
                .await
                .map_err(query_failed)?;
            let mut page =
                sqlx::QueryBuilder::<$db>::new(format!("SELECT {} FROM pat_tokens", sql::COLUMNS));
            sql::push_filters(&mut page, D, query);
            page.push(sql::order_and_page(query));
            let rows = page
                .build()
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
            sql::touch::<$db>(id, touch)
                .build()
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

/// The fixed statements of one dialect, built once: the point reads and deletes (the
/// statements that write a whole record, touch and list are built with sqlx's
/// `QueryBuilder`, which numbers the binds for the dialect).
#[derive(Debug)]
pub(crate) struct Statements {
    pub(crate) get: String,
    pub(crate) delete: String,
    pub(crate) delete_versioned: String,
    pub(crate) version: String,
}

/// The statements for `d`.
pub(crate) fn statements(d: Dialect) -> &'static Statements {
    use std::sync::LazyLock;
    fn build(d: Dialect) -> Statements {
        let ph = |n: usize| match d {
            Dialect::Sqlite => format!("?{n}"),
            Dialect::Postgres => format!("${n}"),
        };
        Statements {
            get: format!("SELECT {COLUMNS} FROM pat_tokens WHERE id = {}", ph(1)),
            delete: format!("DELETE FROM pat_tokens WHERE id = {}", ph(1)),
            delete_versioned: format!(
                "DELETE FROM pat_tokens WHERE id = {} AND version = {}",
                ph(1),
                ph(2)
            ),
            version: format!("SELECT version FROM pat_tokens WHERE id = {}", ph(1)),
        }
    }
    static SQLITE: LazyLock<Statements> = LazyLock::new(|| build(Dialect::Sqlite));
    static POSTGRES: LazyLock<Statements> = LazyLock::new(|| build(Dialect::Postgres));
    match d {
        Dialect::Sqlite => &SQLITE,
        Dialect::Postgres => &POSTGRES,
    }
}

/// `INSERT … ON CONFLICT DO NOTHING`: no row affected means the id is taken.
pub(crate) fn insert<'a, DB>(r: &TokenRecord) -> Result<QueryBuilder<'a, DB>, StoreError>
where
    DB: sqlx::Database,
    DB::Arguments<'a>: Default,
    String: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    Option<String>: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    i64: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    Option<i64>: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    bool: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    let (f, d) = (Flat::from_record(r)?, Flat::derived(r));
    let mut qb = QueryBuilder::new(format!(
        "INSERT INTO pat_tokens ({}) VALUES (",
        WRITE_COLUMNS.join(", ")
    ));
    let mut v = qb.separated(", ");
    v.push_bind(f.id)
        .push_bind(f.owner)
        .push_bind(d.owner_lc)
        .push_bind(f.name)
        .push_bind(d.name_lc)
        .push_bind(f.scopes)
        .push_bind(f.expiry)
        .push_bind(d.sliding)
        .push_bind(f.expires_at)
        .push_bind(f.active)
        .push_bind(f.created)
        .push_bind(f.modified)
        .push_bind(f.last_used)
        .push_bind(f.secret_hash)
        .push_bind(f.previous_hash)
        .push_bind(f.previous_valid_until)
        .push_bind(f.version);
    qb.push(") ON CONFLICT (id) DO NOTHING");
    Ok(qb)
}

/// The compare-and-swap of [`TokenStore::update`](crate::store::TokenStore::update):
/// replaces every column of the row with this id and the record's version, and counts
/// the version up. `last_used`, and a sliding `expires_at` under an unchanged expiry
/// model, keep the later of the stored and the given values.
pub(crate) fn update<'a, DB>(r: &TokenRecord) -> Result<QueryBuilder<'a, DB>, StoreError>
where
    DB: sqlx::Database,
    DB::Arguments<'a>: Default,
    String: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    Option<String>: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    i64: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    Option<i64>: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    bool: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    let (f, d) = (Flat::from_record(r)?, Flat::derived(r));
    let mut qb = QueryBuilder::new("UPDATE pat_tokens SET owner = ");
    qb.push_bind(f.owner)
        .push(", owner_lc = ")
        .push_bind(d.owner_lc)
        .push(", name = ")
        .push_bind(f.name)
        .push(", name_lc = ")
        .push_bind(d.name_lc)
        .push(", scopes = ")
        .push_bind(f.scopes)
        .push(", expiry = ")
        .push_bind(f.expiry.clone())
        .push(", sliding = ")
        .push_bind(d.sliding)
        .push(", active = ")
        .push_bind(f.active)
        .push(", created = ")
        .push_bind(f.created)
        .push(", modified = ")
        .push_bind(f.modified)
        .push(", secret_hash = ")
        .push_bind(f.secret_hash)
        .push(", previous_hash = ")
        .push_bind(f.previous_hash)
        .push(", previous_valid_until = ")
        .push_bind(f.previous_valid_until)
        .push(", last_used = CASE WHEN last_used IS NOT NULL AND (")
        .push_bind(f.last_used)
        .push(" IS NULL OR last_used > ")
        .push_bind(f.last_used)
        .push(") THEN last_used ELSE ")
        .push_bind(f.last_used)
        .push(" END, expires_at = CASE WHEN sliding AND ")
        .push_bind(d.sliding)
        .push(" AND expiry = ")
        .push_bind(f.expiry)
        .push(" AND expires_at IS NOT NULL AND (")
        .push_bind(f.expires_at)
        .push(" IS NULL OR expires_at > ")
        .push_bind(f.expires_at)
        .push(") THEN expires_at ELSE ")
        .push_bind(f.expires_at)
        .push(" END, version = version + 1 WHERE id = ")
        .push_bind(f.id)
        .push(" AND version = ")
        .push_bind(f.version);
    Ok(qb)
}

/// Moves `last_used` and, for sliding tokens, `expires_at` forward only, in one atomic
/// statement (so concurrent touches from many replicas keep the latest values).
pub(crate) fn touch<'a, DB>(id: &TokenId, t: &Touch) -> QueryBuilder<'a, DB>
where
    DB: sqlx::Database,
    DB::Arguments<'a>: Default,
    String: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    i64: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    Option<i64>: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    let used = t.last_used.unix_timestamp();
    let exp = t.expires_at.map(|e| e.unix_timestamp());
    let mut qb = QueryBuilder::new(
        "UPDATE pat_tokens SET last_used = CASE WHEN last_used IS NULL OR last_used < ",
    );
    qb.push_bind(used)
        .push(" THEN ")
        .push_bind(used)
        .push(" ELSE last_used END, expires_at = CASE WHEN sliding AND ")
        .push_bind(exp)
        .push(" IS NOT NULL AND (expires_at IS NULL OR expires_at < ")
        .push_bind(exp)
        .push(") THEN ")
        .push_bind(exp)
        .push(" ELSE expires_at END WHERE id = ")
        .push_bind(id.to_string());
    qb
}

/// Pushes the `WHERE` clause of every filter of [`ListQuery::matches`], binding each
/// value (nothing when there is no filter).
pub(crate) fn push_filters<'a, DB>(qb: &mut QueryBuilder<'a, DB>, d: Dialect, q: &ListQuery)
where
    DB: sqlx::Database,
    DB::Arguments<'a>: Default,
    String: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    i64: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    bool: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    let mut first = true;
    let mut and = |qb: &mut QueryBuilder<'a, DB>, sql: &str| {
        qb.push(if first { " WHERE " } else { " AND " });
        first = false;
        qb.push(sql);
    };
    let contains_in = |qb: &mut QueryBuilder<'a, DB>, col: &str, v: String| {
        let (before, after) = contains(d, col);
        qb.push(before).push_bind(v).push(after);
    };
    if let Some(o) = &q.owner {
        and(qb, "owner = ");
        qb.push_bind(o.clone());
    }
    if let Some(s) = &q.name_contains {
        and(qb, "");
        contains_in(qb, "name_lc", s.to_lowercase());
    }
    if let Some(s) = &q.has_scope {
        and(qb, "");
        contains_in(qb, "(' ' || scopes || ' ')", format!(" {s} "));
    }
    if let Some(t) = q.expires_before {
        and(qb, "expires_at IS NOT NULL AND expires_at < ");
        qb.push_bind(t.unix_timestamp());
    }
    if let Some(t) = q.expires_after {
        and(qb, "(expires_at IS NULL OR expires_at > ");
        qb.push_bind(t.unix_timestamp()).push(")");
    }
    if let Some(t) = q.last_used_before {
        and(qb, "last_used IS NOT NULL AND last_used < ");
        qb.push_bind(t.unix_timestamp());
    }
    match q.never_used {
        Some(true) => and(qb, "last_used IS NULL"),
        Some(false) => and(qb, "last_used IS NOT NULL"),
        None => {}
    }
    if let Some(a) = q.active {
        and(qb, "active = ");
        qb.push_bind(a);
    }
    if let Some(s) = &q.search {
        let s = s.to_lowercase();
        and(qb, "(");
        contains_in(qb, "name_lc", s.clone());
        qb.push(" OR ");
        contains_in(qb, "owner_lc", s);
        qb.push(")");
    }
}

/// The order of [`ListQuery::compare`] as an index-backed `ORDER BY`, and the page as
/// `LIMIT`/`OFFSET`.
pub(crate) fn order_and_page(q: &ListQuery) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_statements_per_dialect() {
        assert!(statements(Dialect::Sqlite).get.ends_with("WHERE id = ?1"));
        assert!(statements(Dialect::Postgres)
            .delete_versioned
            .ends_with("WHERE id = $1 AND version = $2"));
    }
}
