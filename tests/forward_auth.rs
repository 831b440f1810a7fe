//! The forward-auth endpoints of `pat serve` (`tower_pat::server`), without a proxy:
//! Envoy's `ext_authz` contract (only 200 allows; the original path behind the prefix,
//! the original method as the check's own) with requests shaped as Envoy sends them, the
//! `/auth` contract (the original request named by the proxy, 400 without it), the proxy
//! secret, `/readyz`, and an attack corpus of header shapes at `/auth`: no panic, and no
//! 200 without a valid token and a rule that allows the request.
#![cfg(feature = "server")]

mod common;

use std::sync::Arc;

use axum::body::Body;
use axum::Router;
use common::{send_req, Reply, TestStore};
use http::{HeaderValue, Request, StatusCode};
use tower_pat::manage::Manager;
use tower_pat::server::{router, ForwardAuth, Rules};
use tower_pat::{AttemptLimiter, Authenticator, NewToken, ScopeSet};

const NODE: &str = "0b0f8d7e-3f44-4c4e-9d0e-0f6f0b8d2a11";

fn rules() -> Rules {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/proxies/rules.toml"),
    )
    .unwrap();
    Rules::parse(&text).unwrap()
}

struct Env {
    app: Router,
    store: Arc<TestStore>,
    reader: String,
    writer: String,
}

async fn env(secret: Option<&str>) -> Env {
    let store = Arc::new(TestStore::default());
    let auth = Authenticator::builder(store.clone())
        .with_attempt_limiter(AttemptLimiter::disabled())
        .build();
    let mint = |scopes: String| {
        let auth = auth.clone();
        async move {
            let scopes: ScopeSet = scopes.parse().unwrap();
            auth.create(NewToken::new("alice", "fwd").with_scopes(scopes))
                .await
                .unwrap()
                .token
                .expose()
                .to_owned()
        }
    };
    let reader = mint(format!("node:{NODE}:r")).await;
    let writer = mint(format!("node:{NODE}:rw")).await;
    let mut forward = ForwardAuth::new(auth.clone(), rules());
    if let Some(s) = secret {
        forward = forward.with_proxy_secret(s).unwrap();
    }
    Env {
        app: router(Manager::new(auth), forward),
        store,
        reader,
        writer,
    }
}

async fn send(app: &Router, method: &str, uri: &str, headers: &[(&str, &[u8])]) -> Reply {
    let mut b = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        b = b.header(*k, HeaderValue::from_bytes(v).unwrap());
    }
    send_req(app, b.body(Body::empty()).unwrap()).await
}

fn bearer(t: &str) -> Vec<u8> {
    format!("Bearer {t}").into_bytes()
}

