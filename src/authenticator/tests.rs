//! Tests of the decision that need its internals.

use std::sync::Arc;
use std::time::Duration;

use super::Authenticator;
use crate::clock::{self, Clock, ManualClock};
use crate::error::{AuthError, InvalidReason};
use crate::expiry::Expiry;
use crate::manage::NewToken;
use crate::store::{MemoryStore, TokenStore};

/// A 2 s window used every 1.4 s: the seconds clock reads floor(t), as the system
/// clock does, at t = 0.9, 2.3, 3.7, … Each use is inside the window of the one
/// before, so each is accepted; an idle spell longer than window + 1 s is not.
#[tokio::test(flavor = "current_thread")]
async fn a_sliding_token_used_once_per_window_is_never_refused() {
    let start = 1_800_000_000;
    let clock = ManualClock::new(clock::from_unix(start));
    let store = Arc::new(MemoryStore::new());
    let auth = Authenticator::builder(store.clone())
        .with_clock(clock.clone())
        .build();
    let window = Duration::from_secs(2);
    let new = |cap| {
        NewToken::new("alice", "sliding").with_expiry(Expiry::auto_refresh(
            clock.now(),
            window,
            cap,
        ))
    };
    let token = auth.create(new(None)).await.unwrap().token;
    let mut uses = 0;
    // Tenths of a second since `start`.
    let mut t = 9;
    while t <= 100 {
        clock.set(clock::from_unix(start + t / 10));
        let used = auth.authenticate(token.expose()).await;
        assert!(
            used.is_ok(),
            "refused at t = {}.{} s: {used:?}",
            t / 10,
            t % 10
        );
        uses += 1;
        t += 14;
    }
    assert_eq!(uses, 7);
    // Through the store too, as another replica (or a restart) would see it.
    auth.flush().await.unwrap();
    let fresh = Authenticator::builder(store.clone())
        .with_clock(clock.clone())
        .build();
    assert!(fresh.authenticate(token.expose()).await.is_ok());
    // Last used at 9.3 s (second 9): at 12.x s it has been idle for more than 3 s.
    clock.set(clock::from_unix(start + 12));
    assert!(matches!(
        auth.authenticate(token.expose()).await,
        Err(AuthError::Invalid(InvalidReason::Expired))
    ));
    // The cap is never passed, not even by the extra second.
    clock.set(clock::from_unix(start));
    let capped = auth
        .create(new(Some(Duration::from_secs(3))))
        .await
        .unwrap();
    clock.set(clock::from_unix(start + 2));
    let p = auth.authenticate(capped.token.expose()).await.unwrap();
    assert_eq!(p.expires_at(), Some(clock::from_unix(start + 3)));
    clock.set(clock::from_unix(start + 3));
    assert!(auth.authenticate(capped.token.expose()).await.is_err());
}

#[tokio::test(flavor = "current_thread")]
async fn the_write_behind_list_drops_written_tokens() {
    let clock = ManualClock::starting_now();
    let store = Arc::new(MemoryStore::new());
    let auth = Authenticator::builder(store.clone())
        .with_clock(clock.clone())
        .with_refresh_interval(Duration::from_secs(1))
        .build();
    let mut tokens = Vec::new();
    for i in 0..3_000 {
        let created = auth.create(NewToken::new(format!("u{i}"), "t")).await;
        tokens.push(created.unwrap().token);
    }
    let listed = || auth.inner.write_behind.listed();
    let (first, second) = tokens.split_at(2_000);
    for t in first {
        auth.authenticate(t.expose()).await.unwrap();
    }
    assert_eq!(listed(), 2_000, "each used token is listed once");
    // Used again after the refresh interval: each is written back in the background,
    // and stays listed, clean.
    clock.advance(Duration::from_secs(2));
    for t in first {
        auth.authenticate(t.expose()).await.unwrap();
    }
    for _ in 0..10_000 {
        let clean = auth.inner.write_behind.all_written();
        if clean {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(listed(), 2_000);
    // Ten of them used again: pending again, still listed once.
    for t in &first[..10] {
        auth.authenticate(t.expose()).await.unwrap();
    }
    assert_eq!(listed(), 2_000);
    for t in &first[10..] {
        let id = auth.format().parse(t.expose()).unwrap().id;
        let stored = store.get(&id).await.unwrap().unwrap();
        assert_eq!(
            stored.last_used.map(|u| u.unix_timestamp()),
            Some(clock.unix_now())
        );
    }
    // The list fills up with new tokens: compaction drops the written ones.
    for t in second {
        auth.authenticate(t.expose()).await.unwrap();
    }
    assert_eq!(listed(), 1_010, "written tokens were dropped from the list");
    // Only what is pending is written, once.
    assert_eq!(auth.flush().await.unwrap(), 1_010);
    assert_eq!(listed(), 0);
    assert_eq!(auth.flush().await.unwrap(), 0);
    // A flushed token used again is listed again.
    auth.authenticate(second[0].expose()).await.unwrap();
    assert_eq!(listed(), 1);
}
