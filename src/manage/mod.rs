//! Managing tokens: one library API for create, get, list, patch, delete and rotate,
//! with rights and scope capping. The admin REST router (feature `admin`) and the `pat`
//! CLI (feature `cli`) are thin over it.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use std::sync::Arc;
//! use tower_pat::manage::{Actor, CreateTokenRequest, Manager, TokenPatch};
//! use tower_pat::{Authenticator, MemoryStore};
//!
//! let auth = Authenticator::new(Arc::new(MemoryStore::new()));
//! let manager = Manager::new(auth.clone());
//!
//! // A trusted operator (your server code, the CLI) creates a token for alice.
//! let issued = manager
//!     .create(
//!         &Actor::Operator,
//!         CreateTokenRequest::for_owner("alice").scope("repo:read").scope("pat:write").expire("20d"),
//!     )
//!     .await
//!     .unwrap();
//! println!("token: {}", issued.token.expose()); // shown this once
//!
//! // Alice, acting through that token, may manage her own tokens...
//! let alice = Actor::from(auth.authenticate(issued.token.expose()).await.unwrap());
//! let id = issued.view.id.to_string();
//! manager.patch(&alice, &id, TokenPatch::new().name("laptop")).await.unwrap();
//! // ...but cannot mint a stronger token than her own.
//! let stronger = CreateTokenRequest::default().scope("repo:write");
//! assert!(manager.create(&alice, stronger).await.is_err());
//!
//! // Deleting it revokes it at once.
//! manager.delete(&Actor::Operator, &id).await.unwrap();
//! assert!(auth.authenticate(issued.token.expose()).await.is_err());
//! # }
//! ```
//!
//! | operation | needs (a token acting for its owner; `pat:admin` for anyone's) | notes |
//! |---|---|---|
//! | [`Manager::create`] | `pat:write` | scopes capped by the caller's, end capped by the caller's end; [`ExpiryPolicy`] applies |
//! | [`Manager::get`], [`Manager::list`] | `pat:read` | another user's token is `NotFound` to a non-admin |
//! | [`Manager::patch`], [`Manager::json_patch`] | `pat:write` | name, scopes, active, expires_at; all or nothing; compare-and-swap |
//! | [`Manager::delete`] | `pat:write` | revokes at once |
//! | [`Manager::rotate`] | `pat:write` | same id + new secret, or a new linked id; optional grace; keeps the end |
//!
//! A full-access token (no scopes), `*` and `pat:*` hold `pat:write`; only `pat:admin`
//! itself makes an admin. The [`Manager`] docs have the rules in full.

mod error;
pub(crate) mod filter;
pub(crate) mod json_patch;
mod leaked;
mod manager;
mod mint;
mod request;
mod rights;
mod rotate;
mod validate;
mod view;

pub use error::ManageError;
pub use filter::{apply_event_filter, apply_filter, parse_order};
pub use json_patch::{
    apply as apply_patch, parse as parse_patch, Patch, PatchError, PatchErrorKind, PatchOperation,
};
pub use leaked::MAX_LEAKED_TOKENS;
pub use manager::Manager;
pub use mint::{CreatedToken, NewToken};
pub use request::{parse_scopes, CreateTokenRequest, ExpiryPolicy, RotateRequest, TokenPatch};
pub use rights::{Actor, ManagementScopes, Right};
#[cfg(feature = "admin")]
pub(crate) use validate::rfc3339;
pub use validate::{MAX_NAME_LEN, MAX_OWNER_LEN};
pub use view::{IssuedToken, TokenView};
