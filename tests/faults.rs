//! Faults: a store that errors and a store that hangs. Every request answers 503 with
//! `Retry-After`, none passes, nothing is cached as invalid, and service resumes within
//! 1 s of the store returning. (A real Redis/PostgreSQL connection killed mid-run is in
//! `store_outage.rs`.)

mod common;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use http::StatusCode;
use tower_pat::ManualClock;
use tower_pat::TokenFormat;
use tower_pat::{Authenticator, Expiry, NewToken, TokenStore};

const REQUESTS: usize = 200;

struct Outage {
    store: Arc<TestStore>,
    auth: Authenticator,
    router: axum::Router,
    /// Tokens in the store, never used before the outage (so never cached).
    valid: Vec<String>,
    /// Well-formed tokens whose ids are in no store.
    unknown: Vec<String>,
}

async fn outage_fixture(store_timeout: Duration) -> Outage {
    let store = Arc::new(TestStore::default());
    let auth = Authenticator::builder(store.clone())
        .with_clock(ManualClock::starting_now())
        .with_store_timeout(store_timeout)
        .build();
    let mut valid = Vec::new();
    for i in 0..20 {
        let expiry = if i % 2 == 0 {
            Expiry::Never
        } else {
            Expiry::auto_refresh(auth.clock().now(), Duration::from_secs(3_600), None)
        };
        let c = auth
            .create(NewToken::new("alice", format!("t{i}")).with_expiry(expiry))
            .await
            .unwrap();
        valid.push(c.token.expose().to_owned());
    }
    let unknown = (0..20)
        .map(|_| TokenFormat::default().mint().token.expose().to_owned())
        .collect();
    Outage {
        router: app(auth.clone()),
        store,
        auth,
        valid,
        unknown,
    }
}

impl Outage {
    /// Request `n`: a valid or an unknown token, over Bearer or Basic, on two routes.
    fn request(&self, n: usize) -> (String, &'static str) {
        let pool = if n % 2 == 0 {
            &self.valid
        } else {
            &self.unknown
        };
        let token = &pool[(n / 2) % pool.len()];
        let header = if n % 3 == 0 {
            basic("alice", token)
        } else {
            bearer(token)
        };
        (header, if n % 5 == 0 { "/repo/read" } else { "/whoami" })
    }

