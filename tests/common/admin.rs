//! Requests to the admin router, as its tests make them: JSON in, status, headers and
//! JSON out.

use axum::body::Body;
use axum::Router;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

/// An answer: its status, headers and body as JSON (a string for a body that is not).
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub json: Value,
}

/// `method uri` with `token` as a Bearer token and `body` as `(content type, body)`.
pub async fn call(
    app: &Router,
    method: &str,
    uri: &str,
    token: Option<&str>,
    body: Option<(&str, String)>,
) -> Answer {
    call_with(app, method, uri, token, &[], body).await
}

/// [`call`] with more request headers.
pub async fn call_with(
    app: &Router,
    method: &str,
    uri: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
    body: Option<(&str, String)>,
) -> Answer {
    let mut b = Request::builder().method(method).uri(uri);
    if let Some(t) = token {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let req = match body {
        Some((ct, body)) => b.header("content-type", ct).body(Body::from(body)),
        None => b.body(Body::empty()),
    }
    .unwrap();
    let res = app.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    let json = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or_else(|_| json!(String::from_utf8_lossy(&bytes)))
    };
    Answer {
        status,
        headers,
        json,
    }
}

/// `GET uri`.
pub async fn get(app: &Router, uri: &str, token: &str) -> Answer {
    call(app, "GET", uri, Some(token), None).await
}

/// `POST uri` with a JSON body.
pub async fn post(app: &Router, uri: &str, token: &str, body: Value) -> Answer {
    call(
        app,
        "POST",
        uri,
        Some(token),
        Some(("application/json", body.to_string())),
    )
    .await
}

/// `PATCH /personal-access-tokens/{id}` with a JSON Patch and more headers.
pub async fn patch_with(
    app: &Router,
    id: &str,
    token: &str,
    ops: Value,
    headers: &[(&str, &str)],
) -> Answer {
    call_with(
        app,
        "PATCH",
        &format!("/personal-access-tokens/{id}"),
        Some(token),
        headers,
        Some(("application/json-patch+json", ops.to_string())),
    )
    .await
}

/// `PATCH /personal-access-tokens/{id}` with a JSON Patch.
pub async fn patch(app: &Router, id: &str, token: &str, ops: Value) -> Answer {
    patch_with(app, id, token, ops, &[]).await
}

/// An error answer of the admin API: this status and code, a message, details.
pub fn assert_error(a: &Answer, status: StatusCode, code: &str) {
    assert_eq!(a.status, status, "{}", a.json);
    assert_eq!(a.json["error"], code, "{}", a.json);
    assert!(a.json["message"].as_str().is_some_and(|m| !m.is_empty()));
    assert!(a.json["details"].is_array(), "{}", a.json);
}
