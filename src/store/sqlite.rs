//! The SQLite engine of [`SqlStore`]: connecting, the migration lock, the change table
//! other processes poll, and point reads on the calling thread.

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteQueryResult,
    SqliteSynchronous,
};
use sqlx::Sqlite;

use crate::record::TokenRecord;
use crate::store::codec::{self, Flat};
use crate::store::sql::engine::Engine;
use crate::store::sql::{migrate, query, SqlStore};
use crate::store::{mask_url, ChangeFeed, StoreError};
use crate::token::TokenId;

/// How long change rows are kept for other processes to read.
const CHANGE_RETENTION_SECS: i64 = 600;

/// Tokens in a SQLite file: the embedded default, for one process or a few sharing a
/// file on one host. Tokens survive restarts.
///
/// A [`SqlStore`] on SQLite (everything but the engine is shared with
/// [`PostgresStore`](crate::store::PostgresStore)).
///
/// - The file is created if missing, the schema is migrated on connect by sqlx's
///   migrator, recorded in `_sqlx_migrations` ([`migrate`](SqlStore::migrate) runs it
///   again, idempotently, holding SQLite's write lock).
/// - WAL journal mode and a 5 s busy timeout, so several processes can share one file:
///   readers never block, writers wait for each other instead of failing.
/// - Listings run in SQL with an index per sort field (`created`, `last_used`,
///   `expires_at`, `name`) and one on `owner`.
/// - [`get`](crate::store::TokenStore::get), the one read on the request path (a cache miss), runs on
///   the calling thread through a small pool of plain SQLite connections: a primary-key
///   read in WAL mode takes microseconds and does not wait for writers, where a round
///   trip to sqlx's connection thread costs tens. Should it have to wait (a busy
///   database), it is retried at once through the async pool, which waits there instead
///   of blocking the thread. Everything else goes through the async pool.
///
/// # Revocations across processes
///
/// [`publish_change`](crate::store::TokenStore::publish_change) appends a row to a `pat_changes` table
/// (an autoincrement revision, the token id and this store's instance id).
/// [`follow_changes`](crate::store::TokenStore::follow_changes) (run by the
/// authenticator's background task) reads rows newer than the last revision it saw every
/// [`POLL_INTERVAL`](SqlStore::POLL_INTERVAL) (one indexed query), so another process's
/// cache drops a revoked token within about 0.5 s (at most `POLL_INTERVAL` plus one
/// query). Rows older than 10 minutes are pruned.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use tower_pat::store::{SqliteStore, TokenStore};
///
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("tokens.db");
/// let store = SqliteStore::connect(&format!("sqlite://{}", path.display())).await.unwrap();
/// assert!(store.get(&tower_pat::TokenId::generate()).await.unwrap().is_none());
/// # }
/// ```
#[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
pub type SqliteStore = SqlStore<Sqlite>;

/// What a [`SqliteStore`] keeps besides its pool.
#[derive(Debug)]
pub struct State {
    /// `None` for `sqlite::memory:` (another connection would see another database).
    readers: Option<Readers>,
    /// `None` for `sqlite::memory:`, which no other process can see.
    changes: Option<Changes>,
}

#[derive(Debug)]
struct Changes {
    instance: String,
}

/// Point reads on the calling thread: idle connections, opened on demand, at most
/// [`Readers::MAX_IDLE`] kept.
#[derive(Debug)]
struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<rusqlite::Connection>>,
}

impl Readers {
    const MAX_IDLE: usize = 8;

    fn open(&self) -> rusqlite::Result<rusqlite::Connection> {
        use rusqlite::OpenFlags;
        let conn = rusqlite::Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        // Never wait on this thread: a busy database is read through the async pool.
        conn.busy_timeout(Duration::ZERO)?;
        conn.pragma_update(None, "query_only", true)?;
        Ok(conn)
    }

