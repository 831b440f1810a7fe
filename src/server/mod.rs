//! `pat serve` as a library (feature `server`): one PAT service for reverse proxies —
//! nginx `auth_request`, Caddy `forward_auth`, Traefik `forwardAuth`, Envoy `ext_authz` —
//! with the admin API beside it.
//!
//! | route | for | answer |
//! |---|---|---|
//! | `/auth` (any method) | nginx, Caddy, Traefik | the original request from `X-Forwarded-Method` / `X-Forwarded-Uri` (or `X-Original-Method` / `X-Original-URI`); without them 400 |
//! | `/ext-authz/…` (any method) | Envoy `ext_authz` (HTTP service, `path_prefix: /ext-authz`) | the original path after the prefix, the original method as the request's own |
//! | `/personal-access-tokens…` | management | the admin API ([`admin::router`](crate::admin::router)) behind [`PatLayer`](crate::PatLayer), and the leaked-token route |
//! | `/metrics` (from `pat serve`) | Prometheus | the text format, without authentication: keep it on the private side |
//! | `/healthz` | liveness | 200 while the process runs |
//! | `/readyz` | readiness | 200 when the store answers, else 503 with `Retry-After` |
//!
//! A forward-auth check answers as the layer does: **200** with `X-Pat-Owner`,
//! `X-Pat-Token-Id`, `X-Pat-Scopes` (space-separated; empty for a token with no scopes,
//! which may do all its owner may) and `X-Pat-Expires-At` (RFC 3339, or `never`) for the
//! proxy to copy upstream; 401 or 403 with the RFC 6750
//! `WWW-Authenticate`; 429 and 503 with `Retry-After`; 400 for a malformed request.
//!
//! **Trust.** The forward-auth routes believe the `X-Forwarded-*` / `X-Original-*`
//! headers, because only the proxy should reach them. Where others can reach the service,
//! set a proxy secret ([`ForwardAuth::with_proxy_secret`], `--proxy-secret-file`): the
//! proxy sends it as `X-Pat-Proxy-Secret`, compared in constant time, and a check without
//! it is 401.

mod rules;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};

pub use rules::{Fallback, Needs, PathError, Rules, RulesError};

use crate::authenticator::{Authenticator, Credential};
use crate::credentials::{parse_authorization, ParseOptions};
use crate::layer::ClientAddress;
use crate::manage::Manager;
use crate::rejection::{Challenge, Rejection, RejectionKind};
use crate::token::SecretHash;

/// The header a proxy sends the proxy secret in.
pub const PROXY_SECRET_HEADER: &str = "x-pat-proxy-secret";

static OWNER: HeaderName = HeaderName::from_static("x-pat-owner");
static TOKEN_ID: HeaderName = HeaderName::from_static("x-pat-token-id");
static SCOPES: HeaderName = HeaderName::from_static("x-pat-scopes");
static EXPIRES_AT: HeaderName = HeaderName::from_static("x-pat-expires-at");
static PROXY_SECRET: HeaderName = HeaderName::from_static(PROXY_SECRET_HEADER);

/// The forward-auth check: an authenticator, the [`Rules`], and whom to trust.
#[derive(Clone)]
pub struct ForwardAuth {
    auth: Authenticator,
    rules: Arc<Rules>,
    /// SHA-256 of the proxy secret: compared in constant time whatever its length.
    proxy_secret: Option<SecretHash>,
    client_address: ClientAddress,
    options: ParseOptions,
    challenge: Challenge,
}

impl std::fmt::Debug for ForwardAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ForwardAuth")
            .field("rules", &self.rules)
            .field("proxy_secret", &self.proxy_secret.as_ref().map(|_| "****"))
            .field("client_address", &self.client_address)
            .finish_non_exhaustive()
    }
}

impl ForwardAuth {
    /// Checks with `auth` under `rules`; the client is the rightmost `X-Forwarded-For`
    /// entry (the one the proxy appended), else the connection's address.
    pub fn new(auth: Authenticator, rules: Rules) -> Self {
        Self {
            auth,
            rules: Arc::new(rules),
            proxy_secret: None,
            client_address: ClientAddress::x_forwarded_for(1),
            options: ParseOptions::default(),
            challenge: Challenge::default(),
        }
    }

