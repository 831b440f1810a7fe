//! A small axum server protected by tower-pat.
//!
//! At start it mints a token for user `demo` and prints `token: <value>` (the only time).
//!
//! Environment: `PAT_LISTEN` (default `127.0.0.1:3000`), `PAT_STORE_URL` (default
//! `sqlite://quickstart.db`), `PAT_DEMO_SCOPES` (comma-separated; empty = full access),
//! `PAT_DEMO_EXPIRE` (e.g. `20d`; default 30 days, the default expiry policy) or
//! `PAT_DEMO_AUTO` (auto-refresh window in seconds), `PAT_MAX_FAILURES` (failed attempts
//! per client before 429, default 20, `0` = off) per `PAT_FAILURE_WINDOW` (default `60s`).
//!
//! Routes: `GET /whoami` (any valid token), `GET /nodes/{uuid}` (needs `node:{uuid}:r`),
//! `PUT /nodes/{uuid}` (needs `node:{uuid}:w`), and the admin API under
//! `/personal-access-tokens` (each user manages their own tokens; `pat:admin` everyone's).
//! Built with the `metrics` feature, also `GET /metrics`: tower-pat's metrics in the
//! Prometheus text format (no token needed; serve it only where your scraper reaches it).

mod support;

use std::net::SocketAddr;
use std::process::ExitCode;

use axum::routing::get;
use axum::{Json, Router};
use support::{env, limiter_from_env};
use tower_pat::layer::node_scopes;
use tower_pat::manage::{Actor, CreateTokenRequest, Manager};
use tower_pat::{AttemptLimiter, Authenticator, PatLayer, Principal, RequireScopesLayer, ScopeSet};

async fn run() -> Result<(), String> {
    // Before the authenticator is built, which registers its metrics with the recorder.
    #[cfg(feature = "metrics")]
    let metrics = support::metrics::install()?;
    let listen = env("PAT_LISTEN").unwrap_or_else(|| "127.0.0.1:3000".to_owned());
    let store_url = env("PAT_STORE_URL").unwrap_or_else(|| "sqlite://quickstart.db".to_owned());
    let scopes: ScopeSet = env("PAT_DEMO_SCOPES")
        .unwrap_or_default()
        .parse()
        .map_err(|e| format!("PAT_DEMO_SCOPES: {e}"))?;
    let store = tower_pat::store::open(&store_url)
        .await
        .map_err(|e| format!("PAT_STORE_URL: {e}"))?;
    let auth = Authenticator::builder(store)
        .with_attempt_limiter(limiter_from_env(20)?)
        .build();
    // Follows other replicas' changes and writes uses behind, until `shutdown` below.
    tokio::spawn(auth.background());
    let manager = Manager::new(auth.clone());
    // The demo token follows the default expiry policy, like every token: 30 days unless
    // PAT_DEMO_EXPIRE or PAT_DEMO_AUTO says otherwise, never more than 366.
    let mut demo = CreateTokenRequest::for_owner("demo").name("quickstart");
    demo.scopes = scopes.iter().map(ToString::to_string).collect();
    demo = match (env("PAT_DEMO_EXPIRE"), env("PAT_DEMO_AUTO")) {
        (Some(_), Some(_)) => return Err("set PAT_DEMO_EXPIRE or PAT_DEMO_AUTO, not both".into()),
        (Some(e), None) => demo.expire(e),
        (None, Some(a)) => {
            demo.auto_refresh(a.parse().ok().filter(|s| *s > 0).ok_or_else(|| {
                format!("PAT_DEMO_AUTO: {a:?} is not a positive number of seconds")
            })?)
        }
        (None, None) => demo,
    };
    let created = manager
        .create(&Actor::Operator, demo)
        .await
        .map_err(|e| format!("could not create the demo token: {e}"))?;
    println!("token: {}", created.token.expose());

    let app = Router::new()
        .route(
            "/nodes/{uuid}",
            get(|| async { "read node\n" }).put(|| async { "wrote node\n" }),
        )
        .route_layer(RequireScopesLayer::from_policy(node_scopes("/nodes/")))
        .route("/whoami", get(|p: Principal| async move { Json(p) }))
        .merge(tower_pat::admin::router(manager.clone()))
        // `Pat-Token-Expiration: <RFC 3339>` on every response to a token that ends.
        .layer(PatLayer::new(auth.clone()).with_expiration_header(true))
        // Leaked-token reports need no token: outside the layer.
        .merge(tower_pat::admin::revoke_router_with_limit(
            manager,
            revoke_limit_from_env()?,
        ));
    #[cfg(feature = "metrics")]
    let app = app.merge(support::metrics::router(metrics));

    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let bound = listener
        .local_addr()
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    eprintln!(
        "listening on http://{bound} (store {})",
        tower_pat::store::mask_url(&store_url)
    );
    // With each connection's address, which the failed-attempt limiter counts by.
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(support::ctrl_c())
    .await
    .map_err(|e| format!("server failed: {e}"))?;
    support::shutdown(&auth).await
}

/// Leaked-token reports per client per hour: `PAT_REVOKE_LIMIT` (default 60, `0` = no
/// limit).
fn revoke_limit_from_env() -> Result<AttemptLimiter, String> {
    let max: u32 = match env("PAT_REVOKE_LIMIT") {
        Some(v) => v
            .trim()
            .parse()
            .map_err(|_| format!("PAT_REVOKE_LIMIT: {v:?} is not a number"))?,
        None => 60,
    };
    Ok(if max == 0 {
        AttemptLimiter::disabled()
    } else {
        AttemptLimiter::new(max, std::time::Duration::from_secs(3600))
    })
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
