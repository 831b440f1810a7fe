//! What the examples share: reading their environment variables, and shutting down.
#![allow(unreachable_pub, dead_code)]

use std::time::Duration;

use tower_pat::expiry::parse_duration;
use tower_pat::limit::AttemptLimiter;
use tower_pat::Authenticator;

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

/// Writes the pending last-used and sliding-expiry updates, as every server should on
/// its way out.
pub async fn flush(auth: &Authenticator) -> Result<(), String> {
    auth.flush()
        .await
        .map(drop)
        .map_err(|e| format!("flush failed: {e}"))
}
