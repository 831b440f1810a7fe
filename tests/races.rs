//! Races: `invalidate` during an in-flight store read (lakekeeper#1843), and a flood of
//! concurrent requests mixing valid, revoked and unknown tokens through a real Router.

mod common;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use common::*;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use tokio::sync::Notify;
use tower::ServiceExt;
use tower_pat::ManualClock;
use tower_pat::TokenFormat;
use tower_pat::TokenRecord;
use tower_pat::{AuthError, Authenticator, Expiry, InvalidReason, NewToken, TokenStore};

const TRIALS: usize = 10_000;

fn authenticator(store: Arc<TestStore>) -> Authenticator {
    Authenticator::builder(store)
        .with_clock(ManualClock::starting_now())
        .with_store_timeout(Duration::from_secs(10))
        .build()
}

/// Starts `authenticate(token)`, waits until its store read holds the old record, runs
/// `change` (which updates the store and calls `invalidate`), then lets the read finish.
/// Returns the in-flight answer; what matters is the *next* answer.
async fn with_read_in_flight<F, Fut>(
    store: &Arc<TestStore>,
    auth: &Authenticator,
    token: &str,
    change: F,
) -> Result<tower_pat::Principal, AuthError>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let started = Arc::new(Notify::new());
    let release = Arc::new(Notify::new());
    *store.gate.lock().unwrap() = Some((started.clone(), release.clone()));
    let (a, t) = (auth.clone(), token.to_owned());
    let in_flight = tokio::spawn(async move { a.authenticate(&t).await });
    started.notified().await; // the read has returned the old record and is parked
    *store.gate.lock().unwrap() = None;
    change().await;
    release.notify_one();
    in_flight.await.unwrap()
}

#[derive(Debug, Default)]
struct Stale {
    disabled_served: usize,
    enabled_refused: usize,
    old_secret_served: usize,
    new_secret_refused: usize,
}

