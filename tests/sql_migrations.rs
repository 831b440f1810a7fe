//! The SQL stores' schema migrations (sqlx's migrator over embedded files): stores
//! opening one new database together all succeed and the schema is applied once, and a
//! database made by tower-pat's earlier hand-run migrations (`pat_schema` at version 1
//! or 2) opens and keeps its tokens.

#![cfg(any(feature = "sqlite", feature = "postgres"))]

mod store_env;

use std::sync::Arc;

use tower_pat::store::TokenStore;
use tower_pat::{Authenticator, NewToken};

/// The versions sqlx's migrator has recorded, all successful.
const APPLIED: &str = "SELECT version, success FROM _sqlx_migrations ORDER BY version";

fn versions(rows: Vec<(i64, bool)>) -> Vec<i64> {
    assert!(rows.iter().all(|r| r.1), "{rows:?}");
    rows.into_iter().map(|r| r.0).collect()
}

/// Statements that turn a freshly migrated database into one the hand-run migrations
/// left at `version` (1: no `version` column yet; 2: the current schema).
fn back_to_hand_run(version: i64) -> Vec<String> {
    let mut undo = vec![
        "DROP TABLE _sqlx_migrations".to_owned(),
        "CREATE TABLE pat_schema (version BIGINT NOT NULL)".to_owned(),
        format!("INSERT INTO pat_schema (version) VALUES ({version})"),
        // Migration 3 came after the hand-run ones: undo it too.
        "DROP TABLE pat_events".to_owned(),
        "DROP TABLE pat_reminders".to_owned(),
    ];
    for column in [
        "created_ip",
        "created_user_agent",
        "last_used_ip",
        "last_used_user_agent",
        "recent_ips",
    ] {
        undo.push(format!("ALTER TABLE pat_tokens DROP COLUMN {column}"));
    }
    if version < 2 {
        undo.push("ALTER TABLE pat_tokens DROP COLUMN version".to_owned());
    }
    undo
}

/// Mints a token through `store` and returns its id.
async fn mint(store: Arc<dyn TokenStore>) -> tower_pat::TokenId {
    let auth = Authenticator::new(store);
    auth.create(NewToken::new("alice", "legacy"))
        .await
        .unwrap()
        .record
        .id
}

#[cfg(feature = "sqlite")]
mod sqlite {
    use super::*;
    use tower_pat::store::SqliteStore;

    async fn applied(pool: &sqlx::SqlitePool) -> Vec<i64> {
        versions(sqlx::query_as(APPLIED).fetch_all(pool).await.unwrap())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn stores_opening_a_new_file_together_all_succeed() {
        let dir = tempfile::tempdir().unwrap();
        let url = store_env::sqlite_url(&dir);
        let opening = (0..8).map(|_| {
            let url = url.clone();
            tokio::spawn(async move { SqliteStore::connect(&url).await })
        });
        let stores: Vec<SqliteStore> = futures_util::future::join_all(opening)
            .await
            .into_iter()
            .map(|r| r.unwrap().expect("every store opens"))
            .collect();
        assert_eq!(applied(stores[0].pool()).await, vec![1, 2, 3]);
        let store: Arc<dyn TokenStore> = Arc::new(stores.into_iter().next().unwrap());
        let id = mint(store.clone()).await;
        assert!(store.get(&id).await.unwrap().is_some());
    }

    /// A file as the hand-run migrations left it at `version`, holding one token.
    async fn legacy_file(dir: &tempfile::TempDir, version: i64) -> tower_pat::TokenId {
        let store = SqliteStore::connect(&store_env::sqlite_url(dir))
            .await
            .unwrap();
        let pool = store.pool().clone();
        let id = mint(Arc::new(store)).await;
        for s in back_to_hand_run(version) {
            sqlx::query(&s).execute(&pool).await.unwrap();
        }
        pool.close().await;
        id
    }

    #[tokio::test]
    async fn a_database_of_the_earlier_migrations_opens_with_its_tokens() {
        for version in [1, 2] {
            let dir = tempfile::tempdir().unwrap();
            let id = legacy_file(&dir, version).await;
            let store = SqliteStore::connect(&store_env::sqlite_url(&dir))
                .await
                .unwrap_or_else(|e| panic!("version {version}: {e:?}"));
            assert_eq!(
                applied(store.pool()).await,
                vec![1, 2, 3],
                "version {version}"
            );
            let read = store.get(&id).await.unwrap().expect("the token is kept");
            assert_eq!((read.owner.as_str(), read.version), ("alice", 1));
            // And again: nothing left to do.
            store.migrate().await.unwrap();
            let store: Arc<dyn TokenStore> = Arc::new(store);
            let second = mint(store.clone()).await;
            assert!(store.get(&second).await.unwrap().is_some());
        }
    }
}

#[cfg(feature = "postgres")]
mod postgres {
    use super::*;
    use tower_pat::store::PostgresStore;

    async fn applied(pool: &sqlx::PgPool) -> Vec<i64> {
        versions(sqlx::query_as(APPLIED).fetch_all(pool).await.unwrap())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn replicas_starting_together_on_a_new_schema_all_succeed() {
        let Some(url) = store_env::server_url("PAT_TEST_POSTGRES_URL") else {
            return;
        };
        let schema = store_env::unique("pat_test");
        let opening = (0..4).map(|_| {
            let (url, schema) = (url.clone(), schema.clone());
            tokio::spawn(async move { PostgresStore::connect_with_schema(&url, &schema).await })
        });
        let stores: Vec<PostgresStore> = futures_util::future::join_all(opening)
            .await
            .into_iter()
            .map(|r| r.unwrap().expect("every replica starts"))
            .collect();
        // The migrator's table is in the store's schema, not shared across schemas.
        let table: Option<String> = sqlx::query_scalar("SELECT to_regclass($1)::text")
            .bind(format!("{schema}._sqlx_migrations"))
            .fetch_one(stores[0].pool())
            .await
            .unwrap();
        let versions = applied(stores[0].pool()).await;
        store_env::drop_schema(&url, &schema).await;
        assert!(table.is_some(), "_sqlx_migrations in {schema}");
        assert_eq!(versions, vec![1, 2, 3]);
    }

    #[tokio::test]
    async fn a_schema_of_the_earlier_migrations_opens_with_its_tokens() {
        let Some(url) = store_env::server_url("PAT_TEST_POSTGRES_URL") else {
            return;
        };
        for version in [1, 2] {
            let schema = store_env::unique("pat_test");
            let store = store_env::postgres_store(&url, &schema).await;
            let pool = store.pool().clone();
            let id = mint(Arc::new(store)).await;
            for s in back_to_hand_run(version) {
                sqlx::query(&s).execute(&pool).await.unwrap();
            }
            let store = store_env::postgres_store(&url, &schema).await;
            let versions = applied(store.pool()).await;
            let read = store.get(&id).await.unwrap();
            store_env::drop_schema(&url, &schema).await;
            assert_eq!(versions, vec![1, 2, 3], "version {version}");
            let read = read.expect("the token is kept");
            assert_eq!((read.owner.as_str(), read.version), ("alice", 1));
        }
    }
}
