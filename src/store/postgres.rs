use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions};

use crate::record::TokenRecord;
use crate::store::codec;
use crate::store::sql::{self, decode_row, Dialect};
use crate::store::{mask_url, ChangeFeed, ListQuery, Page, StoreError, TokenStore, Touch, Update};
use crate::token::TokenId;

const D: Dialect = Dialect::Postgres;

/// Tokens in PostgreSQL, shared by many replicas.
///
/// - Tables live in one schema (default `public`; choose another with
///   [`connect_with_schema`](Self::connect_with_schema)), created and migrated on connect
///   under an advisory lock, so replicas starting together do not race
///   ([`migrate`](Self::migrate) runs it again, idempotently).
/// - Listings run in SQL with an index per sort field and one on `(owner, created)`;
///   text columns use `COLLATE "C"` so the order is byte-wise, as everywhere in tower-pat.
///
/// # Revocations across replicas
///
/// [`publish_change`](TokenStore::publish_change) sends `pg_notify` on the channel
/// `pat_changes_<schema>` with `<instance id>:<token id>`.
/// [`follow_changes`](TokenStore::follow_changes) (run by the authenticator's background
/// task) holds a [`PgListener`] on that channel and forwards other instances' token ids
/// (its own are ignored), typically within milliseconds. When the connection drops, it
/// reconnects (retrying every second) and reports the gap as lost, so the authenticator
/// drops its whole cache rather than miss a revocation sent meanwhile.
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
#[derive(Debug)]
pub struct PostgresStore {
    pool: PgPool,
    schema: String,
    channel: String,
    instance: String,
}

fn query_failed(e: sqlx::Error) -> StoreError {
    StoreError::unavailable("postgresql query failed", e)
}

/// Schema names are used as SQL identifiers and in a channel name: keep them plain.
fn valid_schema(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 48
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !s.as_bytes()[0].is_ascii_digit()
}

