//! Rights over tokens, tried as an attacker holding one leaked token would: management
//! scopes, the lifetime cap (a child never outlives its parent), rotation keeping the
//! end, and no lost updates (compare-and-swap, `ETag` / `If-Match`). Over HTTP through
//! `PatLayer` and the admin router, and through the library's `Manager`.
#![cfg(feature = "admin")]

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use http::StatusCode;
use serde_json::{json, Value};
use time::macros::datetime;
use time::OffsetDateTime;
use tower_pat::manage::{
    Actor, CreateTokenRequest, ManageError, Manager, RotateRequest, TokenPatch,
};
use tower_pat::store::TokenStore;
use tower_pat::ManualClock;
use tower_pat::{admin, Authenticator, PatLayer, TokenId};

mod common;
use common::admin::{assert_error, call_with, patch_with, post, Answer};
use common::TestStore;

const T0: OffsetDateTime = datetime!(2026-06-01 0:00 UTC);
const NODE_A: &str = "node:0b0f8d7e-3f44-4c4e-9d0e-0f6f0b8d2a11:r";
const BASE: &str = "/personal-access-tokens";

struct Env {
    app: Router,
    store: Arc<TestStore>,
    manager: Manager,
    auth: Authenticator,
}

fn env() -> Env {
    let store = Arc::new(TestStore::default());
    let auth = Authenticator::builder(store.clone())
        .with_clock(ManualClock::new(T0))
        .build();
    let manager = Manager::new(auth.clone());
    let app = Router::new()
        .merge(admin::router(manager.clone()))
        .layer(PatLayer::new(auth.clone()));
    Env {
        app,
        store,
        manager,
        auth,
    }
}

/// A token for `owner` made by the operator: its value and id.
async fn issue(e: &Env, owner: &str, scopes: &[&str], expire: &str) -> (String, String) {
    let mut req = CreateTokenRequest::for_owner(owner).expire(expire);
    for s in scopes {
        req = req.scope(*s);
    }
    let t = e.manager.create(&Actor::Operator, req).await.unwrap();
    (t.token.expose().to_owned(), t.view.id.to_string())
}

async fn create(e: &Env, token: &str, body: Value) -> Answer {
    post(&e.app, BASE, token, body).await
}

/// `method uri` by `token`, with more headers and an optional JSON body.
async fn call(
    e: &Env,
    method: &str,
    uri: &str,
    token: &str,
    headers: &[(&str, &str)],
    body: Option<(&str, Value)>,
) -> Answer {
    let body = body.map(|(ct, v)| (ct, v.to_string()));
    call_with(&e.app, method, uri, Some(token), headers, body).await
}

async fn patch(e: &Env, token: &str, id: &str, ops: Value, headers: &[(&str, &str)]) -> Answer {
    patch_with(&e.app, id, token, ops, headers).await
}

fn refused(r: &Answer, status: StatusCode, code: &str) {
    assert_error(r, status, code);
}

fn at(s: &str) -> OffsetDateTime {
    OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).unwrap()
}

#[tokio::test]
async fn a_leaked_one_hour_node_token_cannot_mint_list_rotate_or_delete() {
    let e = env();
    let (leaked, leaked_id) = issue(&e, "alice", &[NODE_A], "1h").await;
    let (_, other_id) = issue(&e, "alice", &["repo:read"], "20d").await;
    // No child at all: never, no expiry, 30 days, sliding, even one within the hour.
    for body in [
        json!({"scopes": [NODE_A], "never_expires": true}),
        json!({"scopes": [NODE_A]}),
        json!({"scopes": [NODE_A], "expire": "30d"}),
        json!({"scopes": [NODE_A], "auto_refresh_seconds": 600}),
        json!({"scopes": [NODE_A], "expire": "10m"}),
    ] {
        let r = create(&e, &leaked, body.clone()).await;
        refused(&r, StatusCode::FORBIDDEN, "insufficient_scope");
        assert_eq!(r.json["details"][0]["scope"], "pat:write", "{body}");
    }
    // Nor list, show, rotate, patch or delete its owner's tokens.
    let r = call(&e, "GET", BASE, &leaked, &[], None).await;
    refused(&r, StatusCode::FORBIDDEN, "insufficient_scope");
    assert_eq!(r.json["details"][0]["scope"], "pat:read");
    for (method, uri) in [
        ("GET", format!("{BASE}/{other_id}")),
        ("DELETE", format!("{BASE}/{other_id}")),
        ("POST", format!("{BASE}/{other_id}/rotate")),
        ("POST", format!("{BASE}/{leaked_id}/rotate")),
        ("DELETE", format!("{BASE}/{leaked_id}")),
    ] {
        let r = call(&e, method, &uri, &leaked, &[], None).await;
        refused(&r, StatusCode::FORBIDDEN, "insufficient_scope");
    }
    let r = patch(
        &e,
        &leaked,
        &other_id,
        json!([{"op": "replace", "path": "/name", "value": "x"}]),
        &[],
    )
    .await;
    refused(&r, StatusCode::FORBIDDEN, "insufficient_scope");
    let r = call(
        &e,
        "GET",
        &format!("{BASE}/openapi.json"),
        &leaked,
        &[],
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "the document is not a token");
    // Nothing changed: still two tokens, both as they were.
    let all = e.store.inner.list(&Default::default()).await.unwrap();
    assert_eq!(all.total, 2);
    assert!(all.items.iter().all(|r| r.active && r.version == 1));
}

