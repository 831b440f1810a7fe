//! Revocation across replicas: two `Authenticator`s over two separately opened stores on
//! the same PostgreSQL schema / Redis prefix / SQLite file. Both accept a token; it is
//! revoked through the first; the second must refuse it within 1 s, although its cache
//! TTL is the default 30 s (so only the change message can explain it).
//!
//! And a SQLite "process restart": tokens survive reopening the file, revoked ones stay
//! revoked.
#![cfg(any(feature = "sqlite", feature = "postgres", feature = "redis"))]

mod store_env;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tower_pat::store::TokenStore;
use tower_pat::{AuthError, Authenticator, InvalidReason, NewToken};

/// Creates a token through `a`, checks both accept it, revokes it through `a` in one of
/// the ways the management API does, and waits for `b` to refuse it.
async fn revocation_reaches_the_other_replica(a: Authenticator, b: Authenticator) {
    // Let the second replica's change follower connect before anything happens.
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Disable.
    let created = a.create(NewToken::new("alice", "ci")).await.unwrap();
    let token = created.token.expose().to_owned();
    a.authenticate(&token).await.unwrap();
    b.authenticate(&token).await.unwrap(); // now cached in b for 30 s
    let mut record = created.record.clone();
    record.active = false;
    assert!(a.store().update(&record).await.unwrap().is_written());
    a.invalidate(&record.id).await.unwrap();
    assert!(matches!(
        a.authenticate(&token).await,
        Err(AuthError::Invalid(InvalidReason::Disabled))
    ));
    let took = refused_within(&b, &token, Duration::from_secs(1)).await;
    println!("disabled token refused by the other replica after {took:?}");

    // Delete.
    let created = a.create(NewToken::new("bob", "laptop")).await.unwrap();
    let token = created.token.expose().to_owned();
    b.authenticate(&token).await.unwrap();
    assert!(a.store().delete(&created.record.id).await.unwrap());
    a.invalidate(&created.record.id).await.unwrap();
    let took = refused_within(&b, &token, Duration::from_secs(1)).await;
    println!("deleted token refused by the other replica after {took:?}");

    // A token that was not touched stays accepted by both (no over-eager clearing).
    let kept = a.create(NewToken::new("carol", "kept")).await.unwrap();
    b.authenticate(kept.token.expose()).await.unwrap();
    a.authenticate(kept.token.expose()).await.unwrap();
}

