//! What the examples share: reading their environment variables, and shutting down.
#![allow(unreachable_pub, dead_code)]

use std::path::PathBuf;
use std::time::Duration;

use tower_pat::manage::{Actor, CreateTokenRequest, Manager};
use tower_pat::parse_duration;
use tower_pat::AttemptLimiter;
use tower_pat::{Authenticator, ScopeSet};
use uuid::Uuid;

/// A variable's value, `None` when unset or blank.
pub fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// The failed-attempt limiter: `PAT_MAX_FAILURES` (default `default_max`, `0` = off) per
/// `PAT_FAILURE_WINDOW` (default `60s`).
pub fn limiter_from_env(default_max: u32) -> Result<AttemptLimiter, String> {
    let max: u32 = match env("PAT_MAX_FAILURES") {
        Some(v) => v
            .trim()
            .parse()
            .map_err(|_| format!("PAT_MAX_FAILURES: {v:?} is not a number"))?,
        None => default_max,
    };
    let window = match env("PAT_FAILURE_WINDOW") {
        Some(v) => parse_duration(v.trim()).map_err(|e| format!("PAT_FAILURE_WINDOW: {e}"))?,
        None => Duration::from_secs(60),
    };
    Ok(if max == 0 {
        AttemptLimiter::disabled()
    } else {
        AttemptLimiter::new(max, window)
    })
}

/// Resolves on Ctrl-C: the examples' signal to stop.
pub async fn ctrl_c() {
    let _ = tokio::signal::ctrl_c().await;
}

/// With the `metrics` feature: a Prometheus recorder (metrics-exporter-prometheus) for
/// tower-pat's metrics, and `GET /metrics` to scrape it.
#[cfg(feature = "metrics")]
pub mod metrics {
    use std::time::Duration;

    use axum::routing::get;
    use axum::Router;
    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

    /// Histogram buckets for tower-pat's durations, in seconds: a cached check takes
    /// about a microsecond, a store call up to its timeout (5 s).
    const BUCKETS: &[f64] = &[
        0.000_002, 0.000_005, 0.000_01, 0.000_05, 0.000_1, 0.000_5, 0.001, 0.005, 0.01, 0.05, 0.1,
        0.5, 1.0, 5.0,
    ];

    /// Installs the process's recorder and describes tower-pat's metrics; a task drains
    /// the histograms every 5 s (the recorder leaves that to its owner). The durations are
    /// histograms with [`BUCKETS`], which Prometheus can add up over replicas (without
    /// buckets this recorder makes summaries, which it cannot).
    pub fn install() -> Result<PrometheusHandle, String> {
        let handle = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Prefix("pat_".into()), BUCKETS)
            .and_then(PrometheusBuilder::install_recorder)
            .map_err(|e| format!("cannot install the metrics recorder: {e}"))?;
        tower_pat::describe_metrics();
        let upkeep = handle.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(5)).await;
                upkeep.run_upkeep();
            }
        });
        Ok(handle)
    }

    /// The scrape endpoint.
    pub fn router(handle: PrometheusHandle) -> Router {
        Router::new().route("/metrics", get(move || async move { handle.render() }))
    }
}

/// Stops the authenticator's background task and writes the pending last-used and
/// sliding-expiry updates, as every server should on its way out.
pub async fn shutdown(auth: &Authenticator) -> Result<(), String> {
    auth.shutdown()
        .await
        .map(drop)
        .map_err(|e| format!("flush failed: {e}"))
}

/// What both gateways start from: the served directory, its node id, and the
/// authenticator over the store, with the demo token made if asked for.
pub struct Gateway {
    /// `PAT_ROOT` (default `.`), canonical.
    pub root: PathBuf,
    /// `PAT_NODE_ID`, or a new one, printed as `node: <id>`.
    pub node: Uuid,
    /// Over `PAT_STORE_URL` (default `sqlite://gateway.db`), with the failed-attempt
    /// limiter of `PAT_MAX_FAILURES` (default 5) per `PAT_FAILURE_WINDOW`.
    pub auth: Authenticator,
}

/// Reads the gateways' environment (see [`Gateway`]) and, with `PAT_DEMO_TOKEN=1` or
/// `PAT_DEMO_SCOPES`, makes a token for `PAT_DEMO_USER` (default `demo`) under the default
/// expiry policy (30 days) and prints `token: <value>`.
pub async fn gateway(demo_name: &str) -> Result<Gateway, String> {
    let root = PathBuf::from(env("PAT_ROOT").unwrap_or_else(|| ".".to_owned()));
    let root =
        std::fs::canonicalize(&root).map_err(|e| format!("PAT_ROOT {}: {e}", root.display()))?;
    if !root.is_dir() {
        return Err(format!("PAT_ROOT {} is not a directory", root.display()));
    }
    let node = match env("PAT_NODE_ID") {
        Some(id) => Uuid::try_parse(id.trim()).map_err(|e| format!("PAT_NODE_ID: {e}"))?,
        None => {
            let id = Uuid::new_v4();
            println!("node: {id}");
            id
        }
    };
    let store_url = env("PAT_STORE_URL").unwrap_or_else(|| "sqlite://gateway.db".to_owned());
    let store = tower_pat::store::open(&store_url)
        .await
        .map_err(|e| format!("PAT_STORE_URL: {e}"))?;
    let auth = Authenticator::builder(store)
        .with_attempt_limiter(limiter_from_env(5)?)
        .build();
    // Follows other replicas' changes and writes uses behind, until `shutdown`.
    tokio::spawn(auth.background());
    let scopes = env("PAT_DEMO_SCOPES");
    if scopes.is_some() || env("PAT_DEMO_TOKEN").is_some_and(|v| v.trim() == "1") {
        let scopes: ScopeSet = scopes
            .unwrap_or_default()
            .parse()
            .map_err(|e| format!("PAT_DEMO_SCOPES: {e}"))?;
        let user = env("PAT_DEMO_USER").unwrap_or_else(|| "demo".to_owned());
        let mut demo = CreateTokenRequest::for_owner(user).name(demo_name);
        demo.scopes = scopes.iter().map(ToString::to_string).collect();
        let created = Manager::new(auth.clone())
            .create(&Actor::Operator, demo)
            .await
            .map_err(|e| format!("could not create the demo token: {e}"))?;
        println!("token: {}", created.token.expose());
    }
    Ok(Gateway { root, node, auth })
}
