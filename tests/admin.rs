//! The admin REST router, driven through `PatLayer` with `tower::ServiceExt::oneshot`.
#![cfg(feature = "admin")]

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::Router;
use http::StatusCode;
use serde_json::{json, Value};
use tower_pat::manage::{Actor, CreateTokenRequest, Manager};
use tower_pat::store::TokenStore;
use tower_pat::TokenRecord;
use tower_pat::{admin, Authenticator, PatLayer, TokenId};

mod common;
use common::admin::{assert_error, call, get, patch, post};
use common::TestStore;

struct Env {
    app: Router,
    store: Arc<TestStore>,
    auth: Authenticator,
    manager: Manager,
    admin: String,
    alice_read: String,
    alice_full: String,
    bob: String,
    bob_id: String,
}

async fn issue(m: &Manager, owner: &str, name: &str, scopes: &[&str]) -> (String, String) {
    let mut req = CreateTokenRequest::for_owner(owner).name(name);
    for s in scopes {
        req = req.scope(*s);
    }
    let t = m.create(&Actor::Operator, req).await.unwrap();
    (t.token.expose().to_owned(), t.view.id.to_string())
}

async fn env() -> Env {
    let store = Arc::new(TestStore::default());
    let auth = Authenticator::new(store.clone());
    let manager = Manager::new(auth.clone());
    let (admin, _) = issue(&manager, "root", "admin", &["pat:admin", "repo:admin"]).await;
    let (alice_read, _) = issue(&manager, "alice", "read only", &["repo:read", "pat:write"]).await;
    let (alice_full, _) = issue(&manager, "alice", "full", &[]).await;
    let (bob, bob_id) = issue(&manager, "bob", "bob's", &["repo:write", "pat:write"]).await;
    let app = Router::new()
        .merge(admin::router(manager.clone()))
        .layer(PatLayer::new(auth.clone()));
    Env {
        app,
        store,
        auth,
        manager,
        admin,
        alice_read,
        alice_full,
        bob,
        bob_id,
    }
}

fn no_secret(v: &Value) {
    let s = v.to_string();
    assert!(!s.contains("secret_hash"), "{s}");
    assert!(!s.contains("\"token\""), "{s}");
}

async fn record(e: &Env, id: &str) -> Option<TokenRecord> {
    e.store
        .inner
        .get(&id.parse::<TokenId>().unwrap())
        .await
        .unwrap()
}

#[tokio::test]
async fn create_returns_the_token_once_with_no_store() {
    let e = env().await;
    let a = post(
        &e.app,
        "/personal-access-tokens",
        &e.alice_read,
        json!({"name": "ci", "scopes": ["repo:read"], "expire": "20d"}),
    )
    .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.json);
    assert_eq!(a.headers["cache-control"], "no-store");
    let token = a.json["token"].as_str().unwrap();
    assert!(token.starts_with("pat_"));
    assert_eq!(a.json["owner"], "alice");
    assert_eq!(a.json["expiry"], "hard_limit");
    assert!(a.json.get("secret_hash").is_none());
    let id = a.json["id"].as_str().unwrap();
    assert_eq!(
        a.headers["location"],
        format!("/personal-access-tokens/{id}").as_str()
    );
    let p = e.auth.authenticate(token).await.unwrap();
    assert_eq!(p.owner(), "alice");
    // SailPoint's field names work too.
    let a = post(
        &e.app,
        "/personal-access-tokens",
        &e.alice_read,
        json!({"name": "sp", "scope": ["repo:read"], "accessTokenValiditySeconds": 36900}),
    )
    .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.json);
}

/// A create that fails: who asks, with what body, and the answer: status, error code,
/// and what the message and the first detail must name.
struct RefusedCreate {
    caller: fn(&Env) -> &str,
    body: Value,
    status: StatusCode,
    error: &'static str,
    message_names: Option<&'static str>,
    detail: Option<(&'static str, &'static str)>,
}

fn refused(
    caller: fn(&Env) -> &str,
    body: Value,
    status: StatusCode,
    error: &'static str,
) -> RefusedCreate {
    RefusedCreate {
        caller,
        body,
        status,
        error,
        message_names: None,
        detail: None,
    }
}

