//! The authenticator's background task: it writes uses behind while it runs, stops on
//! `shutdown` (which flushes), ends with the last clone of the authenticator, and only one
//! runs per authenticator.

use std::sync::Arc;
use std::time::Duration;

use tower_pat::store::TokenStore;
use tower_pat::{Authenticator, Clock, ManualClock, MemoryStore, NewToken, TokenId};

fn setup() -> (Arc<MemoryStore>, ManualClock, Authenticator) {
    let store = Arc::new(MemoryStore::new());
    let clock = ManualClock::starting_now();
    let auth = Authenticator::builder(store.clone())
        .with_clock(clock.clone())
        .with_refresh_interval(Duration::from_secs(1))
        .build();
    (store, clock, auth)
}

/// Waits up to 2 s for the stored `last_used` of `id` to reach `at` (unix seconds).
async fn stored_use_reaches(store: &MemoryStore, id: &TokenId, at: i64) -> bool {
    for _ in 0..100 {
        let record = store.get(id).await.unwrap().unwrap();
        if record.last_used.is_some_and(|t| t.unix_timestamp() >= at) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_it_runs_a_due_use_is_written_without_a_flush() {
    let (store, clock, auth) = setup();
    let background = tokio::spawn(auth.background());
    let created = auth.create(NewToken::new("alice", "ci")).await.unwrap();
    let token = created.token.expose().to_owned();
    auth.authenticate(&token).await.unwrap();
    // Past the refresh interval, the next use is due for a write.
    clock.advance(Duration::from_secs(5));
    auth.authenticate(&token).await.unwrap();
    let now = clock.unix_now();
    assert!(
        stored_use_reaches(&store, &created.record.id, now).await,
        "the background task did not write the due use"
    );
    auth.shutdown().await.unwrap();
    tokio::time::timeout(Duration::from_secs(2), background)
        .await
        .expect("the background task stops after shutdown")
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_stops_it_and_writes_what_is_pending() {
    let (store, clock, auth) = setup();
    let background = tokio::spawn(auth.background());
    let created = auth.create(NewToken::new("alice", "ci")).await.unwrap();
    // A use within the refresh interval of the load: pending, not due.
    auth.authenticate(created.token.expose()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let record = store.get(&created.record.id).await.unwrap().unwrap();
    assert_eq!(record.last_used, None, "not written before the shutdown");
    assert_eq!(auth.shutdown().await.unwrap(), 1);
    let record = store.get(&created.record.id).await.unwrap().unwrap();
    assert_eq!(
        record.last_used.map(|t| t.unix_timestamp()),
        Some(clock.unix_now())
    );
    tokio::time::timeout(Duration::from_secs(2), background)
        .await
        .expect("the background task stops after shutdown")
        .unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn it_ends_with_the_last_clone_of_the_authenticator() {
    let (_store, _clock, auth) = setup();
    let background = tokio::spawn(auth.background());
    tokio::task::yield_now().await;
    drop(auth);
    tokio::time::timeout(Duration::from_secs(2), background)
        .await
        .expect("the background task ends once the authenticator is gone")
        .unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn a_second_background_future_does_nothing() {
    let (_store, _clock, auth) = setup();
    let first = tokio::spawn(auth.background());
    tokio::task::yield_now().await; // the first one is polled: the work is its
                                    // The second returns at once; the first keeps running.
    tokio::time::timeout(Duration::from_secs(2), auth.background())
        .await
        .expect("a second background future returns at once");
    tokio::task::yield_now().await;
    assert!(!first.is_finished(), "the first background task still runs");
    auth.shutdown().await.unwrap();
    tokio::time::timeout(Duration::from_secs(2), first)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_use_that_never_becomes_due_is_written_within_a_refresh_interval() {
    let (store, _clock, auth) = setup();
    let background = tokio::spawn(auth.background());
    let created = auth.create(NewToken::new("alice", "once")).await.unwrap();
    // Used once, within the interval of its load: not due, only pending.
    auth.authenticate(created.token.expose()).await.unwrap();
    let written = stored_use_reaches(&store, &created.record.id, i64::MIN).await;
    assert!(written, "the periodic flush did not write the pending use");
    auth.shutdown().await.unwrap();
    tokio::time::timeout(Duration::from_secs(2), background)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn a_background_future_dropped_unpolled_leaves_the_work_to_the_next() {
    let (_store, _clock, auth) = setup();
    drop(auth.background());
    let background = tokio::spawn(auth.background());
    tokio::task::yield_now().await;
    assert!(!background.is_finished(), "the second future runs the loop");
    // Shutdown is final: it stops this one, and one made afterwards stops at once.
    auth.shutdown().await.unwrap();
    tokio::time::timeout(Duration::from_secs(2), background)
        .await
        .unwrap()
        .unwrap();
    tokio::time::timeout(Duration::from_secs(2), auth.background())
        .await
        .expect("a background future made after shutdown returns at once");
}
