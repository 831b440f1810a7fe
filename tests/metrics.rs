//! The `metrics` feature, seen through a real Prometheus recorder: each metric moves by
//! exactly what was done. A process has one global recorder, so every test here takes
//! its turn ([`TURN`]) and compares the rendered values before and after.
#![cfg(all(feature = "metrics", feature = "axum"))]

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use common::*;
use http::StatusCode;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tower_pat::manage::{Actor, CreateTokenRequest, Manager, RotateRequest, TokenPatch};
use tower_pat::store::ListQuery;
use tower_pat::{
    AttemptLimiter, Authenticator, Clock, Expiry, ManualClock, MemoryStore, NewToken, TokenFormat,
    TokenId,
};

/// Held by each test for its whole run: the counters are the process's.
static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The process's recorder, installed (and the metrics described) on first use: before
/// any authenticator is built, as the authenticator registers its handles then.
fn recorder() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let handle = PrometheusBuilder::new().install_recorder().unwrap();
        tower_pat::describe_metrics();
        handle
    })
}

/// Every sample the recorder renders now, by its series (`name{labels}`).
struct Sample(HashMap<String, f64>);

fn sample() -> Sample {
    let text = recorder().render();
    Sample(
        text.lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .filter_map(|l| {
                let (series, value) = l.rsplit_once(' ')?;
                Some((series.to_owned(), value.parse().ok()?))
            })
            .collect(),
    )
}

impl Sample {
    /// How much `series` moved since `before` (a series not rendered counts as 0).
    fn moved(&self, before: &Sample, series: &str) -> f64 {
        let get = |s: &Sample| s.0.get(series).copied().unwrap_or(0.0);
        get(self) - get(before)
    }

    /// Asserts how much each series moved since `before`.
    #[track_caller]
    fn assert_moved(&self, before: &Sample, expected: &[(&str, f64)]) {
        let wrong: Vec<String> = expected
            .iter()
            .filter(|(series, n)| self.moved(before, series) != *n)
            .map(|(series, n)| {
                format!(
                    "{series}: expected {n}, moved {}",
                    self.moved(before, series)
                )
            })
            .collect();
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }
}

fn outcome(o: &str) -> String {
    format!("pat_validations_total{{outcome=\"{o}\"}}")
}

fn lookup(r: &str) -> String {
    format!("pat_cache_requests_total{{result=\"{r}\"}}")
}

fn store_calls(op: &str) -> String {
    format!("pat_store_duration_seconds_count{{op=\"{op}\"}}")
}

fn store_errors(op: &str) -> String {
    format!("pat_store_errors_total{{op=\"{op}\"}}")
}

const CACHED_TIMED: &str = "pat_validation_duration_seconds_count{path=\"cached\"}";
const STORE_TIMED: &str = "pat_validation_duration_seconds_count{path=\"store\"}";

/// A well-formed token that no store holds.
fn unknown() -> String {
    TokenFormat::default().mint().token.expose().to_owned()
}

