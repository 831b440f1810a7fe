//! A table of hostile `Authorization` values and request shapes, each with the answer it
//! must get (RFC 6750 §2.1/§3, RFC 7617 §2, RFC 9110 §11, hyperium/headers#112).

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use base64::Engine;
use common::*;
use http::{Request, StatusCode};
use tower_pat::{Authenticator, Expiry, NewToken, ScopeSet, TokenFormat, TokenStore};
use tower_pat::{Clock, ManualClock};

const A: &str = "0b0f8d7e-3f44-4c4e-9d0e-0f6f0b8d2a11";
const B: &str = "7c9e6679-7425-40de-944b-e07fc1f90ae7";

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Expected answer: status and a fragment of the first `WWW-Authenticate` value
/// (`None`: the header must be absent or carry no `error=`).
struct Case {
    name: String,
    headers: Vec<Vec<u8>>,
    path: String,
    status: StatusCode,
    error: Option<&'static str>,
}

fn case(
    name: &str,
    header: impl Into<Vec<u8>>,
    status: StatusCode,
    error: Option<&'static str>,
) -> Case {
    Case {
        name: name.to_owned(),
        headers: vec![header.into()],
        path: "/whoami".to_owned(),
        status,
        error,
    }
}

#[tokio::test]
async fn hostile_requests_get_the_documented_answer() {
    logs();
    let store = Arc::new(TestStore::default());
    let clock = ManualClock::starting_now();
    let auth = Authenticator::builder(store.clone())
        .with_clock(clock.clone())
        .build();
    let app = app(auth.clone());
    let mk = |scopes: &str, expiry: Expiry| {
        let auth = auth.clone();
        let scopes: ScopeSet = scopes.parse().unwrap();
        async move {
            let c = auth
                .create(
                    NewToken::new("alice", "corpus")
                        .with_scopes(scopes)
                        .with_expiry(expiry),
                )
                .await
                .unwrap();
            (c.token.expose().to_owned(), c.record)
        }
    };
    let now = clock.now();
    let (t, _) = mk("", Expiry::Never).await;
    let (revoked, mut rec) = mk("", Expiry::Never).await;
    rec.active = false;
    assert!(store.update(&rec).await.unwrap().is_written());
    let (expired_now, _) = mk("", Expiry::hard(now, Duration::from_secs(0))).await;
    let (expires_in_1s, _) = mk("", Expiry::hard(now, Duration::from_secs(1))).await;
    let (expired_1s_ago, mut r) = mk("", Expiry::Never).await;
    r.expiry = Expiry::HardLimit {
        expires_at: now - time::Duration::seconds(1),
    };
    r.expires_at = Some(now - time::Duration::seconds(1));
    assert!(store.update(&r).await.unwrap().is_written());
    let (node_a, _) = mk(&format!("node:{A}:r"), Expiry::Never).await;

    let mut bad_checksum = t.clone();
    let last = bad_checksum.pop().unwrap();
    bad_checksum.push(if last == 'a' { 'b' } else { 'a' });
    let unknown = TokenFormat::default().mint().token.expose().to_owned();
    let other_prefix = TokenFormat::with_prefix("ghp")
        .unwrap()
        .mint()
        .token
        .expose()
        .to_owned();

    use StatusCode as S;
    let (ok, e400, e401, no) = (S::OK, S::BAD_REQUEST, S::UNAUTHORIZED, None);
    let (ir, it) = (
        Some("error=\"invalid_request\""),
        Some("error=\"invalid_token\""),
    );
    let mut cases = vec![
        case("Bearer", format!("Bearer {t}"), ok, no),
        case("lower bearer", format!("bearer {t}"), ok, no),
        case("upper BEARER", format!("BEARER {t}"), ok, no),
        case("mixed BeArEr", format!("BeArEr {t}"), ok, no),
        case("Basic", basic("alice", &t), ok, no),
        case(
            "lower basic",
            format!("basic {}", b64(format!("alice:{t}").as_bytes())),
            ok,
            no,
        ),
        case("Bearer alone", "Bearer", e400, ir),
        case("Bearer space", "Bearer ", e400, ir),
        case("Bearer two tokens", format!("Bearer {t} {t}"), e400, ir),
        case("Bearer quoted", format!("Bearer \"{t}\""), e400, ir),
        case("Bearer comma list", format!("Bearer {t},{t}"), e400, ir),
        case(
            "Bearer a, Bearer b",
            format!("Bearer {t}, Bearer {t}"),
            e400,
            ir,
        ),
        case("Bearer tab", format!("Bearer\t{t}"), e400, ir),
        case(
            "Bearer = padding after token",
            format!("Bearer {t}=="),
            e401,
            it,
        ),
        case("Bearer only padding", "Bearer ====", e400, ir),
        case("Bearer padding first", format!("Bearer ={t}"), e400, ir),
        case("Bearer trailing space", format!("Bearer {t} "), e400, ir),
        case(
            "Bearer non-ASCII",
            "Bearer p\u{e9}t".as_bytes().to_vec(),
            e400,
            ir,
        ),
        case(
            "Bearer 0xFF byte",
            [b"Bearer ".as_slice(), &[0xff], t.as_bytes()].concat(),
            e400,
            ir,
        ),
        case("empty header", "", e400, ir),
        case("unknown scheme", format!("Token {t}"), e401, no),
        case("Basic raw token", format!("Basic {t}"), e400, ir),
        case("Basic invalid base64", "Basic !!!!", e400, ir),
        case(
            "Basic base64url alphabet",
            format!(
                "Basic {}",
                base64::engine::general_purpose::URL_SAFE.encode(b"alice:>>>???")
            ),
            e400,
            ir,
        ),
        case(
            "Basic unpadded",
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD_NO_PAD.encode(b"alice:pat1")
            ),
            e400,
            ir,
        ),
        case(
            "Basic no colon",
            format!("Basic {}", b64(t.as_bytes())),
            e400,
            ir,
        ),
        case(
            "Bearer token base64 as Basic",
            format!("Basic {}", b64(t.as_bytes())),
            e400,
            ir,
        ),
        case("Basic empty user", basic("", &t), e401, it),
        case("Basic wrong user", basic("mallory", &t), e401, it),
        case("Basic empty password", basic("alice", ""), e401, it),
        case(
            "Basic colon in password",
            basic("alice", &format!("{t}:x")),
            e401,
            it,
        ),
        case(
            "Basic NUL",
            format!("Basic {}", b64(format!("alice:{t}\0").as_bytes())),
            e400,
            ir,
        ),
        case(
            "Basic TAB",
            format!("Basic {}", b64(format!("alice:\t{t}").as_bytes())),
            e400,
            ir,
        ),
        case(
            "Basic CR LF",
            format!("Basic {}", b64(format!("alice:{t}\r\nX: y").as_bytes())),
            e400,
            ir,
        ),
        case(
            "Basic 0xFF",
            format!("Basic {}", b64(&[b"alice:".as_slice(), &[0xff]].concat())),
            e400,
            ir,
        ),
        case(
            "Basic overlong UTF-8",
            format!(
                "Basic {}",
                b64(&[b"alice:".as_slice(), &[0xc0, 0xba]].concat())
            ),
            e400,
            ir,
        ),
        case(
            "Basic two credentials",
            format!("Basic {} {}", b64(b"a:b"), b64(b"a:b")),
            e400,
            ir,
        ),
        case(
            "8 KiB",
            format!("Bearer {}", "a".repeat(8 * 1024)),
            e400,
            ir,
        ),
        case(
            "64 KiB",
            format!("Bearer {}", "a".repeat(64 * 1024)),
            e400,
            ir,
        ),
        case(
            "1 MiB",
            format!("Bearer {}", "a".repeat(1024 * 1024)),
            e400,
            ir,
        ),
        case(
            "1 MiB Basic",
            format!("Basic {}", "QUFB".repeat(256 * 1024)),
            e400,
            ir,
        ),
        case("wrong checksum", format!("Bearer {bad_checksum}"), e401, it),
        case(
            "right checksum, unknown id",
            format!("Bearer {unknown}"),
            e401,
            it,
        ),
        case("other prefix", format!("Bearer {other_prefix}"), e401, it),
        case(
            "truncated",
            format!("Bearer {}", &t[..t.len() - 1]),
            e401,
            it,
        ),
        case("revoked", format!("Bearer {revoked}"), e401, it),
        case(
            "expired exactly now",
            format!("Bearer {expired_now}"),
            e401,
            it,
        ),
        case(
            "expires in one second",
            format!("Bearer {expires_in_1s}"),
            ok,
            no,
        ),
        case(
            "expired one second ago",
            format!("Bearer {expired_1s_ago}"),
            e401,
            it,
        ),
    ];
    cases.push(Case {
        name: "two Authorization headers".into(),
        headers: vec![format!("Bearer {t}").into(), format!("Bearer {t}").into()],
        path: "/whoami".into(),
        status: e400,
        error: ir,
    });
    cases.push(Case {
        name: "header plus ?access_token=".into(),
        headers: vec![format!("Bearer {t}").into()],
        path: format!("/whoami?access_token={t}"),
        status: e400,
        error: ir,
    });
    cases.push(Case {
        name: "only ?access_token=".into(),
        headers: vec![],
        path: format!("/whoami?access_token={t}"),
        status: e400,
        error: ir,
    });
    for (name, path, status) in [
        ("node A", format!("/nodes/{A}"), ok),
        ("node B", format!("/nodes/{B}"), S::FORBIDDEN),
        ("dot-dot to B", format!("/nodes/{A}/../{B}"), S::NOT_FOUND),
        (
            "encoded dot-dot to B",
            format!("/nodes/{A}%2F..%2F{B}"),
            e400,
        ),
        ("double slash B", format!("//nodes/{B}"), S::NOT_FOUND),
    ] {
        cases.push(Case {
            name: name.into(),
            headers: vec![format!("Bearer {node_a}").into()],
            path,
            status,
            error: match status {
                S::FORBIDDEN => Some("error=\"insufficient_scope\""),
                S::BAD_REQUEST => ir,
                _ => None,
            },
        });
    }
    assert!(cases.len() >= 40, "{}", cases.len());

    let mut failures = Vec::new();
    for c in &cases {
        let mut b = Request::builder().uri(c.path.as_str());
        for h in &c.headers {
            b = b.header(
                http::header::AUTHORIZATION,
                http::HeaderValue::from_bytes(h).unwrap(),
            );
        }
        let r = send_req(&app, b.body(Body::empty()).unwrap()).await;
        let challenge = r.challenges().first().cloned().unwrap_or_default();
        let error_ok = match c.error {
            Some(e) => challenge.contains(e),
            None => !challenge.contains("error="),
        };
        let needs_challenge = r.status == S::UNAUTHORIZED;
        let challenge_ok =
            !needs_challenge || r.challenges().iter().any(|v| v.starts_with("Basic realm="));
        if r.status != c.status || !error_ok || !challenge_ok {
            failures.push(format!(
                "{}: got {} {:?}, want {} {:?}",
                c.name,
                r.status,
                r.challenges(),
                c.status,
                c.error
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    assert_no_secret(&[&t, &revoked, &expired_now, &expires_in_1s, &node_a], &[]);
}

#[test]
fn hostile_scope_strings_are_refused_by_name() {
    for bad in [
        "Repo:read",
        "repo:{read}",
        "repo:..",
        "repo:read write",
        "repo:read,write",
        "../etc",
        "node:{A}:r",
        "REPO",
        "repo: read",
        "*:read",
    ] {
        let err = bad.parse::<tower_pat::Scope>().unwrap_err();
        assert_eq!(err.scope, bad);
        assert!(err.to_string().contains(bad));
    }
}
