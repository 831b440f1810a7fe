//! [`ManageError`]: why a management call was refused.

use super::json_patch::PatchError;
use super::validate::rfc3339;
use crate::store::StoreError;

/// Why a management call (create, get, list, patch, delete, rotate) was refused.
///
/// Each variant maps to one HTTP status in the admin router and one exit code in the
/// `pat` CLI; the message names the field, scope or operation at fault and never holds a
/// secret.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManageError {
    /// A field of the request is malformed or not allowed (400).
    #[error("invalid {field}: {message}")]
    BadInput {
        /// The field at fault, e.g. `scopes`, `expire`, `name__icontains`.
        field: String,
        /// What is wrong, naming the bad value (a scope, a duration) where there is one.
        message: String,
    },
    /// A JSON Patch operation failed; nothing was changed (400).
    #[error(transparent)]
    Patch(#[from] PatchError),
    /// No such token, or one the caller may not see (404).
    #[error("no token with id {id:?}")]
    NotFound {
        /// The id as given.
        id: String,
    },
    /// The caller may not do this, e.g. grant a scope its own token lacks (403).
    #[error("forbidden: {message}")]
    Forbidden {
        /// What was refused and why.
        message: String,
        /// The scope the caller lacks, when that is the reason.
        scope: Option<String>,
    },
    /// A well-formed value this server's rules refuse (403, `policy`): an expiry in the
    /// past, longer than the [`ExpiryPolicy`](crate::manage::ExpiryPolicy)'s maximum,
    /// or "never" where the policy does not allow it.
    #[error("refused by policy: {message}")]
    Policy {
        /// The field at fault, e.g. `expire`, `expires_at`, `never_expires`.
        field: String,
        /// What the policy requires, with the latest allowed value where there is one.
        message: String,
    },
    /// The caller's token lacks the management scope this needs (403,
    /// `insufficient_scope`): `pat:read` to list and show, `pat:write` to create, patch,
    /// rotate and delete, `pat:admin` for another user's tokens (names as configured).
    #[error("insufficient scope: your token needs {scope} for this (ask for a token with it)")]
    InsufficientScope {
        /// The scope needed.
        scope: String,
    },
    /// The new or changed token would end after the caller's own token (403): a token
    /// never makes a token that outlives it.
    #[error("forbidden: your token ends at {}, so a token it creates or changes must end by then: give an expiry (expire, validity_seconds or expires_at, the cap of an auto-refresh token included) no later than {}", rfc3339(*latest_end), rfc3339(*latest_end))]
    OutlivesCaller {
        /// The latest end allowed: the caller's own token's end.
        latest_end: time::OffsetDateTime,
    },
    /// `If-Match` named a version the token no longer has (412); nothing was changed.
    #[error(
        "precondition failed: the token is at version {current}, not the one given; read it again"
    )]
    PreconditionFailed {
        /// The token's version now.
        current: u64,
    },
    /// The change conflicts with the stored state (409).
    #[error("conflict: {message}")]
    Conflict {
        /// What conflicts.
        message: String,
    },
    /// The token store failed or timed out; nothing is known to have changed (503).
    #[error(transparent)]
    Unavailable(StoreError),
}

impl ManageError {
    /// A [`ManageError::BadInput`].
    pub fn bad_input(field: impl Into<String>, message: impl Into<String>) -> Self {
        ManageError::BadInput {
            field: field.into(),
            message: message.into(),
        }
    }

    pub(crate) fn not_found(id: impl Into<String>) -> Self {
        let id: String = id.into();
        // Echo only what is shaped like an id: a token pasted as an id is redacted.
        let id = if id.parse::<crate::token::TokenId>().is_ok() {
            id
        } else {
            crate::token::redact(&id)
        };
        ManageError::NotFound {
            id: id.chars().take(64).collect(),
        }
    }

    pub(crate) fn policy(field: impl Into<String>, message: impl Into<String>) -> Self {
        ManageError::Policy {
            field: field.into(),
            message: message.into(),
        }
    }

    pub(crate) fn forbidden(message: impl Into<String>, scope: Option<String>) -> Self {
        ManageError::Forbidden {
            message: message.into(),
            scope,
        }
    }

    /// A short machine-readable code: `invalid_request`, `invalid_patch`, `not_found`,
    /// `forbidden`, `insufficient_scope`, `policy`, `conflict`, `precondition_failed` or
    /// `temporarily_unavailable`.
    pub fn code(&self) -> &'static str {
        match self {
            ManageError::BadInput { .. } => "invalid_request",
            ManageError::Patch(_) => "invalid_patch",
            ManageError::NotFound { .. } => "not_found",
            ManageError::Forbidden { .. } => "forbidden",
            ManageError::Conflict { .. } => "conflict",
            ManageError::InsufficientScope { .. } => "insufficient_scope",
            ManageError::Policy { .. } => "policy",
            ManageError::OutlivesCaller { .. } => "forbidden",
            ManageError::PreconditionFailed { .. } => "precondition_failed",
            ManageError::Unavailable(_) => "temporarily_unavailable",
        }
    }
}

impl From<StoreError> for ManageError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(id) => ManageError::Conflict {
                message: format!("a token with id {id} already exists"),
            },
            other => ManageError::Unavailable(other),
        }
    }
}
