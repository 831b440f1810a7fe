//! Lifecycle signals end to end: one token walked through its life over HTTP leaves
//! exactly its events, in order, in the audit log of each store (memory, SQLite,
//! PostgreSQL, Redis), the same through the admin API and `pat token events`; where a
//! token was used from, written behind at most once per interval; expiry reminders sent
//! once across replicas; a flood of bad tokens adds no audit row.
//!
//! PostgreSQL and Redis come from `PAT_TEST_POSTGRES_URL` and `PAT_TEST_REDIS_URL`
//! (unset: those stores are skipped, and said so).

mod common;
mod store_env;

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::routing::get;
use axum::Router;
use common::events::Collect;
use common::{assert_no_secret, logs, send_req, Reply, TestStore};
use http::Request;
use serde_json::{json, Value};
use time::macros::datetime;
use tower_pat::manage::{Actor, CreateTokenRequest, Manager};
use tower_pat::store::{EventQuery, TokenStore};
use tower_pat::{
    admin, AttemptLimiter, Authenticator, Clock, Credential, Event, EventActor, EventKind, Expiry,
    ManualClock, MemoryStore, NewToken, PatLayer, Principal, TokenId,
};

fn request(
    method: &str,
    uri: &str,
    token: &str,
    from: (IpAddr, &str),
    body: Option<(&str, Value)>,
) -> Request<Body> {
    let mut b = Request::builder()
        .method(method)
        .uri(uri)
        .header("authorization", format!("Bearer {token}"))
        .header("user-agent", from.1);
    let body = match body {
        Some((content_type, v)) => {
            b = b.header("content-type", content_type);
            Body::from(v.to_string())
        }
        None => Body::empty(),
    };
    let mut req = b.body(body).unwrap();
    req.extensions_mut()
        .insert(axum::extract::ConnectInfo(SocketAddr::new(from.0, 40_000)));
    req
}

fn json_of(reply: &Reply) -> Value {
    serde_json::from_str(&reply.body).unwrap_or_else(|e| panic!("{e}: {}", reply.body))
}