#[tokio::test]
async fn envoy_ext_authz_uses_the_path_behind_the_prefix_and_the_checks_own_method() {
    let e = env(None).await;
    let path = format!("/ext-authz/nodes/{NODE}/docs/a.txt");
    let r = send(
        &e.app,
        "GET",
        &path,
        &[("authorization", &bearer(&e.reader))],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.headers["x-pat-owner"], "alice");
    assert_eq!(r.headers["x-pat-scopes"], format!("node:{NODE}:r").as_str());
    assert_eq!(r.headers["x-pat-expires-at"], "never");
    assert!(r.headers.contains_key("x-pat-token-id"));
    // The method is the check's own: a PUT needs :w.
    let r = send(
        &e.app,
        "PUT",
        &path,
        &[("authorization", &bearer(&e.reader))],
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.challenges()[0].contains("scope=\"node:"));
    let r = send(
        &e.app,
        "PUT",
        &path,
        &[("authorization", &bearer(&e.writer))],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let propfind = send(
        &e.app,
        "PROPFIND",
        &path,
        &[("authorization", &bearer(&e.reader))],
    )
    .await;
    assert_eq!(propfind.status, StatusCode::OK);
    // No rule for the bare prefix or other paths: denied, never allowed.
    for p in ["/ext-authz", "/ext-authz/", "/ext-authz/elsewhere"] {
        let r = send(&e.app, "GET", p, &[("authorization", &bearer(&e.writer))]).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{p}");
    }
    // Another spelling of the path: 400, not resolved.
    let r = send(
        &e.app,
        "GET",
        &format!("/ext-authz/nodes/{NODE}/%2e%2e/x"),
        &[("authorization", &bearer(&e.reader))],
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = send(&e.app, "GET", &path, &[]).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.challenges()[0].starts_with("Bearer realm="));
}

#[tokio::test]
async fn auth_needs_the_original_request_and_reads_either_header_pair() {
    let e = env(None).await;
    let t = bearer(&e.reader);
    let uri = format!("/nodes/{NODE}/a?x=1#f");
    let full = format!("https://files.example/nodes/{NODE}/a?x=1");
    for (method_h, uri_h, uri_v) in [
        ("x-forwarded-method", "x-forwarded-uri", uri.as_bytes()),
        ("x-original-method", "x-original-uri", uri.as_bytes()),
        ("x-forwarded-method", "x-forwarded-uri", full.as_bytes()),
    ] {
        let r = send(
            &e.app,
            "GET",
            "/auth",
            &[("authorization", &t), (method_h, b"GET"), (uri_h, uri_v)],
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{method_h} {uri_h}");
    }
    // Without them, or with two of one: 400, before any token is read.
    for headers in [
        vec![("authorization", t.as_slice())],
        vec![
            ("authorization", t.as_slice()),
            ("x-forwarded-method", b"GET"),
        ],
        vec![
            ("authorization", t.as_slice()),
            ("x-forwarded-uri", uri.as_bytes()),
        ],
        vec![
            ("authorization", t.as_slice()),
            ("x-forwarded-method", b"GET"),
            ("x-forwarded-method", b"PUT"),
            ("x-forwarded-uri", uri.as_bytes()),
        ],
        vec![
            ("authorization", t.as_slice()),
            ("x-forwarded-method", b"G E T"),
            ("x-forwarded-uri", uri.as_bytes()),
        ],
    ] {
        let r = send(&e.app, "GET", "/auth", &headers).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{headers:?}");
    }
    let r = send(&e.app, "GET", "/auth", &[]).await;
    assert_ne!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn with_a_proxy_secret_only_the_proxy_is_answered() {
    let e = env(Some("s3cret-of-the-proxy\n")).await;
    let t = bearer(&e.reader);
    let uri = format!("/nodes/{NODE}/a");
    let check = |secret: Vec<&'static [u8]>| {
        let app = e.app.clone();
        let t = t.clone();
        let uri = uri.clone();
        async move {
            let mut h: Vec<(&str, &[u8])> = vec![
                ("authorization", &t),
                ("x-forwarded-method", b"GET"),
                ("x-forwarded-uri", uri.as_bytes()),
            ];
            for s in &secret {
                h.push(("x-pat-proxy-secret", s));
            }
            send(&app, "GET", "/auth", &h).await.status
        }
    };
    assert_eq!(check(vec![b"s3cret-of-the-proxy"]).await, StatusCode::OK);
    assert_eq!(check(vec![]).await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        check(vec![b"s3cret-of-the-prox"]).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(check(vec![b""]).await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        check(vec![b"s3cret-of-the-proxy", b"s3cret-of-the-proxy"]).await,
        StatusCode::UNAUTHORIZED
    );
    // Envoy's route too.
    let r = send(
        &e.app,
        "GET",
        &format!("/ext-authz{uri}"),
        &[("authorization", &t)],
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(ForwardAuth::new(
        Authenticator::new(Arc::new(tower_pat::MemoryStore::new())),
        Rules::authenticated()
    )
    .with_proxy_secret(" \n")
    .is_err());
}

#[tokio::test]
async fn readyz_says_whether_the_store_answers() {
    let e = env(None).await;
    assert_eq!(
        send(&e.app, "GET", "/healthz", &[]).await.status,
        StatusCode::OK
    );
    assert_eq!(
        send(&e.app, "GET", "/readyz", &[]).await.status,
        StatusCode::OK
    );
    e.store
        .fail
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let r = send(&e.app, "GET", "/readyz", &[]).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.headers.contains_key("retry-after"));
    assert_eq!(
        send(&e.app, "GET", "/healthz", &[]).await.status,
        StatusCode::OK
    );
    // The store down: a token not cached is 503, never a pass.
    let uri = format!("/nodes/{NODE}/a");
    let r = send(
        &e.app,
        "GET",
        "/auth",
        &[
            ("authorization", &bearer(&e.writer)),
            ("x-forwarded-method", b"GET"),
            ("x-forwarded-uri", uri.as_bytes()),
        ],
    )
    .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
}

/// Hostile shapes of the headers `/auth` reads: each gets a refusal (never 200, never a
/// panic) unless it is a valid token for an allowed request.
#[tokio::test]
async fn hostile_header_shapes_at_auth_never_pass() {
    let e = env(None).await;
    let t = e.reader.clone();
    let ok_uri = format!("/nodes/{NODE}/a");
    let long = "a".repeat(64 * 1024);
    let uris: Vec<Vec<u8>> = vec![
        ok_uri.clone().into_bytes(),
        b"".to_vec(),
        b"*".to_vec(),
        b"nodes/x".to_vec(),
        format!("/nodes/{NODE}/../x").into_bytes(),
        format!("/nodes/{NODE}//x").into_bytes(),
        format!("/nodes/{NODE}\\x").into_bytes(),
        format!("/nodes/{NODE}%2F..%2Fx").into_bytes(),
        format!("/nodes/{NODE}/%2E/x").into_bytes(),
        format!("/nodes/{NODE}/\u{0}x")
            .into_bytes()
            .into_iter()
            .filter(|b| *b != 0)
            .collect(),
        format!("/nodes/{NODE}/é/ü").into_bytes(),
        vec![b'/', 0xff, 0xfe, b'/', 0x80],
        format!("/{long}").into_bytes(),
        b"http://".to_vec(),
        b"https://host".to_vec(),
        b"//evil/nodes".to_vec(),
        b"/nodes/a:b/x".to_vec(),
        format!("/nodes/{NODE}/a?{long}").into_bytes(),
    ];
    let methods: Vec<&[u8]> = vec![
        b"GET",
        b"get",
        b"PUT",
        b"PROPFIND",
        b"",
        b"G\tT",
        b"GET ",
        b"\xff",
        b"CONNECT",
    ];
    let auths: Vec<Vec<u8>> = vec![
        bearer(&t),
        b"".to_vec(),
        b"Bearer".to_vec(),
        format!("Bearer {t} {t}").into_bytes(),
        format!("Bearer {}", &t[..t.len() - 1]).into_bytes(),
        format!("Basic {t}").into_bytes(),
        vec![0xff, 0xfe],
        format!("Bearer {long}").into_bytes(),
    ];
    let mut passed = Vec::new();
    for uri in &uris {
        for method in &methods {
            for auth in &auths {
                let mut h: Vec<(&str, &[u8])> = vec![("x-forwarded-uri", uri)];
                if !method.is_empty() {
                    h.push(("x-forwarded-method", method));
                }
                if !auth.is_empty() {
                    h.push(("authorization", auth));
                }
                let r = send(&e.app, "GET", "/auth", &h).await;
                if r.status == StatusCode::OK {
                    passed.push((
                        String::from_utf8_lossy(uri)
                            .chars()
                            .take(80)
                            .collect::<String>(),
                        String::from_utf8_lossy(method).into_owned(),
                        auth == &bearer(&t),
                    ));
                }
                assert!(
                    [200, 400, 401, 403].contains(&r.status.as_u16()),
                    "{}: {:?} {:?}",
                    r.status,
                    String::from_utf8_lossy(uri)
                        .chars()
                        .take(80)
                        .collect::<String>(),
                    String::from_utf8_lossy(method)
                );
            }
        }
    }
    // Only the valid token, for a path under the node in its one spelling (the query
    // aside), with a read method (surrounding whitespace trimmed).
    assert!(!passed.is_empty());
    for (uri, method, valid) in &passed {
        let path = uri.split('?').next().unwrap();
        assert!(*valid, "{passed:?}");
        assert!(
            [ok_uri.clone(), format!("/nodes/{NODE}/x")].contains(&path.to_owned()),
            "{uri}"
        );
        assert!(
            ["GET", "GET ", "PROPFIND"].contains(&method.as_str()),
            "{method}"
        );
    }
}

/// What a client controls cannot move the path that is checked: a `://` in the query,
/// a client's own `X-Original-*` beside the proxy's `X-Forwarded-*`, another spelling of
/// the path (encoded letters, `;` parameters, a doubled slash).
#[tokio::test]
async fn the_checked_path_is_the_requested_one() {
    let e = env(None).await;
    let t = bearer(&e.reader);
    let other = "9c1d7a52-0000-4000-8000-000000000001";
    let status = |headers: Vec<(&'static str, Vec<u8>)>| {
        let app = e.app.clone();
        let t = t.clone();
        async move {
            let mut h: Vec<(&str, &[u8])> = vec![("authorization", &t)];
            h.extend(headers.iter().map(|(k, v)| (*k, v.as_slice())));
            send(&app, "GET", "/auth", &h).await.status
        }
    };
    let fwd = |uri: &str| {
        vec![
            ("x-forwarded-method", b"GET".to_vec()),
            ("x-forwarded-uri", uri.as_bytes().to_vec()),
        ]
    };
    // The node it may read, and its spellings.
    assert_eq!(
        status(fwd(&format!("/nodes/{NODE}/a"))).await,
        StatusCode::OK
    );
    assert_eq!(
        status(fwd(&format!("/nodes/{NODE}/a/"))).await,
        StatusCode::OK
    );
    // Another node, whatever the query says.
    let sneaky = format!("/nodes/{other}/secret?r=https://x/nodes/{NODE}/a");
    assert_eq!(status(fwd(&sneaky)).await, StatusCode::FORBIDDEN);
    let sneaky = format!("/nodes/{other}/secret#https://x/nodes/{NODE}/a");
    assert_eq!(status(fwd(&sneaky)).await, StatusCode::FORBIDDEN);
    // A full URL is read as its path.
    let full = format!("https://files.example/nodes/{other}/x?y=/nodes/{NODE}/a");
    assert_eq!(status(fwd(&full)).await, StatusCode::FORBIDDEN);
    // The proxy's family decides: an unreadable X-Forwarded-Uri is 400, not a reason to
    // believe the client's X-Original-URI; nor are the families mixed.
    let mut h = fwd("");
    h[1].1 = format!("/nodes/{other}/s\u{e9}").into_bytes();
    h.push(("x-original-method", b"GET".to_vec()));
    h.push(("x-original-uri", format!("/nodes/{NODE}/a").into_bytes()));
    assert_eq!(status(h).await, StatusCode::BAD_REQUEST);
    let mixed = vec![
        ("x-forwarded-method", b"GET".to_vec()),
        ("x-original-uri", format!("/nodes/{NODE}/a").into_bytes()),
    ];
    assert_eq!(status(mixed).await, StatusCode::BAD_REQUEST);
    // Other spellings of a path are refused, not matched by another rule.
    for p in [
        format!("/%6eodes/{NODE}/a"),
        format!("/nodes/{NODE}%2fa"),
        format!("/nodes/{NODE};jsessionid=1/a"),
        format!("/nodes/{NODE}//a"),
        "//".to_owned(),
        format!("/nodes/{NODE}/a%zz"),
    ] {
        assert_eq!(status(fwd(&p)).await, StatusCode::BAD_REQUEST, "{p}");
    }
    // A capture that would reach into the scope's other segments is denied.
    assert_eq!(
        status(fwd(&format!("/nodes/{NODE}:*/a"))).await,
        StatusCode::FORBIDDEN
    );
}
