//! The SQLite and PostgreSQL stores: one implementation, [`SqlStore`], generic over the
//! engine ([`Dialect`]). What the engines share (every statement, the listing, the
//! compare-and-swap, the migrations' runner) is written once here; what differs
//! (connecting, the migration lock, the change feed, SQLite's point-read fast path) is
//! the engine's [`Engine`](engine::Engine) implementation, in `store/sqlite.rs` and
//! `store/postgres.rs`.

pub(crate) mod migrate;
pub(crate) mod query;

use std::fmt;
use std::future::Future;

use sqlx::{Encode, Executor, FromRow, IntoArguments, Pool, Type};

use crate::record::TokenRecord;
use time::OffsetDateTime;

use crate::events::Event;
use crate::store::codec;
use crate::store::{
    ChangeFeed, EventQuery, ListQuery, Page, StoreError, TokenStore, Touch, Update,
};
use crate::token::TokenId;
use query::{Columns, Sql};

/// A SQL engine a [`SqlStore`] runs on: [`sqlx::Sqlite`] (feature `sqlite`, as
/// [`SqliteStore`](crate::store::SqliteStore)) or [`sqlx::Postgres`] (feature
/// `postgres`, as [`PostgresStore`](crate::store::PostgresStore)). Sealed: tower-pat
/// implements it for these two only.
pub trait Dialect: sqlx::Database + engine::Engine {}

impl<D: sqlx::Database + engine::Engine> Dialect for D {}

pub(crate) mod engine {
    use super::*;

    /// What differs between the engines. Private (the sealed half of [`Dialect`]).
    pub trait Engine: sqlx::Database {
        /// What a store keeps besides its pool (change feed, schema, direct readers).
        type State: fmt::Debug + Send + Sync + 'static;

        /// `col` contains the next bound value, as `(before, after)` around the bind.
        fn contains(col: &str) -> (String, &'static str);

        /// Rows a statement changed (sqlx has no trait for it).
        fn rows_affected(done: &Self::QueryResult) -> u64;

        /// Runs the migrations under the engine's lock.
        fn migrate(store: &SqlStore<Self>) -> impl Future<Output = Result<(), StoreError>> + Send
        where
            Self: Dialect;

        /// A point read on the calling thread, when the engine has one: `None` to read
        /// through the pool instead.
        fn get_direct(
            store: &SqlStore<Self>,
            id: &TokenId,
        ) -> Option<Result<Option<TokenRecord>, StoreError>>
        where
            Self: Dialect,
        {
            let _ = (store, id);
            None
        }

        /// [`TokenStore::publish_change`].
        fn publish_change(
            store: &SqlStore<Self>,
            id: &TokenId,
        ) -> impl Future<Output = Result<(), StoreError>> + Send
        where
            Self: Dialect;

        /// [`TokenStore::follow_changes`].
        fn follow_changes(
            store: &SqlStore<Self>,
            feed: ChangeFeed,
        ) -> impl Future<Output = ()> + Send
        where
            Self: Dialect;
    }
}

/// Tokens in a SQL database, SQLite or PostgreSQL: use it as
/// [`SqliteStore`](crate::store::SqliteStore) or
/// [`PostgresStore`](crate::store::PostgresStore), whose pages say how each engine keeps
/// tokens, migrates and shares revocations.
///
/// Listings run in SQL with an index per sort field, in the order of
/// [`ListQuery::compare`] (text compares byte-wise on both engines), with the filters of
/// [`ListQuery::matches`]; writes are compare-and-swap statements on a version column.
pub struct SqlStore<D: Dialect> {
    pub(crate) pool: Pool<D>,
    pub(crate) state: D::State,
}

impl<D: Dialect> fmt::Debug for SqlStore<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlStore")
            .field("engine", &<D as sqlx::Database>::NAME)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl<D: Dialect> SqlStore<D> {
    /// Brings the schema to the current version with sqlx's migrator, from migrations
    /// embedded in tower-pat. Runs on connect; safe to run again, and from several
    /// processes at once: it runs in one transaction that first takes the engine's lock
    /// (SQLite's write lock, `BEGIN IMMEDIATE`; a PostgreSQL advisory lock on the
    /// schema), so the others wait and then find nothing left to do. A database made by
    /// the hand-run migrations of earlier tower-pat versions (a `pat_schema` table) is
    /// taken over as it is.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        D::migrate(self).await
    }

