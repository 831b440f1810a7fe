//! Shared test helpers: a store wrapper that counts and fails on demand (over the real
//! `MemoryStore`), a test app, request helpers, and TRACE log capture.
#![allow(dead_code, unreachable_pub)]

pub mod admin;
pub mod events;

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::body::Body;
use axum::routing::get;
use axum::Router;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::BodyExt;
use tokio::sync::Notify;
use tower::ServiceExt;
use tower_pat::store::{ListQuery, MemoryStore, Page, StoreError, TokenStore, Touch, Update};
use tower_pat::TokenRecord;
use tower_pat::{
    layer::node_scopes, Authenticator, PatLayer, Principal, RequireScopesLayer, TokenId,
};

/// A real `MemoryStore` with counters, a failure switch, a delay and a gate for reads.
#[derive(Debug, Default)]
pub struct TestStore {
    pub inner: MemoryStore,
    pub gets: AtomicUsize,
    pub touches: AtomicUsize,
    pub fail: AtomicBool,
    pub hang: AtomicBool,
    pub get_delay_ms: std::sync::atomic::AtomicU64,
    /// When set, `get` reads the record, signals `started`, then waits for `release`.
    pub gate: Mutex<Option<(Arc<Notify>, Arc<Notify>)>>,
}

impl TestStore {
    fn check(&self) -> Result<(), StoreError> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable {
                message: "test store switched off".into(),
                source: None,
            });
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl TokenStore for TestStore {
    async fn get(&self, id: &TokenId) -> Result<Option<TokenRecord>, StoreError> {
        self.gets.fetch_add(1, Ordering::SeqCst);
        if self.hang.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        self.check()?;
        let delay = self.get_delay_ms.load(Ordering::SeqCst);
        let found = self.inner.get(id).await?;
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        let gate = self.gate.lock().unwrap().clone();
        if let Some((started, release)) = gate {
            started.notify_one();
            release.notified().await;
        }
        Ok(found)
    }
    async fn insert(&self, r: &TokenRecord) -> Result<(), StoreError> {
        self.check()?;
        self.inner.insert(r).await
    }
    async fn update(&self, r: &TokenRecord) -> Result<Update, StoreError> {
        self.check()?;
        self.inner.update(r).await
    }
    async fn replace(
        &self,
        old: &TokenRecord,
        delete_old: bool,
        new: &TokenRecord,
    ) -> Result<Update, StoreError> {
        self.check()?;
        self.inner.replace(old, delete_old, new).await
    }
    async fn delete(&self, id: &TokenId) -> Result<bool, StoreError> {
        self.check()?;
        self.inner.delete(id).await
    }
    async fn list(&self, q: &ListQuery) -> Result<Page<TokenRecord>, StoreError> {
        self.check()?;
        self.inner.list(q).await
    }
    async fn touch(&self, id: &TokenId, t: &Touch) -> Result<(), StoreError> {
        self.check()?;
        self.touches.fetch_add(1, Ordering::SeqCst);
        self.inner.touch(id, t).await
    }
    async fn append_events(&self, events: &[tower_pat::Event]) -> Result<(), StoreError> {
        self.check()?;
        self.inner.append_events(events).await
    }
    async fn list_events(
        &self,
        q: &tower_pat::store::EventQuery,
    ) -> Result<Page<tower_pat::Event>, StoreError> {
        self.check()?;
        self.inner.list_events(q).await
    }
    async fn prune_events(&self, before: time::OffsetDateTime) -> Result<u64, StoreError> {
        self.check()?;
        self.inner.prune_events(before).await
    }
    async fn claim_reminder(
        &self,
        id: &TokenId,
        lead: u64,
        expires_at: time::OffsetDateTime,
    ) -> Result<bool, StoreError> {
        self.check()?;
        self.inner.claim_reminder(id, lead, expires_at).await
    }
}

/// The app under test: `/whoami` (any token), `/repo/read`, `/repo/write`, `/any`
/// (needs `anything:at_all`), `/nodes/{id}` (node scopes by method).
pub fn app(auth: Authenticator) -> Router {
    app_with(PatLayer::new(auth))
}

pub fn app_with(layer: PatLayer) -> Router {
    let whoami = get(|p: Principal| async move { axum::Json(p) });
    Router::new()
        .route("/repo/read", get(|| async { "read ok" }))
        .route_layer(RequireScopesLayer::new("repo:read".parse().unwrap()))
        .merge(
            Router::new()
                .route("/repo/write", get(|| async { "write ok" }))
                .route_layer(RequireScopesLayer::new("repo:write".parse().unwrap())),
        )
        .merge(
            Router::new()
                .route("/any", get(|| async { "any ok" }))
                .route_layer(RequireScopesLayer::new("anything:at_all".parse().unwrap())),
        )
        .merge(
            Router::new()
                .route(
                    "/nodes/{id}",
                    get(|| async { "node read" }).put(|| async { "node written" }),
                )
                .route_layer(RequireScopesLayer::from_policy(node_scopes("/nodes/"))),
        )
        .route("/whoami", whoami)
        .layer(layer)
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn challenges(&self) -> Vec<String> {
        self.headers
            .get_all(http::header::WWW_AUTHENTICATE)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect()
    }
}

pub async fn send_req(app: &Router, req: Request<Body>) -> Reply {
    let res = app.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

pub async fn send(app: &Router, method: &str, path: &str, authorization: Option<&str>) -> Reply {
    let mut b = Request::builder().method(method).uri(path);
    if let Some(a) = authorization {
        b = b.header(http::header::AUTHORIZATION, a);
    }
    send_req(app, b.body(Body::empty()).unwrap()).await
}

pub fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

pub fn basic(user: &str, password: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

/// Captured TRACE output of every test in this binary.
pub fn logs() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let writer = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || LogWriter(writer.clone()))
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("one global subscriber");
        buf
    })
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl Write for LogWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The secret part of a token (after the last `_`): what must never be shown.
pub fn secret_part(token: &str) -> &str {
    token.rsplit_once('_').map(|(_, s)| s).unwrap_or(token)
}

/// Asserts that no secret appears in the captured logs or in `debug_renderings`.
pub fn assert_no_secret(secrets: &[&str], debug_renderings: &[String]) {
    let logs = String::from_utf8_lossy(&logs().lock().unwrap()).into_owned();
    for s in secrets {
        let s = secret_part(s);
        assert!(s.len() >= 20, "not a secret: {s}");
        assert!(!logs.contains(s), "a token secret appears in the logs");
        for d in debug_renderings {
            assert!(
                !d.contains(s),
                "a token secret appears in Debug output: {d}"
            );
        }
    }
}

/// An example's binary: `cargo test --all-features` builds the examples next to the test
/// binaries (`target/<profile>/examples/`).
pub fn example_binary(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let path = exe
        .parent()
        .and_then(std::path::Path::parent)
        .map(|d| d.join("examples").join(name))
        .unwrap();
    assert!(
        path.exists(),
        "{} is missing: `cargo test --all-features` builds the examples",
        path.display()
    );
    path
}

/// Fails the test (with how to install it) when a client tool the gateway tests drive is
/// not on `PATH`.
pub fn require_tool(tool: &str) {
    let found = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .stdout(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "`{tool}` is not installed; .ci/run installs it (apt-get install litmus openssh-client sshpass curl)"
    );
}
