//! An axum "hello" service for load tests, with or without tower-pat in front.
//!
//! `cargo run --release --example bench_server -- --listen 127.0.0.1:8080 --mode pat-bearer [--tokens 10000]`
//!
//! Modes: `bare` (no auth), `tower-http-bearer` (tower-http's
//! `ValidateRequestHeaderLayer::bearer` with one static token: the cheapest possible check),
//! `pat-bearer`, `pat-basic` (tower-pat over a memory store of `--tokens` tokens, cached),
//! `pat-uncached` (every request goes to the memory store), and `floor-bearer`,
//! `floor-basic`: the least any validator that names its caller must do, in tower-http's
//! plumbing (`ValidateRequestHeaderLayer::custom`): SHA-256 of the token, a `HashMap`
//! look-up of the digest, a constant-time compare, the caller's name put in the request's
//! extensions (Basic: decoded on the stack first, and the username compared). No token
//! format, checksum, expiry, scopes, cache policy or store: a yardstick, not a validator.
//!
//! `--connect-info` serves with `into_make_service_with_connect_info`, so the layer sees
//! each client's address (as the failed-attempt limiter needs). `--outer` applies the layer around the whole `Router` (so it runs before routing)
//! instead of with `Router::layer` (after routing, on each route): axum's per-route
//! plumbing is then left out, for every layered mode alike.
//!
//! At start it prints, one per line, `token: <value>` and `basic: <base64 user:token>`
//! for a few valid tokens, then `listening: <addr>`. `bare` prints one well-formed token
//! that nothing checks, so a load generator can send it the same requests as the `pat-*`
//! modes (`benches/http.sh` measures `bare` both with and without them).
//!
//! Built with the `metrics` feature, it installs a Prometheus recorder first (as a server
//! that exports the metrics would), so the layer's counters do their work.

mod support;

use std::collections::HashMap;
use std::convert::Infallible;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use base64::Engine;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tower::{Layer, Service};
use tower_http::validate_request::ValidateRequestHeaderLayer;
use tower_pat::{Authenticator, MemoryStore, NewToken, PatLayer};

const USAGE: &str = "usage: bench_server --listen ADDR --mode bare|tower-http-bearer|pat-bearer|pat-basic|pat-uncached|floor-bearer|floor-basic [--tokens N] [--outer] [--connect-info]";

struct Args {
    listen: String,
    mode: String,
    tokens: usize,
    outer: bool,
    connect_info: bool,
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        listen: "127.0.0.1:8080".into(),
        mode: "bare".into(),
        tokens: 10_000,
        outer: false,
        connect_info: false,
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
            "--outer" => a.outer = true,
            "--connect-info" => a.connect_info = true,
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    Ok(a)
}

/// Prints a token's `token:` and `basic:` lines.
fn announce(user: &str, token: &str) {
    println!("token: {token}");
    let b = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{token}"));
    println!("basic: {b}");
}

/// Serves `hello`, with `layer` applied as `--outer` asks, and no layer for `None`.
async fn serve<L>(a: &Args, hello: Router, layer: Option<L>) -> Result<(), String>
where
    L: Layer<Router> + Layer<axum::routing::Route> + Clone + Send + Sync + 'static,
    <L as Layer<Router>>::Service:
        Service<Request, Response = Response, Error = Infallible> + Clone + Send + Sync + 'static,
    <<L as Layer<Router>>::Service as Service<Request>>::Future: Send + 'static,
    <L as Layer<axum::routing::Route>>::Service:
        Service<Request, Error = Infallible> + Clone + Send + Sync + 'static,
    <<L as Layer<axum::routing::Route>>::Service as Service<Request>>::Response:
        IntoResponse + 'static,
    <<L as Layer<axum::routing::Route>>::Service as Service<Request>>::Future: Send + 'static,
{
    let listener = tokio::net::TcpListener::bind(&a.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", a.listen))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    println!("listening: {addr}");
    let served = match layer {
        Some(layer) if a.outer => {
            let app = axum::ServiceExt::<Request>::into_make_service(layer.layer(hello));
            axum::serve(listener, app).await
        }
        // The client's address in each request, as a limiter needs it.
        Some(layer) if a.connect_info => {
            let app = hello
                .layer(layer)
                .into_make_service_with_connect_info::<std::net::SocketAddr>();
            axum::serve(listener, app).await
        }
        Some(layer) => axum::serve(listener, hello.layer(layer)).await,
        None => axum::serve(listener, hello).await,
    };
    served.map_err(|e| e.to_string())
}

/// The caller's name, as the floor modes hand it to handlers.
#[derive(Clone)]
struct Caller(#[allow(dead_code)] Arc<str>);

/// The floor modes' table: SHA-256 of each token to (that digest, its owner).
type FloorTable = HashMap<[u8; 32], ([u8; 32], Arc<str>)>;

/// The floor check of one token: hash, look up, compare in constant time.
fn floor_find<'t>(table: &'t FloorTable, token: &[u8]) -> Option<&'t Arc<str>> {
    let digest: [u8; 32] = Sha256::digest(token).into();
    let (held, owner) = table.get(&digest)?;
    bool::from(held.ct_eq(&digest)).then_some(owner)
}

