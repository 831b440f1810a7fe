//! Shutdown: pending `last_used` and sliding-expiry writes (write-behind) are all in the
//! store after `Authenticator::flush()`, counted token by token.

mod common;

use std::collections::HashMap;
use std::future::IntoFuture;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use time::OffsetDateTime;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower_pat::{Authenticator, Expiry, NewToken, TokenId, TokenStore};
use tower_pat::{Clock, ManualClock};

const TOKENS: usize = 300;

struct Fixture {
    store: Arc<TestStore>,
    clock: ManualClock,
    auth: Authenticator,
}

fn fixture() -> Fixture {
    let store = Arc::new(TestStore::default());
    let clock = ManualClock::starting_now();
    let auth = Authenticator::builder(store.clone())
        .with_clock(clock.clone())
        .build();
    Fixture { store, clock, auth }
}

/// Creates `n` tokens: a third never expire, a third slide (1 h window), a third slide
/// with a cap 100 s away.
async fn tokens(f: &Fixture, n: usize) -> Vec<(TokenId, String)> {
    let now = f.clock.now();
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let expiry = match i % 3 {
            0 => Expiry::Never,
            1 => Expiry::auto_refresh(now, Duration::from_secs(3_600), None),
            _ => Expiry::auto_refresh(
                now,
                Duration::from_secs(3_600),
                Some(Duration::from_secs(100)),
            ),
        };
        let c = f
            .auth
            .create(NewToken::new(format!("user{i}"), "shutdown").with_expiry(expiry))
            .await
            .unwrap();
        out.push((c.record.id, c.token.expose().to_owned()));
    }
    out
}

/// What the cache holds for a token after its last use: `(last_used, expires_at)`.
type Cached = HashMap<TokenId, (OffsetDateTime, Option<OffsetDateTime>)>;

async fn assert_store_matches(store: &TestStore, cached: &Cached) {
    for (id, (last_used, expires_at)) in cached {
        let stored = store.inner.get(id).await.unwrap().unwrap();
        assert_eq!(stored.last_used, Some(*last_used), "last_used of {id}");
        assert_eq!(stored.expires_at, *expires_at, "expires_at of {id}");
    }
}

#[tokio::test]
async fn flush_writes_every_pending_use_and_slide() {
    let f = fixture();
    let tokens = tokens(&f, TOKENS).await;
    let mut cached = Cached::new();
    // Three rounds of use inside one refresh interval (60 s): nothing is written yet.
    for (round, advance) in [(0usize, 0u64), (1, 10), (2, 20)] {
        f.clock.advance(Duration::from_secs(advance));
        for (i, (id, token)) in tokens.iter().enumerate() {
            if i % (round + 1) != 0 {
                continue; // later rounds use fewer tokens: last uses differ
            }
            let p = if i % 2 == 0 {
                f.auth.authenticate(token).await.unwrap()
            } else {
                f.auth
                    .authenticate(tower_pat::Credential::basic(&format!("user{i}"), token))
                    .await
                    .unwrap()
            };
            cached.insert(*id, (f.clock.now(), p.expires_at()));
        }
    }
    tokio::task::yield_now().await;
    assert_eq!(f.store.touches.load(Ordering::SeqCst), 0, "written early");
    // The store still has the values from creation: the writes are pending.
    for (id, _) in &tokens {
        let stored = f.store.inner.get(id).await.unwrap().unwrap();
        assert_eq!(stored.last_used, None, "written early: {id}");
    }

    assert_eq!(f.auth.flush().await.unwrap(), TOKENS);
    assert_eq!(f.store.touches.load(Ordering::SeqCst), TOKENS);
    assert_store_matches(&f.store, &cached).await;
    // Sliding values really moved: the 1 h window from the last use, or the cap.
    let start = f.clock.now() - time::Duration::seconds(30);
    for (i, (id, _)) in tokens.iter().enumerate() {
        let (last, exp) = cached[id];
        match i % 3 {
            0 => assert_eq!(exp, None),
            // A new end is rounded up by a second (the clock is in whole seconds).
            1 => assert_eq!(
                exp,
                Some(last + time::Duration::hours(1) + time::Duration::seconds(1))
            ),
            _ => assert_eq!(exp, Some(start + time::Duration::seconds(100))),
        }
    }
    // Nothing is left; a second flush writes nothing.
    assert_eq!(f.auth.flush().await.unwrap(), 0);
    assert_eq!(f.store.touches.load(Ordering::SeqCst), TOKENS);
}

#[tokio::test]
async fn flush_after_a_failed_flush_writes_everything() {
    let f = fixture();
    let tokens = tokens(&f, 60).await;
    let mut cached = Cached::new();
    f.clock.advance(Duration::from_secs(5));
    for (id, token) in &tokens {
        let p = f.auth.authenticate(token).await.unwrap();
        cached.insert(*id, (f.clock.now(), p.expires_at()));
    }
    f.store.fail.store(true, Ordering::SeqCst);
    assert!(f.auth.flush().await.is_err());
    f.store.fail.store(false, Ordering::SeqCst);
    assert_eq!(f.auth.flush().await.unwrap(), tokens.len());
    assert_store_matches(&f.store, &cached).await;
}

/// A real server with graceful shutdown: requests over TCP, then shutdown, then flush.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_then_flush_persists_every_use() {
    let f = fixture();
    let tokens = tokens(&f, 30).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        axum::serve(listener, app(f.auth.clone()))
            .with_graceful_shutdown(async {
                let _ = stop_rx.await;
            })
            .into_future(),
    );
    f.clock.advance(Duration::from_secs(7));
    for (i, (_, token)) in tokens.iter().enumerate() {
        let auth = if i % 2 == 0 {
            bearer(token)
        } else {
            basic(&format!("user{i}"), token)
        };
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let req = format!(
            "GET /whoami HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\nConnection: close\r\n\r\n"
        );
        s.write_all(req.as_bytes()).await.unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).await.unwrap();
        assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    }
    stop_tx.send(()).unwrap();
    server.await.unwrap().unwrap();
    assert_eq!(f.store.touches.load(Ordering::SeqCst), 0);
    assert_eq!(f.auth.flush().await.unwrap(), tokens.len());
    let used_at = f.clock.now();
    for (i, (id, _)) in tokens.iter().enumerate() {
        let stored = f.store.inner.get(id).await.unwrap().unwrap();
        assert_eq!(stored.last_used, Some(used_at));
        let expected = match i % 3 {
            0 => None,
            1 => Some(used_at + time::Duration::hours(1) + time::Duration::seconds(1)),
            _ => Some(used_at - time::Duration::seconds(7) + time::Duration::seconds(100)),
        };
        assert_eq!(stored.expires_at, expected, "token {i}");
    }
}