impl RefusedCreate {
    fn naming(mut self, text: &'static str) -> Self {
        self.message_names = Some(text);
        self
    }

    fn detail(mut self, key: &'static str, value: &'static str) -> Self {
        self.detail = Some((key, value));
        self
    }

    async fn check(&self, e: &Env) {
        let uri = "/personal-access-tokens";
        let a = post(&e.app, uri, (self.caller)(e), self.body.clone()).await;
        assert_error(&a, self.status, self.error);
        if let Some(text) = self.message_names {
            let message = a.json["message"].as_str().unwrap();
            assert!(message.contains(text), "{}: {message}", self.body);
        }
        if let Some((key, value)) = self.detail {
            assert_eq!(a.json["details"][0][key], value, "{}", self.body);
        }
    }
}

fn alice_full(e: &Env) -> &str {
    &e.alice_full
}

fn alice_read(e: &Env) -> &str {
    &e.alice_read
}

fn admin(e: &Env) -> &str {
    &e.admin
}

#[tokio::test]
async fn create_refuses_bad_input_naming_it() {
    let e = env().await;
    const BAD: StatusCode = StatusCode::BAD_REQUEST;
    let cases = [
        refused(
            alice_full,
            json!({"scopes": ["Repo:X"]}),
            BAD,
            "invalid_request",
        )
        .naming("Repo:X")
        .detail("field", "scopes"),
        refused(
            alice_full,
            json!({"expire": "20 days"}),
            BAD,
            "invalid_request",
        )
        .naming("20 days")
        .detail("field", "expire"),
        refused(
            alice_full,
            json!({"expire": "1d", "never_expires": true}),
            BAD,
            "invalid_request",
        ),
        refused(alice_full, json!({"colour": "red"}), BAD, "invalid_request").naming("colour"),
    ];
    for case in &cases {
        case.check(&e).await;
    }
    let a = call(
        &e.app,
        "POST",
        "/personal-access-tokens",
        Some(&e.alice_full),
        Some(("application/json", "{not json".into())),
    )
    .await;
    assert_error(&a, BAD, "invalid_request");
}

#[tokio::test]
async fn scope_capping_and_owner_rules_on_create() {
    let e = env().await;
    let uri = "/personal-access-tokens";
    const NO: StatusCode = StatusCode::FORBIDDEN;
    let node = json!({"owner": "bob", "scopes": ["node:0b0f8d7e-3f44-4c4e-9d0e-0f6f0b8d2a11:r"]});
    let refusals = [
        // A repo:read token cannot mint repo:write, nor full access.
        refused(
            alice_read,
            json!({"scopes": ["repo:write"]}),
            NO,
            "forbidden",
        )
        .detail("scope", "repo:write"),
        refused(alice_read, json!({"name": "all"}), NO, "forbidden"),
        // A full-access token of a non-admin grants what its owner has, but never admin.
        refused(
            alice_full,
            json!({"scopes": ["pat:admin"]}),
            NO,
            "forbidden",
        ),
        // Only an admin creates for someone else...
        refused(
            alice_full,
            json!({"owner": "bob"}),
            NO,
            "insufficient_scope",
        )
        .detail("scope", "pat:admin"),
        // ...and within its own scopes.
        refused(admin, node, NO, "forbidden"),
    ];
    for case in &refusals {
        case.check(&e).await;
    }
    let allowed = [
        (&e.alice_read, json!({"scopes": ["repo:public_read"]})),
        (&e.alice_full, json!({"scopes": ["repo:write"]})),
        (&e.admin, json!({"owner": "bob", "scopes": ["repo:write"]})),
    ];
    for (caller, body) in allowed {
        let a = post(&e.app, uri, caller, body.clone()).await;
        assert_eq!(a.status, StatusCode::CREATED, "{body}: {}", a.json);
        assert_eq!(
            a.json["owner"],
            body.get("owner").unwrap_or(&json!("alice")).clone()
        );
    }
    // `*` and `pat:*` are no more than full access: they never make an admin.
    for s in ["*", "pat:*"] {
        let a = post(&e.app, uri, &e.alice_full, json!({ "scopes": [s] })).await;
        assert_eq!(a.status, StatusCode::CREATED, "{s}: {}", a.json);
        let wild = a.json["token"].as_str().unwrap().to_owned();
        let a = get(&e.app, "/personal-access-tokens?owner-id=bob", &wild).await;
        assert_error(&a, StatusCode::FORBIDDEN, "insufficient_scope");
    }
}