/// The floor validator, in tower-http's `ValidateRequestHeaderLayer::custom`.
// tower-http's validator returns the refusal as a `Response` in `Err`.
#[allow(clippy::result_large_err)]
fn floor_layer(
    table: FloorTable,
    basic: bool,
) -> ValidateRequestHeaderLayer<impl FnMut(&mut Request) -> Result<(), Response> + Clone> {
    let table = Arc::new(table);
    ValidateRequestHeaderLayer::custom(move |req: &mut Request| {
        let value = req.headers().get(http::header::AUTHORIZATION);
        let caller = value.and_then(|v| {
            if basic {
                let encoded = v.as_bytes().strip_prefix(b"Basic ")?;
                let mut buf = [0u8; 256];
                let n = base64::engine::general_purpose::STANDARD
                    .decode_slice(encoded, &mut buf)
                    .ok()?;
                let colon = buf[..n].iter().position(|b| *b == b':')?;
                let owner = floor_find(&table, &buf[colon + 1..n])?;
                (owner.as_bytes() == &buf[..colon]).then(|| owner.clone())
            } else {
                floor_find(&table, v.as_bytes().strip_prefix(b"Bearer ")?).cloned()
            }
        });
        match caller {
            Some(caller) => {
                req.extensions_mut().insert(Caller(caller));
                Ok(())
            }
            None => Err((http::StatusCode::UNAUTHORIZED, Body::empty()).into_response()),
        }
    })
}

async fn run(a: Args) -> Result<(), String> {
    let hello = Router::new().route("/", get(|| async { "hello" }));
    match a.mode.as_str() {
        "bare" => {
            let t = tower_pat::TokenFormat::default().mint().token;
            announce("user0", t.expose());
            serve(&a, hello, None::<tower::layer::util::Identity>).await
        }
        "tower-http-bearer" => {
            let token = "static-bench-token-0123456789";
            println!("token: {token}");
            #[allow(deprecated)]
            let layer = ValidateRequestHeaderLayer::bearer(token);
            serve(&a, hello, Some(layer)).await
        }
        "floor-bearer" | "floor-basic" => {
            let format = tower_pat::TokenFormat::default();
            let mut table = FloorTable::new();
            for i in 0..a.tokens {
                let user = format!("user{i}");
                let t = format.mint().token;
                let digest: [u8; 32] = Sha256::digest(t.expose().as_bytes()).into();
                table.insert(digest, (digest, user.as_str().into()));
                if i < 4 {
                    announce(&user, t.expose());
                }
            }
            let layer = floor_layer(table, a.mode == "floor-basic");
            serve(&a, hello, Some(layer)).await
        }
        "pat-bearer" | "pat-basic" | "pat-uncached" => {
            let mut builder = Authenticator::builder(Arc::new(MemoryStore::new()))
                .with_capacity(2 * a.tokens as u64)
                .with_attempt_limiter(tower_pat::AttemptLimiter::disabled());
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
                    announce(&user, created.token.expose());
                }
            }
            let basic = a.mode == "pat-basic";
            let layer = PatLayer::new(auth).with_basic(basic).with_bearer(!basic);
            serve(&a, hello, Some(layer)).await
        }
        other => Err(format!("unknown mode {other:?}\n{USAGE}")),
    }
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
    // Before any authenticator is built (it registers its metrics then); nothing scrapes.
    #[cfg(feature = "metrics")]
    if let Err(e) = support::metrics::install() {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    match run(a).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