    fn get(&self, id: &TokenId) -> rusqlite::Result<Option<query::Columns>> {
        use rusqlite::OptionalExtension as _;
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let conn = match idle {
            Some(conn) => conn,
            None => self.open()?,
        };
        let row = conn
            .prepare_cached(&query::get_text())?
            .query_row([id.as_str()], |r| {
                Ok(query::Columns(Flat {
                    id: r.get(0)?,
                    owner: r.get(1)?,
                    name: r.get(2)?,
                    scopes: r.get(3)?,
                    expiry: r.get(4)?,
                    expires_at: r.get(5)?,
                    active: r.get(6)?,
                    created: r.get(7)?,
                    modified: r.get(8)?,
                    last_used: r.get(9)?,
                    secret_hash: r.get(10)?,
                    previous_hash: r.get(11)?,
                    previous_valid_until: r.get(12)?,
                    version: r.get(13)?,
                    created_ip: r.get(14)?,
                    created_user_agent: r.get(15)?,
                    last_used_ip: r.get(16)?,
                    last_used_user_agent: r.get(17)?,
                    recent_ips: r.get(18)?,
                }))
            })
            .optional()?;
        // Only a connection that just worked goes back to the pool.
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < Self::MAX_IDLE {
            idle.push(conn);
        }
        Ok(row)
    }
}

fn query_failed(e: sqlx::Error) -> StoreError {
    StoreError::unavailable("sqlite query failed", e)
}

impl SqlStore<Sqlite> {
    /// How often a subscribed store looks for revocations written by other processes
    /// sharing the file.
    pub const POLL_INTERVAL: Duration = Duration::from_millis(500);

    /// Opens (creating if missing) the database at `url` — `sqlite://path.db`,
    /// `sqlite:path.db` or `sqlite::memory:` — and migrates it.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let bad =
            |e: sqlx::Error| StoreError::Invalid(format!("bad SQLite URL {}: {e}", mask_url(url)));
        let memory = url.contains(":memory:") || url.contains("mode=memory");
        let mut options = SqliteConnectOptions::from_str(url)
            .map_err(bad)?
            .create_if_missing(true)
            .busy_timeout(Duration::from_secs(5));
        let mut pool = SqlitePoolOptions::new();
        if memory {
            // Every connection to `:memory:` is its own database: keep exactly one, forever.
            pool = pool
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None);
        } else {
            options = options
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal);
            pool = pool.max_connections(4);
        }
        let path = options.get_filename().to_owned();
        let pool = pool
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await
            .map_err(|e| {
                StoreError::unavailable(format!("cannot open SQLite database {}", mask_url(url)), e)
            })?;
        let store = Self {
            pool,
            state: State {
                readers: (!memory).then(|| Readers {
                    path,
                    idle: Mutex::new(Vec::new()),
                }),
                changes: (!memory).then(|| Changes {
                    instance: codec::instance_id(),
                }),
            },
        };
        store.migrate().await?;
        Ok(store)
    }
}