/// Polls `auth` until it refuses `token` as invalid; panics after `limit`.
async fn refused_within(auth: &Authenticator, token: &str, limit: Duration) -> Duration {
    let start = Instant::now();
    loop {
        match auth.authenticate(token).await {
            Err(AuthError::Invalid(_)) => return start.elapsed(),
            Ok(_) => {}
            Err(e) => panic!("unexpected error: {e:?}"),
        }
        assert!(
            start.elapsed() < limit,
            "the other replica still accepts the revoked token after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn replica(store: Arc<dyn TokenStore>) -> Authenticator {
    // Default cache TTL (30 s): only a change message can make it refuse within 1 s.
    let auth = Authenticator::builder(store).build();
    // The change follower runs in the background task, which the application spawns.
    tokio::spawn(auth.background());
    auth
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_replicas() {
    let Some(url) = store_env::server_url("PAT_TEST_POSTGRES_URL") else {
        return;
    };
    let schema = store_env::unique("pat_test");
    let (u, s) = (url.clone(), schema.clone());
    let test = async move {
        let a = replica(Arc::new(store_env::postgres_store(&u, &s).await));
        let b = replica(Arc::new(store_env::postgres_store(&u, &s).await));
        revocation_reaches_the_other_replica(a, b).await;
    };
    let result = futures_util::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(test)).await;
    store_env::drop_schema(&url, &schema).await;
    if let Err(p) = result {
        std::panic::resume_unwind(p);
    }
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_replicas() {
    let Some(url) = store_env::server_url("PAT_TEST_REDIS_URL") else {
        return;
    };
    let prefix = format!("{}:", store_env::unique("pat_test"));
    let (u, p) = (url.clone(), prefix.clone());
    let test = async move {
        let a = replica(Arc::new(store_env::redis_store(&u, &p).await));
        let b = replica(Arc::new(store_env::redis_store(&u, &p).await));
        revocation_reaches_the_other_replica(a, b).await;
    };
    let result = futures_util::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(test)).await;
    store_env::delete_prefix(&url, &prefix).await;
    assert_eq!(store_env::count_prefix(&url, &prefix).await, 0);
    if let Err(p) = result {
        std::panic::resume_unwind(p);
    }
}

#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_processes_sharing_a_file() {
    use tower_pat::store::SqliteStore;
    let dir = tempfile::tempdir().unwrap();
    let url = store_env::sqlite_url(&dir);
    let a = replica(Arc::new(SqliteStore::connect(&url).await.unwrap()));
    let b = replica(Arc::new(SqliteStore::connect(&url).await.unwrap()));
    revocation_reaches_the_other_replica(a, b).await;
}

/// Nothing starts behind the application's back: without its background task, an
/// authenticator follows no changes, and serves a revoked token from its cache.
#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_its_background_task_a_replica_follows_no_changes() {
    use tower_pat::store::SqliteStore;
    let dir = tempfile::tempdir().unwrap();
    let url = store_env::sqlite_url(&dir);
    let a = replica(Arc::new(SqliteStore::connect(&url).await.unwrap()));
    let b = Authenticator::new(Arc::new(SqliteStore::connect(&url).await.unwrap()));
    let created = a.create(NewToken::new("alice", "ci")).await.unwrap();
    let token = created.token.expose().to_owned();
    b.authenticate(&token).await.unwrap();
    let mut record = created.record.clone();
    record.active = false;
    assert!(a.store().update(&record).await.unwrap().is_written());
    a.invalidate(&record.id).await.unwrap();
    // Three polls of the change table.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    b.authenticate(&token)
        .await
        .expect("no follower runs, so the cached token is still served");
    // Its background task, once spawned, catches up from the changes it finds next.
    tokio::spawn(b.background());
    record.version += 1;
    record.name = "renamed".into();
    assert!(a.store().update(&record).await.unwrap().is_written());
    tokio::time::sleep(Duration::from_millis(300)).await;
    a.invalidate(&record.id).await.unwrap();
    refused_within(&b, &token, Duration::from_secs(2)).await;
}

#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_restart_keeps_tokens_and_revocations() {
    let dir = tempfile::tempdir().unwrap();
    let url = store_env::sqlite_url(&dir);
    let (kept, revoked) = {
        let auth = replica(tower_pat::store::open(&url).await.unwrap());
        let kept = auth.create(NewToken::new("alice", "kept")).await.unwrap();
        let revoked = auth
            .create(NewToken::new("alice", "revoked"))
            .await
            .unwrap();
        auth.authenticate(kept.token.expose()).await.unwrap();
        auth.authenticate(revoked.token.expose()).await.unwrap();
        let mut r = revoked.record.clone();
        r.active = false;
        assert!(auth.store().update(&r).await.unwrap().is_written());
        auth.invalidate(&r.id).await.unwrap();
        auth.flush().await.unwrap();
        (kept, revoked)
        // The authenticator and the store are dropped here: the "process" ends.
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let auth = replica(tower_pat::store::open(&url).await.unwrap());
    let p = auth.authenticate(kept.token.expose()).await.unwrap();
    assert_eq!(p.owner(), "alice");
    assert_eq!(*p.token_id(), kept.record.id);
    assert!(matches!(
        auth.authenticate(revoked.token.expose()).await,
        Err(AuthError::Invalid(InvalidReason::Disabled))
    ));
    // The use before the restart was recorded.
    let stored = auth.store().get(&kept.record.id).await.unwrap().unwrap();
    assert!(stored.last_used.is_some());
}
