//! Opening the stores under test, each run isolated: a temporary SQLite file, a fresh
//! PostgreSQL schema, a random Redis key prefix; and removing them afterwards.
//!
//! Servers come from `PAT_TEST_POSTGRES_URL` / `PAT_TEST_REDIS_URL`: unset → the test
//! prints "skipped: … not set" and passes; set but unreachable → it panics.
#![allow(dead_code, unreachable_pub)]

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;

use futures_util::FutureExt;
use tower_pat::store::TokenStore;

pub type Cleanup = Box<dyn FnOnce() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

/// A store to test and how to remove what it left behind.
pub struct Fixture {
    pub store: Arc<dyn TokenStore>,
    pub cleanup: Cleanup,
}

/// Runs `test` on the fixture `setup` gives (if any), then cleans up, even on panic.
pub async fn run<S, SF, T, TF>(setup: S, test: T)
where
    S: FnOnce() -> SF,
    SF: Future<Output = Option<Fixture>>,
    T: FnOnce(Arc<dyn TokenStore>) -> TF,
    TF: Future<Output = ()>,
{
    let Some(Fixture { store, cleanup }) = setup().await else {
        return;
    };
    let result = AssertUnwindSafe(test(store)).catch_unwind().await;
    cleanup().await;
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

/// The URL in `var`, or `None` after printing that the test is skipped.
pub fn server_url(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.trim().is_empty() => Some(v),
        _ => {
            println!("skipped: {var} not set");
            None
        }
    }
}

/// A name no other run uses.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}

pub async fn memory() -> Option<Fixture> {
    Some(Fixture {
        store: Arc::new(tower_pat::MemoryStore::new()),
        cleanup: Box::new(|| Box::pin(async {})),
    })
}

#[cfg(feature = "sqlite")]
pub fn sqlite_url(dir: &tempfile::TempDir) -> String {
    format!("sqlite://{}", dir.path().join("tokens.db").display())
}

#[cfg(feature = "sqlite")]
pub async fn sqlite() -> Option<Fixture> {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = tower_pat::store::SqliteStore::connect(&sqlite_url(&dir))
        .await
        .expect("open sqlite");
    Some(Fixture {
        store: Arc::new(store),
        cleanup: Box::new(move || Box::pin(async move { drop(dir) })),
    })
}

#[cfg(feature = "postgres")]
pub async fn postgres_store(url: &str, schema: &str) -> tower_pat::store::PostgresStore {
    tower_pat::store::PostgresStore::connect_with_schema(url, schema)
        .await
        .unwrap_or_else(|e| {
            panic!("PAT_TEST_POSTGRES_URL is set but PostgreSQL is unusable: {e:?}")
        })
}

#[cfg(feature = "postgres")]
pub async fn drop_schema(url: &str, schema: &str) {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(url)
        .await
        .expect("connect to drop the test schema");
    sqlx::query(&format!(r#"DROP SCHEMA IF EXISTS "{schema}" CASCADE"#))
        .execute(&mut conn)
        .await
        .expect("drop the test schema");
}

#[cfg(feature = "postgres")]
pub async fn postgres() -> Option<Fixture> {
    let url = server_url("PAT_TEST_POSTGRES_URL")?;
    let schema = unique("pat_test");
    let store = postgres_store(&url, &schema).await;
    Some(Fixture {
        store: Arc::new(store),
        cleanup: Box::new(move || Box::pin(async move { drop_schema(&url, &schema).await })),
    })
}

#[cfg(feature = "redis")]
pub async fn redis_store(url: &str, prefix: &str) -> tower_pat::store::RedisStore {
    tower_pat::store::RedisStore::connect_with_prefix(url, prefix)
        .await
        .unwrap_or_else(|e| panic!("PAT_TEST_REDIS_URL is set but Redis is unusable: {e:?}"))
}

/// Deletes every key under `prefix`.
#[cfg(feature = "redis")]
pub async fn delete_prefix(url: &str, prefix: &str) {
    let client = redis::Client::open(url).expect("redis url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect to clean up");
    let mut cursor: u64 = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}*"))
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await
            .expect("scan");
        if !keys.is_empty() {
            let _: i64 = redis::cmd("DEL")
                .arg(&keys)
                .query_async(&mut conn)
                .await
                .expect("del");
        }
        if next == 0 {
            break;
        }
        cursor = next;
    }
}

/// Keys under `prefix` (to check cleanup).
#[cfg(feature = "redis")]
pub async fn count_prefix(url: &str, prefix: &str) -> usize {
    let client = redis::Client::open(url).expect("redis url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut conn)
        .await
        .expect("keys");
    keys.len()
}

#[cfg(feature = "redis")]
pub async fn redis() -> Option<Fixture> {
    let url = server_url("PAT_TEST_REDIS_URL")?;
    let prefix = format!("{}:", unique("pat_test"));
    let store = redis_store(&url, &prefix).await;
    Some(Fixture {
        store: Arc::new(store),
        cleanup: Box::new(move || Box::pin(async move { delete_prefix(&url, &prefix).await })),
    })
}