#[tokio::test]
async fn list_filters_orders_pages_and_isolates_owners() {
    let e = env().await;
    for i in 0..5 {
        issue(&e.manager, "alice", &format!("deploy {i}"), &["repo:read"]).await;
    }
    let a = get(&e.app, "/personal-access-tokens", &e.alice_read).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.json["count"], 7);
    let results = a.json["results"].as_array().unwrap();
    assert!(results.iter().all(|r| r["owner"] == "alice"));
    results.iter().for_each(no_secret);
    // Admins see everyone's by default; `me` narrows.
    let a = get(&e.app, "/personal-access-tokens", &e.admin).await;
    assert_eq!(a.json["count"], 9);
    let a = get(&e.app, "/personal-access-tokens?owner-id=me", &e.admin).await;
    assert_eq!(a.json["count"], 1);
    let a = get(&e.app, "/personal-access-tokens?owner-id=bob", &e.admin).await;
    assert_eq!(a.json["count"], 1);
    // Non-admins may not list others.
    let a = get(
        &e.app,
        "/personal-access-tokens?owner-id=bob",
        &e.alice_read,
    )
    .await;
    assert_error(&a, StatusCode::FORBIDDEN, "insufficient_scope");
    // Lookups.
    let a = get(&e.app, "/personal-access-tokens?name__icontains=DEPLOY&scope=repo:read&active=true&last_used__isnull=false", &e.alice_read).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.json);
    // alice_read itself has been used (it authenticated this call), the deploy tokens not.
    assert_eq!(a.json["count"], 0);
    let a = get(&e.app, "/personal-access-tokens?name__icontains=DEPLOY&last_used__isnull=true&expires__gt=2020-01-01T00:00:00Z", &e.alice_read).await;
    assert_eq!(a.json["count"], 5, "{}", a.json);
    let a = get(
        &e.app,
        "/personal-access-tokens?expires__lt=2099-01-01T00:00:00Z",
        &e.alice_read,
    )
    .await;
    // Every token expires now (the default policy's 30 days), none before 2020.
    assert_eq!(a.json["count"], 7, "{}", a.json);
    let a = get(
        &e.app,
        "/personal-access-tokens?expires__lt=2020-01-01T00:00:00Z",
        &e.alice_read,
    )
    .await;
    assert_eq!(a.json["count"], 0);
    let a = get(
        &e.app,
        "/personal-access-tokens?search=deploy%203",
        &e.alice_read,
    )
    .await;
    assert_eq!(a.json["count"], 1);
    assert_eq!(a.json["results"][0]["name"], "deploy 3");
    // Order and pages.
    let a = get(
        &e.app,
        "/personal-access-tokens?order_by=-name&page=2&page_size=2&search=deploy",
        &e.alice_read,
    )
    .await;
    assert_eq!(a.json["count"], 5);
    let names: Vec<&str> = a.json["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["deploy 2", "deploy 1"]);
    let next = a.json["next"].as_str().unwrap();
    assert!(next.starts_with("/personal-access-tokens?"), "{next}");
    assert!(
        next.contains("page=3") && next.contains("order_by=-name"),
        "{next}"
    );
    assert!(a.json["previous"].as_str().unwrap().contains("page=1"));
    let a = get(&e.app, next, &e.alice_read).await;
    assert_eq!(a.json["results"].as_array().unwrap().len(), 1);
    assert!(a.json["next"].is_null());
}

#[tokio::test]
async fn list_refuses_unknown_filters_naming_them() {
    let e = env().await;
    for (query, field) in [
        ("secret_hash__startswith=ab", "secret_hash__startswith"),
        ("order_by=colour", "order_by"),
        ("expires__lt=tomorrow", "expires__lt"),
        ("page_size=0", "page_size"),
        ("page=01", "page"),
        ("active=yes", "active"),
        ("scope=Bad:Scope", "scope"),
    ] {
        let a = get(
            &e.app,
            &format!("/personal-access-tokens?{query}"),
            &e.alice_read,
        )
        .await;
        assert_error(&a, StatusCode::BAD_REQUEST, "invalid_request");
        assert_eq!(a.json["details"][0]["field"], field, "{query}");
    }
}