#[tokio::test]
async fn each_outcome_is_counted_once_per_request_through_the_layer() {
    let _turn = TURN.lock().await;
    recorder();
    let store = Arc::new(TestStore::default());
    let clock = ManualClock::starting_now();
    let auth = Authenticator::builder(store.clone())
        .with_clock(clock.clone())
        .with_store_timeout(Duration::from_millis(500))
        .with_attempt_limiter(AttemptLimiter::new(1, Duration::from_secs(60)))
        .build();
    let app = app(auth.clone());
    let create = |scopes: &str, expiry: Expiry| {
        let new = NewToken::new("alice", "t")
            .with_scopes(scopes.parse().unwrap())
            .with_expiry(expiry);
        let auth = auth.clone();
        async move { auth.create(new).await.unwrap() }
    };
    let good = create("repo:read", Expiry::Never).await;
    let disabled = create("", Expiry::Never).await;
    let mut record = disabled.record.clone();
    record.active = false;
    use tower_pat::TokenStore;
    assert!(store.update(&record).await.unwrap().is_written());
    let expired = create("", Expiry::hard(clock.now(), Duration::from_secs(10))).await;
    clock.advance(Duration::from_secs(10));
    let good = good.token.expose().to_owned();
    let id: TokenId = good[4..20].parse().unwrap();
    let wrong_secret = TokenFormat::default()
        .mint_with_id(id)
        .token
        .expose()
        .to_owned();
    let (unknown_1, unknown_2) = (unknown(), unknown());
    let mut bad_checksum = good.clone();
    let last = bad_checksum.pop().unwrap();
    bad_checksum.push(if last == 'a' { 'b' } else { 'a' });
    let from = |ip: &str, authorization: &str| {
        let mut req = http::Request::builder()
            .uri("/whoami")
            .header("authorization", authorization)
            .body(axum::body::Body::empty())
            .unwrap();
        let addr: SocketAddr = format!("{ip}:40000").parse().unwrap();
        req.extensions_mut()
            .insert(axum::extract::ConnectInfo(addr));
        req
    };

    let before = sample();
    let expect = |authorization: String, path: &'static str, status: StatusCode| {
        let app = app.clone();
        async move {
            let r = send(&app, "GET", path, Some(&authorization)).await;
            assert_eq!(r.status, status, "{path} with {authorization}");
        }
    };
    for _ in 0..3 {
        expect(bearer(&good), "/whoami", StatusCode::OK).await;
    }
    expect(bearer("pat_short"), "/whoami", StatusCode::UNAUTHORIZED).await;
    expect(bearer(&bad_checksum), "/whoami", StatusCode::UNAUTHORIZED).await;
    for t in [&unknown_1, &unknown_1, &unknown_2, &unknown_2] {
        expect(bearer(t), "/whoami", StatusCode::UNAUTHORIZED).await;
    }
    expect(bearer(&wrong_secret), "/whoami", StatusCode::UNAUTHORIZED).await;
    // Basic naming another user than the owner: counted as a wrong secret.
    expect(basic("mallory", &good), "/whoami", StatusCode::UNAUTHORIZED).await;
    let disabled = disabled.token.expose();
    expect(bearer(disabled), "/whoami", StatusCode::UNAUTHORIZED).await;
    let expired = expired.token.expose();
    expect(bearer(expired), "/whoami", StatusCode::UNAUTHORIZED).await;
    // Valid, then refused for the scope: `valid` and `insufficient_scope`.
    expect(bearer(&good), "/repo/write", StatusCode::FORBIDDEN).await;
    store.fail.store(true, Ordering::SeqCst);
    expect(
        bearer(&unknown()),
        "/whoami",
        StatusCode::SERVICE_UNAVAILABLE,
    )
    .await;
    store.fail.store(false, Ordering::SeqCst);
    // One failure locks this client out (limit 1): the next check is not made.
    let r = send_req(&app, from("10.0.0.9", &bearer("pat_short"))).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = send_req(&app, from("10.0.0.9", &bearer(&good))).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    let after = sample();

    after.assert_moved(
        &before,
        &[
            (&outcome("valid"), 4.0),
            (&outcome("malformed"), 3.0),
            (&outcome("not_found"), 4.0),
            (&outcome("wrong_secret"), 2.0),
            (&outcome("disabled"), 1.0),
            (&outcome("expired"), 1.0),
            (&outcome("insufficient_scope"), 1.0),
            (&outcome("rate_limited"), 1.0),
            (&outcome("store_error"), 1.0),
            // The first use of the good token, the disabled, the expired, each unknown
            // id's first use and the failed read went to the store.
            (&lookup("miss"), 6.0),
            // The second use of each unknown id.
            (&lookup("negative_hit"), 2.0),
            // The good token's id from the hot table: two uses, the wrong secret, the
            // wrong user, the scope refusal.
            (&lookup("hit"), 5.0),
            (&store_calls("get"), 6.0),
            (&store_errors("get"), 1.0),
            // Every check the cache could not decide is timed.
            (STORE_TIMED, 8.0),
        ],
    );
    assert_eq!(store.gets.load(Ordering::SeqCst), 6);
}

#[tokio::test]
async fn a_flood_of_bad_tokens_is_counted_exactly() {
    let _turn = TURN.lock().await;
    recorder();
    let auth = Authenticator::new(Arc::new(MemoryStore::new()));
    const FLOOD: usize = 50_000;
    let unknown: Vec<String> = (0..1_000).map(|_| unknown()).collect();
    let before = sample();
    for i in 0..FLOOD {
        let junk = format!("pat_{i}");
        assert!(auth.authenticate(junk.as_str()).await.is_err());
    }
    let malformed = sample();
    for i in 0..FLOOD {
        let token = &unknown[i % unknown.len()];
        assert!(auth.authenticate(token.as_str()).await.is_err());
    }
    let after = sample();

    after.assert_moved(
        &before,
        &[
            (&outcome("malformed"), FLOOD as f64),
            (&outcome("not_found"), FLOOD as f64),
            (&outcome("valid"), 0.0),
            (STORE_TIMED, FLOOD as f64),
        ],
    );
    let looked_up =
        after.moved(&before, &lookup("miss")) + after.moved(&before, &lookup("negative_hit"));
    assert_eq!(looked_up, FLOOD as f64);
    // One in 64 of the checks decided from memory is timed, counted on this thread.
    let timed = malformed.moved(&before, CACHED_TIMED);
    let sampled = (FLOOD / 64) as f64;
    assert!(
        (sampled..=sampled + 1.0).contains(&timed),
        "{timed} of {FLOOD} malformed checks timed"
    );
}

