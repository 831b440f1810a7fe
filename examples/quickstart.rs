//! A small axum server protected by tower-pat.
//!
//! At start it mints a token for user `demo` and prints `token: <value>` (the only time).
//!
//! Environment: `PAT_LISTEN` (default `127.0.0.1:3000`), `PAT_STORE_URL` (default
//! `sqlite://quickstart.db`), `PAT_DEMO_SCOPES` (comma-separated; empty = full access),
//! `PAT_DEMO_EXPIRE` (e.g. `20d`; default 30 days, the default expiry policy) or
//! `PAT_DEMO_AUTO` (auto-refresh window in seconds), `PAT_MAX_FAILURES` (failed attempts
//! per client before 429, default 20, `0` = off) per `PAT_FAILURE_WINDOW` (default `60s`),
//! `PAT_WRITE_INTERVAL` (how often a used token's last use is written, default `5s`),
//! `PAT_DEMO_PASSWORD` (the demo login's password; default a random one).
//!
//! Routes: `GET /whoami` (any valid token), `GET /nodes/{uuid}` (needs `node:{uuid}:r`),
//! `PUT /nodes/{uuid}` (needs `node:{uuid}:w`), and the admin API under
//! `/personal-access-tokens` (each user manages their own tokens; `pat:admin` everyone's).
//!
//! And in a browser, `/settings/tokens`: the self-service page, behind a demo login at
//! `/login` (user `demo`, the password printed at start as `password: <value>`; sessions
//! in memory through tower-sessions). The page never takes a token as its login.
//! Built with the `metrics` feature, also `GET /metrics`: tower-pat's metrics in the
//! Prometheus text format (no token needed; serve it only where your scraper reaches it).

mod support;

use std::net::SocketAddr;
use std::process::ExitCode;

use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Json, Router};
use support::{env, limiter_from_env};
use tower_pat::layer::node_scopes;
use tower_pat::manage::{Actor, CreateTokenRequest, Manager};
use tower_pat::ui::{TokenPage, User};
use tower_pat::{AttemptLimiter, Authenticator, PatLayer, Principal, RequireScopesLayer, ScopeSet};
use tower_sessions::{MemoryStore as SessionStore, Session, SessionManagerLayer};

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
    // Uses reach the store (and the page's "last used") within PAT_WRITE_INTERVAL.
    let write_interval = match env("PAT_WRITE_INTERVAL") {
        Some(v) => tower_pat::parse_duration(&v).map_err(|e| format!("PAT_WRITE_INTERVAL: {e}"))?,
        None => std::time::Duration::from_secs(5),
    };
    let auth = Authenticator::builder(store)
        .with_attempt_limiter(limiter_from_env(20)?)
        .with_refresh_interval(write_interval)
        .build();
    // Follows other replicas' changes and writes uses behind, until `shutdown` below.
    tokio::spawn(auth.background());
    let manager = Manager::new(auth.clone());
    let manager_for_page = manager.clone();
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
    let password = demo_password()?;
    // Written whatever reads them: a reader that stops after the first line (a script's
    // `head -1`) does not stop the server.
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "token: {}", created.token.expose());
        let _ = writeln!(out, "password: {password}");
        let _ = out.flush();
    }

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
    let app = app.merge(self_service(manager_for_page, password));

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

/// The self-service page at `/settings/tokens`, behind a demo login at `/login`.
fn self_service(manager: Manager, password: String) -> Router {
    // Who is signed in: the session's `user`, set by the login form below.
    let identify = |req: &http::request::Parts| {
        let session = req.extensions.get::<Session>().cloned();
        async move {
            let name: String = session?.get("user").await.ok()??;
            Some(User::new(name))
        }
    };
    let page = TokenPage::new(manager, identify)
        .with_scope(
            "node:*".parse().expect("a scope"),
            "Read and write every node (/nodes/…)",
        )
        .with_scope(
            "pat:read".parse().expect("a scope"),
            "See your tokens through the API",
        )
        .with_scope(
            "pat:write".parse().expect("a scope"),
            "Manage your tokens through the API",
        );
    let password = std::sync::Arc::new(password);
    Router::new()
        .nest("/settings/tokens", page.router())
        .layer(axum::middleware::from_fn(signed_in))
        .route("/", get(|| async { Redirect::to("/settings/tokens") }))
        .route(
            "/login",
            get(login_form).post(move |session: Session, form: axum::Form<LoginForm>| {
                login(session, form.0, password.clone())
            }),
        )
        .route("/logout", axum::routing::post(logout))
        .layer(
            SessionManagerLayer::new(SessionStore::default())
                .with_secure(false)
                .with_same_site(tower_sessions::cookie::SameSite::Strict),
        )
}

/// Sends a browser that is not signed in to the login form.
async fn signed_in(
    session: Session,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    // The page's stylesheet and script are for the login form too.
    if req.uri().path().starts_with("/settings/tokens/assets/") {
        return next.run(req).await;
    }
    match session.get::<String>("user").await {
        Ok(Some(_)) => next.run(req).await,
        _ => Redirect::to("/login").into_response(),
    }
}

const LOGIN_PAGE: &str = r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign in · quickstart</title><link rel="icon" href="/settings/tokens/assets/icon.svg" type="image/svg+xml">
<link rel="stylesheet" href="/settings/tokens/assets/style.css"></head>
<body><main><h1>Sign in</h1>ERROR
<form class="stack" method="post" action="/login">
<div class="field"><label for="user">User</label><input id="user" name="user" type="text" value="demo" autocomplete="username"></div>
<div class="field"><label for="password">Password</label><p class="hint" id="password-hint">Printed by the quickstart at start: <code>password: …</code></p>
<input id="password" name="password" type="password" autocomplete="current-password" aria-describedby="password-hint"></div>
<div class="actions"><button class="primary" type="submit">Sign in</button></div></form></main></body></html>"#;

async fn login_form() -> Html<String> {
    Html(LOGIN_PAGE.replace("ERROR", ""))
}

#[derive(serde::Deserialize)]
struct LoginForm {
    user: String,
    password: String,
}

async fn login(session: Session, form: LoginForm, password: std::sync::Arc<String>) -> Response {
    // Compared as SHA-256 digests: the time taken says nothing about the password.
    let ok = form.user == "demo"
        && tower_pat::SecretHash::of(&form.password) == tower_pat::SecretHash::of(&password);
    if !ok {
        let page = LOGIN_PAGE.replace(
            "ERROR",
            r#"<p class="notice error" role="alert">Wrong user or password.</p>"#,
        );
        return (http::StatusCode::UNAUTHORIZED, Html(page)).into_response();
    }
    // A new session id at login, so a session id planted before it is worth nothing.
    if session.cycle_id().await.is_err() || session.insert("user", "demo").await.is_err() {
        return (http::StatusCode::SERVICE_UNAVAILABLE, "try again").into_response();
    }
    Redirect::to("/settings/tokens").into_response()
}

async fn logout(session: Session) -> Redirect {
    let _ = session.flush().await;
    Redirect::to("/login")
}

/// The demo login's password: `PAT_DEMO_PASSWORD`, else 16 random characters.
fn demo_password() -> Result<String, String> {
    if let Some(p) = env("PAT_DEMO_PASSWORD") {
        return Ok(p);
    }
    let mut bytes = [0u8; 12];
    getrandom::getrandom(&mut bytes).map_err(|e| format!("no randomness for a password: {e}"))?;
    Ok(base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        bytes,
    ))
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