    /// The connection pool, for queries of your own (such as `EXPLAIN`); PostgreSQL's
    /// connections use the store's schema.
    pub fn pool(&self) -> &Pool<D> {
        &self.pool
    }

    fn failed(e: sqlx::Error) -> StoreError {
        StoreError::unavailable(format!("{} query failed", <D as sqlx::Database>::NAME), e)
    }

    /// Why a versioned write touched no row: no such id, or another version.
    fn missed(version: Option<i64>) -> Update {
        match version {
            Some(_) => Update::Stale,
            None => Update::NotFound,
        }
    }
}

/// The sqlx capabilities [`SqlStore`] needs of an engine, both of which have them; stated
/// here once (Rust does not carry such bounds from a trait to its users, so they cannot
/// live on [`Dialect`]).
#[async_trait::async_trait]
impl<D: Dialect> TokenStore for SqlStore<D>
where
    for<'q> D::Arguments<'q>: IntoArguments<'q, D>,
    for<'c> &'c mut D::Connection: Executor<'c, Database = D>,
    for<'q> String: Encode<'q, D> + Type<D>,
    for<'q> Option<String>: Encode<'q, D> + Type<D>,
    for<'q> i64: Encode<'q, D> + Type<D>,
    for<'q> Option<i64>: Encode<'q, D> + Type<D>,
    for<'q> bool: Encode<'q, D> + Type<D>,
    for<'r> Columns: FromRow<'r, D::Row>,
    for<'r> (i64,): FromRow<'r, D::Row>,
    for<'r> (String,): FromRow<'r, D::Row>,
{
    async fn get(&self, id: &TokenId) -> Result<Option<TokenRecord>, StoreError> {
        if let Some(read) = D::get_direct(self, id) {
            return read;
        }
        let (sql, args) = Sql::<D>::get(id).into_parts()?;
        let row: Option<Columns> = sqlx::query_as_with(&sql, args)
            .fetch_optional(&self.pool)
            .await
            .map_err(Self::failed)?;
        row.map(query::record).transpose()
    }

    async fn insert(&self, record: &TokenRecord) -> Result<(), StoreError> {
        let (sql, args) = Sql::<D>::insert(record)?.into_parts()?;
        let done = sqlx::query_with(&sql, args)
            .execute(&self.pool)
            .await
            .map_err(Self::failed)?;
        if D::rows_affected(&done) == 0 {
            return Err(StoreError::Conflict(record.id));
        }
        Ok(())
    }

    async fn update(&self, record: &TokenRecord) -> Result<Update, StoreError> {
        let (sql, args) = Sql::<D>::update(record)?.into_parts()?;
        let done = sqlx::query_with(&sql, args)
            .execute(&self.pool)
            .await
            .map_err(Self::failed)?;
        if D::rows_affected(&done) > 0 {
            return Ok(Update::Written);
        }
        let (sql, args) = Sql::<D>::version(&record.id).into_parts()?;
        let version: Option<i64> = sqlx::query_scalar_with(&sql, args)
            .fetch_optional(&self.pool)
            .await
            .map_err(Self::failed)?;
        Ok(Self::missed(version))
    }

    async fn replace(
        &self,
        old: &TokenRecord,
        delete_old: bool,
        new: &TokenRecord,
    ) -> Result<Update, StoreError> {
        let retire = if delete_old {
            Sql::<D>::delete(&old.id, Some(old.version))
        } else {
            Sql::<D>::update(old)?
        };
        let (retire, retire_args) = retire.into_parts()?;
        let (insert, insert_args) = Sql::<D>::insert(new)?.into_parts()?;
        let (version, version_args) = Sql::<D>::version(&old.id).into_parts()?;
        let mut tx = self.pool.begin().await.map_err(Self::failed)?;
        let retired = sqlx::query_with(&retire, retire_args)
            .execute(&mut *tx)
            .await
            .map_err(Self::failed)?;
        if D::rows_affected(&retired) == 0 {
            let found: Option<i64> = sqlx::query_scalar_with(&version, version_args)
                .fetch_optional(&mut *tx)
                .await
                .map_err(Self::failed)?;
            tx.rollback().await.map_err(Self::failed)?;
            return Ok(Self::missed(found));
        }
        let inserted = sqlx::query_with(&insert, insert_args)
            .execute(&mut *tx)
            .await
            .map_err(Self::failed)?;
        if D::rows_affected(&inserted) == 0 {
            tx.rollback().await.map_err(Self::failed)?;
            return Err(StoreError::Conflict(new.id));
        }
        tx.commit().await.map_err(Self::failed)?;
        Ok(Update::Written)
    }

    async fn delete(&self, id: &TokenId) -> Result<bool, StoreError> {
        let (sql, args) = Sql::<D>::delete(id, None).into_parts()?;
        let done = sqlx::query_with(&sql, args)
            .execute(&self.pool)
            .await
            .map_err(Self::failed)?;
        Ok(D::rows_affected(&done) > 0)
    }

    async fn list(&self, query: &ListQuery) -> Result<Page<TokenRecord>, StoreError> {
        let (count, count_args) = Sql::<D>::count(query).into_parts()?;
        let (page, page_args) = Sql::<D>::page(query).into_parts()?;
        let total: i64 = sqlx::query_scalar_with(&count, count_args)
            .fetch_one(&self.pool)
            .await
            .map_err(Self::failed)?;
        let rows: Vec<Columns> = sqlx::query_as_with(&page, page_args)
            .fetch_all(&self.pool)
            .await
            .map_err(Self::failed)?;
        Ok(Page {
            total: u64::try_from(total).unwrap_or(0),
            items: rows
                .into_iter()
                .map(query::record)
                .collect::<Result<_, _>>()?,
        })
    }

    async fn touch(&self, id: &TokenId, touch: &Touch) -> Result<(), StoreError> {
        let (sql, args) = Sql::<D>::touch(id, touch).into_parts()?;
        sqlx::query_with(&sql, args)
            .execute(&self.pool)
            .await
            .map_err(Self::failed)?;
        Ok(())
    }

    async fn publish_change(&self, id: &TokenId) -> Result<(), StoreError> {
        D::publish_change(self, id).await
    }

    async fn follow_changes(&self, feed: ChangeFeed) {
        D::follow_changes(self, feed).await;
    }

    async fn append_events(&self, events: &[Event]) -> Result<(), StoreError> {
        for event in events {
            let (sql, args) = Sql::<D>::append_event(event)?.into_parts()?;
            sqlx::query_with(&sql, args)
                .execute(&self.pool)
                .await
                .map_err(Self::failed)?;
        }
        Ok(())
    }

    async fn list_events(&self, query: &EventQuery) -> Result<Page<Event>, StoreError> {
        let (count, count_args) = Sql::<D>::count_events(query).into_parts()?;
        let (page, page_args) = Sql::<D>::page_events(query).into_parts()?;
        let total: i64 = sqlx::query_scalar_with(&count, count_args)
            .fetch_one(&self.pool)
            .await
            .map_err(Self::failed)?;
        let rows: Vec<String> = sqlx::query_scalar_with(&page, page_args)
            .fetch_all(&self.pool)
            .await
            .map_err(Self::failed)?;
        Ok(Page {
            total: u64::try_from(total).unwrap_or(0),
            items: rows
                .iter()
                .map(|json| codec::event(json))
                .collect::<Result<_, _>>()?,
        })
    }

    async fn prune_events(&self, before: OffsetDateTime) -> Result<u64, StoreError> {
        let cut = before.unix_timestamp();
        let (sql, args) = Sql::<D>::prune_reminders(cut).into_parts()?;
        sqlx::query_with(&sql, args)
            .execute(&self.pool)
            .await
            .map_err(Self::failed)?;
        let (sql, args) = Sql::<D>::prune_events(cut).into_parts()?;
        let done = sqlx::query_with(&sql, args)
            .execute(&self.pool)
            .await
            .map_err(Self::failed)?;
        Ok(D::rows_affected(&done))
    }

    async fn claim_reminder(
        &self,
        id: &TokenId,
        lead: u64,
        expires_at: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let (sql, args) =
            Sql::<D>::claim_reminder(id, lead, expires_at.unix_timestamp()).into_parts()?;
        let done = sqlx::query_with(&sql, args)
            .execute(&self.pool)
            .await
            .map_err(Self::failed)?;
        Ok(D::rows_affected(&done) == 1)
    }
}