/// Follows `pat_changes`, sending other processes' token ids to `feed`, until the feed is
/// closed.
async fn poll_changes(pool: &SqlitePool, feed: &ChangeFeed, instance: &str) {
    let mut last: Option<i64> = None;
    let mut tick = tokio::time::interval(SqliteStore::POLL_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !feed.is_closed() {
        tick.tick().await;
        let Some(from) = last else {
            match sqlx::query_scalar::<_, Option<i64>>("SELECT MAX(rev) FROM pat_changes")
                .fetch_one(pool)
                .await
            {
                Ok(rev) => last = Some(rev.unwrap_or(0)),
                Err(e) => tracing::warn!(error = %e, "cannot read sqlite token changes"),
            }
            continue;
        };
        let rows: Result<Vec<(i64, String, String)>, _> = sqlx::query_as(
            "SELECT rev, token_id, instance FROM pat_changes WHERE rev > ?1 ORDER BY rev LIMIT 1000",
        )
        .bind(from)
        .fetch_all(pool)
        .await;
        match rows {
            Ok(rows) => {
                for (rev, id, from_instance) in rows {
                    last = Some(rev);
                    if from_instance != instance {
                        if let Ok(id) = id.parse() {
                            feed.changed(id);
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot read sqlite token changes"),
        }
    }
}

impl Engine for Sqlite {
    type State = State;

    fn contains(col: &str) -> (String, &'static str) {
        (format!("instr({col}, "), ") > 0")
    }

    fn rows_affected(done: &SqliteQueryResult) -> u64 {
        done.rows_affected()
    }

    /// In one `BEGIN IMMEDIATE` transaction: sqlx's SQLite migrator takes no lock, and
    /// SQLite's write lock, taken first, keeps processes opening one new file from racing.
    async fn migrate(store: &SqliteStore) -> Result<(), StoreError> {
        let failed =
            |e: sqlx::migrate::MigrateError| StoreError::unavailable("sqlite migration failed", e);
        let migrator = migrate::migrator(migrate::SQLITE).await.map_err(failed)?;
        let mut tx = store
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(query_failed)?;
        let legacy: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'pat_schema'",
        )
        .fetch_one(&mut *tx)
        .await
        .map_err(query_failed)?;
        if legacy > 0 {
            let version: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM pat_schema")
                .fetch_one(&mut *tx)
                .await
                .map_err(query_failed)?;
            migrate::baseline(&mut *tx, &migrator, version.unwrap_or(0))
                .await
                .map_err(failed)?;
        }
        migrator.run_direct(&mut *tx).await.map_err(failed)?;
        tx.commit().await.map_err(query_failed)
    }

    /// Through the direct readers; a failed direct read (a busy database) is retried
    /// through the pool.
    fn get_direct(
        store: &SqliteStore,
        id: &TokenId,
    ) -> Option<Result<Option<TokenRecord>, StoreError>> {
        match store.state.readers.as_ref()?.get(id) {
            Ok(row) => Some(row.map(query::record).transpose()),
            Err(e) => {
                tracing::debug!(error = %e, "direct sqlite read failed; reading through the pool");
                None
            }
        }
    }

    async fn publish_change(store: &SqliteStore, id: &TokenId) -> Result<(), StoreError> {
        let Some(changes) = &store.state.changes else {
            return Ok(());
        };
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let mut tx = store.pool.begin().await.map_err(query_failed)?;
        sqlx::query("INSERT INTO pat_changes (token_id, instance, at) VALUES (?1, ?2, ?3)")
            .bind(id.as_str())
            .bind(&changes.instance)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(query_failed)?;
        sqlx::query("DELETE FROM pat_changes WHERE at < ?1")
            .bind(now - CHANGE_RETENTION_SECS)
            .execute(&mut *tx)
            .await
            .map_err(query_failed)?;
        tx.commit().await.map_err(query_failed)
    }

    async fn follow_changes(store: &SqliteStore, feed: ChangeFeed) {
        if let Some(changes) = &store.state.changes {
            poll_changes(&store.pool, &feed, &changes.instance).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::TokenStore;

    #[tokio::test]
    async fn a_failed_direct_read_is_answered_through_the_pool() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("tokens.db").display());
        let mut store = SqliteStore::connect(&url).await.unwrap();
        let minted = crate::TokenFormat::default().mint();
        let record = TokenRecord::new(
            minted.id,
            "alice",
            "laptop",
            crate::ScopeSet::full_access(),
            crate::Expiry::Never,
            minted.secret_hash,
            time::OffsetDateTime::now_utc(),
        );
        store.insert(&record).await.unwrap();
        // Direct connections that cannot open: every read must fall back, not fail.
        store.state.readers = Some(Readers {
            path: dir.path().join("missing-dir").join("tokens.db"),
            idle: Mutex::new(Vec::new()),
        });
        assert!(store
            .state
            .readers
            .as_ref()
            .unwrap()
            .get(&record.id)
            .is_err());
        let read = store.get(&record.id).await.unwrap().unwrap();
        assert_eq!((read.id, read.owner.as_str()), (record.id, "alice"));
        assert!(store.get(&TokenId::generate()).await.unwrap().is_none());
    }
}
