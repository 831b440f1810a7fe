//! Personal access tokens (PATs) for tower, axum and hyper services.
//!
//! Tokens are minted once (`pat_<id>_<secret><crc32>`), stored as a SHA-256 hash, sent as
//! `Authorization: Bearer <token>` or as the password of HTTP Basic, checked through a
//! moka cache in front of a pluggable [`TokenStore`], limited by scopes such as
//! `repo:write` or `node:<uuid>:rw`, and expire at a hard limit or on a sliding window.
//!
//! ```no_run
//! use std::net::SocketAddr;
//! use std::sync::Arc;
//! use axum::{routing::get, Router};
//! use tower_pat::{Authenticator, MemoryStore, NewToken, PatLayer, Principal, RequireScopesLayer};
//!
//! #[tokio::main]
//! async fn main() {
//!     let auth = Authenticator::new(Arc::new(MemoryStore::new()));
//!     // Follows other replicas' changes and writes uses behind (see `background`).
//!     tokio::spawn(auth.background());
//!     let created = auth
//!         .create(NewToken::new("demo", "readme").with_scopes("repo:write".parse().unwrap()))
//!         .await
//!         .unwrap();
//!     println!("token: {}", created.token.expose()); // shown this once
//!
//!     let app = Router::new()
//!         .route("/repos", get(|| async { "repos" }))
//!         .route_layer(RequireScopesLayer::new("repo:read".parse().unwrap()))
//!         .route("/whoami", get(|p: Principal| async move { p.owner().to_string() }))
//!         .layer(PatLayer::new(auth.clone()));
//!
//!     let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await.unwrap();
//!     // With the client's address: the failed-attempt limiter counts by it.
//!     axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
//!         .with_graceful_shutdown(async { tokio::signal::ctrl_c().await.unwrap() })
//!         .await
//!         .unwrap();
//!     auth.shutdown().await.unwrap(); // writes what is pending
//! }
//! ```
//!
//! # Parts, in the order a request meets them
//!
//! The modules follow the data flow of a request; most are private, and what users need
//! of them is re-exported here.
//!
//! 1. **Credentials** (`credentials`, public for transports other than the layer): the
//!    `Authorization` header, Bearer or Basic ([`credentials::parse_authorization`]).
//! 2. **Token format** (`token`): [`TokenFormat`], [`TokenId`], [`Secret`], [`SecretHash`],
//!    checked with no I/O.
//! 3. **The decision** (`authenticator`): [`Authenticator`] with its
//!    [`AuthenticatorBuilder`], the check protocol ([`Credential`] → [`Check`] or
//!    [`PendingCheck`]), and its [`Background`] work; failed-attempt limiting
//!    ([`AttemptLimiter`], `limit`); [`AuthError`].
//! 4. **Cache** (`cache`, private): the cached token, the hot table, invalidation epochs,
//!    the write-behind queue.
//! 5. **Store** ([`store`]): [`TokenStore`], [`TokenRecord`], [`MemoryStore`], the SQLite,
//!    PostgreSQL and Redis stores, [`store::open`].
//! 6. **Scopes and expiry** (`scope`, `expiry`): [`Scope`], [`ScopeSet`],
//!    [`ScopeHierarchy`], [`Expiry`].
//! 7. **Principal** (`principal`): [`Principal`], who a valid token acts for, and the
//!    layers that enforce scopes ([`layer`]: [`PatLayer`], [`RequireScopesLayer`]) and
//!    answer refusals ([`Rejection`]).
//!
//! Then the lifecycle: [`manage`] (create, list, patch, rotate, delete, with rights), its
//! REST router `admin` (feature `admin`), the users' own page `ui` (feature `ui`), the
//! `pat` CLI (feature `cli`) and `pat serve` for reverse proxies (`server`, feature
//! `server`).
//!
//! # Stable API
//!
//! The items re-exported at the crate root and the public modules [`store`], [`manage`],
//! [`layer`], [`credentials`], `admin`, `ui` and `server` are the API; everything else is private. Until
//! 1.0, a breaking change to them is listed in the CHANGELOG section of the README. Enum
//! and struct types marked `#[non_exhaustive]` may grow.
//!
//! # Feature flags
//!
//! | feature | default | what |
//! |---|---|---|
//! | `axum` | yes | the [`Principal`] extractor and `IntoResponse` for [`Rejection`] |
//! | `sqlite` | yes | the SQLite store |
//! | `postgres` | no | the PostgreSQL store |
//! | `redis` | no | the Redis store |
//! | `admin` | yes | the `/personal-access-tokens` REST router with its OpenAPI document |
//! | `ui` | yes | the self-service token page (`ui::router`), maud templates |
//! | `cli` | no | the `pat` command line tool |
//! | `server` | no | `pat serve` and `server`: forward auth for reverse proxies |
//! | `prefetch` | no | a CPU prefetch hint on the cached path (x86_64): the crate's only `unsafe` code; without it the crate forbids `unsafe` |
//! | `metrics` | no | counters, gauges and histograms through the [`metrics`](https://docs.rs/metrics) facade (`describe_metrics` lists them); without it no metric code is compiled |
#![cfg_attr(docsrs, feature(doc_cfg))]
#![cfg_attr(not(feature = "prefetch"), forbid(unsafe_code))]

// The request's path (rustfmt sorts them; the crate docs above give the order).
mod authenticator;
mod cache;
mod clock;
pub mod credentials;
mod error;
mod expiry;
#[cfg(feature = "axum")]
mod extract;
pub mod layer;
mod limit;
mod metrics;
mod principal;
mod record;
mod rejection;
mod scope;
pub mod store;
mod token;
// The lifecycle.
#[cfg(feature = "admin")]
#[cfg_attr(docsrs, doc(cfg(feature = "admin")))]
pub mod admin;
mod events;
pub mod manage;
#[cfg(feature = "server")]
#[cfg_attr(docsrs, doc(cfg(feature = "server")))]
pub mod server;
#[cfg(feature = "ui")]
#[cfg_attr(docsrs, doc(cfg(feature = "ui")))]
pub mod ui;

// The decision.
pub use authenticator::{
    Authenticator, AuthenticatorBuilder, Background, Check, Credential, PendingCheck,
};
pub use error::{AuthError, InvalidReason};
pub use limit::AttemptLimiter;
pub use manage::{CreatedToken, NewToken};
// Lifecycle events.
pub use events::{AuditLog, Event, EventActor, EventKind, EventSink, Origin, TracingSink};
// Tokens and scopes.
pub use expiry::{parse_duration, DurationError, Expiry};
pub use scope::{NodePerm, Scope, ScopeError, ScopeHierarchy, ScopeSet};
pub use token::{
    MintedToken, ParsedToken, Secret, SecretHash, TokenFormat, TokenFormatError, TokenId,
};
// Stores.
pub use record::{PreviousSecret, TokenRecord};
pub use store::{MemoryStore, TokenStore};
// The layer.
pub use layer::{ClientAddress, PatLayer, PatService, RequireScopesLayer};
pub use principal::Principal;
pub use rejection::{Challenge, DefaultOnRejection, OnRejection, Rejection, RejectionKind};
// Time, for tests and simulations.
pub use clock::{Clock, ManualClock, SystemClock};
// Metrics.
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub use crate::metrics::describe_metrics;
