//! Why an authentication failed: [`AuthError`].

use std::sync::Arc;
use std::time::Duration;

use crate::store::StoreError;
use crate::token::TokenFormatError;

/// Why an authentication failed.
///
/// A store failure ([`AuthError::StoreUnavailable`]) and an invalid token
/// ([`AuthError::Invalid`], [`AuthError::Malformed`]) never become each other.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// The string is not a token of this format (found with no store access).
    #[error("malformed token: {0}")]
    Malformed(#[from] TokenFormatError),
    /// The token is well formed but not valid; the reason is for logs only.
    #[error("invalid token ({0})")]
    Invalid(InvalidReason),
    /// Too many failed attempts from this client; try again after the delay.
    #[error("too many failed attempts; retry after {retry_after:?}")]
    TooManyAttempts {
        /// How long to wait.
        retry_after: Duration,
    },
    /// The store failed or timed out: nothing is let through, nothing is cached.
    #[error(transparent)]
    StoreUnavailable(Arc<StoreError>),
}

/// Why a well-formed token was refused. Shown in logs only: every reason gets the same
/// answer on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum InvalidReason {
    /// No token has this id.
    Unknown,
    /// The secret does not match.
    WrongSecret,
    /// Basic auth named another user than the token's owner.
    WrongUser,
    /// The token is disabled.
    Disabled,
    /// The token has expired.
    Expired,
}

impl std::fmt::Display for InvalidReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            InvalidReason::Unknown => "unknown id",
            InvalidReason::WrongSecret => "wrong secret",
            InvalidReason::WrongUser => "username is not the token's owner",
            InvalidReason::Disabled => "disabled",
            InvalidReason::Expired => "expired",
        })
    }
}