    /// Only checks that carry `secret` in `X-Pat-Proxy-Secret` are answered; others are
    /// 401. Surrounding whitespace (a file's final newline) is ignored; an empty secret
    /// is refused.
    pub fn with_proxy_secret(mut self, secret: &str) -> Result<Self, &'static str> {
        let secret = secret.trim();
        if secret.is_empty() {
            return Err("the proxy secret is empty");
        }
        self.proxy_secret = Some(SecretHash::of(secret));
        Ok(self)
    }

    /// Where the client's address is read (default: the rightmost `X-Forwarded-For`
    /// entry).
    pub fn with_client_address(mut self, source: ClientAddress) -> Self {
        self.client_address = source;
        self
    }

    /// The realm of the challenges (default `tower-pat`).
    pub fn with_realm(mut self, realm: &str) -> Self {
        self.challenge = Challenge::new(realm, self.options.bearer, self.options.basic);
        self
    }

    /// The forward-auth routes alone: `/auth` and `/ext-authz/…`.
    pub fn routes(self) -> Router {
        let this = Arc::new(self);
        Router::new()
            .route("/auth", any(auth_request))
            .route("/ext-authz", any(ext_authz))
            .route("/ext-authz/", any(ext_authz))
            .route("/ext-authz/{*path}", any(ext_authz))
            .with_state(this)
    }

    fn refuse(&self, kind: RejectionKind) -> Response {
        Rejection::new(kind, self.challenge.clone()).into_response()
    }

    /// Whether the check carries the proxy secret (or none is asked for).
    fn is_from_proxy(&self, headers: &HeaderMap) -> bool {
        let Some(want) = &self.proxy_secret else {
            return true;
        };
        let mut sent = headers.get_all(&PROXY_SECRET).iter();
        match (sent.next(), sent.next()) {
            (Some(v), None) => {
                let got = SecretHash::of(std::str::from_utf8(v.as_bytes()).unwrap_or("").trim());
                want.ct_eq(&got)
            }
            _ => false,
        }
    }

    /// The decision for the original request `method path` (its query already cut).
    async fn check(&self, method: &Method, path: &str, req: &http::request::Parts) -> Response {
        let headers = &req.headers;
        let credentials = match parse_authorization(headers, &self.options) {
            Ok(Some(c)) => c,
            Ok(None) => return self.refuse(RejectionKind::MissingCredentials),
            Err(e) => {
                return Rejection::from_credentials_error(e, self.challenge.clone()).into_response()
            }
        };
        let client = self.client_address.of(headers, &req.extensions);
        let user_agent = crate::events::user_agent(headers);
        let credential = Credential::from(&credentials)
            .with_client(client)
            .with_user_agent(user_agent);
        let principal = match self.auth.authenticate(credential).await {
            Ok(p) => p,
            Err(e) => {
                return Rejection::from_auth_error(&e, self.challenge.clone()).into_response()
            }
        };
        let scopes = match self.rules.required(method, path) {
            Ok(Needs::Scopes { scopes, .. }) => scopes,
            Ok(_) => return self.refuse(RejectionKind::Forbidden),
            Err(e) => return self.refuse(RejectionKind::InvalidRequest(e.to_string())),
        };
        if let Some(missing) = principal.missing(&scopes) {
            crate::metrics::insufficient_scope();
            return self.refuse(RejectionKind::InsufficientScope(missing.clone()));
        }
        let mut res = StatusCode::OK.into_response();
        let h = res.headers_mut();
        let scopes: Vec<String> = principal.scopes().iter().map(ToString::to_string).collect();
        let values = [
            (
                &OWNER,
                HeaderValue::from_bytes(principal.owner().as_bytes()),
            ),
            (
                &TOKEN_ID,
                HeaderValue::from_str(principal.token_id().as_str()),
            ),
            (&SCOPES, HeaderValue::from_str(&scopes.join(" "))),
        ];
        for (name, value) in values {
            match value {
                Ok(v) => {
                    h.insert(name.clone(), v);
                }
                // An identity the proxy cannot carry is no pass.
                Err(_) => return StatusCode::INTERNAL_SERVER_ERROR.into_response(),
            }
        }
        // Always sent (`never` for a token without an end): a proxy that copies only
        // the headers present (Caddy 2.6 sets the unfilled placeholder instead) would
        // otherwise pass on what the client sent under this name.
        let end = principal
            .expires_at()
            .and_then(|e| {
                e.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_else(|| "never".to_owned());
        if let Ok(v) = HeaderValue::try_from(end) {
            h.insert(EXPIRES_AT.clone(), v);
        }
        h.insert(
            http::header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        );
        res
    }
}

/// One header's text, if the request has exactly one and it is text.
fn one<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    let mut all = headers.get_all(name).iter();
    match (all.next(), all.next()) {
        (Some(v), None) => v.to_str().ok(),
        _ => None,
    }
}