    /// Sends every request at once; asserts each is 503 with `Retry-After` and no body
    /// of the inner service.
    async fn all_refused_with_503(&self) {
        let tasks: Vec<_> = (0..REQUESTS)
            .map(|n| {
                let (header, path) = self.request(n);
                let router = self.router.clone();
                tokio::spawn(async move { send(&router, "GET", path, Some(&header)).await })
            })
            .collect();
        let mut answers = std::collections::BTreeMap::new();
        for (n, t) in tasks.into_iter().enumerate() {
            let r = t.await.unwrap();
            *answers.entry(r.status.as_u16()).or_insert(0) += 1;
            assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "request {n}");
            assert_eq!(
                r.headers
                    .get(http::header::RETRY_AFTER)
                    .map(|v| v.to_str().unwrap()),
                Some("1"),
                "request {n}"
            );
            assert!(r.body.contains("temporarily_unavailable"), "{}", r.body);
        }
        assert_eq!(answers.get(&503), Some(&REQUESTS), "{answers:?}");
    }

    /// After the store returns: valid tokens pass on their first request (nothing was
    /// cached as invalid), unknown ids are read from the store (no negative entry was
    /// written during the outage), all within 1 s of the store returning.
    async fn recovers(&self, back: Instant) {
        let mut first_ok = None;
        for t in &self.valid {
            let r = send(&self.router, "GET", "/whoami", Some(&bearer(t))).await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.body);
            first_ok.get_or_insert_with(|| back.elapsed());
        }
        let resumed = first_ok.unwrap();
        assert!(
            resumed < Duration::from_secs(1),
            "resumed after {resumed:?}"
        );
        for t in &self.unknown {
            let before = self.store.gets.load(Ordering::SeqCst);
            let r = send(&self.router, "GET", "/whoami", Some(&bearer(t))).await;
            assert_eq!(r.status, StatusCode::UNAUTHORIZED);
            assert_eq!(
                self.store.gets.load(Ordering::SeqCst),
                before + 1,
                "an unknown id was answered from a negative entry written during the outage"
            );
        }
        // The whole recovery pass took well under a second.
        assert!(
            back.elapsed() < Duration::from_secs(1),
            "{:?}",
            back.elapsed()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erroring_store_answers_503_and_recovers() {
    let o = outage_fixture(Duration::from_secs(2)).await;
    o.store.fail.store(true, Ordering::SeqCst);
    o.all_refused_with_503().await;
    // The layer did ask the store: a 503 comes from a real failure, not a shortcut.
    assert!(o.store.gets.load(Ordering::SeqCst) >= 40);
    // Write-behind fails too while the store is down; the authenticator has nothing to
    // write (no token passed).
    assert_eq!(o.auth.flush().await.unwrap(), 0);
    o.store.fail.store(false, Ordering::SeqCst);
    o.recovers(Instant::now()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hanging_store_times_out_to_503_and_recovers() {
    let timeout = Duration::from_millis(100);
    let o = outage_fixture(timeout).await;
    o.store.hang.store(true, Ordering::SeqCst);
    let start = Instant::now();
    o.all_refused_with_503().await;
    // Requests waited for the timeout, not forever (concurrent reads of one id share it).
    let took = start.elapsed();
    assert!(took >= timeout, "{took:?}");
    assert!(took < Duration::from_secs(10), "{took:?}");
    o.store.hang.store(false, Ordering::SeqCst);
    o.recovers(Instant::now()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_failing_mid_stream_never_lets_an_uncached_token_through() {
    // Flip the store off and on while requests run: every answer is either the right
    // one (200 for valid, 401 for unknown) or 503; never 200 for an unknown token and
    // never 401 for a valid one.
    let o = outage_fixture(Duration::from_millis(200)).await;
    let flipper = {
        let store = o.store.clone();
        tokio::spawn(async move {
            for i in 0..40 {
                store.fail.store(i % 2 == 0, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            store.fail.store(false, Ordering::SeqCst);
        })
    };
    let mut tasks = Vec::new();
    for n in 0..REQUESTS {
        let (header, _) = o.request(n);
        let router = o.router.clone();
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(Duration::from_micros((n as u64 % 40) * 100)).await;
            (
                n,
                send(&router, "GET", "/whoami", Some(&header)).await.status,
            )
        }));
        // Drop cached entries now and then, so later requests go to the store again.
        if n % 50 == 0 {
            o.auth.invalidate_all();
        }
    }
    let mut unavailable = 0;
    for t in tasks {
        let (n, status) = t.await.unwrap();
        let expected = if n % 2 == 0 {
            StatusCode::OK
        } else {
            StatusCode::UNAUTHORIZED
        };
        if status == StatusCode::SERVICE_UNAVAILABLE {
            unavailable += 1;
        } else {
            assert_eq!(status, expected, "request {n}");
        }
    }
    flipper.await.unwrap();
    assert!(unavailable <= REQUESTS);
    // After the flapping, every valid token passes and every unknown one is refused.
    o.store.fail.store(false, Ordering::SeqCst);
    for t in &o.valid {
        let r = send(&o.router, "GET", "/whoami", Some(&bearer(t))).await;
        assert_eq!(r.status, StatusCode::OK);
    }
    for t in &o.unknown {
        let r = send(&o.router, "GET", "/whoami", Some(&bearer(t))).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
}

#[tokio::test]
async fn failed_write_behind_stays_pending_until_the_store_returns() {
    let o = outage_fixture(Duration::from_millis(200)).await;
    for t in &o.valid {
        o.auth.authenticate(t).await.unwrap();
    }
    o.store.fail.store(true, Ordering::SeqCst);
    assert!(o.auth.flush().await.is_err());
    o.store.fail.store(false, Ordering::SeqCst);
    assert_eq!(o.auth.flush().await.unwrap(), o.valid.len());
    for t in &o.valid {
        let id = TokenFormat::default().parse(t).unwrap().id;
        let stored = o.store.inner.get(&id).await.unwrap().unwrap();
        assert_eq!(stored.last_used, Some(o.auth.clock().now()));
    }
}
