//! What the management API shows of a token: [`TokenView`] (never the secret or its
//! hash) and [`IssuedToken`] (the view plus the token string, shown once).

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::expiry::Expiry;
use crate::record::TokenRecord;
use crate::token::{Secret, TokenId};

/// A token as the management API shows it: everything but the secret and its hash.
///
/// This is also the document a JSON Patch applies to (see [`apply_patch`](super::apply_patch)): `name`,
/// `scopes`, `active` and `expires_at` may change; the rest is read-only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "admin", derive(utoipa::ToSchema))]
pub struct TokenView {
    /// Public id, safe to log.
    #[cfg_attr(feature = "admin", schema(value_type = String, example = "7Hk2pQ9ZxLm4Tb1R"))]
    pub id: TokenId,
    /// The user the token acts for.
    pub owner: String,
    /// Label, e.g. "terraform prod".
    pub name: String,
    /// Scopes; empty = everything the owner may do.
    pub scopes: Vec<String>,
    /// Expiry model: `never`, `hard_limit` or `auto_refresh`.
    pub expiry: String,
    /// For `auto_refresh`: the sliding window in seconds.
    pub auto_refresh_seconds: Option<u64>,
    /// For `auto_refresh`: the absolute end that sliding never passes.
    #[serde(with = "time::serde::rfc3339::option")]
    #[cfg_attr(feature = "admin", schema(value_type = Option<String>, format = DateTime))]
    pub not_after: Option<OffsetDateTime>,
    /// When the token stops working (the sliding value for `auto_refresh`); `null` = never.
    #[serde(with = "time::serde::rfc3339::option")]
    #[cfg_attr(feature = "admin", schema(value_type = Option<String>, format = DateTime))]
    pub expires_at: Option<OffsetDateTime>,
    /// Disabled tokens are kept but refused.
    pub active: bool,
    /// Creation time.
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "admin", schema(value_type = String, format = DateTime))]
    pub created: OffsetDateTime,
    /// Last change through the management API.
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "admin", schema(value_type = String, format = DateTime))]
    pub modified: OffsetDateTime,
    /// Last successful use; `null` until the first.
    #[serde(with = "time::serde::rfc3339::option")]
    #[cfg_attr(feature = "admin", schema(value_type = Option<String>, format = DateTime))]
    pub last_used: Option<OffsetDateTime>,
    /// The client address of the last use (as of its last write-behind write); `null`
    /// until a use named one.
    #[serde(default)]
    #[cfg_attr(feature = "admin", schema(value_type = Option<String>, example = "192.0.2.7"))]
    pub last_used_ip: Option<IpAddr>,
    /// The user agent of the last use (at most 256 characters, no control characters).
    #[serde(default)]
    pub last_used_user_agent: Option<String>,
    /// The client address of the request that created the token; `null` when it was
    /// made by an operator or server-side code.
    #[serde(default)]
    #[cfg_attr(feature = "admin", schema(value_type = Option<String>, example = "192.0.2.7"))]
    pub created_ip: Option<IpAddr>,
    /// The user agent of the request that created the token.
    #[serde(default)]
    pub created_user_agent: Option<String>,
    /// After a rotation with a grace period: until when the old secret still works.
    #[serde(with = "time::serde::rfc3339::option")]
    #[cfg_attr(feature = "admin", schema(value_type = Option<String>, format = DateTime))]
    pub previous_secret_valid_until: Option<OffsetDateTime>,
    /// The token's version, one more with every change; the admin API's `ETag`
    /// (`"<version>"`), which `If-Match` names to change only this version.
    #[serde(default)]
    pub version: u64,
}

impl TokenView {
    /// The fields of a token's JSON, in order (what a JSON Patch `test` may read).
    pub(crate) const FIELDS: [&'static str; 18] = [
        "id",
        "owner",
        "name",
        "scopes",
        "expiry",
        "auto_refresh_seconds",
        "not_after",
        "expires_at",
        "active",
        "created",
        "modified",
        "last_used",
        "last_used_ip",
        "last_used_user_agent",
        "created_ip",
        "created_user_agent",
        "previous_secret_valid_until",
        "version",
    ];
}

impl From<&TokenRecord> for TokenView {
    fn from(r: &TokenRecord) -> Self {
        let (expiry, auto_refresh_seconds, not_after) = match r.expiry {
            Expiry::Never => ("never", None, None),
            Expiry::HardLimit { .. } => ("hard_limit", None, None),
            Expiry::AutoRefresh { window, not_after } => {
                ("auto_refresh", Some(window.as_secs()), not_after)
            }
            #[allow(unreachable_patterns)]
            _ => ("other", None, None),
        };
        Self {
            id: r.id,
            owner: r.owner.clone(),
            name: r.name.clone(),
            scopes: r.scopes.iter().map(ToString::to_string).collect(),
            expiry: expiry.to_owned(),
            auto_refresh_seconds,
            not_after,
            expires_at: r.expires_at,
            active: r.active,
            created: r.created,
            modified: r.modified,
            last_used: r.last_used,
            last_used_ip: r.last_used_from.client,
            last_used_user_agent: r.last_used_from.user_agent.clone(),
            created_ip: r.created_from.client,
            created_user_agent: r.created_from.user_agent.clone(),
            previous_secret_valid_until: r.previous_secret.map(|p| p.valid_until),
            version: r.version,
        }
    }
}

impl From<TokenRecord> for TokenView {
    fn from(r: TokenRecord) -> Self {
        Self::from(&r)
    }
}

/// A token just created or rotated: its view and the token string, which exists outside
/// its holder only in this value. `Debug` redacts the token; serializing shows it.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "admin", derive(utoipa::ToSchema))]
pub struct IssuedToken {
    /// The full token. Show it once; it cannot be recovered.
    #[serde(serialize_with = "expose")]
    #[cfg_attr(feature = "admin", schema(value_type = String, example = "pat_7Hk2pQ9ZxLm4Tb1R_…"))]
    pub token: Secret,
    /// The token's view.
    #[serde(flatten)]
    pub view: TokenView,
    /// For a rotation to a new id: the id of the token this one replaces.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "admin", schema(value_type = Option<String>))]
    pub replaces: Option<TokenId>,
}

fn expose<S: serde::Serializer>(secret: &Secret, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(secret.expose())
}
