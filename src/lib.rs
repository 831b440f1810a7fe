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
//!         .layer(PatLayer::new(auth));
//!
//!     let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await.unwrap();
//!     // With the client's address: the failed-attempt limiter counts by it.
//!     axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
//!         .await
//!         .unwrap();
//! }
//! ```
//!
//! # Parts, in the order a request meets them
//!
//! - [`credentials`]: the `Authorization` header (Bearer, Basic).
//! - [`token`]: the token format, checked with no I/O.
//! - [`authenticator`]: the one decision point, with its cache.
//! - [`store`]: where tokens are kept.
//! - [`scope`], [`layer`]: what a token may do, and the layers that enforce it.
//! - [`rejection`]: how refusals are answered.
//! - [`limit`]: failed-attempt limiting (429), shared by the layer and the password adapter.
//! - [`manage`]: the token lifecycle (create, list, patch, rotate, delete) with rights;
//!   `admin` (feature `admin`) is its REST router, the `pat` binary (feature `cli`) its CLI.
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
//! | `cli` | no | the `pat` command line tool |
//! | `prefetch` | no | a CPU prefetch hint on the cached path (x86_64): the crate's only `unsafe` code; without it the crate forbids `unsafe` |
#![cfg_attr(docsrs, feature(doc_cfg))]
#![cfg_attr(not(feature = "prefetch"), forbid(unsafe_code))]

#[cfg(feature = "admin")]
#[cfg_attr(docsrs, doc(cfg(feature = "admin")))]
pub mod admin;
pub mod authenticator;
mod cache;
pub mod clock;
pub mod credentials;
pub mod error;
pub mod expiry;
#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub mod extract;
pub mod layer;
pub mod limit;
pub mod manage;
pub mod principal;
pub mod record;
pub mod rejection;
pub mod scope;
pub mod store;
pub mod token;

pub use authenticator::{
    Authenticator, AuthenticatorBuilder, Background, Check, CreatedToken, Credential, NewToken,
    PendingCheck,
};
pub use error::{AuthError, InvalidReason};
pub use expiry::Expiry;
pub use layer::{PatLayer, PatService, RequireScopesLayer};
pub use principal::Principal;
pub use record::TokenRecord;
pub use rejection::{Rejection, RejectionKind};
pub use scope::{Scope, ScopeSet};
pub use store::{MemoryStore, TokenStore};
pub use token::{Secret, TokenFormat, TokenId};
