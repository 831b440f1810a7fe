//! [`ManageError`]: why a management call was refused.

use crate::manage::json_patch::PatchError;
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

    pub(crate) fn forbidden(message: impl Into<String>, scope: Option<String>) -> Self {
        ManageError::Forbidden {
            message: message.into(),
            scope,
        }
    }

    /// A short machine-readable code: `invalid_request`, `invalid_patch`, `not_found`,
    /// `forbidden`, `conflict` or `temporarily_unavailable`.
    pub fn code(&self) -> &'static str {
        match self {
            ManageError::BadInput { .. } => "invalid_request",
            ManageError::Patch(_) => "invalid_patch",
            ManageError::NotFound { .. } => "not_found",
            ManageError::Forbidden { .. } => "forbidden",
            ManageError::Conflict { .. } => "conflict",
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
