//! An axum "hello" service for load tests, with or without tower-pat in front.
//!
//! `cargo run --release --example bench_server -- --listen 127.0.0.1:8080 --mode pat-bearer [--tokens 10000]`
//!
//! Modes: `bare` (no auth), `tower-http-bearer` (tower-http's
//! `ValidateRequestHeaderLayer::bearer` with one static token: the cheapest possible check),
//! `pat-bearer`, `pat-basic` (tower-pat over a memory store of `--tokens` tokens, cached),
//! `pat-uncached` (every request goes to the memory store).
//!
//! At start it prints, one per line, `token: <value>` and `basic: <base64 user:token>`
//! for a few valid tokens, then `listening: <addr>`. `bare` prints one well-formed token
//! that nothing checks, so a load generator can send it the same requests as the `pat-*`
//! modes (`benches/http.sh` measures `bare` both with and without them).

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use base64::Engine;
use tower_pat::{Authenticator, MemoryStore, NewToken, PatLayer};

const USAGE: &str = "usage: bench_server --listen ADDR --mode bare|tower-http-bearer|pat-bearer|pat-basic|pat-uncached [--tokens N]";

struct Args {
    listen: String,
    mode: String,
    tokens: usize,
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        listen: "127.0.0.1:8080".into(),
        mode: "bare".into(),
        tokens: 10_000,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))
        };
        match flag.as_str() {
            "--listen" => a.listen = value()?,
            "--mode" => a.mode = value()?,
            "--tokens" => {
                let v = value()?;
                a.tokens = v
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or(format!("--tokens {v:?} is not a positive number"))?;
            }
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    Ok(a)
}

async fn run(a: Args) -> Result<(), String> {
    let hello = Router::new().route("/", get(|| async { "hello" }));
    let app = match a.mode.as_str() {
        "bare" => {
            let t = tower_pat::TokenFormat::default().mint().token;
            let t = t.expose();
            println!("token: {t}");
            let b = base64::engine::general_purpose::STANDARD.encode(format!("user0:{t}"));
            println!("basic: {b}");
            hello
        }
        "tower-http-bearer" => {
            let token = "static-bench-token-0123456789";
            println!("token: {token}");
            #[allow(deprecated)]
            let layer = tower_http::validate_request::ValidateRequestHeaderLayer::bearer(token);
            hello.layer(layer)
        }
        "pat-bearer" | "pat-basic" | "pat-uncached" => {
            let mut builder = Authenticator::builder(Arc::new(MemoryStore::new()))
                .with_capacity(2 * a.tokens as u64)
                .with_attempt_limiter(tower_pat::limit::AttemptLimiter::disabled());
            if a.mode == "pat-uncached" {
                builder = builder.with_cache_ttl(Duration::from_nanos(1));
            }
            let auth = builder.build();
            for i in 0..a.tokens {
                let user = format!("user{i}");
                let created = auth
                    .create(NewToken::new(user.clone(), "bench"))
                    .await
                    .map_err(|e| e.to_string())?;
                if i < 4 {
                    let t = created.token.expose();
                    println!("token: {t}");
                    let b = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{t}"));
                    println!("basic: {b}");
                }
            }
            let layer = PatLayer::new(auth).with_basic(a.mode == "pat-basic");
            let layer = if a.mode == "pat-basic" {
                layer.with_bearer(false)
            } else {
                layer
            };
            hello.layer(layer)
        }
        other => return Err(format!("unknown mode {other:?}\n{USAGE}")),
    };
    let listener = tokio::net::TcpListener::bind(&a.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", a.listen))?;
    println!("listening: {}", a.listen);
    axum::serve(listener, app).await.map_err(|e| e.to_string())
}

#[tokio::main]
async fn main() -> ExitCode {
    let a = match args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    match run(a).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