impl Stale {
    fn total(&self) -> usize {
        self.disabled_served
            + self.enabled_refused
            + self.old_secret_served
            + self.new_secret_refused
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalidate_during_read_never_leaves_a_stale_entry() {
    let store = Arc::new(TestStore::default());
    let auth = authenticator(store.clone());
    let created = auth.create(NewToken::new("alice", "race")).await.unwrap();
    let id = created.record.id;
    let mut token = created.token.expose().to_owned();
    let mut stale = Stale::default();

    for trial in 0..TRIALS {
        // Start uncached, so the next authenticate reads the store.
        auth.invalidate(&id).await.unwrap();
        let mut record = store.inner.get(&id).await.unwrap().unwrap();
        match trial % 3 {
            // Disable, or re-enable, while a read of the other state is in flight.
            0 | 1 => {
                let now_active = !record.active;
                with_read_in_flight(&store, &auth, &token, || async {
                    record.active = now_active;
                    assert!(store.update(&record).await.unwrap().is_written());
                    auth.invalidate(&id).await.unwrap();
                })
                .await
                .ok();
                match (now_active, auth.authenticate(&token).await) {
                    (true, Err(_)) => stale.enabled_refused += 1,
                    (false, Ok(_)) => stale.disabled_served += 1,
                    (false, Err(AuthError::Invalid(InvalidReason::Disabled))) | (true, Ok(_)) => {}
                    (false, Err(e)) => panic!("trial {trial}: unexpected {e:?}"),
                }
            }
            // Rotate the secret in place while a read of the old secret is in flight.
            _ => {
                let minted = auth.format().mint_with_id(id);
                with_read_in_flight(&store, &auth, &token, || async {
                    record.secret_hash = minted.secret_hash;
                    assert!(store.update(&record).await.unwrap().is_written());
                    auth.invalidate(&id).await.unwrap();
                })
                .await
                .ok();
                let old = auth.authenticate(&token).await;
                let new = auth.authenticate(minted.token.expose()).await;
                if record.active {
                    stale.old_secret_served += usize::from(old.is_ok());
                    stale.new_secret_refused += usize::from(new.is_err());
                } else {
                    assert!(old.is_err() && new.is_err(), "trial {trial}");
                }
                token = minted.token.expose().to_owned();
            }
        }
    }
    assert_eq!(
        stale.total(),
        0,
        "stale answers after invalidate: {stale:?}"
    );
    // Every trial really read the store while the change happened (no cache shortcut).
    assert!(store.gets.load(Ordering::SeqCst) >= TRIALS);
}

/// The negative side of the same race: an id read as unknown while it is being created
/// (or restored) must not stay "unknown" after `invalidate`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalidate_during_read_of_an_unknown_id_leaves_no_negative_entry() {
    let store = Arc::new(TestStore::default());
    let auth = authenticator(store.clone());
    let format = TokenFormat::default();
    let mut refused = 0;
    for _ in 0..1_000 {
        let minted = format.mint();
        let record = TokenRecord::new(
            minted.id,
            "alice",
            "late",
            Default::default(),
            Expiry::Never,
            minted.secret_hash,
            auth.clock().now(),
        );
        let token = minted.token.expose();
        let first = with_read_in_flight(&store, &auth, token, || async {
            store.insert(&record).await.unwrap();
            auth.invalidate(&record.id).await.unwrap();
        })
        .await;
        assert!(first.is_err(), "the in-flight read saw no record");
        refused += usize::from(auth.authenticate(token).await.is_err());
    }
    assert_eq!(
        refused, 0,
        "tokens refused as unknown after their creation was invalidated"
    );
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    Valid,
    ValidBasic,
    NoScope,
    Disabled,
    Deleted,
    Unknown,
    Malformed,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_concurrent_requests_mixing_valid_revoked_and_unknown() {
    let store = Arc::new(TestStore::default());
    let auth = authenticator(store.clone());
    let router = app(auth.clone());
    let format = TokenFormat::default();

    let mut tokens: Vec<(Kind, String, String, String)> = Vec::new(); // kind, token, id, owner
    for i in 0..40 {
        let owner = format!("user{i}");
        let scopes = if i % 2 == 0 {
            "repo:write"
        } else {
            "repo:read"
        };
        let c = auth
            .create(NewToken::new(owner.clone(), "flood").with_scopes(scopes.parse().unwrap()))
            .await
            .unwrap();
        let (t, id) = (c.token.expose().to_owned(), c.record.id.to_string());
        // Half of the tokens are warm in the cache before they are revoked.
        if i % 4 < 2 {
            let r = send(&router, "GET", "/whoami", Some(&bearer(&t))).await;
            assert_eq!(r.status, StatusCode::OK);
        }
        let kind = match i % 8 {
            0 | 1 => Kind::Valid,
            2 => Kind::ValidBasic,
            3 => Kind::NoScope,
            4 | 5 => {
                let mut rec = c.record.clone();
                rec.active = false;
                assert!(store.update(&rec).await.unwrap().is_written());
                auth.invalidate(&c.record.id).await.unwrap();
                Kind::Disabled
            }
            _ => {
                store.delete(&c.record.id).await.unwrap();
                auth.invalidate(&c.record.id).await.unwrap();
                Kind::Deleted
            }
        };
        tokens.push((kind, t, id, owner));
    }
    for _ in 0..20 {
        let m = format.mint();
        let (t, id) = (m.token.expose().to_owned(), m.id.to_string());
        tokens.push((Kind::Unknown, t, id, "alice".to_owned()));
    }
    let good = tokens[0].1.clone();
    // The last character changed (to one it is not: with `x` alone, one token in 62
    // stayed valid and the test failed), so the checksum fails.
    let last = if good.ends_with('x') { 'y' } else { 'x' };
    tokens.push((
        Kind::Malformed,
        format!("{}{last}", &good[..good.len() - 1]),
        String::new(),
        "user0".to_owned(),
    ));

    // A slow store makes requests for one id overlap while its read is in flight.
    store.get_delay_ms.store(5, Ordering::SeqCst);
    let gets_before = store.gets.load(Ordering::SeqCst);
    let mut tasks = Vec::with_capacity(1_000);
    for n in 0..1_000usize {
        let (kind, token, id, owner) = tokens[(n * 7919) % tokens.len()].clone();
        let router = router.clone();
        tasks.push(tokio::spawn(async move {
            let (path, header) = match kind {
                Kind::ValidBasic => ("/whoami", basic(&owner, &token)),
                Kind::NoScope => ("/repo/write", bearer(&token)),
                _ => ("/repo/read", bearer(&token)),
            };
            let req = Request::get(path)
                .header(http::header::AUTHORIZATION, header)
                .body(Body::empty())
                .unwrap();
            let res = router.oneshot(req).await.unwrap();
            let status = res.status();
            let body = res.into_body().collect().await.unwrap().to_bytes();
            (
                n,
                kind,
                id,
                status,
                String::from_utf8_lossy(&body).into_owned(),
            )
        }));
    }
    let mut wrong = Vec::new();
    for task in tasks {
        let (n, kind, id, status, body) = task.await.unwrap();
        let ok = match kind {
            Kind::Valid => status == StatusCode::OK && body == "read ok",
            Kind::ValidBasic => status == StatusCode::OK && body.contains(&id),
            // These hold repo:read only.
            Kind::NoScope => status == StatusCode::FORBIDDEN && body.contains("insufficient_scope"),
            Kind::Disabled | Kind::Deleted | Kind::Unknown | Kind::Malformed => {
                status == StatusCode::UNAUTHORIZED && body.contains("invalid_token")
            }
        };
        if !ok {
            wrong.push(format!("request {n} ({kind:?}): {status} {body}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} wrong answers: {wrong:#?}",
        wrong.len()
    );
    // Concurrent misses share one read; no id was read more than its share.
    let distinct = tokens.len() - 1; // the malformed one never reaches the store
    let reads = store.gets.load(Ordering::SeqCst) - gets_before;
    assert!(
        reads <= distinct,
        "{reads} store reads for {distinct} distinct ids"
    );
}
