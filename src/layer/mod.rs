//! Tower middleware: [`PatLayer`] authenticates, [`RequireScopesLayer`] enforces scopes.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use std::sync::Arc;
//! use axum::{routing::get, Router};
//! use tower_pat::{Authenticator, MemoryStore, PatLayer, RequireScopesLayer};
//!
//! let auth = Authenticator::new(Arc::new(MemoryStore::new()));
//! let app: Router = Router::new()
//!     .route("/repos", get(|| async { "repos" }))
//!     .route_layer(RequireScopesLayer::new("repo:read".parse().unwrap()))
//!     .route("/whoami", get(|| async { "me" }))
//!     .layer(PatLayer::new(auth));
//! # }
//! ```

mod auth;
mod client_address;
mod node_root;
mod require;

pub use auth::{PatLayer, PatService, ResponseFuture};
pub use client_address::ClientAddress;
pub use node_root::node_root_scopes;
pub use require::{is_read_method, node_scopes, RequireScopes, RequireScopesLayer, ScopePolicy};
