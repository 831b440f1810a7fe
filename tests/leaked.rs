//! Leaked-token revocation (`POST /personal-access-tokens/revoke`): no authentication,
//! only a matching secret disables (never deletes) a token, the answer says nothing about
//! which entries were valid, and each client is limited.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::Router;
use common::events::Collect;
use http::{Request, StatusCode};
use http_body_util::BodyExt as _;
use serde_json::{json, Value};
use tower::ServiceExt as _;
use tower_pat::manage::{Actor, CreateTokenRequest, Manager, RotateRequest};
use tower_pat::{admin, Authenticator, EventActor, EventKind, MemoryStore, PatLayer, TokenFormat};

struct Env {
    app: Router,
    auth: Authenticator,
    manager: Manager,
    events: Collect,
}

/// The quickstart's shape: the admin API behind the layer, the report route outside it.
fn env(limit: u32) -> Env {
    let events = Collect::default();
    let auth = Authenticator::builder(Arc::new(MemoryStore::new()))
        .with_event_sinks(vec![Arc::new(events.clone())])
        .build();
    tokio::spawn(auth.background());
    let manager = Manager::new(auth.clone());
    let app = Router::new()
        .merge(admin::router(manager.clone()))
        .layer(PatLayer::new(auth.clone()))
        .merge(admin::revoke_router_with_limit(
            manager.clone(),
            tower_pat::AttemptLimiter::new(limit, Duration::from_secs(3600)),
        ));
    Env {
        app,
        auth,
        manager,
        events,
    }
}

async fn report(app: &Router, from: [u8; 4], body: Value) -> (StatusCode, Value, Option<String>) {
    let mut req = Request::post("/personal-access-tokens/revoke")
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    req.extensions_mut()
        .insert(ConnectInfo(SocketAddr::from((from, 50_000))));
    let res = app.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let retry = res
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        retry,
    )
}

async fn mint(m: &Manager, name: &str) -> (String, tower_pat::TokenId) {
    let issued = m
        .create(
            &Actor::Operator,
            CreateTokenRequest::for_owner("alice").name(name),
        )
        .await
        .unwrap();
    (issued.token.expose().to_owned(), issued.view.id)
}

