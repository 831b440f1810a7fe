//! The admin REST API (feature `admin`): an axum [`Router`](axum::Router) for
//! `/personal-access-tokens`, thin over [`crate::manage::Manager`], with an OpenAPI 3
//! document generated from its types.
//!
//! Mount it behind [`PatLayer`](crate::PatLayer): each call acts as the caller's
//! [`Principal`](crate::Principal), with the rights [`Manager`](crate::manage::Manager)
//! describes (admin scope `pat:admin` for everyone's tokens, otherwise one's own).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use std::sync::Arc;
//! use axum::Router;
//! use tower_pat::{admin, manage::Manager, Authenticator, MemoryStore, PatLayer};
//!
//! let auth = Authenticator::new(Arc::new(MemoryStore::new()));
//! let app: Router = Router::new()
//!     .merge(admin::router(Manager::new(auth.clone())))
//!     .layer(PatLayer::new(auth));
//! # let _ = app;
//! # }
//! ```
//!
//! | method and path | answer |
//! |---|---|
//! | `POST /personal-access-tokens` | 201, the token value (only time), `Cache-Control: no-store` |
//! | `GET /personal-access-tokens` | `{count, next, previous, results}`; `owner-id`, AWX lookups, `last_used_ip`, `expires_within=7d`, `search`, `order_by`, `page`, `page_size` |
//! | `GET /personal-access-tokens/{id}` | the token (never its secret or hash) |
//! | `PATCH /personal-access-tokens/{id}` | JSON Patch (`application/json-patch+json`), all or nothing |
//! | `DELETE /personal-access-tokens/{id}` | 204 |
//! | `POST /personal-access-tokens/{id}/rotate` | the new token value; `{"grace": "1h", "new_id": false}` |
//! | `GET /personal-access-tokens/events` | the audit log, newest first: `{count, next, previous, results}`; `token_id`, `owner`, `type`, `since`, `until` (RFC 3339 or `7d`), `page`, `page_size` |
//! | `GET /personal-access-tokens/{id}/events` | one token's events (404 once it is deleted: they stay at `/events?token_id=…`) |
//! | `GET /personal-access-tokens/openapi.json` | the OpenAPI 3 document |
//! | `POST /personal-access-tokens/revoke` | leaked-token reports, no authentication ([`revoke_router`], outside the layer): always 202 |
//!
//! Errors are `{"error", "message", "details"}` with 400, 401, 403 (`insufficient_scope`
//! naming the management scope needed, `forbidden`, `policy`), 404, 409, 412 (a stale
//! `If-Match`), 415 or 503 (with `Retry-After`); 429 comes from the layer in front.
//! Another user's token is 404 to a non-admin. Every token answer carries its version as
//! the `ETag`. [`document`] is the OpenAPI document as served: the contract, checked by
//! schemathesis in CI.

mod error;
mod json;
mod openapi;
mod router;

pub use error::{ApiError, ErrorBody};
pub use openapi::document;
#[cfg(feature = "ui")]
pub(crate) use router::encode;
pub use router::{AdminApi, EventList, RevokeAnswer, RevokeRequest, TokenList, BASE};

/// The admin router: mount it behind [`PatLayer`](crate::PatLayer).
pub fn router(manager: crate::manage::Manager) -> axum::Router {
    router::routes(manager, document())
}

/// `POST /personal-access-tokens/revoke`, where anyone who found leaked tokens reports
/// them (GitHub's `/credentials/revoke`): mount it **outside** [`PatLayer`](crate::PatLayer),
/// since a finder holds no token of their own. At most 60 reports an hour per client
/// address (the connection's: serve with `into_make_service_with_connect_info`; an IPv6
/// client counts per /64); see [`revoke_router_with_limit`] for another limit, or none,
/// and [`revoke_router_with_client_address`] behind a reverse proxy.
///
/// ```
/// # use std::sync::Arc;
/// use axum::Router;
/// use tower_pat::{admin, manage::Manager, Authenticator, MemoryStore, PatLayer};
///
/// # let auth = Authenticator::new(Arc::new(MemoryStore::new()));
/// let manager = Manager::new(auth.clone());
/// let app: Router = Router::new()
///     .merge(admin::router(manager.clone()))
///     .layer(PatLayer::new(auth))
///     .merge(admin::revoke_router(manager));
/// # let _ = app;
/// ```
pub fn revoke_router(manager: crate::manage::Manager) -> axum::Router {
    let limit = crate::AttemptLimiter::new(60, std::time::Duration::from_secs(3600));
    revoke_router_with_limit(manager, limit)
}

/// [`revoke_router`] with `limit` counting every report per client (each report counts
/// as one attempt; [`AttemptLimiter::disabled`](crate::AttemptLimiter::disabled): none).
pub fn revoke_router_with_limit(
    manager: crate::manage::Manager,
    limit: crate::AttemptLimiter,
) -> axum::Router {
    router::revoke_routes(manager, limit, crate::layer::ClientAddress::default())
}

/// [`revoke_router_with_limit`] behind reverse proxies: clients are told apart by the
/// address `source` reads (as [`PatLayer::with_client_address`](crate::PatLayer::with_client_address)),
/// so the proxy's own address does not make every finder share one limit.
///
/// ```
/// # use std::sync::Arc;
/// use std::time::Duration;
/// use tower_pat::layer::ClientAddress;
/// use tower_pat::{admin, manage::Manager, AttemptLimiter, Authenticator, MemoryStore};
///
/// # let auth = Authenticator::new(Arc::new(MemoryStore::new()));
/// let limit = AttemptLimiter::new(60, Duration::from_secs(3600));
/// let app = admin::revoke_router_with_client_address(
///     Manager::new(auth),
///     limit,
///     ClientAddress::x_forwarded_for(1), // one proxy in front that appends
/// );
/// # let _: axum::Router = app;
/// ```
pub fn revoke_router_with_client_address(
    manager: crate::manage::Manager,
    limit: crate::AttemptLimiter,
    source: crate::layer::ClientAddress,
) -> axum::Router {
    router::revoke_routes(manager, limit, source)
}
