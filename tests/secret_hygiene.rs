//! Secret hygiene: across a broad scenario (create, authenticate valid, wrong, expired,
//! disabled and unknown tokens over Bearer and Basic through the layer, the management
//! API, store errors), no token secret appears in TRACE logs, in any `Debug` or
//! `Display` rendering of a public type, or in a response body.

mod common;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::routing::get;
use axum::Router;
use common::*;
use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderValue, Request, StatusCode};
use tower_pat::credentials::{parse_authorization, ParseOptions};
use tower_pat::manage::{Actor, CreateTokenRequest, Manager, RotateRequest};
use tower_pat::TokenFormat;
use tower_pat::{
    AuthError, Authenticator, Expiry, InvalidReason, NewToken, PatLayer, Rejection, TokenStore,
};
use tower_pat::{Challenge, RejectionKind};
use tower_pat::{Clock, ManualClock};

/// Every token string the scenario saw, and everything rendered along the way.
#[derive(Default)]
struct Seen {
    tokens: Vec<String>,
    renderings: Vec<String>,
}

impl Seen {
    fn token(&mut self, t: &str) -> String {
        self.tokens.push(t.to_owned());
        t.to_owned()
    }
    fn debug(&mut self, v: &dyn std::fmt::Debug) {
        self.renderings.push(format!("{v:?}"));
        self.renderings.push(format!("{v:#?}"));
    }
    fn display(&mut self, v: &dyn std::fmt::Display) {
        self.renderings.push(v.to_string());
    }
}

/// The secret characters of a token (between the last `_` and the checksum). Any 12
/// consecutive of them found in a text count as a leak, so a truncated or re-encoded
/// token is caught too.
fn leaks(token: &str, text: &str) -> bool {
    let tail = token.rsplit_once('_').map_or(token, |(_, s)| s);
    let secret = &tail[..tail.len().saturating_sub(6)];
    secret.len() >= 12 && (0..=secret.len() - 12).any(|i| text.contains(&secret[i..i + 12]))
}