async fn active(auth: &Authenticator, id: &tower_pat::TokenId) -> bool {
    auth.store()
        .get(id)
        .await
        .unwrap()
        .expect("never deleted")
        .active
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_matching_secret_disables_and_the_answer_tells_nothing() {
    let e = env(60);
    let (valid, valid_id) = mint(&e.manager, "leaked").await;
    let (other, other_id) = mint(&e.manager, "kept").await;
    // The other token's id with another secret, checksum and all: well formed, known id,
    // wrong secret.
    let format = TokenFormat::default();
    let wrong_secret = format.mint_with_id(other_id).token.expose().to_owned();
    assert!(format.parse(&wrong_secret).is_ok());
    let unknown = format.mint().token.expose().to_owned();
    let mixed = json!({"tokens": [valid, unknown, "pat_not-a-token", wrong_secret]});
    let junk = json!({"tokens": [
        format.mint().token.expose(),
        format.mint().token.expose(),
        "x",
        wrong_secret
    ]});
    // No Authorization header: the route is outside the layer.
    let (status, body, _) = report(&e.app, [198, 51, 100, 1], mixed).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (junk_status, junk_body, _) = report(&e.app, [198, 51, 100, 1], junk).await;
    assert_eq!(
        (junk_status, &junk_body),
        (status, &body),
        "a report of junk is answered as one with a valid token"
    );
    assert!(
        !active(&e.auth, &valid_id).await,
        "the leaked token is disabled"
    );
    assert!(
        active(&e.auth, &other_id).await,
        "a wrong secret changes nothing"
    );
    assert!(e.auth.authenticate(valid.as_str()).await.is_err());
    assert!(e.auth.authenticate(other.as_str()).await.is_ok());
    // One event, for the leaked token, by nobody in particular.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let events = e.events.events();
    let leaks: Vec<_> = events
        .iter()
        .filter(|ev| ev.kind == EventKind::RevokedAsLeaked)
        .collect();
    assert_eq!(leaks.len(), 1, "{events:?}");
    assert_eq!(leaks[0].token_id, valid_id);
    assert_eq!(leaks[0].actor, EventActor::System);
    // Reported again: already disabled, no second event.
    let (status, _, _) = report(&e.app, [198, 51, 100, 1], json!({"tokens": [valid]})).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let leaks = e
        .events
        .events()
        .iter()
        .filter(|ev| ev.kind == EventKind::RevokedAsLeaked)
        .count();
    assert_eq!(leaks, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_replaced_within_its_grace_still_revokes() {
    let e = env(60);
    let (old, id) = mint(&e.manager, "rotated").await;
    let rotate = RotateRequest {
        grace: Some("1h".into()),
        ..Default::default()
    };
    e.manager
        .rotate(&Actor::Operator, id.as_str(), rotate)
        .await
        .unwrap();
    let (status, _, _) = report(&e.app, [198, 51, 100, 2], json!({"tokens": [old]})).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert!(!active(&e.auth, &id).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_client_is_limited_and_big_or_bad_reports_are_refused() {
    let e = env(60);
    let (valid, id) = mint(&e.manager, "kept").await;
    for i in 0..60 {
        let (status, _, _) = report(&e.app, [203, 0, 113, 5], json!({"tokens": []})).await;
        assert_eq!(status, StatusCode::ACCEPTED, "report {i}");
    }
    let (status, _, retry) = report(&e.app, [203, 0, 113, 5], json!({"tokens": [valid]})).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = retry.expect("Retry-After").parse().unwrap();
    assert!((1..=3600).contains(&retry), "{retry}");
    assert!(
        active(&e.auth, &id).await,
        "a refused report changes nothing"
    );
    // Another client is not affected.
    let (status, _, _) = report(&e.app, [203, 0, 113, 6], json!({"tokens": []})).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    // More than 1,000 entries, a non-object, an unknown field: 400, nothing changes.
    let many: Vec<String> = (0..1001).map(|_| valid.clone()).collect();
    for body in [
        json!({"tokens": many}),
        json!([valid]),
        json!({"tokens": [], "x": 1}),
    ] {
        let (status, body, _) = report(&e.app, [203, 0, 113, 7], body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    }
    assert!(active(&e.auth, &id).await);
}

/// Behind a proxy, finders are told apart by the forwarded address, not the proxy's; an
/// IPv6 finder's /64 is one client.
#[tokio::test]
async fn behind_a_proxy_each_forwarded_client_has_its_own_limit() {
    let auth = Authenticator::new(Arc::new(MemoryStore::new()));
    let app: Router = admin::revoke_router_with_client_address(
        Manager::new(auth),
        tower_pat::AttemptLimiter::new(2, Duration::from_secs(3600)),
        tower_pat::layer::ClientAddress::x_forwarded_for(1),
    );
    let via_proxy = |client: &str| {
        let mut req = Request::post("/personal-access-tokens/revoke")
            .header("content-type", "application/json")
            .header("x-forwarded-for", client)
            .body(Body::from(json!({"tokens": []}).to_string()))
            .unwrap();
        req.extensions_mut()
            .insert(ConnectInfo(SocketAddr::from(([10, 0, 0, 1], 50_000))));
        let app = app.clone();
        async move { app.oneshot(req).await.unwrap().status() }
    };
    for client in ["203.0.113.5", "203.0.113.6"] {
        assert_eq!(via_proxy(client).await, StatusCode::ACCEPTED);
        assert_eq!(via_proxy(client).await, StatusCode::ACCEPTED);
        assert_eq!(via_proxy(client).await, StatusCode::TOO_MANY_REQUESTS);
    }
    assert_eq!(via_proxy("2001:db8:1:2::1").await, StatusCode::ACCEPTED);
    assert_eq!(via_proxy("2001:db8:1:2::ffff").await, StatusCode::ACCEPTED);
    assert_eq!(
        via_proxy("2001:db8:1:2:abcd::9").await,
        StatusCode::TOO_MANY_REQUESTS,
        "one /64 is one client"
    );
    assert_eq!(via_proxy("2001:db8:1:3::1").await, StatusCode::ACCEPTED);
}
