//! Behaviour seen from outside: a real axum `Router` with the layer, driven with `oneshot`.

mod common;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use http::StatusCode;
use tower_pat::layer::ClientAddress;
use tower_pat::{AuthError, Authenticator, Expiry, InvalidReason, NewToken, PatLayer, TokenStore};
use tower_pat::{Clock, ManualClock};

const A: &str = "0b0f8d7e-3f44-4c4e-9d0e-0f6f0b8d2a11";
const B: &str = "7c9e6679-7425-40de-944b-e07fc1f90ae7";

struct Fixture {
    store: Arc<TestStore>,
    clock: ManualClock,
    auth: Authenticator,
    app: axum::Router,
}

fn fixture() -> Fixture {
    logs();
    let store = Arc::new(TestStore::default());
    let clock = ManualClock::starting_now();
    let auth = Authenticator::builder(store.clone())
        .with_clock(clock.clone())
        .with_store_timeout(Duration::from_millis(500))
        .build();
    let app = app(auth.clone());
    Fixture {
        store,
        clock,
        auth,
        app,
    }
}

impl Fixture {
    async fn token(&self, scopes: &str, expiry: Expiry) -> (String, tower_pat::TokenRecord) {
        let created = self
            .auth
            .create(
                NewToken::new("alice", "test")
                    .with_scopes(scopes.parse().unwrap())
                    .with_expiry(expiry),
            )
            .await
            .unwrap();
        (created.token.expose().to_owned(), created.record)
    }
}

const INVALID_BODY: &str = r#"{"error":"invalid_token","message":"the access token is invalid"}"#;