impl PostgresStore {
    /// Connects to `url` (`postgres://user:pass@host:5432/db`), using schema `public`,
    /// and migrates it.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with_schema(url, "public").await
    }

    /// Connects to `url` and keeps the tables in `schema` (created if missing): several
    /// independent token sets, or test runs, can share one database. `schema` is lower-case
    /// ASCII letters, digits and `_`, at most 48 characters.
    pub async fn connect_with_schema(url: &str, schema: &str) -> Result<Self, StoreError> {
        if !valid_schema(schema) {
            return Err(StoreError::Invalid(format!(
                "bad PostgreSQL schema name {schema:?}: use lower-case letters, digits and '_'"
            )));
        }
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::Invalid(format!("bad PostgreSQL URL {}: {e}", mask_url(url))))?
            .options([("search_path", schema)]);
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await
            .map_err(|e| {
                StoreError::unavailable(format!("cannot connect to {}", mask_url(url)), e)
            })?;
        let store = Self {
            pool,
            schema: schema.to_owned(),
            channel: format!("pat_changes_{schema}"),
            instance: codec::instance_id(),
        };
        store.migrate().await?;
        Ok(store)
    }

    /// Creates the schema if missing and brings it to the current version with sqlx's
    /// migrator (the migrations are embedded; its `_sqlx_migrations` table is kept in the
    /// store's schema, so schemas in one database migrate independently; a schema made by
    /// tower-pat's earlier migrations is taken over as it is). Runs on connect; safe to
    /// run again: everything happens in one transaction holding an advisory lock on the
    /// schema, so replicas starting together wait for each other.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let failed = |e| StoreError::unavailable("postgresql migration failed", e);
        let migrator = sql::migrate::migrator(D)
            .await
            .map_err(|e| StoreError::unavailable("postgresql migration failed", e))?;
        let mut tx = self.pool.begin().await.map_err(query_failed)?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
            .bind(format!("tower-pat migrate {}", self.schema))
            .execute(&mut *tx)
            .await
            .map_err(failed)?;
        // The name was checked by `valid_schema`, so quoting it is enough.
        sqlx::query(&format!(r#"CREATE SCHEMA IF NOT EXISTS "{}""#, self.schema))
            .execute(&mut *tx)
            .await
            .map_err(failed)?;
        let legacy: bool = sqlx::query_scalar("SELECT to_regclass('pat_schema') IS NOT NULL")
            .fetch_one(&mut *tx)
            .await
            .map_err(failed)?;
        let migrated = async {
            if legacy {
                let version: Option<i64> =
                    sqlx::query_scalar("SELECT MAX(version) FROM pat_schema")
                        .fetch_one(&mut *tx)
                        .await?;
                sql::migrate::baseline(&mut *tx, &migrator, version.unwrap_or(0)).await?;
            }
            migrator.run_direct(&mut *tx).await
        }
        .await;
        migrated.map_err(|e| StoreError::unavailable("postgresql migration failed", e))?;
        tx.commit().await.map_err(failed)
    }

    /// The schema holding the tables.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// The connection pool (its connections use this store's schema), for queries of
    /// your own such as `EXPLAIN`.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

/// Forwards other instances' notifications on `channel` to `feed`, reconnecting, until
/// the feed is closed.
async fn listen(pool: &PgPool, channel: &str, instance: &str, feed: &ChangeFeed) {
    const RETRY: Duration = Duration::from_secs(1);
    let mut reconnected = false;
    while !feed.is_closed() {
        let mut listener = match PgListener::connect_with(pool).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "cannot LISTEN for token changes; retrying");
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        if let Err(e) = listener.listen(channel).await {
            tracing::warn!(error = %e, "cannot LISTEN for token changes; retrying");
            tokio::time::sleep(RETRY).await;
            continue;
        }
        // What was sent while no one listened is lost: also what was cached meanwhile.
        if std::mem::replace(&mut reconnected, true) {
            feed.lost();
        }
        while !feed.is_closed() {
            match listener.try_recv().await {
                Ok(Some(n)) => {
                    if let Some(id) = codec::foreign_change(instance, n.payload()) {
                        feed.changed(id);
                    }
                }
                Ok(None) => {
                    // The next `try_recv` reconnects and re-subscribes; what was sent in
                    // between is lost.
                    tracing::warn!("lost the token change channel; reconnecting");
                    feed.lost();
                }
                Err(e) => {
                    tracing::warn!(error = %e, "token change channel failed; reconnecting");
                    tokio::time::sleep(RETRY).await;
                    break;
                }
            }
        }
    }
}

impl PostgresStore {
    sql::pool_methods!(sqlx::Postgres);
}

#[async_trait::async_trait]
impl TokenStore for PostgresStore {
    async fn get(&self, id: &TokenId) -> Result<Option<TokenRecord>, StoreError> {
        self.pool_get(id).await
    }

    async fn insert(&self, record: &TokenRecord) -> Result<(), StoreError> {
        self.pool_insert(record).await
    }

    async fn update(&self, record: &TokenRecord) -> Result<Update, StoreError> {
        self.pool_update(record).await
    }

    async fn replace(
        &self,
        old: &TokenRecord,
        delete_old: bool,
        new: &TokenRecord,
    ) -> Result<Update, StoreError> {
        self.pool_replace(old, delete_old, new).await
    }

    async fn delete(&self, id: &TokenId) -> Result<bool, StoreError> {
        self.pool_delete(id).await
    }

    async fn list(&self, query: &ListQuery) -> Result<Page<TokenRecord>, StoreError> {
        self.pool_list(query).await
    }

    async fn touch(&self, id: &TokenId, touch: &Touch) -> Result<(), StoreError> {
        self.pool_touch(id, touch).await
    }

    async fn publish_change(&self, id: &TokenId) -> Result<(), StoreError> {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(&self.channel)
            .bind(codec::change_payload(&self.instance, id))
            .execute(&self.pool)
            .await
            .map_err(query_failed)?;
        Ok(())
    }

    async fn follow_changes(&self, feed: ChangeFeed) {
        listen(&self.pool, &self.channel, &self.instance, &feed).await;
    }
}
