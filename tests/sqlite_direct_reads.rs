//! `SqliteStore::get` reads on the calling thread through its own connections: it must
//! see every write made through the async pool at once. (Its fallback to the pool when a
//! direct read fails is tested in `src/store/sqlite.rs`.)

#![cfg(feature = "sqlite")]

use std::sync::Arc;

use tower_pat::store::{SqliteStore, TokenStore};
use tower_pat::{Authenticator, NewToken};

async fn store(dir: &tempfile::TempDir) -> Arc<SqliteStore> {
    let url = format!("sqlite://{}", dir.path().join("tokens.db").display());
    Arc::new(SqliteStore::connect(&url).await.unwrap())
}

#[tokio::test]
async fn direct_reads_see_pool_writes_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir).await;
    let auth = Authenticator::new(store.clone());
    let created = auth.create(NewToken::new("alice", "one")).await.unwrap();
    let id = created.record.id;
    // Warm the direct connections, then change the row through the pool.
    assert_eq!(store.get(&id).await.unwrap().unwrap().name, "one");
    let mut changed = created.record.clone();
    changed.name = "two".into();
    changed.active = false;
    assert!(store.update(&changed).await.unwrap().is_written());
    let read = store.get(&id).await.unwrap().unwrap();
    assert_eq!((read.name.as_str(), read.active), ("two", false));
    assert!(store.delete(&id).await.unwrap());
    assert!(store.get(&id).await.unwrap().is_none());
}