/// The store's events of `id`, oldest first, once there are `n` (waiting up to 10 s for
/// the background task to write them).
async fn audit_of(store: &Arc<dyn TokenStore>, id: TokenId, n: usize) -> Vec<Event> {
    let q = EventQuery::new().token(id).page(1, 1000);
    for _ in 0..500 {
        let page = store.list_events(&q).await.unwrap();
        if page.items.len() >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut events = store.list_events(&q).await.unwrap().items;
    events.reverse();
    events
}

const WALK: [&str; 8] = [
    "created",
    "first_use",
    "new_client_address",
    "changed",
    "rotated",
    "disabled",
    "enabled",
    "deleted",
];

/// create → use from two addresses → patch → rotate → disable → enable → delete, over
/// HTTP; then the audit log, the admin API and (given the store's URL) the CLI show
/// exactly those events, in order.
async fn walk(store: Arc<dyn TokenStore>, cli_url: Option<String>) {
    logs();
    let auth = Authenticator::builder(store.clone())
        .with_attempt_limiter(AttemptLimiter::disabled())
        .build();
    let background = tokio::spawn(auth.background());
    let manager = Manager::new(auth.clone());
    let boss = manager
        .create(
            &Actor::Operator,
            CreateTokenRequest::for_owner("alice").name("boss"),
        )
        .await
        .unwrap();
    let app: Router = Router::new()
        .route(
            "/whoami",
            get(|p: Principal| async move { p.owner().to_owned() }),
        )
        .merge(admin::router(manager))
        .layer(PatLayer::new(auth.clone()));
    let boss_t = boss.token.expose();
    let office: (IpAddr, &str) = ([198, 51, 100, 1].into(), "walk/1");
    let a: (IpAddr, &str) = ([192, 0, 2, 1].into(), "curl/8.5");
    let b: (IpAddr, &str) = ("2001:db8::2".parse().unwrap(), "Wget/1.21");

    let created = send_req(
        &app,
        request(
            "POST",
            "/personal-access-tokens",
            boss_t,
            office,
            Some(("application/json", json!({"name": "ci", "expire": "7d"}))),
        ),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let created = json_of(&created);
    let token = created["token"].as_str().unwrap().to_owned();
    let id: TokenId = created["id"].as_str().unwrap().parse().unwrap();
    assert_eq!(created["created_ip"], "198.51.100.1");
    assert_eq!(created["created_user_agent"], "walk/1");
    for from in [a, b] {
        let r = send_req(&app, request("GET", "/whoami", &token, from, None)).await;
        assert_eq!(r.status, 200);
    }
    // Written behind: after a flush the view shows the last use's address and client.
    auth.flush().await.unwrap();
    let uri = format!("/personal-access-tokens/{id}");
    let view = json_of(&send_req(&app, request("GET", &uri, boss_t, office, None)).await);
    assert_eq!(view["last_used_ip"], "2001:db8::2", "{view}");
    assert_eq!(view["last_used_user_agent"], "Wget/1.21");
    let patch = |ops: Value| {
        request(
            "PATCH",
            &uri,
            boss_t,
            office,
            Some(("application/json-patch+json", ops)),
        )
    };
    let r = send_req(
        &app,
        patch(json!([{"op": "replace", "path": "/name", "value": "deploy"}])),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let rotated = send_req(
        &app,
        request(
            "POST",
            &format!("{uri}/rotate"),
            boss_t,
            office,
            Some(("application/json", json!({}))),
        ),
    )
    .await;
    assert_eq!(rotated.status, 200, "{}", rotated.body);
    let rotated_t = json_of(&rotated)["token"].as_str().unwrap().to_owned();
    for on in [false, true] {
        let r = send_req(
            &app,
            patch(json!([{"op": "replace", "path": "/active", "value": on}])),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let r = send_req(&app, request("DELETE", &uri, boss_t, office, None)).await;
    assert_eq!(r.status, 204);

    // The audit log: exactly the walk, in order.
    let events = audit_of(&store, id, WALK.len()).await;
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.name()).collect();
    assert_eq!(kinds, WALK);
    let boss_actor = EventActor::Token {
        id: boss.view.id,
        owner: "alice".into(),
    };
    let token_actor = EventActor::Token {
        id,
        owner: "alice".into(),
    };
    for e in &events {
        assert_eq!((e.token_id, e.owner.as_str()), (id, "alice"));
        let (actor, from) = match e.kind {
            EventKind::FirstUse => (&token_actor, a),
            EventKind::NewClientAddress => (&token_actor, b),
            _ => (&boss_actor, office),
        };
        assert_eq!(&e.actor, actor, "{e:?}");
        assert_eq!(e.client, Some(from.0), "{e:?}");
        assert_eq!(e.user_agent.as_deref(), Some(from.1), "{e:?}");
    }
    assert_eq!(
        events[3].kind,
        EventKind::Changed {
            fields: vec!["name".into()]
        }
    );
    // The same through the admin API, newest first, filterable by type; the deleted
    // token's own route is 404, its events stay listed by id.
    let gone = send_req(
        &app,
        request("GET", &format!("{uri}/events"), boss_t, office, None),
    )
    .await;
    assert_eq!(gone.status, 404);
    let listed = send_req(
        &app,
        request(
            "GET",
            &format!("/personal-access-tokens/events?token_id={id}&page_size=100"),
            boss_t,
            office,
            None,
        ),
    )
    .await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    let listed = json_of(&listed);
    assert_eq!(listed["count"], WALK.len());
    let types: Vec<&str> = listed["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, WALK.iter().rev().copied().collect::<Vec<_>>());
    let disabled = send_req(
        &app,
        request(
            "GET",
            &format!("/personal-access-tokens/events?type=disabled&token_id={id}"),
            boss_t,
            office,
            None,
        ),
    )
    .await;
    assert_eq!(json_of(&disabled)["count"], 1, "{}", disabled.body);
    // And through `pat token events`.
    let mut rendered = vec![listed.to_string()];
    if let Some(url) = cli_url {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_pat"))
            .env("PAT_STORE_URL", &url)
            .args(["token", "events", &id.to_string(), "--json"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
        let types: Vec<&str> = doc["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["type"].as_str().unwrap())
            .collect();
        assert_eq!(types, WALK.iter().rev().copied().collect::<Vec<_>>());
        let table = std::process::Command::new(env!("CARGO_BIN_EXE_pat"))
            .env("PAT_STORE_URL", &url)
            .args(["token", "events", &id.to_string()])
            .output()
            .unwrap();
        let table = String::from_utf8_lossy(&table.stdout).into_owned();
        assert!(
            table.contains("new_client_address") && table.contains("2001:db8::2 (Wget/1.21)"),
            "{table}"
        );
        rendered.push(String::from_utf8_lossy(&out.stdout).into_owned());
        rendered.push(table);
    }
    // No secret in any event, in any rendering, or in the logs.
    rendered.extend(
        events
            .iter()
            .map(|e| format!("{e:?} {}", serde_json::to_string(e).unwrap())),
    );
    assert_no_secret(&[boss_t, &token, &rotated_t], &rendered);
    auth.shutdown().await.unwrap();
    background.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_walk_leaves_its_events_in_the_memory_stores_audit_log() {
    walk(Arc::new(MemoryStore::new()), None).await;
}

#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_walk_leaves_its_events_in_the_sqlite_audit_log_and_the_cli_shows_them() {
    let dir = tempfile::tempdir().unwrap();
    let url = store_env::sqlite_url(&dir);
    let store = tower_pat::store::SqliteStore::connect(&url).await.unwrap();
    walk(Arc::new(store), Some(url)).await;
}

/// On the default schema (`public`), as `pat` opens it: the walk's token id keeps its
/// events apart from any other test's.
#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_walk_leaves_its_events_in_the_postgres_audit_log_and_the_cli_shows_them() {
    let Some(url) = store_env::server_url("PAT_TEST_POSTGRES_URL") else {
        return;
    };
    let store = tower_pat::store::PostgresStore::connect(&url)
        .await
        .unwrap();
    walk(Arc::new(store), Some(url)).await;
}

/// On the default prefix (`pat:`), as `pat` opens it.
#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_walk_leaves_its_events_in_the_redis_audit_log_and_the_cli_shows_them() {
    let Some(url) = store_env::server_url("PAT_TEST_REDIS_URL") else {
        return;
    };
    let store = tower_pat::store::RedisStore::connect(&url).await.unwrap();
    walk(Arc::new(store), Some(url)).await;
}

/// 10,000 uses inside one refresh interval from two alternating addresses make no store
/// write; the next interval's first use makes one, carrying the last use's origin. The
/// second address is one new-address event, not 5,000.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alternating_addresses_still_write_at_most_once_per_interval() {
    let store = Arc::new(TestStore::default());
    let clock = ManualClock::new(datetime!(2030-01-01 0:00 UTC));
    let sink = Collect::default();
    let auth = Authenticator::builder(store.clone())
        .with_clock(clock.clone())
        .with_refresh_interval(Duration::from_secs(60))
        .with_event_sink(sink.clone())
        .build();
    let background = tokio::spawn(auth.background());
    let token = auth
        .create(NewToken::new("alice", "ci"))
        .await
        .unwrap()
        .token;
    let a: IpAddr = [192, 0, 2, 1].into();
    let b: IpAddr = [192, 0, 2, 2].into();
    for i in 0..10_000 {
        let (ip, ua) = if i % 2 == 0 {
            (a, "one/1")
        } else {
            (b, "two/2")
        };
        let credential = Credential::bearer(token.expose())
            .with_client(Some(ip))
            .with_user_agent(Some(ua));
        auth.authenticate(credential).await.unwrap();
        if i % 1000 == 999 {
            clock.advance(Duration::from_secs(5)); // 50 s in all: one interval
        }
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        store.touches.load(Ordering::SeqCst),
        0,
        "no write inside the interval"
    );
    clock.advance(Duration::from_secs(11));
    let credential = Credential::bearer(token.expose())
        .with_client(Some(b))
        .with_user_agent(Some("two/2"));
    auth.authenticate(credential).await.unwrap();
    for _ in 0..100 {
        if store.touches.load(Ordering::SeqCst) > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        store.touches.load(Ordering::SeqCst),
        1,
        "one write for the interval"
    );
    let id = auth
        .authenticate(token.expose())
        .await
        .unwrap()
        .token_id()
        .to_owned();
    let stored = store.get(&id).await.unwrap().unwrap();
    assert_eq!(stored.last_used_from.client, Some(b));
    assert_eq!(stored.last_used_from.user_agent.as_deref(), Some("two/2"));
    assert_eq!(stored.recent_clients, vec![b, a]);
    let events = sink.wait_for(3).await;
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.name()).collect();
    assert_eq!(kinds, ["first_use", "new_client_address"]);
    assert_eq!((events[0].client, events[1].client), (Some(a), Some(b)));
    assert_eq!(events[1].user_agent.as_deref(), Some("two/2"));
    auth.shutdown().await.unwrap();
    background.await.unwrap();
}

/// Two authenticators on one store, as two replicas: each reminder (token, lead time)
/// is sent once, though both look at the same moment.
async fn reminders_once_across_replicas(store: Arc<dyn TokenStore>) {
    let clock = ManualClock::new(datetime!(2030-01-01 0:00 UTC));
    let sink = Collect::default();
    let replica = || {
        Authenticator::builder(store.clone())
            .with_clock(clock.clone())
            .with_event_sinks(vec![Arc::new(sink.clone())])
            .with_audit_log(false)
            .build()
    };
    let (one, two) = (replica(), replica());
    let day = Duration::from_secs(86_400);
    let now = clock.now();
    let mut ids = Vec::new();
    for (name, left) in [
        ("ten days", Some(10 * day)),
        ("three days", Some(3 * day)),
        ("twelve hours", Some(day / 2)),
        ("never", None),
        ("disabled", Some(2 * day)),
        ("ended an hour ago", None),
    ] {
        let expiry = match left {
            Some(d) => Expiry::HardLimit {
                expires_at: now + d,
            },
            None => Expiry::Never,
        };
        let mut record = one
            .create(NewToken::new("alice", name).with_expiry(expiry))
            .await
            .unwrap()
            .record;
        if name == "disabled" || name == "ended an hour ago" {
            if name == "disabled" {
                record.active = false;
            } else {
                record.expiry = Expiry::HardLimit {
                    expires_at: now - Duration::from_secs(3600),
                };
                record.expires_at = Some(now - Duration::from_secs(3600));
            }
            assert!(store.update(&record).await.unwrap().is_written());
        }
        ids.push(record.id);
    }
    let round = || async {
        let (a, b) = tokio::join!(one.send_reminders(), two.send_reminders());
        a.unwrap() + b.unwrap()
    };
    let seven = EventKind::ExpiringSoon { lead: 7 * day };
    let one_day = EventKind::ExpiringSoon { lead: day };
    assert_eq!(round().await, 3);
    assert_eq!(round().await, 0, "nothing twice");
    clock.advance(4 * day);
    assert_eq!(round().await, 3);
    clock.advance(day);
    assert_eq!(round().await, 0);
    one.shutdown().await.unwrap();
    two.shutdown().await.unwrap();
    let mut got: Vec<(usize, EventKind)> = sink
        .events()
        .into_iter()
        .map(|e| {
            assert_eq!(e.actor, EventActor::System);
            (ids.iter().position(|id| *id == e.token_id).unwrap(), e.kind)
        })
        .collect();
    got.sort_by_key(|(i, k)| (*i, format!("{k:?}")));
    assert_eq!(
        got,
        [
            (0, seven.clone()),      // ten days: at day 4
            (1, EventKind::Expired), // three days: ended by day 4
            (1, seven.clone()),      // at once
            (2, EventKind::Expired), // twelve hours: ended by day 4
            (2, one_day),            // at once, and only the 1-day one
            (5, EventKind::Expired), // ended an hour before the start
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reminders_are_sent_once_across_replicas_memory() {
    reminders_once_across_replicas(Arc::new(MemoryStore::new())).await;
}

#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reminders_are_sent_once_across_replicas_sqlite() {
    store_env::run(store_env::sqlite, reminders_once_across_replicas).await;
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reminders_are_sent_once_across_replicas_postgres() {
    store_env::run(store_env::postgres, reminders_once_across_replicas).await;
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reminders_are_sent_once_across_replicas_redis() {
    store_env::run(store_env::redis, reminders_once_across_replicas).await;
}

/// Refusals are not events: 100,000 requests with bad tokens (malformed, unknown ids,
/// wrong secrets) add no row to the audit log.
#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_bad_tokens_adds_no_audit_rows() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn TokenStore> = Arc::new(
        tower_pat::store::SqliteStore::connect(&store_env::sqlite_url(&dir))
            .await
            .unwrap(),
    );
    let auth = Authenticator::builder(store.clone())
        .with_attempt_limiter(AttemptLimiter::disabled())
        .build();
    let background = tokio::spawn(auth.background());
    let real = auth.create(NewToken::new("alice", "ci")).await.unwrap();
    auth.authenticate(real.token.expose()).await.unwrap();
    let rows = |store: Arc<dyn TokenStore>| async move {
        store.list_events(&EventQuery::new()).await.unwrap().total
    };
    // The create is not an event here (no manager), the first use is.
    for _ in 0..100 {
        if rows(store.clone()).await == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(rows(store.clone()).await, 1);
    let format = auth.format().clone();
    let unknown: Vec<String> = (0..100)
        .map(|_| format.mint().token.expose().to_owned())
        .collect();
    let (prefix, _) = real.token.expose().rsplit_once('_').unwrap();
    let wrong_secret = format!("{prefix}_{}", "A".repeat(40));
    let mut refused = 0;
    for i in 0..100_000 {
        let token = match i % 3 {
            0 => format!("pat_garbage{i}"),
            1 => unknown[i % 100].clone(),
            _ => wrong_secret.clone(),
        };
        if auth.authenticate(token.as_str()).await.is_err() {
            refused += 1;
        }
    }
    assert_eq!(refused, 100_000);
    auth.shutdown().await.unwrap();
    background.await.unwrap();
    assert_eq!(rows(store).await, 1, "refusals add no audit rows");
}

/// `with_expiration_header(true)` stamps `Pat-Token-Expiration` on the responses of
/// requests made with a token that ends (first request, from the store, and the cached
/// ones alike); never for a token without an end, and never when off.
#[tokio::test]
async fn the_expiration_header_is_opt_in_and_names_the_end() {
    let auth = Authenticator::new(Arc::new(MemoryStore::new()));
    let ends = datetime!(2100-01-01 12:00 UTC);
    let ending = auth
        .create(NewToken::new("alice", "ci").with_expiry(Expiry::HardLimit { expires_at: ends }))
        .await
        .unwrap()
        .token;
    let endless = auth
        .create(NewToken::new("alice", "svc"))
        .await
        .unwrap()
        .token;
    let app = |on: bool| {
        Router::new()
            .route(
                "/whoami",
                get(|p: Principal| async move { p.owner().to_owned() }),
            )
            .layer(PatLayer::new(auth.clone()).with_expiration_header(on))
    };
    let stamp = |reply: &Reply| {
        reply
            .headers
            .get("pat-token-expiration")
            .map(|v| v.to_str().unwrap().to_owned())
    };
    let (on, off) = (app(true), app(false));
    for _ in 0..2 {
        let r = common::send(
            &on,
            "GET",
            "/whoami",
            Some(&common::bearer(ending.expose())),
        )
        .await;
        assert_eq!(r.status, 200);
        assert_eq!(stamp(&r).as_deref(), Some("2100-01-01T12:00:00Z"));
        let r = common::send(
            &on,
            "GET",
            "/whoami",
            Some(&common::bearer(endless.expose())),
        )
        .await;
        assert_eq!((r.status.as_u16(), stamp(&r)), (200, None));
        let r = common::send(
            &off,
            "GET",
            "/whoami",
            Some(&common::bearer(ending.expose())),
        )
        .await;
        assert_eq!((r.status.as_u16(), stamp(&r)), (200, None));
        let r = common::send(&on, "GET", "/whoami", None).await;
        assert_eq!((r.status.as_u16(), stamp(&r)), (401, None));
    }
}

/// A leaked token used from many addresses cannot flood the audit log: at most one
/// new-address event per refresh interval, and addresses of one IPv6 /64 are one client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_addresses_make_one_new_address_event_an_interval() {
    let clock = ManualClock::new(datetime!(2030-01-01 0:00 UTC));
    let sink = Collect::default();
    let auth = Authenticator::builder(Arc::new(MemoryStore::new()))
        .with_clock(clock.clone())
        .with_refresh_interval(Duration::from_secs(60))
        .with_attempt_limiter(AttemptLimiter::disabled())
        .with_event_sink(sink.clone())
        .build();
    let background = tokio::spawn(auth.background());
    let token = auth
        .create(NewToken::new("alice", "ci"))
        .await
        .unwrap()
        .token;
    let use_from = |ip: IpAddr| {
        let auth = auth.clone();
        let token = token.expose().to_owned();
        async move {
            auth.authenticate(Credential::bearer(&token).with_client(Some(ip)))
                .await
                .unwrap();
        }
    };
    use_from("2001:db8:1:2::1".parse().unwrap()).await;
    // The same /64: not new.
    use_from("2001:db8:1:2::ffff".parse().unwrap()).await;
    // 100 addresses within one interval: one event.
    for i in 0..100u8 {
        use_from([198, 51, 100, i].into()).await;
    }
    clock.advance(Duration::from_secs(61));
    use_from([203, 0, 113, 1].into()).await;
    auth.shutdown().await.unwrap();
    background.await.unwrap();
    let kinds: Vec<&str> = sink.events().iter().map(|e| e.kind.name()).collect();
    assert_eq!(
        kinds,
        ["first_use", "new_client_address", "new_client_address"],
        "one new address an interval"
    );
}