/// The original request's method and URI, both from one family of headers: the
/// `X-Forwarded-*` pair when either of them is present (a client's own `X-Original-*`
/// then counts for nothing), else the `X-Original-*` pair. `None` unless the family's
/// two headers are there once each, in ASCII.
fn original_request(headers: &HeaderMap) -> Option<(&str, &str)> {
    let family =
        if headers.contains_key("x-forwarded-method") || headers.contains_key("x-forwarded-uri") {
            ("x-forwarded-method", "x-forwarded-uri")
        } else {
            ("x-original-method", "x-original-uri")
        };
    Some((one(headers, family.0)?, one(headers, family.1)?))
}

/// The path of an original URI: the query and fragment cut first (they may hold
/// anything, `://` included), then a `scheme://authority` taken off a full URL.
fn original_path(uri: &str) -> &str {
    let uri = uri.split(['?', '#']).next().unwrap_or_default();
    if uri.starts_with('/') {
        return uri;
    }
    match uri.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or("/", |i| &rest[i..]),
        None => uri,
    }
}

/// `/auth`: the original request from the proxy's headers.
async fn auth_request(State(f): State<Arc<ForwardAuth>>, req: Request) -> Response {
    if !f.is_from_proxy(req.headers()) {
        return f.refuse(RejectionKind::MissingCredentials);
    }
    let headers = req.headers();
    let Some((method, uri)) = original_request(headers) else {
        return f.refuse(RejectionKind::InvalidRequest(
            "the proxy sent no readable original request: set one X-Forwarded-Method and one X-Forwarded-Uri (or X-Original-Method and X-Original-URI), in ASCII".into(),
        ));
    };
    let Ok(method) = Method::from_bytes(method.trim().as_bytes()) else {
        return f.refuse(RejectionKind::InvalidRequest(
            "the original method is not an HTTP method".into(),
        ));
    };
    let path = original_path(uri).to_owned();
    let (parts, _) = req.into_parts();
    f.check(&method, &path, &parts).await
}

/// `/ext-authz/…`: Envoy's check request is the original's method, and its path behind
/// the prefix.
async fn ext_authz(State(f): State<Arc<ForwardAuth>>, req: Request) -> Response {
    if !f.is_from_proxy(req.headers()) {
        return f.refuse(RejectionKind::MissingCredentials);
    }
    let path = req
        .uri()
        .path()
        .strip_prefix("/ext-authz")
        .unwrap_or_default();
    let path = if path.is_empty() { "/" } else { path }.to_owned();
    let method = req.method().clone();
    let (parts, _) = req.into_parts();
    f.check(&method, &path, &parts).await
}

/// Everything `pat serve` serves: the forward-auth routes, the admin API behind the
/// layer (with the leaked-token route beside it), `/healthz` and `/readyz`.
///
/// ```
/// # use std::sync::Arc;
/// use tower_pat::server::{router, ForwardAuth, Rules};
/// use tower_pat::{manage::Manager, Authenticator, MemoryStore};
///
/// let auth = Authenticator::new(Arc::new(MemoryStore::new()));
/// let app: axum::Router = router(
///     Manager::new(auth.clone()),
///     ForwardAuth::new(auth, Rules::authenticated()),
/// );
/// ```
pub fn router(manager: Manager, forward: ForwardAuth) -> Router {
    let auth = manager.authenticator().clone();
    let layer = crate::PatLayer::new(auth.clone()).with_client_address(forward.client_address);
    let ready = auth.clone();
    Router::new()
        .merge(crate::admin::router(manager.clone()).layer(layer))
        .merge(crate::admin::revoke_router_with_client_address(
            manager,
            crate::AttemptLimiter::new(60, Duration::from_secs(3600)),
            ClientAddress::connection(),
        ))
        .merge(forward.routes())
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(move || readyz(ready.clone())))
}

/// 200 when the store answers a read, else 503 with `Retry-After`.
async fn readyz(auth: Authenticator) -> Response {
    let probe = crate::token::TokenId::generate();
    match auth
        .store_call(crate::metrics::StoreOp::Get, auth.store().get(&probe))
        .await
    {
        Ok(_) => (StatusCode::OK, "ready\n").into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "not ready: the token store does not answer");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                [(http::header::RETRY_AFTER, HeaderValue::from_static("5"))],
                "the token store does not answer\n",
            )
                .into_response()
        }
    }
}