fn assert_clean(seen: &Seen, what: &str, text: &str) {
    for t in &seen.tokens {
        assert!(!leaks(t, text), "a token secret appears in {what}: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_in_logs_debug_or_bodies() {
    logs();
    let store = Arc::new(TestStore::default());
    let clock = ManualClock::starting_now();
    let builder = Authenticator::builder(store.clone())
        .with_clock(clock.clone())
        .with_store_timeout(Duration::from_millis(200));
    let mut seen = Seen::default();
    seen.debug(&builder);
    let auth = builder.build();
    let manager = Manager::new(auth.clone());
    let router = app(auth.clone());
    let mut bodies = Vec::new();

    // Tokens of every kind.
    let created = auth
        .create(NewToken::new("alice", "ci").with_scopes("repo:read".parse().unwrap()))
        .await
        .unwrap();
    let valid = seen.token(created.token.expose());
    seen.debug(&created);
    seen.debug(&created.record);
    seen.debug(&created.token);
    seen.display(&created.token);
    let expiring = auth
        .create(
            NewToken::new("alice", "short")
                .with_expiry(Expiry::hard(clock.now(), Duration::from_secs(60))),
        )
        .await
        .unwrap();
    let expiring = seen.token(expiring.token.expose());
    let disabled = auth.create(NewToken::new("bob", "off")).await.unwrap();
    let mut rec = disabled.record.clone();
    rec.active = false;
    assert!(store.update(&rec).await.unwrap().is_written());
    let disabled = seen.token(disabled.token.expose());
    let minted = TokenFormat::default().mint();
    seen.debug(&minted);
    let unknown = seen.token(minted.token.expose());
    let wrong_secret = auth.format().mint_with_id(created.record.id);
    let wrong_secret = seen.token(wrong_secret.token.expose());
    let truncated = valid[..valid.len() - 1].to_owned();

    // The management API: create, rotate (in place and to a new id), patch, errors.
    let issued = manager
        .create(
            &Actor::Operator,
            CreateTokenRequest::for_owner("carol")
                .name("deploy")
                .scope("repo:write"),
        )
        .await
        .unwrap();
    let carol = seen.token(issued.token.expose());
    seen.debug(&issued);
    seen.debug(&issued.view);
    let id = issued.view.id.to_string();
    let rotated = manager
        .rotate(
            &Actor::Operator,
            &id,
            RotateRequest {
                grace: Some("1h".into()),
                new_id: false,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let carol2 = seen.token(rotated.token.expose());
    seen.debug(&rotated);
    let moved = manager
        .rotate(
            &Actor::Operator,
            &id,
            RotateRequest {
                grace: None,
                new_id: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let carol3 = seen.token(moved.token.expose());
    seen.debug(&moved);
    let ops =
        tower_pat::manage::parse_patch(br#"[{"op":"replace","path":"/name","value":"renamed"}]"#)
            .unwrap();
    let patched = manager
        .json_patch(&Actor::Operator, &moved.view.id.to_string(), &ops, None)
        .await
        .unwrap();
    seen.debug(&patched);
    seen.debug(&manager);
    let principal = auth.authenticate(&carol3).await.unwrap();
    let as_carol = Actor::Principal(principal.clone());
    seen.debug(&as_carol);
    if let Err(e) = manager
        .create(
            &as_carol,
            CreateTokenRequest::for_owner("carol").scope("repo:admin"),
        )
        .await
    {
        seen.debug(&e);
        seen.display(&e);
    }

    // Through the layer: every outcome over Bearer and Basic.
    let cases: Vec<(String, StatusCode)> = vec![
        (bearer(&valid), StatusCode::OK),
        (basic("alice", &valid), StatusCode::OK),
        (basic("mallory", &valid), StatusCode::UNAUTHORIZED),
        (bearer(&wrong_secret), StatusCode::UNAUTHORIZED),
        (basic("alice", &wrong_secret), StatusCode::UNAUTHORIZED),
        (bearer(&unknown), StatusCode::UNAUTHORIZED),
        (basic("bob", &disabled), StatusCode::UNAUTHORIZED),
        (bearer(&disabled), StatusCode::UNAUTHORIZED),
        (bearer(&truncated), StatusCode::UNAUTHORIZED),
        (bearer(&carol), StatusCode::OK), // old secret, inside its grace period
        (bearer(&carol2), StatusCode::UNAUTHORIZED), // its id moved to carol3
        (format!("Bearer {valid} {valid}"), StatusCode::BAD_REQUEST),
        (format!("Basic {valid}"), StatusCode::BAD_REQUEST),
        (format!("Bearer \"{valid}\""), StatusCode::BAD_REQUEST),
        (format!("Token {valid}"), StatusCode::UNAUTHORIZED),
    ];
    for (header, want) in &cases {
        let r = send(&router, "GET", "/whoami", Some(header)).await;
        // carol's first secret is gone with its id after the move to a new id.
        if header.contains(&carol) {
            assert!(r.status == StatusCode::OK || r.status == StatusCode::UNAUTHORIZED);
        } else {
            assert_eq!(r.status, *want, "case {:?}", header.split(' ').next());
        }
        bodies.push(r.body);
    }
    let r = send(
        &router,
        "GET",
        &format!("/whoami?access_token={valid}"),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    bodies.push(r.body);
    // Expired, exactly at its end.
    clock.advance(Duration::from_secs(60));
    let r = send(&router, "GET", "/whoami", Some(&bearer(&expiring))).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    bodies.push(r.body);
    // Store errors and timeouts, on uncached tokens.
    auth.invalidate_all();
    store.fail.store(true, Ordering::SeqCst);
    for h in [bearer(&valid), basic("alice", &expiring), bearer(&unknown)] {
        let r = send(&router, "GET", "/whoami", Some(&h)).await;
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
        bodies.push(r.body);
    }
    let flush_err = auth.flush().await;
    if let Err(e) = &flush_err {
        seen.debug(e);
    }
    store.fail.store(false, Ordering::SeqCst);
    store.hang.store(true, Ordering::SeqCst);
    let r = send(&router, "GET", "/whoami", Some(&bearer(&valid))).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    bodies.push(r.body);
    store.hang.store(false, Ordering::SeqCst);
    // The password adapter and the failed-attempt limiter.
    for _ in 0..25 {
        let _ = auth
            .authenticate(
                tower_pat::Credential::basic("alice", &wrong_secret)
                    .with_client(Some([10, 0, 0, 1].into())),
            )
            .await;
    }
    let limited = auth
        .authenticate(
            tower_pat::Credential::basic("alice", &valid).with_client(Some([10, 0, 0, 1].into())),
        )
        .await;
    assert!(matches!(limited, Err(AuthError::TooManyAttempts { .. })));

    // Every error and rejection kind, rendered.
    let errors = [
        auth.authenticate(&truncated).await.unwrap_err(),
        auth.authenticate(&wrong_secret).await.unwrap_err(),
        auth.authenticate(&unknown).await.unwrap_err(),
        auth.authenticate(tower_pat::Credential::basic("mallory", &valid))
            .await
            .unwrap_err(),
        limited.unwrap_err(),
        AuthError::Invalid(InvalidReason::Expired),
    ];
    for e in &errors {
        seen.debug(e);
        seen.display(e);
        let rejection = Rejection::from_auth_error(e, Challenge::default());
        seen.debug(&rejection);
        seen.display(&rejection);
    }
    let kinds = [
        RejectionKind::MissingCredentials,
        RejectionKind::InvalidToken,
        RejectionKind::InsufficientScope("repo:write".parse().unwrap()),
        RejectionKind::StoreUnavailable(Duration::from_secs(1)),
    ];
    for k in kinds {
        let r = Rejection::new(k, Challenge::default());
        seen.debug(&r);
        let resp: http::Response<String> = r.into_response();
        seen.debug(&resp);
        bodies.push(resp.into_body());
    }
    // Credentials as parsed from headers, and the layer itself.
    for h in [bearer(&valid), basic("alice", &valid)] {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, HeaderValue::from_str(&h).unwrap());
        let creds = parse_authorization(&headers, &ParseOptions::default())
            .unwrap()
            .unwrap();
        seen.debug(&creds);
    }
    let parsed = auth.format().parse(&valid).unwrap();
    seen.debug(&parsed);
    seen.debug(&principal);
    seen.debug(&auth);
    seen.debug(&PatLayer::new(auth.clone()));
    seen.debug(&(store.inner.list(&Default::default()).await.unwrap()));

    // The events of all that: the tracing sink logs them (checked with the logs below),
    // the audit log keeps them.
    store.fail.store(false, Ordering::SeqCst);
    store.hang.store(false, Ordering::SeqCst);
    let _ = auth.shutdown().await;
    let events = store
        .list_events(&tower_pat::store::EventQuery::new().page(1, 1000))
        .await
        .unwrap();
    let kinds: Vec<&str> = events.items.iter().map(|e| e.kind.name()).collect();
    for kind in ["created", "rotated", "first_use"] {
        assert!(
            kinds.contains(&kind),
            "{kind} not in the audit log: {kinds:?}"
        );
    }
    for e in &events.items {
        seen.debug(e);
        seen.renderings.push(serde_json::to_string(e).unwrap());
    }

    // Nothing above shows a secret: not the logs, not a rendering, not a response body.
    let logs = String::from_utf8_lossy(&logs().lock().unwrap()).into_owned();
    assert!(
        logs.contains("TRACE") || logs.contains("DEBUG"),
        "no logs captured"
    );
    assert!(
        logs.contains(&created.record.id.to_string()),
        "ids are logged"
    );
    assert_clean(&seen, "the logs", &logs);
    for r in &seen.renderings {
        assert_clean(&seen, "a Debug/Display rendering", r);
    }
    for b in &bodies {
        assert_clean(&seen, "a response body", b);
    }
    // The helper in tests/common agrees.
    let refs: Vec<&str> = seen.tokens.iter().map(String::as_str).collect();
    assert_no_secret(&refs, &seen.renderings);
}

/// The layer hands the request on with its `Authorization` header: it must be marked
/// sensitive, so an inner service that logs its headers (`Debug`) shows no token.
#[tokio::test]
async fn authorization_header_reaches_the_inner_service_marked_sensitive() {
    let auth = Authenticator::new(Arc::new(TestStore::default()));
    let token = auth
        .create(NewToken::new("alice", "x"))
        .await
        .unwrap()
        .token
        .expose()
        .to_owned();
    let seen_by_inner: Arc<Mutex<Vec<(bool, String)>>> = Arc::default();
    let s = seen_by_inner.clone();
    let router = Router::new()
        .route(
            "/echo",
            get(move |headers: HeaderMap| {
                let s = s.clone();
                async move {
                    let v = headers.get(AUTHORIZATION).expect("header passed on");
                    s.lock()
                        .unwrap()
                        .push((v.is_sensitive(), format!("{headers:?}")));
                    "ok"
                }
            }),
        )
        .layer(PatLayer::new(auth));
    for header in [bearer(&token), basic("alice", &token)] {
        let req = Request::get("/echo")
            .header(AUTHORIZATION, header)
            .body(Body::empty())
            .unwrap();
        let r = send_req(&router, req).await;
        assert_eq!(r.status, StatusCode::OK);
    }
    let seen = seen_by_inner.lock().unwrap();
    assert_eq!(seen.len(), 2);
    for (sensitive, debug) in seen.iter() {
        assert!(
            !leaks(&token, debug),
            "the inner service's Debug of the headers shows the token"
        );
        assert!(*sensitive, "Authorization is not marked sensitive");
    }
}

/// A token pasted where an id is expected (`pat show <token>`, `GET
/// /personal-access-tokens/<token>`) must not be echoed back in the error.
#[tokio::test]
async fn a_token_given_as_an_id_is_not_echoed() {
    let auth = Authenticator::new(Arc::new(TestStore::default()));
    let manager = Manager::new(auth.clone());
    let token = auth
        .create(NewToken::new("alice", "x"))
        .await
        .unwrap()
        .token
        .expose()
        .to_owned();
    let err = manager.get(&Actor::Operator, &token).await.unwrap_err();
    let rendered = format!("{err} {err:?}");
    assert!(!leaks(&token, &rendered), "{rendered}");
}
