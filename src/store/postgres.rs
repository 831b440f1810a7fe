//! The PostgreSQL engine of [`SqlStore`]: connecting to a schema, the migration lock and
//! the change feed by `LISTEN`/`NOTIFY`.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions, PgQueryResult};
use sqlx::Postgres;

use crate::store::codec;
use crate::store::sql::engine::Engine;
use crate::store::sql::{migrate, SqlStore};
use crate::store::{mask_url, ChangeFeed, StoreError};
use crate::token::TokenId;

/// Tokens in PostgreSQL, shared by many replicas: a [`SqlStore`] on PostgreSQL
/// (everything but the engine is shared with [`SqliteStore`](crate::store::SqliteStore)).
///
/// - Tables live in one schema (default `public`; choose another with
///   [`connect_with_schema`](SqlStore::connect_with_schema)), created and migrated on
///   connect by sqlx's migrator under an advisory lock on the schema, so replicas
///   starting together do not race ([`migrate`](SqlStore::migrate) runs it again,
///   idempotently). The migrator's `_sqlx_migrations` table is in the same schema, so
///   schemas in one database are independent.
/// - Listings run in SQL with an index per sort field and one on `(owner, created)`;
///   text columns use `COLLATE "C"` so the order is byte-wise, as everywhere in tower-pat.
///
/// # Revocations across replicas
///
/// [`publish_change`](crate::store::TokenStore::publish_change) sends `pg_notify` on the channel
/// `pat_changes_<schema>` with `<instance id>:<token id>`.
/// [`follow_changes`](crate::store::TokenStore::follow_changes) (run by the authenticator's background
/// task) holds a [`PgListener`] on that channel and forwards other instances' token ids
/// (its own are ignored), typically within milliseconds. When the connection drops, it
/// reconnects (retrying every second) and reports the gap as lost, so the authenticator
/// drops its whole cache rather than miss a revocation sent meanwhile.
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub type PostgresStore = SqlStore<Postgres>;

/// What a [`PostgresStore`] keeps besides its pool.
#[derive(Debug)]
pub struct State {
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

impl SqlStore<Postgres> {
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
            state: State {
                schema: schema.to_owned(),
                channel: format!("pat_changes_{schema}"),
                instance: codec::instance_id(),
            },
        };
        store.migrate().await?;
        Ok(store)
    }

    /// The schema holding the tables.
    pub fn schema(&self) -> &str {
        &self.state.schema
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

impl Engine for Postgres {
    type State = State;

    fn contains(col: &str) -> (String, &'static str) {
        (format!("strpos({col}, "), ") > 0")
    }

    fn rows_affected(done: &PgQueryResult) -> u64 {
        done.rows_affected()
    }

    /// In one transaction holding an advisory lock on the schema (sqlx's own lock is
    /// turned off: it covers the whole database and, being a session lock, would stay
    /// with a pooled connection whose migration failed).
    async fn migrate(store: &PostgresStore) -> Result<(), StoreError> {
        let failed = |e| StoreError::unavailable("postgresql migration failed", e);
        let migrator = migrate::migrator(migrate::POSTGRES)
            .await
            .map_err(|e| StoreError::unavailable("postgresql migration failed", e))?;
        let mut tx = store.pool.begin().await.map_err(query_failed)?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
            .bind(format!("tower-pat migrate {}", store.state.schema))
            .execute(&mut *tx)
            .await
            .map_err(failed)?;
        // The name was checked by `valid_schema`, so quoting it is enough.
        sqlx::query(&format!(
            r#"CREATE SCHEMA IF NOT EXISTS "{}""#,
            store.state.schema
        ))
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
                migrate::baseline(&mut *tx, &migrator, version.unwrap_or(0)).await?;
            }
            migrator.run_direct(&mut *tx).await
        }
        .await;
        migrated.map_err(|e| StoreError::unavailable("postgresql migration failed", e))?;
        tx.commit().await.map_err(failed)
    }

    async fn publish_change(store: &PostgresStore, id: &TokenId) -> Result<(), StoreError> {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(&store.state.channel)
            .bind(codec::change_payload(&store.state.instance, id))
            .execute(&store.pool)
            .await
            .map_err(query_failed)?;
        Ok(())
    }

    async fn follow_changes(store: &PostgresStore, feed: ChangeFeed) {
        let state = &store.state;
        listen(&store.pool, &state.channel, &state.instance, &feed).await;
    }
}