#[tokio::test]
async fn pat_read_lists_and_shows_but_does_not_write() {
    let e = env();
    let (reader, _) = issue(&e, "alice", &["pat:read"], "1d").await;
    let (_, other) = issue(&e, "alice", &["repo:read"], "20d").await;
    let (_, bobs) = issue(&e, "bob", &["repo:read"], "20d").await;
    let r = call(&e, "GET", BASE, &reader, &[], None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json["count"], 2, "alice's two tokens, not bob's");
    let r = call(&e, "GET", &format!("{BASE}/{other}"), &reader, &[], None).await;
    assert_eq!(r.status, StatusCode::OK);
    let r = call(&e, "GET", &format!("{BASE}/{bobs}"), &reader, &[], None).await;
    refused(&r, StatusCode::NOT_FOUND, "not_found");
    let r = create(&e, &reader, json!({"expire": "1h"})).await;
    refused(&r, StatusCode::FORBIDDEN, "insufficient_scope");
    assert_eq!(r.json["details"][0]["scope"], "pat:write");
    let r = call(&e, "DELETE", &format!("{BASE}/{other}"), &reader, &[], None).await;
    refused(&r, StatusCode::FORBIDDEN, "insufficient_scope");
    // pat:write (or full access) manages; only pat:admin reaches other owners.
    let (writer, _) = issue(&e, "alice", &["pat:write"], "1d").await;
    let r = call(&e, "DELETE", &format!("{BASE}/{other}"), &writer, &[], None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = call(
        &e,
        "GET",
        &format!("{BASE}?owner-id=bob"),
        &writer,
        &[],
        None,
    )
    .await;
    refused(&r, StatusCode::FORBIDDEN, "insufficient_scope");
    assert_eq!(r.json["details"][0]["scope"], "pat:admin");
    let (admin, _) = issue(&e, "root", &["pat:admin"], "1d").await;
    let r = call(
        &e,
        "GET",
        &format!("{BASE}?owner-id=bob"),
        &admin,
        &[],
        None,
    )
    .await;
    assert_eq!(r.json["count"], 1);
}

#[tokio::test]
async fn a_two_hour_full_access_token_mints_a_one_hour_child_not_a_ten_day_one() {
    let e = env();
    let (parent, _) = issue(&e, "alice", &[], "2h").await;
    let latest = "2026-06-01T02:00:00Z";
    let r = create(&e, &parent, json!({"name": "child", "expire": "1h"})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    assert_eq!(r.json["expires_at"], "2026-06-01T01:00:00Z");
    let child = r.json["token"].as_str().unwrap().to_owned();
    // Exactly the parent's end is fine; a second later is not.
    let r = create(&e, &parent, json!({"expires_at": latest})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    for body in [
        json!({"expire": "10d"}),
        json!({"expires_at": "2026-06-01T02:00:01Z"}),
        json!({}),
        json!({"auto_refresh_seconds": 600}),
        json!({"auto_refresh_seconds": 600, "expire": "3h"}),
    ] {
        let r = create(&e, &parent, body.clone()).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{body}: {}", r.json);
        assert_eq!(r.json["error"], "forbidden");
        let m = r.json["message"].as_str().unwrap_or_default();
        assert!(m.contains(latest), "{body}: {m}");
        assert_eq!(r.json["details"][0]["latest_end"], latest);
    }
    // "Never" is refused by the default policy before the cap is asked.
    let r = create(&e, &parent, json!({"never_expires": true})).await;
    refused(&r, StatusCode::FORBIDDEN, "policy");
    // A sliding child within the end is fine.
    let r = create(
        &e,
        &parent,
        json!({"auto_refresh_seconds": 600, "expire": "90m"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    assert_eq!(r.json["not_after"], "2026-06-01T01:30:00Z");
    // The child cannot stretch itself, nor its parent, past the parent's end.
    let child_id = at_id(&e, &child).await;
    let r = patch(
        &e,
        &child,
        &child_id,
        json!([{"op": "replace", "path": "/expires_at", "value": "2026-06-02T00:00:00Z"}]),
        &[],
    )
    .await;
    refused(&r, StatusCode::FORBIDDEN, "forbidden");
    assert!(r.json["message"]
        .as_str()
        .unwrap()
        .contains("2026-06-01T01:00:00Z"));
    let r = patch(
        &e,
        &child,
        &child_id,
        json!([{"op": "replace", "path": "/expires_at", "value": null}]),
        &[],
    )
    .await;
    assert!(r.status.is_client_error());
    assert_eq!(
        e.store
            .inner
            .get(&child_id.parse().unwrap())
            .await
            .unwrap()
            .unwrap()
            .expires_at,
        Some(at("2026-06-01T01:00:00Z")),
        "refusals change nothing"
    );
}

/// The id of a token, by asking the API with it.
async fn at_id(e: &Env, token: &str) -> String {
    let id = *e.auth.authenticate(token).await.unwrap().token_id();
    id.to_string()
}

#[tokio::test]
async fn rotation_keeps_the_end() {
    let e = env();
    let (owner_token, _) = issue(&e, "alice", &["pat:write"], "1d").await;
    let (_, id) = issue(&e, "alice", &["repo:read"], "12h").await;
    let end = "2026-06-01T12:00:00Z";
    for body in [json!({}), json!({"grace": "1h"}), json!({"new_id": true})] {
        let r = call(
            &e,
            "POST",
            &format!("{BASE}/{id}/rotate"),
            &owner_token,
            &[],
            Some(("application/json", body.clone())),
        )
        .await;
        assert!(r.status.is_success(), "{body}: {}", r.json);
        assert_eq!(r.json["expires_at"], end, "{body}");
        assert_eq!(r.json["expiry"], "hard_limit");
        if let Some(new_id) = r.json["id"].as_str() {
            if new_id != id {
                // The old id is gone; follow the new one.
                assert!(e
                    .store
                    .inner
                    .get(&id.parse().unwrap())
                    .await
                    .unwrap()
                    .is_none());
                return;
            }
        }
    }
    panic!("the new-id rotation did not answer a new id");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_renames_never_undo_an_acknowledged_disable() {
    let e = Arc::new(env());
    let (admin, _) = issue(&e, "root", &["pat:admin"], "1d").await;
    for round in 0..5 {
        let (_, id) = issue(&e, "alice", &["repo:read"], "1d").await;
        // The admin token is cached, so only the management reads wait. Every read
        // takes 20 ms and returns what it read when it began: the disable reads at 0
        // and writes at 20 ms, the renames read between 2 and 16 ms (active) and write
        // after it. Without compare-and-swap they would write `active: true` back.
        e.auth.authenticate(&admin).await.unwrap();
        e.store.get_delay_ms.store(20, Ordering::SeqCst);
        let disabled = {
            let (e, admin, id) = (e.clone(), admin.clone(), id.clone());
            tokio::spawn(async move {
                loop {
                    let ops = json!([{"op": "replace", "path": "/active", "value": false}]);
                    let r = patch(&e, &admin, &id, ops, &[]).await;
                    match r.status {
                        StatusCode::OK => return r.json,
                        StatusCode::CONFLICT => continue,
                        s => panic!("disable answered {s}: {}", r.json),
                    }
                }
            })
        };
        let mut tasks = Vec::new();
        for i in 1..=8u64 {
            let (e, admin, id) = (e.clone(), admin.clone(), id.clone());
            tasks.push(tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(2 * i)).await;
                let ops =
                    json!([{"op": "replace", "path": "/name", "value": format!("rename {i}")}]);
                patch(&e, &admin, &id, ops, &[]).await.status
            }));
        }
        for t in tasks {
            let status = t.await.unwrap();
            assert!(
                status == StatusCode::OK || status == StatusCode::CONFLICT,
                "rename answered {status}"
            );
        }
        let ack = disabled.await.unwrap();
        assert_eq!(ack["active"], false);
        e.store.get_delay_ms.store(0, Ordering::SeqCst);
        let stored = e
            .store
            .inner
            .get(&id.parse::<TokenId>().unwrap())
            .await
            .unwrap()
            .unwrap();
        assert!(
            !stored.active,
            "round {round}: an acknowledged disable was undone"
        );
    }
}

#[tokio::test]
async fn etag_and_if_match() {
    let e = env();
    let (admin, _) = issue(&e, "root", &["pat:admin"], "1d").await;
    let (_, id) = issue(&e, "alice", &["repo:read"], "1d").await;
    let uri = format!("{BASE}/{id}");
    let r = call(&e, "GET", &uri, &admin, &[], None).await;
    assert_eq!(r.headers["etag"], "\"1\"");
    let rename = json!([{"op": "replace", "path": "/name", "value": "a"}]);
    let r = patch_with(
        &e.app,
        &id,
        &admin,
        rename.clone(),
        &[("if-match", "\"1\"")],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.headers["etag"], "\"2\"");
    assert_eq!(r.json["version"], 2);
    // A stale If-Match: 412, and nothing changes.
    let disable = json!([{"op": "replace", "path": "/active", "value": false}]);
    for tag in ["\"1\"", "W/\"2\"", "garbage"] {
        let r = patch(&e, &admin, &id, disable.clone(), &[("if-match", tag)]).await;
        refused(&r, StatusCode::PRECONDITION_FAILED, "precondition_failed");
        assert_eq!(r.json["details"][0]["version"], 2);
    }
    let r = call(&e, "DELETE", &uri, &admin, &[("if-match", "\"1\"")], None).await;
    refused(&r, StatusCode::PRECONDITION_FAILED, "precondition_failed");
    let r = call(
        &e,
        "POST",
        &format!("{uri}/rotate"),
        &admin,
        &[("if-match", "\"1\"")],
        None,
    )
    .await;
    refused(&r, StatusCode::PRECONDITION_FAILED, "precondition_failed");
    let stored = e
        .store
        .inner
        .get(&id.parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert!(stored.active);
    assert_eq!(stored.version, 2);
    // The current tag, or `*`, goes through.
    let r = patch(&e, &admin, &id, disable, &[("if-match", "*")]).await;
    assert_eq!(r.status, StatusCode::OK);
    let r = call(&e, "DELETE", &uri, &admin, &[("if-match", "\"3\"")], None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.json);
}

#[tokio::test]
async fn the_same_rules_through_the_library() {
    let e = env();
    let m = &e.manager;
    let actor = |t: String| {
        let auth = e.auth.clone();
        async move { Actor::from(auth.authenticate(&t).await.unwrap()) }
    };
    // One hour, node:A:r only: no management at all.
    let (leaked, _) = issue(&e, "alice", &[NODE_A], "1h").await;
    let leaked = actor(leaked).await;
    assert_eq!(m.right(&leaked), None);
    for req in [
        CreateTokenRequest::default().scope(NODE_A).never_expires(),
        CreateTokenRequest::default().scope(NODE_A),
        CreateTokenRequest::default().scope(NODE_A).expire("30d"),
        CreateTokenRequest::default().scope(NODE_A).auto_refresh(60),
    ] {
        let err = m.create(&leaked, req).await.unwrap_err();
        assert!(
            matches!(&err, ManageError::InsufficientScope { scope } if scope == "pat:write"),
            "{err}"
        );
    }
    assert!(matches!(
        m.list(&leaked, Default::default()).await,
        Err(ManageError::InsufficientScope { .. })
    ));
    let (_, victim) = issue(&e, "alice", &["repo:read"], "20d").await;
    assert!(matches!(
        m.rotate(&leaked, &victim, RotateRequest::default()).await,
        Err(ManageError::InsufficientScope { .. })
    ));
    assert!(matches!(
        m.delete(&leaked, &victim).await,
        Err(ManageError::InsufficientScope { .. })
    ));
    // Two hours, full access: a one-hour child, not a ten-day one.
    let (parent, _) = issue(&e, "alice", &[], "2h").await;
    let parent = actor(parent).await;
    assert!(m
        .create(&parent, CreateTokenRequest::default().expire("1h"))
        .await
        .is_ok());
    let err = m
        .create(&parent, CreateTokenRequest::default().expire("10d"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ManageError::OutlivesCaller { latest_end } if latest_end == datetime!(2026-06-01 2:00 UTC))
    );
    let err = m
        .patch(
            &parent,
            &victim,
            TokenPatch::new()
                .name("x")
                .expires_at(Some(datetime!(2026-06-05 0:00 UTC))),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, ManageError::OutlivesCaller { .. }), "{err}");
    // Where the policy allows "never", a parent with an end still cannot mint it.
    let lax = m
        .clone()
        .with_policy(tower_pat::manage::ExpiryPolicy::new().allow_never());
    let err = lax
        .create(&parent, CreateTokenRequest::default().never_expires())
        .await
        .unwrap_err();
    assert!(matches!(err, ManageError::OutlivesCaller { .. }), "{err}");
    assert_eq!(
        m.get(&Actor::Operator, &victim).await.unwrap().name,
        "",
        "refused patches change nothing"
    );
    // Rotation keeps the victim's end (20 days), even by a two-hour token.
    let rotated = m
        .rotate(&parent, &victim, RotateRequest::default())
        .await
        .unwrap();
    assert_eq!(
        rotated.view.expires_at,
        Some(datetime!(2026-06-21 0:00 UTC))
    );
    // Stale versions.
    let v = rotated.view.version;
    let err = m
        .patch(
            &parent,
            &victim,
            TokenPatch::new().active(false).if_version(v - 1),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, ManageError::PreconditionFailed { current } if current == v));
}

/// A user signed in to the host application (the self-service page's actor): their own
/// tokens only, no admin scope to grant, everyone's as an admin; the policy still caps.
#[tokio::test]
async fn a_signed_in_user_manages_their_own_tokens_and_an_admin_everyones() {
    let e = env();
    let m = &e.manager;
    let alice = Actor::user("alice");
    let (_, bobs) = issue(&e, "bob", &[], "1d").await;
    // Without an owner, the user's own; naming another owner needs the admin right.
    let mine = m
        .create(&alice, CreateTokenRequest::default().name("x").expire("1d"))
        .await
        .unwrap();
    assert_eq!(mine.view.owner, "alice");
    let err = m
        .create(
            &alice,
            CreateTokenRequest::for_owner("bob").name("x").expire("1d"),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, ManageError::InsufficientScope { ref scope } if scope == "pat:admin"),
        "{err}"
    );
    let err = m
        .create(
            &alice,
            CreateTokenRequest::default()
                .name("x")
                .scope("pat:admin")
                .expire("1d"),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, ManageError::Forbidden { .. }), "{err}");
    // The policy is the cap: no token of theirs, but no 400-day token either.
    let err = m
        .create(
            &alice,
            CreateTokenRequest::default().name("x").expire("400d"),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, ManageError::Policy { .. }), "{err}");
    // Another owner's token is not there for them; their listing is their own.
    assert!(matches!(
        m.get(&alice, &bobs).await,
        Err(ManageError::NotFound { .. })
    ));
    assert!(matches!(
        m.delete(&alice, &bobs).await,
        Err(ManageError::NotFound { .. })
    ));
    let page = m
        .list(&alice, tower_pat::store::ListQuery::new())
        .await
        .unwrap();
    assert!(page.items.iter().all(|t| t.owner == "alice"));
    assert!(m
        .list(&alice, tower_pat::store::ListQuery::new().owner("bob"))
        .await
        .is_err());
    // An admin user: everyone's, and the admin scope.
    let root = Actor::user("root").with_admin(true);
    assert!(m.is_admin(&root) && !m.is_admin(&alice));
    m.get(&root, &bobs).await.unwrap();
    let granted = m
        .create(
            &root,
            CreateTokenRequest::for_owner("bob")
                .name("ops")
                .scope("pat:admin")
                .expire("1d"),
        )
        .await
        .unwrap();
    assert_eq!(granted.view.owner, "bob");
    m.delete(&root, &bobs).await.unwrap();
    assert!(e
        .store
        .get(&bobs.parse::<TokenId>().unwrap())
        .await
        .unwrap()
        .is_none());
}