#[tokio::test]
async fn get_shows_own_tokens_and_hides_others() {
    let e = env().await;
    let (_, id) = issue(&e.manager, "alice", "mine", &["repo:read"]).await;
    let a = get(
        &e.app,
        &format!("/personal-access-tokens/{id}"),
        &e.alice_read,
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.json["id"], id.as_str());
    assert_eq!(a.json["scopes"], json!(["repo:read"]));
    no_secret(&a.json);
    // Another user's token is 404 to a non-admin, and visible to an admin.
    let a = get(
        &e.app,
        &format!("/personal-access-tokens/{}", e.bob_id),
        &e.alice_read,
    )
    .await;
    assert_error(&a, StatusCode::NOT_FOUND, "not_found");
    let a = get(
        &e.app,
        &format!("/personal-access-tokens/{}", e.bob_id),
        &e.admin,
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    for bad in ["AAAAAAAAAAAAAAAA", "not-an-id", "x%2F..%2F"] {
        let a = get(&e.app, &format!("/personal-access-tokens/{bad}"), &e.admin).await;
        assert_error(&a, StatusCode::NOT_FOUND, "not_found");
    }
    // No token at all: 401.
    let a = call(
        &e.app,
        "GET",
        &format!("/personal-access-tokens/{id}"),
        None,
        None,
    )
    .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn patch_applies_json_patch() {
    let e = env().await;
    let (token, id) = issue(&e.manager, "alice", "old", &["repo:read"]).await;
    // Within the 30 days of alice's own (default) token.
    let in_ten_days = (time::OffsetDateTime::now_utc() + time::Duration::days(10))
        .replace_nanosecond(0)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let a = patch(
        &e.app,
        &id,
        &e.alice_full,
        json!([
            {"op": "test", "path": "/name", "value": "old"},
            {"op": "replace", "path": "/name", "value": "new"},
            {"op": "add", "path": "/scopes/-", "value": "repo:write"},
            {"op": "remove", "path": "/scopes/0"},
            {"op": "replace", "path": "/expires_at", "value": in_ten_days},
        ]),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.json);
    assert_eq!(a.json["name"], "new");
    assert_eq!(a.json["scopes"], json!(["repo:write"]));
    assert_eq!(a.json["expires_at"], in_ten_days);
    let r = record(&e, &id).await.unwrap();
    assert_eq!(r.name, "new");
    // Disable takes effect at once for the token itself.
    assert!(e.auth.authenticate(&token).await.is_ok());
    let a = patch(
        &e.app,
        &id,
        &e.alice_full,
        json!([{"op": "replace", "path": "/active", "value": false}]),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(e.auth.authenticate(&token).await.is_err());
    let a = patch(
        &e.app,
        &id,
        &e.alice_full,
        json!([{"op": "replace", "path": "/active", "value": true}]),
    )
    .await;
    assert_eq!(a.json["active"], true);
    assert!(e.auth.authenticate(&token).await.is_ok());
}

#[tokio::test]
async fn bad_json_patch_leaves_the_token_unchanged() {
    let e = env().await;
    let (_, id) = issue(&e.manager, "alice", "keep", &["repo:read"]).await;
    let before = record(&e, &id).await.unwrap();
    for (ops, index, op) in [
        (
            json!([{"op": "replace", "path": "/name", "value": "x"}, {"op": "replace", "path": "/owner", "value": "mallory"}]),
            1,
            "replace",
        ),
        (
            json!([{"op": "replace", "path": "/id", "value": "AAAAAAAAAAAAAAAA"}]),
            0,
            "replace",
        ),
        (
            json!([{"op": "replace", "path": "/name", "value": "x"}, {"op": "test", "path": "/name", "value": "y"}]),
            1,
            "test",
        ),
        (
            json!([{"op": "add", "path": "/scopes/-", "value": "Not A Scope"}]),
            0,
            "add",
        ),
        (json!([{"op": "remove", "path": "/scopes/7"}]), 0, "remove"),
        (
            json!([{"op": "add", "path": "/secret_hash", "value": "00"}]),
            0,
            "add",
        ),
        (
            json!([{"op": "replace", "path": "/active", "value": "no"}]),
            0,
            "replace",
        ),
        (
            json!([{"op": "replace", "path": "/expires_at", "value": "soon"}]),
            0,
            "replace",
        ),
        (
            json!([{"op": "copy", "from": "/owner", "path": "/name"}]),
            0,
            "copy",
        ),
        (
            json!([{"op": "replace", "path": "/name", "value": "x"}, {"op": "jump", "path": "/name"}]),
            1,
            "jump",
        ),
    ] {
        let a = patch(&e.app, &id, &e.alice_full, ops.clone()).await;
        // A failed test or a missing element conflicts with the token as it is (409);
        // anything else is a bad patch (400).
        let status = if matches!(op, "test" | "remove") {
            StatusCode::CONFLICT
        } else {
            StatusCode::BAD_REQUEST
        };
        assert_error(&a, status, "invalid_patch");
        assert_eq!(a.json["details"][0]["index"], index, "{ops}: {}", a.json);
        assert_eq!(a.json["details"][0]["op"], op, "{ops}: {}", a.json);
        let msg = a.json["message"].as_str().unwrap();
        assert!(msg.contains(&format!("operation {index}")), "{msg}");
        assert_eq!(record(&e, &id).await.unwrap(), before, "{ops}");
    }
    for body in ["not json", r#"{"op": "replace"}"#] {
        let a = call(
            &e.app,
            "PATCH",
            &format!("/personal-access-tokens/{id}"),
            Some(&e.alice_full),
            Some(("application/json-patch+json", body.into())),
        )
        .await;
        assert_error(&a, StatusCode::BAD_REQUEST, "invalid_patch");
    }
    let a = call(
        &e.app,
        "PATCH",
        &format!("/personal-access-tokens/{id}"),
        Some(&e.alice_full),
        Some(("text/plain", "[]".into())),
    )
    .await;
    assert_eq!(a.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(record(&e, &id).await.unwrap(), before);
}

#[tokio::test]
async fn patch_is_capped_and_owner_isolated() {
    let e = env().await;
    let alice_read_id = e
        .auth
        .authenticate(&e.alice_read)
        .await
        .unwrap()
        .token_id()
        .to_string();
    let before = record(&e, &alice_read_id).await.unwrap();
    // A repo:read token cannot patch itself to `*`, nor to repo:write, nor to full access.
    for ops in [
        json!([{"op": "replace", "path": "/scopes", "value": ["*"]}]),
        json!([{"op": "add", "path": "/scopes/-", "value": "repo:write"}]),
        json!([{"op": "replace", "path": "/scopes", "value": []}]),
    ] {
        let a = patch(&e.app, &alice_read_id, &e.alice_read, ops).await;
        assert_error(&a, StatusCode::FORBIDDEN, "forbidden");
        assert_eq!(record(&e, &alice_read_id).await.unwrap(), before);
    }
    // But it may rename itself.
    let a = patch(
        &e.app,
        &alice_read_id,
        &e.alice_read,
        json!([{"op": "replace", "path": "/name", "value": "renamed"}]),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    // Bob's token is not there for alice, even with full access.
    let bob_before = record(&e, &e.bob_id).await.unwrap();
    let a = patch(
        &e.app,
        &e.bob_id,
        &e.alice_full,
        json!([{"op": "replace", "path": "/active", "value": false}]),
    )
    .await;
    assert_error(&a, StatusCode::NOT_FOUND, "not_found");
    assert_eq!(record(&e, &e.bob_id).await.unwrap(), bob_before);
    // An admin may disable it.
    let a = patch(
        &e.app,
        &e.bob_id,
        &e.admin,
        json!([{"op": "replace", "path": "/active", "value": false}]),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(e.auth.authenticate(&e.bob).await.is_err());
}

#[tokio::test]
async fn delete_revokes_and_hides_others() {
    let e = env().await;
    let (token, id) = issue(&e.manager, "alice", "gone", &["repo:read"]).await;
    assert!(e.auth.authenticate(&token).await.is_ok());
    let a = call(
        &e.app,
        "DELETE",
        &format!("/personal-access-tokens/{}", e.bob_id),
        Some(&e.alice_full),
        None,
    )
    .await;
    assert_error(&a, StatusCode::NOT_FOUND, "not_found");
    assert!(record(&e, &e.bob_id).await.is_some());
    let a = call(
        &e.app,
        "DELETE",
        &format!("/personal-access-tokens/{id}"),
        Some(&e.alice_read),
        None,
    )
    .await;
    assert_eq!(a.status, StatusCode::NO_CONTENT);
    assert!(record(&e, &id).await.is_none());
    assert!(e.auth.authenticate(&token).await.is_err());
    // The revoked token itself is refused by the layer now.
    let a = get(&e.app, "/personal-access-tokens", &token).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    let a = call(
        &e.app,
        "DELETE",
        &format!("/personal-access-tokens/{id}"),
        Some(&e.alice_read),
        None,
    )
    .await;
    assert_error(&a, StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test]
async fn rotate_in_place_with_and_without_grace() {
    let e = env().await;
    let (old, id) = issue(&e.manager, "alice", "rot", &["repo:read"]).await;
    assert!(e.auth.authenticate(&old).await.is_ok());
    let uri = format!("/personal-access-tokens/{id}/rotate");
    let a = call(&e.app, "POST", &uri, Some(&e.alice_read), None).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.json);
    assert_eq!(a.headers["cache-control"], "no-store");
    assert_eq!(a.json["id"], id.as_str());
    let new = a.json["token"].as_str().unwrap().to_owned();
    assert_ne!(new, old);
    assert!(e.auth.authenticate(&new).await.is_ok());
    assert!(e.auth.authenticate(&old).await.is_err());
    // With a grace period the previous secret still works.
    let a = post(&e.app, &uri, &e.alice_read, json!({"grace": "1h"})).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.json);
    let newer = a.json["token"].as_str().unwrap().to_owned();
    assert!(a.json["previous_secret_valid_until"].is_string());
    assert!(e.auth.authenticate(&newer).await.is_ok());
    assert!(e.auth.authenticate(&new).await.is_ok());
    let a = post(&e.app, &uri, &e.alice_read, json!({"grace": "forever"})).await;
    assert_error(&a, StatusCode::BAD_REQUEST, "invalid_request");
    assert_eq!(a.json["details"][0]["field"], "grace");
    let a = post(
        &e.app,
        &format!("/personal-access-tokens/{}/rotate", e.bob_id),
        &e.alice_full,
        json!({}),
    )
    .await;
    assert_error(&a, StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test]
async fn rotate_to_a_new_id() {
    let e = env().await;
    let (old, id) = issue(&e.manager, "alice", "linked", &["repo:read"]).await;
    let a = post(
        &e.app,
        &format!("/personal-access-tokens/{id}/rotate"),
        &e.alice_read,
        json!({"new_id": true}),
    )
    .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.json);
    assert_eq!(a.json["replaces"], id.as_str());
    assert_ne!(a.json["id"], id.as_str());
    assert_eq!(a.json["name"], "linked");
    assert_eq!(a.json["scopes"], json!(["repo:read"]));
    let new = a.json["token"].as_str().unwrap();
    assert!(e.auth.authenticate(new).await.is_ok());
    assert!(e.auth.authenticate(&old).await.is_err());
    assert!(record(&e, &id).await.is_none());
}

#[tokio::test]
async fn store_failure_is_503_with_retry_after() {
    let e = env().await;
    // Authenticate once so the layer serves the token from its cache.
    let a = get(&e.app, "/personal-access-tokens", &e.alice_read).await;
    assert_eq!(a.status, StatusCode::OK);
    e.store.fail.store(true, Ordering::SeqCst);
    let a = get(&e.app, "/personal-access-tokens", &e.alice_read).await;
    assert_error(
        &a,
        StatusCode::SERVICE_UNAVAILABLE,
        "temporarily_unavailable",
    );
    assert!(a.headers.contains_key("retry-after"));
    let a = post(
        &e.app,
        "/personal-access-tokens",
        &e.alice_read,
        json!({"scopes": ["repo:read"]}),
    )
    .await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn unauthenticated_calls_are_401() {
    let e = env().await;
    for (m, uri) in [
        ("GET", "/personal-access-tokens"),
        ("POST", "/personal-access-tokens"),
        ("DELETE", "/personal-access-tokens/AAAAAAAAAAAAAAAA"),
    ] {
        let a = call(&e.app, m, uri, None, None).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED);
        assert!(a.headers.contains_key("www-authenticate"));
    }
    // Without the layer in front, the router itself answers 401 in its JSON shape.
    let bare = admin::router(e.manager.clone());
    let a = call(&bare, "GET", "/personal-access-tokens", None, None).await;
    assert_error(&a, StatusCode::UNAUTHORIZED, "unauthorized");
}

#[tokio::test]
async fn openapi_document_lists_every_route() {
    let e = env().await;
    let a = get(
        &e.app,
        "/personal-access-tokens/openapi.json",
        &e.alice_read,
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(a.json["openapi"].as_str().unwrap().starts_with("3."));
    let paths = &a.json["paths"];
    for (path, methods) in [
        ("/personal-access-tokens", &["post", "get"][..]),
        (
            "/personal-access-tokens/{id}",
            &["get", "patch", "delete"][..],
        ),
        ("/personal-access-tokens/{id}/rotate", &["post"][..]),
        ("/personal-access-tokens/openapi.json", &["get"][..]),
    ] {
        for m in methods {
            assert!(paths[path][m].is_object(), "{path} {m} missing");
        }
    }
    assert_eq!(
        paths["/personal-access-tokens/{id}"]["patch"]["requestBody"]["content"]
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        ["application/json-patch+json"]
    );
    let schemas = &a.json["components"]["schemas"];
    for s in [
        "TokenView",
        "IssuedToken",
        "CreateTokenRequest",
        "TokenList",
        "ErrorBody",
        "PatchOperation",
    ] {
        assert!(schemas[s].is_object(), "schema {s} missing");
    }
    assert!(!schemas["TokenView"]["properties"]
        .as_object()
        .unwrap()
        .contains_key("secret_hash"));
    assert!(a.json["components"]["securitySchemes"]["bearer"].is_object());
}

#[tokio::test]
async fn bodies_must_be_json_objects() {
    let e = env().await;
    let uri = "/personal-access-tokens";
    // A create needs a JSON object: no body, an array, or another media type are refused.
    let a = call(&e.app, "POST", uri, Some(&e.alice_full), None).await;
    assert_error(
        &a,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    );
    for body in ["", "[]", "null", "\"x\""] {
        let a = call(
            &e.app,
            "POST",
            uri,
            Some(&e.alice_full),
            Some(("application/json", body.into())),
        )
        .await;
        assert_error(&a, StatusCode::BAD_REQUEST, "invalid_request");
    }
    let a = call(
        &e.app,
        "POST",
        uri,
        Some(&e.alice_full),
        Some(("text/plain", "{}".into())),
    )
    .await;
    assert_error(
        &a,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    );
    let a = call(
        &e.app,
        "POST",
        uri,
        Some(&e.alice_full),
        Some(("application/json; charset=utf-8", "{}".into())),
    )
    .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.json);
    // A rotate takes no body, null or an object; not an array.
    let id = a.json["id"].as_str().unwrap().to_owned();
    let rotate = format!("{uri}/{id}/rotate");
    let a = call(
        &e.app,
        "POST",
        &rotate,
        Some(&e.alice_full),
        Some(("application/json", "[]".into())),
    )
    .await;
    assert_error(&a, StatusCode::BAD_REQUEST, "invalid_request");
    for body in ["", "null", "{}"] {
        let a = call(
            &e.app,
            "POST",
            &rotate,
            Some(&e.alice_full),
            Some(("application/json", body.into())),
        )
        .await;
        assert_eq!(a.status, StatusCode::OK, "{body:?}: {}", a.json);
    }
}