#[tokio::test]
async fn store_calls_and_events_are_counted_by_operation_and_type() {
    let _turn = TURN.lock().await;
    recorder();
    let auth = Authenticator::builder(Arc::new(MemoryStore::new()))
        .with_event_capacity(1)
        .build();
    let manager = Manager::new(auth.clone());
    let root = Actor::Operator;
    let before = sample();
    let mut ids = Vec::new();
    for name in ["a", "b", "c"] {
        let req = CreateTokenRequest::for_owner("alice").name(name);
        ids.push(
            manager
                .create(&root, req)
                .await
                .unwrap()
                .view
                .id
                .to_string(),
        );
    }
    manager
        .patch(&root, &ids[0], TokenPatch::new().active(false))
        .await
        .unwrap();
    assert_eq!(
        manager.list(&root, ListQuery::new()).await.unwrap().total,
        3
    );
    let new_id = RotateRequest {
        new_id: true,
        ..RotateRequest::default()
    };
    manager.rotate(&root, &ids[1], new_id).await.unwrap();
    manager.delete(&root, &ids[2]).await.unwrap();
    let after = sample();

    let event = |t: &str| format!("pat_events_total{{type=\"{t}\"}}");
    after.assert_moved(
        &before,
        &[
            (&store_calls("insert"), 3.0),
            // The patch, the rotation and the delete each read the token first.
            (&store_calls("get"), 3.0),
            (&store_calls("update"), 1.0),
            (&store_calls("list"), 1.0),
            (&store_calls("replace"), 1.0),
            (&store_calls("delete"), 1.0),
            (&store_errors("get"), 0.0),
            (&store_errors("insert"), 0.0),
            (&event("created"), 3.0),
            (&event("disabled"), 1.0),
            (&event("rotated"), 1.0),
            (&event("deleted"), 1.0),
            // No background task takes them: the first waits in the queue (of one).
            ("pat_events_dropped_total", 5.0),
        ],
    );
    assert_eq!(auth.events_dropped(), 5);
    // Every change tells the other replicas.
    assert!(after.moved(&before, &store_calls("publish_change")) >= 6.0);
}

#[tokio::test]
async fn the_gauges_are_this_authenticators_share_until_it_is_dropped() {
    let _turn = TURN.lock().await;
    recorder();
    let store = Arc::new(TestStore::default());
    // The clock never moves: no use becomes due, each stays pending until the periodic
    // write (every second), which fails while the store is off.
    let auth = Authenticator::builder(store.clone())
        .with_clock(ManualClock::starting_now())
        .with_refresh_interval(Duration::from_secs(1))
        .build();
    let background = tokio::spawn(auth.background());
    let before = sample();
    for i in 0..5 {
        let created = auth.create(NewToken::new("alice", format!("t{i}"))).await;
        auth.authenticate(created.unwrap().token.expose())
            .await
            .unwrap();
    }
    store.fail.store(true, Ordering::SeqCst);
    auth.sync_cache().await;
    let expected = [
        ("pat_cache_entries", 5.0),
        ("pat_write_behind_pending", 5.0),
    ];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = sample();
        if expected.iter().all(|(s, n)| now.moved(&before, s) == *n) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the gauges did not reach 5 and 5: {}, {}",
            now.moved(&before, expected[0].0),
            now.moved(&before, expected[1].0)
        );
    }
    assert!(sample().moved(&before, &store_errors("touch")) >= 5.0);
    let _ = auth.shutdown().await;
    background.await.unwrap();
    drop(auth);
    sample().assert_moved(
        &before,
        &[
            ("pat_cache_entries", 0.0),
            ("pat_write_behind_pending", 0.0),
        ],
    );
}

/// `pat serve`'s forward auth counts its scope refusals as the layer does.
#[cfg(feature = "server")]
#[tokio::test]
async fn forward_auth_counts_a_scope_refusal() {
    use tower_pat::server::{ForwardAuth, Rules};
    let _turn = TURN.lock().await;
    recorder();
    let auth = Authenticator::builder(Arc::new(MemoryStore::new()))
        .with_attempt_limiter(AttemptLimiter::disabled())
        .build();
    let node = "0b0f8d7e-3f44-4c4e-9d0e-0f6f0b8d2a11";
    let reader = auth
        .create(
            NewToken::new("alice", "fwd").with_scopes(format!("node:{node}:r").parse().unwrap()),
        )
        .await
        .unwrap();
    let rules = Rules::parse(
        &std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/proxies/rules.toml"),
        )
        .unwrap(),
    )
    .unwrap();
    let app = ForwardAuth::new(auth, rules).routes();
    let ask = |method: &'static str| {
        http::Request::builder()
            .uri("/auth")
            .header("authorization", bearer(reader.token.expose()))
            .header("x-forwarded-method", method)
            .header("x-forwarded-uri", format!("/nodes/{node}/a"))
            .body(axum::body::Body::empty())
            .unwrap()
    };
    let before = sample();
    assert_eq!(send_req(&app, ask("GET")).await.status, StatusCode::OK);
    assert_eq!(
        send_req(&app, ask("PUT")).await.status,
        StatusCode::FORBIDDEN
    );
    sample().assert_moved(
        &before,
        &[
            (&outcome("valid"), 2.0),
            (&outcome("insufficient_scope"), 1.0),
        ],
    );
}