#[tokio::test]
async fn no_credentials_is_401_with_both_challenges() {
    let f = fixture();
    let r = send(&f.app, "GET", "/whoami", None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let c = r.challenges();
    assert_eq!(
        c,
        vec![
            r#"Bearer realm="tower-pat""#,
            r#"Basic realm="tower-pat", charset="UTF-8""#
        ]
    );
    // An unknown scheme is treated as no credentials.
    let r = send(&f.app, "GET", "/whoami", Some("Digest abc")).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(!r.challenges()[0].contains("error="));
}

#[tokio::test]
async fn valid_token_bearer_and_basic() {
    let f = fixture();
    let (t, rec) = f.token("", Expiry::Never).await;
    for auth in [
        bearer(&t),
        format!("bearer {t}"),
        format!("BEARER {t}"),
        basic("alice", &t),
        format!("basic {}", &basic("alice", &t)[6..]),
    ] {
        let r = send(&f.app, "GET", "/whoami", Some(&auth)).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(v["owner"], "alice");
        assert_eq!(v["token_id"], rec.id.as_str());
        assert_eq!(v["scopes"], serde_json::json!([]));
        assert!(v["expires_at"].is_null());
    }
    assert_no_secret(&[&t], &[format!("{rec:?}"), format!("{:?}", f.auth)]);
}

/// Basic credentials are decoded on the stack when they fit a 512-byte buffer and on the
/// heap otherwise: both ways give the same answers, cached or not.
#[tokio::test]
async fn long_basic_credentials_take_the_heap_path_with_the_same_answers() {
    let f = fixture();
    let owner = "u".repeat(3_100);
    let created = f
        .auth
        .create(NewToken::new(owner.clone(), "long"))
        .await
        .unwrap();
    let t = created.token.expose().to_owned();
    let app = app_with(PatLayer::new(f.auth.clone()).with_max_header_len(8_192));
    for _ in 0..2 {
        // First uncached, then cached.
        let r = send(&app, "GET", "/whoami", Some(&basic(&owner, &t))).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(v["owner"], owner.as_str());
        let wrong_user = "v".repeat(3_100);
        let r = send(&app, "GET", "/whoami", Some(&basic(&wrong_user, &t))).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert_eq!(r.body, INVALID_BODY);
    }
    // Short ones (stack) for the same token owner check.
    let r = send(&app, "GET", "/whoami", Some(&basic("alice", &t))).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

/// A Basic credential whose token is not cached yet goes to the store with the username it
/// came with: the owner check holds on that path too.
#[tokio::test]
async fn uncached_basic_checks_the_owner() {
    let f = fixture();
    let (t, _) = f.token("", Expiry::Never).await;
    let r = send(&f.app, "GET", "/whoami", Some(&basic("mallory", &t))).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.body, INVALID_BODY);
    let (t, rec) = f.token("", Expiry::Never).await;
    let r = send(&f.app, "GET", "/whoami", Some(&basic("alice", &t))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["token_id"], rec.id.as_str());
    assert_eq!(
        f.store.gets.load(Ordering::SeqCst),
        2,
        "each token read once"
    );
}

#[tokio::test]
async fn malformed_headers_are_400() {
    let f = fixture();
    let (t, _) = f.token("", Expiry::Never).await;
    for bad in [
        "Bearer".to_owned(),
        format!("Bearer {t} {t}"),
        format!("Bearer {t},{t}"),
        format!("Bearer \"{t}\""),
        "Basic %%%".to_owned(),
        format!("Basic {t}"),
        format!("Bearer {}", "a".repeat(5000)),
    ] {
        let r = send(&f.app, "GET", "/whoami", Some(&bad)).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}");
        assert!(r.challenges()[0].contains(r#"error="invalid_request""#));
    }
    // Two Authorization headers, even both valid.
    let req = http::Request::builder()
        .uri("/whoami")
        .header("authorization", bearer(&t))
        .header("authorization", bearer(&t))
        .body(axum::body::Body::empty())
        .unwrap();
    let r = send_req(&f.app, req).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    // A token in the query string as well as the header.
    let r = send(
        &f.app,
        "GET",
        &format!("/whoami?access_token={t}"),
        Some(&bearer(&t)),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn invalid_tokens_share_one_answer() {
    let f = fixture();
    let (good, _) = f.token("", Expiry::Never).await;
    let (disabled, mut rec) = f.token("", Expiry::Never).await;
    rec.active = false;
    assert!(f.store.update(&rec).await.unwrap().is_written());
    let (expired, _) = f
        .token("", Expiry::hard(f.clock.now(), Duration::from_secs(10)))
        .await;
    f.clock.advance(Duration::from_secs(10));
    let format = tower_pat::TokenFormat::default();
    let unknown = format.mint().token.expose().to_owned();
    // Same id as a good token, other secret (valid checksum).
    let id: tower_pat::TokenId = good[4..20].parse().unwrap();
    let wrong_secret = format.mint_with_id(id).token.expose().to_owned();
    let mut bad_checksum = good.clone();
    bad_checksum.pop();
    bad_checksum.push(if good.ends_with('a') { 'b' } else { 'a' });
    let cases = [
        unknown,
        wrong_secret,
        disabled,
        expired,
        bad_checksum,
        "pat_short".to_owned(),
    ];
    for t in &cases {
        for header in [bearer(t), basic("alice", t)] {
            let r = send(&f.app, "GET", "/whoami", Some(&header)).await;
            assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{t}");
            assert_eq!(r.body, INVALID_BODY);
            assert!(r.challenges()[0].contains(r#"error="invalid_token""#));
            assert!(r.challenges().iter().any(|c| c.starts_with("Basic realm=")));
        }
    }
    // Basic with another user's name.
    let r = send(&f.app, "GET", "/whoami", Some(&basic("mallory", &good))).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.body, INVALID_BODY);
    let r = send(&f.app, "GET", "/whoami", Some(&basic("", &good))).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let secrets: Vec<&str> = cases
        .iter()
        .map(String::as_str)
        .filter(|s| s.len() > 30)
        .collect();
    assert_no_secret(&secrets, &[]);
    assert_no_secret(&[&good], &[]);
}

#[tokio::test]
async fn scope_hierarchy_wildcards_and_insufficient_scope() {
    let f = fixture();
    let (write, _) = f.token("repo:write", Expiry::Never).await;
    let (read, _) = f.token("repo:read", Expiry::Never).await;
    let (star, _) = f.token("*", Expiry::Never).await;
    let (repo_star, _) = f.token("repo:*", Expiry::Never).await;
    let (full, _) = f.token("", Expiry::Never).await;
    for (t, path, want) in [
        (&write, "/repo/read", StatusCode::OK),
        (&write, "/repo/write", StatusCode::OK),
        (&read, "/repo/read", StatusCode::OK),
        (&read, "/repo/write", StatusCode::FORBIDDEN),
        (&read, "/any", StatusCode::FORBIDDEN),
        (&star, "/any", StatusCode::OK),
        (&star, "/repo/write", StatusCode::OK),
        (&repo_star, "/repo/write", StatusCode::OK),
        (&repo_star, "/any", StatusCode::FORBIDDEN),
        (&full, "/any", StatusCode::OK),
    ] {
        // Scopes are enforced the same over Bearer and Basic.
        for header in [bearer(t), basic("alice", t)] {
            let r = send(&f.app, "GET", path, Some(&header)).await;
            assert_eq!(r.status, want, "{path}");
            if want == StatusCode::FORBIDDEN {
                let c = r.challenges();
                assert!(c[0].contains(r#"error="insufficient_scope""#), "{c:?}");
                assert!(c[0].contains("scope=\""));
            }
        }
    }
    let r = send(&f.app, "GET", "/repo/write", Some(&bearer(&read))).await;
    assert!(r.challenges()[0].contains(r#"scope="repo:write""#));
}

#[tokio::test]
async fn node_scopes() {
    let f = fixture();
    let (t, _) = f.token(&format!("node:{A}:r"), Expiry::Never).await;
    let (rw, _) = f.token(&format!("node:{A}:rw"), Expiry::Never).await;
    let h = bearer(&t);
    assert_eq!(
        send(&f.app, "GET", &format!("/nodes/{A}"), Some(&h))
            .await
            .status,
        StatusCode::OK
    );
    let r = send(&f.app, "PUT", &format!("/nodes/{A}"), Some(&h)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.challenges()[0].contains(&format!("scope=\"node:{A}:w\"")));
    assert_eq!(
        send(&f.app, "GET", &format!("/nodes/{B}"), Some(&h))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        send(&f.app, "PUT", &format!("/nodes/{A}"), Some(&bearer(&rw)))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        send(&f.app, "PUT", &format!("/nodes/{B}"), Some(&bearer(&rw)))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    // Path tricks never reach node B with a scope for A.
    for path in [
        format!("/nodes/{A}%2F..%2F{B}"),
        format!("/nodes/{A}/../{B}"),
        format!("//nodes/{B}"),
    ] {
        let r = send(&f.app, "GET", &path, Some(&h)).await;
        assert_ne!(r.status, StatusCode::OK, "{path}");
    }
}

#[tokio::test]
async fn hard_expiry() {
    let f = fixture();
    let (t, _) = f
        .token("", Expiry::hard(f.clock.now(), Duration::from_secs(60)))
        .await;
    assert_eq!(
        send(&f.app, "GET", "/whoami", Some(&bearer(&t)))
            .await
            .status,
        StatusCode::OK
    );
    f.clock.advance(Duration::from_secs(59));
    assert_eq!(
        send(&f.app, "GET", "/whoami", Some(&bearer(&t)))
            .await
            .status,
        StatusCode::OK
    );
    f.clock.advance(Duration::from_secs(1));
    assert_eq!(
        send(&f.app, "GET", "/whoami", Some(&bearer(&t)))
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn auto_refresh_slides_expires_when_idle_and_respects_cap() {
    let f = fixture();
    let window = Duration::from_secs(100);
    let (t, _) = f
        .token(
            "",
            Expiry::auto_refresh(f.clock.now(), window, Some(Duration::from_secs(250))),
        )
        .await;
    let ok = |r: Reply| r.status == StatusCode::OK;
    // Used every 90 s, it slides past its first window.
    for _ in 0..2 {
        f.clock.advance(Duration::from_secs(90));
        assert!(ok(send(&f.app, "GET", "/whoami", Some(&bearer(&t))).await));
    }
    // At 180 s: expiry is min(180 + 100, 250) = 250.
    f.clock.advance(Duration::from_secs(69)); // 249
    assert!(ok(send(&f.app, "GET", "/whoami", Some(&bearer(&t))).await));
    f.clock.advance(Duration::from_secs(1)); // 250: the cap, never passed
    assert_eq!(
        send(&f.app, "GET", "/whoami", Some(&bearer(&t)))
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );

    // Idle for more than a window and its rounding second: expired.
    let (t2, _) = f
        .token("", Expiry::auto_refresh(f.clock.now(), window, None))
        .await;
    assert!(ok(send(&f.app, "GET", "/whoami", Some(&bearer(&t2))).await));
    f.clock.advance(window);
    // A use late in the second of the last one is still inside its window.
    assert!(ok(send(&f.app, "GET", "/whoami", Some(&bearer(&t2))).await));
    f.clock.advance(window + Duration::from_secs(1));
    assert_eq!(
        send(&f.app, "GET", "/whoami", Some(&bearer(&t2)))
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn sliding_token_refreshed_by_another_replica_is_reread() {
    let f = fixture();
    let window = Duration::from_secs(100);
    let (t, rec) = f
        .token("", Expiry::auto_refresh(f.clock.now(), window, None))
        .await;
    assert_eq!(
        send(&f.app, "GET", "/whoami", Some(&bearer(&t)))
            .await
            .status,
        StatusCode::OK
    );
    // Another replica used it at +90 s and wrote the new expiry to the store.
    f.clock.advance(Duration::from_secs(90));
    let touch = tower_pat::store::Touch::new(
        f.clock.now(),
        Some(f.clock.now() + time::Duration::seconds(100)),
    );
    f.store.touch(&rec.id, &touch).await.unwrap();
    f.clock.advance(Duration::from_secs(20)); // our cached expiry (+100) has passed
    let gets = f.store.gets.load(Ordering::SeqCst);
    assert_eq!(
        send(&f.app, "GET", "/whoami", Some(&bearer(&t)))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(f.store.gets.load(Ordering::SeqCst), gets + 1);
}

#[tokio::test]
async fn disabled_and_invalidated_tokens_are_refused_on_the_next_request() {
    let f = fixture();
    let (t, mut rec) = f.token("", Expiry::Never).await;
    assert_eq!(
        send(&f.app, "GET", "/whoami", Some(&bearer(&t)))
            .await
            .status,
        StatusCode::OK
    );
    rec.active = false;
    assert!(f.store.update(&rec).await.unwrap().is_written());
    f.auth.invalidate(&rec.id).await.unwrap();
    assert_eq!(
        send(&f.app, "GET", "/whoami", Some(&bearer(&t)))
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    rec.active = true;
    rec.version += 1;
    assert!(f.store.update(&rec).await.unwrap().is_written());
    f.auth.invalidate(&rec.id).await.unwrap();
    assert_eq!(
        send(&f.app, "GET", "/whoami", Some(&bearer(&t)))
            .await
            .status,
        StatusCode::OK
    );
    f.store.delete(&rec.id).await.unwrap();
    f.auth.invalidate(&rec.id).await.unwrap();
    assert_eq!(
        send(&f.app, "GET", "/whoami", Some(&bearer(&t)))
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_requests_make_one_store_read() {
    let f = fixture();
    let (t, _) = f.token("", Expiry::Never).await;
    f.store.get_delay_ms.store(100, Ordering::SeqCst);
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let (app, h) = (f.app.clone(), bearer(&t));
            tokio::spawn(async move { send(&app, "GET", "/whoami", Some(&h)).await.status })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), StatusCode::OK);
    }
    assert_eq!(f.store.gets.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn sliding_writes_are_write_behind_and_flushed() {
    let f = fixture();
    let window = Duration::from_secs(600); // refresh interval = 60 s
    let (t, rec) = f
        .token("", Expiry::auto_refresh(f.clock.now(), window, None))
        .await;
    for i in 0..100_000u32 {
        if i % 10_000 == 0 {
            f.clock.advance(Duration::from_secs(5)); // 50 s in all: inside one interval
        }
        let p = f.auth.authenticate(&t).await.unwrap();
        assert_eq!(*p.token_id(), rec.id);
    }
    tokio::task::yield_now().await;
    assert_eq!(f.store.touches.load(Ordering::SeqCst), 0);
    let stored = f.store.inner.get(&rec.id).await.unwrap().unwrap();
    assert!(stored.last_used.is_none_or(|u| u < f.clock.now()));
    assert_eq!(f.auth.flush().await.unwrap(), 1);
    // 100,000 uses inside one refresh interval: one store write in all.
    assert_eq!(f.store.touches.load(Ordering::SeqCst), 1);
    let stored = f.store.inner.get(&rec.id).await.unwrap().unwrap();
    assert_eq!(stored.last_used, Some(f.clock.now()));
    assert_eq!(
        stored.expires_at,
        Some(f.clock.now() + time::Duration::seconds(601))
    );
    // Nothing left to write.
    assert_eq!(f.auth.flush().await.unwrap(), 0);
}

#[tokio::test]
async fn write_behind_writes_once_per_interval() {
    let f = fixture();
    let (t, rec) = f.token("", Expiry::Never).await;
    f.auth.authenticate(&t).await.unwrap();
    f.clock.advance(Duration::from_secs(61));
    for _ in 0..100 {
        f.auth.authenticate(&t).await.unwrap();
    }
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
    assert_eq!(f.store.touches.load(Ordering::SeqCst), 1);
    let stored = f.store.inner.get(&rec.id).await.unwrap().unwrap();
    assert_eq!(stored.last_used, Some(f.clock.now()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalidate_wins_against_a_read_in_flight() {
    let f = fixture();
    let (t, mut rec) = f.token("", Expiry::Never).await;
    let started = Arc::new(tokio::sync::Notify::new());
    let release = Arc::new(tokio::sync::Notify::new());
    *f.store.gate.lock().unwrap() = Some((started.clone(), release.clone()));
    let auth = f.auth.clone();
    let t2 = t.clone();
    let in_flight = tokio::spawn(async move { auth.authenticate(&t2).await });
    started.notified().await; // the read has the old (active) record
    *f.store.gate.lock().unwrap() = None;
    rec.active = false;
    assert!(f.store.update(&rec).await.unwrap().is_written());
    f.auth.invalidate(&rec.id).await.unwrap();
    release.notify_one();
    let _ = in_flight.await.unwrap(); // began before the revocation: either answer is fair
    let after = f.auth.authenticate(&t).await;
    assert!(
        matches!(after, Err(AuthError::Invalid(InvalidReason::Disabled))),
        "{after:?}"
    );
    let r = send(&f.app, "GET", "/whoami", Some(&bearer(&t))).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn store_failure_is_503_never_cached_and_recovers() {
    let f = fixture();
    let (t, _) = f.token("", Expiry::Never).await;
    let unknown = tower_pat::TokenFormat::default()
        .mint()
        .token
        .expose()
        .to_owned();
    f.store.fail.store(true, Ordering::SeqCst);
    for tok in [&t, &unknown] {
        for header in [bearer(tok), basic("alice", tok)] {
            let r = send(&f.app, "GET", "/whoami", Some(&header)).await;
            assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(r.headers.get("retry-after").unwrap(), "1");
        }
    }
    f.store.fail.store(false, Ordering::SeqCst);
    assert_eq!(
        send(&f.app, "GET", "/whoami", Some(&bearer(&t)))
            .await
            .status,
        StatusCode::OK
    );
    // The unknown id was not cached as anything while the store was down.
    let gets = f.store.gets.load(Ordering::SeqCst);
    assert_eq!(
        send(&f.app, "GET", "/whoami", Some(&bearer(&unknown)))
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(f.store.gets.load(Ordering::SeqCst), gets + 1);
    // Now it is cached negative: no further read.
    assert_eq!(
        send(&f.app, "GET", "/whoami", Some(&bearer(&unknown)))
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(f.store.gets.load(Ordering::SeqCst), gets + 1);
}

#[tokio::test]
async fn hanging_store_times_out_as_503() {
    let f = fixture();
    let (t, _) = f.token("", Expiry::Never).await;
    f.store.hang.store(true, Ordering::SeqCst);
    let r = send(&f.app, "GET", "/whoami", Some(&bearer(&t))).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    f.store.hang.store(false, Ordering::SeqCst);
    assert_eq!(
        send(&f.app, "GET", "/whoami", Some(&bearer(&t)))
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn malformed_tokens_never_reach_the_store() {
    let f = fixture();
    let (t, _) = f.token("", Expiry::Never).await;
    let mut bad = t.clone();
    bad.pop();
    bad.push('!');
    for tok in ["pat_", "nope", &bad, &t[..t.len() - 1]] {
        let _ = send(&f.app, "GET", "/whoami", Some(&bearer(tok))).await;
    }
    assert_eq!(f.store.gets.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn schemes_can_be_switched_off_and_realm_set() {
    let f = fixture();
    let (t, _) = f.token("", Expiry::Never).await;
    let bearer_only = app_with(
        PatLayer::new(f.auth.clone())
            .with_basic(false)
            .with_realm("files"),
    );
    let r = send(&bearer_only, "GET", "/whoami", Some(&basic("alice", &t))).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.challenges(), vec![r#"Bearer realm="files""#]);
    let basic_only = app_with(PatLayer::new(f.auth.clone()).with_bearer(false));
    let r = send(&basic_only, "GET", "/whoami", Some(&bearer(&t))).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        r.challenges(),
        vec![r#"Basic realm="tower-pat", charset="UTF-8""#]
    );
    assert_eq!(
        send(&basic_only, "GET", "/whoami", Some(&basic("alice", &t)))
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn rejections_can_be_customized() {
    let f = fixture();
    let layer = PatLayer::new(f.auth.clone()).with_on_rejection(|rej: tower_pat::Rejection| {
        let mut res = http::Response::new(axum::body::Body::from(format!(
            "custom {}",
            rej.error_code()
        )));
        *res.status_mut() = rej.status();
        res
    });
    let app = axum::Router::new()
        .route("/", axum::routing::get(|| async { "ok" }))
        .layer(layer);
    let r = send(&app, "GET", "/", Some("Bearer pat_nope")).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.body, "custom invalid_token");
}

#[tokio::test]
async fn scope_layer_without_auth_layer_fails_closed() {
    let app: axum::Router = axum::Router::new()
        .route("/", axum::routing::get(|| async { "ok" }))
        .route_layer(tower_pat::RequireScopesLayer::new("read".parse().unwrap()));
    assert_eq!(
        send(&app, "GET", "/", None).await.status,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    let app: axum::Router = axum::Router::new().route(
        "/",
        axum::routing::get(|p: tower_pat::Principal| async move { p.owner().to_string() }),
    );
    assert_eq!(
        send(&app, "GET", "/", None).await.status,
        StatusCode::INTERNAL_SERVER_ERROR
    );
}

#[tokio::test]
async fn password_adapter_matches_the_layer() {
    let f = fixture();
    let (t, _) = f.token(&format!("node:{A}:r"), Expiry::Never).await;
    let p = f
        .auth
        .authenticate(tower_pat::Credential::basic("alice", &t))
        .await
        .unwrap();
    assert!(p.allows(&format!("node:{A}:r").parse().unwrap()));
    assert!(!p.allows(&format!("node:{A}:w").parse().unwrap()));
    assert!(matches!(
        f.auth
            .authenticate(tower_pat::Credential::basic("bob", &t))
            .await,
        Err(AuthError::Invalid(InvalidReason::WrongUser))
    ));
    assert!(matches!(
        f.auth
            .authenticate(tower_pat::Credential::basic("alice", ""))
            .await,
        Err(AuthError::Malformed(_))
    ));
    assert_no_secret(&[&t], &[format!("{p:?}")]);
}

#[tokio::test]
async fn behind_a_trusted_proxy_failed_attempts_count_per_forwarded_client() {
    let store = Arc::new(TestStore::default());
    let auth = Authenticator::builder(store.clone())
        .with_attempt_limiter(tower_pat::AttemptLimiter::new(3, Duration::from_secs(30)))
        .build();
    let layer = PatLayer::new(auth.clone()).with_client_address(ClientAddress::x_forwarded_for(1));
    let app = app_with(layer);
    let good = auth.create(NewToken::new("alice", "t")).await.unwrap();
    let good = bearer(good.token.expose());
    // Every connection comes from the proxy; the proxy appends the client's address.
    let via_proxy = |forwarded: &str, header: &str| {
        let mut req = http::Request::builder()
            .uri("/whoami")
            .header("authorization", header)
            .header("x-forwarded-for", forwarded)
            .body(axum::body::Body::empty())
            .unwrap();
        let proxy: std::net::SocketAddr = "10.0.0.100:40000".parse().unwrap();
        req.extensions_mut()
            .insert(axum::extract::ConnectInfo(proxy));
        req
    };
    // The attacker sends its own header each time, to pick a fresh key: it is not read.
    for spoof in ["198.51.100.1", "198.51.100.2", "198.51.100.3"] {
        let forwarded = format!("{spoof}, 192.0.2.1");
        let r = send_req(&app, via_proxy(&forwarded, "Bearer pat_wrong")).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    let r = send_req(&app, via_proxy("203.0.113.7, 192.0.2.1", &good)).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    // Other clients behind the same proxy are served, and so is a request whose header
    // cannot be read (it counts against the proxy's own address).
    let r = send_req(&app, via_proxy("192.0.2.1, 192.0.2.2", &good)).await;
    assert_eq!(r.status, StatusCode::OK);
    let r = send_req(&app, via_proxy("192.0.2.1, garbage", &good)).await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn failed_attempts_are_limited_per_client() {
    logs();
    let store = Arc::new(TestStore::default());
    let clock = ManualClock::starting_now();
    let auth = Authenticator::builder(store.clone())
        .with_clock(clock.clone())
        .with_attempt_limiter(tower_pat::AttemptLimiter::new(3, Duration::from_secs(30)))
        .build();
    let app = app(auth.clone());
    let good = auth.create(NewToken::new("alice", "t")).await.unwrap();
    let good = good.token.expose().to_owned();
    let from = |ip: &str, header: String| {
        let mut req = http::Request::builder()
            .uri("/whoami")
            .header("authorization", header)
            .body(axum::body::Body::empty())
            .unwrap();
        let addr: std::net::SocketAddr = format!("{ip}:40000").parse().unwrap();
        req.extensions_mut()
            .insert(axum::extract::ConnectInfo(addr));
        req
    };
    for _ in 0..3 {
        let r = send_req(&app, from("10.0.0.1", basic("alice", "pat_wrong"))).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    let gets = store.gets.load(Ordering::SeqCst);
    // Locked out: even the right password, and no store access.
    let r = send_req(&app, from("10.0.0.1", basic("alice", &good))).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.headers.get("retry-after").unwrap(), "30");
    let r = send_req(&app, from("10.0.0.1", bearer(&good))).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(store.gets.load(Ordering::SeqCst), gets);
    // Another client is served.
    assert_eq!(
        send_req(&app, from("10.0.0.2", bearer(&good))).await.status,
        StatusCode::OK
    );
    // The password adapter shares the same limiter.
    assert!(matches!(
        auth.authenticate(
            tower_pat::Credential::basic("alice", &good).with_client(Some([10, 0, 0, 1].into()))
        )
        .await,
        Err(AuthError::TooManyAttempts { .. })
    ));
    clock.advance(Duration::from_secs(30));
    assert_eq!(
        send_req(&app, from("10.0.0.1", bearer(&good))).await.status,
        StatusCode::OK
    );
}
