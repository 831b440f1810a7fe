//! Lifecycle events: each management step is one typed event, with its actor and the
//! request's origin, and no secret; sinks run in the background task, and a slow one
//! blocks no request and no write-back.

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use common::events::Collect;
use serde_json::json;
use tokio::sync::Semaphore;
use tower::ServiceExt as _;
use tower_pat::manage::{Actor, CreateTokenRequest, Manager, RotateRequest, TokenPatch};
use tower_pat::{
    admin, Authenticator, Event, EventActor, EventKind, EventSink, MemoryStore, NewToken, Origin,
    PatLayer,
};

/// Blocks on every event until released.
#[derive(Debug, Clone)]
struct Stuck(Arc<Semaphore>);

#[async_trait::async_trait]
impl EventSink for Stuck {
    async fn record(&self, _: &Event) {
        let _ = self.0.acquire().await;
    }
}

fn kinds(events: &[Event]) -> Vec<&'static str> {
    events.iter().map(|e| e.kind.name()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_step_of_a_token_is_one_event_in_order() {
    let sink = Collect::default();
    let auth = Authenticator::builder(Arc::new(MemoryStore::new()))
        .with_event_sink(sink.clone())
        .build();
    let background = tokio::spawn(auth.background());
    let manager = Manager::new(auth.clone());
    let op = Actor::Operator;
    let boss = manager
        .create(&op, CreateTokenRequest::for_owner("alice").name("boss"))
        .await
        .unwrap();
    let alice = Actor::from(auth.authenticate(boss.token.expose()).await.unwrap());
    let origin = Origin::new(Some([192, 0, 2, 4].into()), Some("curl/8.0\u{7}\nevil"));
    let m = manager.clone().with_origin(origin);
    let issued = m
        .create(&alice, CreateTokenRequest::default().name("ci"))
        .await
        .unwrap();
    let id = issued.view.id.to_string();
    m.patch(&alice, &id, TokenPatch::new().name("deploy"))
        .await
        .unwrap();
    m.patch(&alice, &id, TokenPatch::new().active(false))
        .await
        .unwrap();
    m.patch(&alice, &id, TokenPatch::new().active(true))
        .await
        .unwrap();
    let rotated = m
        .rotate(&alice, &id, RotateRequest::default())
        .await
        .unwrap();
    let moved = m
        .rotate(
            &alice,
            &id,
            RotateRequest {
                new_id: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    m.delete(&alice, &moved.view.id.to_string()).await.unwrap();

    let events = sink.wait_for(9).await;
    assert_eq!(
        kinds(&events),
        [
            "created",
            "first_use",
            "created",
            "changed",
            "disabled",
            "enabled",
            "rotated",
            "rotated",
            "deleted"
        ]
    );
    assert_eq!(events[0].actor, EventActor::Operator);
    assert_eq!(events[0].client, None, "the operator's call had no request");
    assert_eq!(
        events[1].token_id, events[0].token_id,
        "the boss token's first use"
    );
    assert_eq!(events[1].client, None, "authenticate named no client");
    let ci = &events[2..];
    for e in ci {
        assert_eq!(e.owner, "alice");
        assert_eq!(
            e.actor,
            EventActor::Token {
                id: *alice_id(&alice),
                owner: "alice".into()
            }
        );
        assert_eq!(e.client, Some([192, 0, 2, 4].into()));
        assert_eq!(
            e.user_agent.as_deref(),
            Some("curl/8.0evil"),
            "control characters go"
        );
    }
    assert_eq!(ci[0].token_id, issued.view.id);
    assert_eq!(
        ci[1].kind,
        EventKind::Changed {
            fields: vec!["name".into()]
        }
    );
    assert_eq!(ci[4].kind, EventKind::Rotated { new_id: None });
    assert_eq!(
        ci[5].kind,
        EventKind::Rotated {
            new_id: Some(moved.view.id)
        }
    );
    assert_eq!(ci[6].token_id, moved.view.id);
    // No secret anywhere in them.
    for token in [&boss.token, &issued.token, &rotated.token, &moved.token] {
        let secret = token.expose().rsplit('_').next().unwrap();
        for e in &events {
            let text = format!("{e:?} {}", serde_json::to_string(e).unwrap());
            assert!(!text.contains(secret), "a secret in {text}");
        }
    }
    auth.shutdown().await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), background)
        .await
        .expect("the background task stops")
        .unwrap();
}

fn alice_id(actor: &Actor) -> &tower_pat::TokenId {
    match actor {
        Actor::Principal(p) => p.token_id(),
        _ => unreachable!(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_records_the_callers_address_and_user_agent() {
    let sink = Collect::default();
    let auth = Authenticator::builder(Arc::new(MemoryStore::new()))
        .with_event_sink(sink.clone())
        .build();
    let background = tokio::spawn(auth.background());
    let manager = Manager::new(auth.clone());
    let boss = manager
        .create(&Actor::Operator, CreateTokenRequest::for_owner("alice"))
        .await
        .unwrap();
    let app: Router = Router::new()
        .merge(admin::router(manager))
        .layer(PatLayer::new(auth.clone()));
    let mut req = http::Request::post("/personal-access-tokens")
        .header("authorization", format!("Bearer {}", boss.token.expose()))
        .header("content-type", "application/json")
        .header("user-agent", "terraform/1.9")
        .body(axum::body::Body::from(json!({"name": "tf"}).to_string()))
        .unwrap();
    req.extensions_mut()
        .insert(axum::extract::ConnectInfo(std::net::SocketAddr::from((
            [198, 51, 100, 7],
            40_000,
        ))));
    let res = app.oneshot(req).await.unwrap();
    assert_eq!(res.status(), 201);
    let events = sink.wait_for(3).await;
    assert_eq!(kinds(&events), ["created", "first_use", "created"]);
    // The layer's first use of the boss token, and what it made, both carry the origin.
    for e in &events[1..] {
        assert_eq!(e.client, Some([198, 51, 100, 7].into()));
        assert_eq!(e.user_agent.as_deref(), Some("terraform/1.9"));
    }
    assert_eq!(events[1].token_id, boss.view.id);
    auth.shutdown().await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), background)
        .await
        .expect("the background task stops")
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_sink_blocks_no_request_and_no_change_and_drops_are_counted() {
    use tower_pat::store::SqliteStore;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("tokens.db").display());
    let stuck = Stuck(Arc::new(Semaphore::new(0)));
    // Two replicas on one file; the second's only sink is stuck.
    let a = Authenticator::new(Arc::new(SqliteStore::connect(&url).await.unwrap()));
    let b = Authenticator::builder(Arc::new(SqliteStore::connect(&url).await.unwrap()))
        .with_event_sinks(vec![Arc::new(stuck.clone())])
        .with_event_capacity(4)
        .build();
    let background = tokio::spawn(b.background());
    let manager = Manager::new(b.clone());
    // 20 creates: the first event sticks in the sink, 4 wait, the rest are dropped.
    for i in 0..20 {
        manager
            .create(
                &Actor::Operator,
                CreateTokenRequest::for_owner("alice").name(format!("t{i}")),
            )
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(b.events_dropped() >= 14, "dropped {}", b.events_dropped());
    // The change follower still runs while the sink is stuck: a revocation made through
    // the other replica reaches this one's cache.
    let created = a.create(NewToken::new("bob", "ci")).await.unwrap();
    let token = created.token.expose().to_owned();
    b.authenticate(&token).await.unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(a.store().delete(&created.record.id).await.unwrap());
    a.invalidate(&created.record.id).await.unwrap();
    let mut refused = false;
    for _ in 0..100 {
        if b.authenticate(&token).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(refused, "a stuck sink held up the change follower");
    // Released, the queued events are delivered and the task stops on shutdown.
    stuck.0.add_permits(1_000);
    b.shutdown().await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), background)
        .await
        .expect("the background task stops")
        .unwrap();
}

#[test]
fn an_origin_keeps_256_characters_of_a_user_agent() {
    let long = "x".repeat(1000);
    let origin = Origin::new(None, Some(&long));
    assert_eq!(origin.user_agent.map(|u| u.len()), Some(256));
    assert_eq!(Origin::new(None, Some("\u{1}\u{2}")).user_agent, None);
}
