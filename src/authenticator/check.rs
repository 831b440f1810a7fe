//! The check protocol: a [`Credential`] in, a [`Check`] out — the decision at once when
//! memory holds it, or a [`PendingCheck`] that owns everything the rest needs.
//!
//! Invariants:
//! - A check is one attempt for the failed-attempt limiter: it is let in (or locked out)
//!   once, when it starts, and its result is counted once, when it is decided, by
//!   [`Authenticator::check`] or by [`PendingCheck::finish`].
//! - A [`PendingCheck`] holds the token's id and the SHA-256 of its secret (what the store
//!   keeps), never the secret, so it may be moved, kept and dropped freely.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use super::attempt::Attempt;
use super::{Authenticator, Inner};
use crate::error::AuthError;
use crate::principal::Principal;
use crate::token::{SecretHash, TokenId};

/// A credential to check: a token (Bearer) or a username and a token as its password
/// (Basic, SFTP, WebDAV), and optionally the client's address, which turns on the
/// failed-attempt limiter ([`AttemptLimiter`](crate::AttemptLimiter)) for the check.
///
/// A `&str` is a Bearer token: `auth.authenticate(token)` works as it reads.
///
/// ```
/// use std::net::IpAddr;
/// use tower_pat::Credential;
///
/// let client: IpAddr = [192, 0, 2, 7].into();
/// let bearer = Credential::bearer("pat_…").with_client(Some(client));
/// let basic = Credential::basic("alice", "pat_…");
/// # let _ = (bearer, basic);
/// ```
#[derive(Clone, Copy)]
pub struct Credential<'a> {
    pub(super) token: &'a str,
    pub(super) username: Option<&'a str>,
    pub(super) from: UseFrom<'a>,
}

/// Where a use comes from, as far as the check knows: recorded on the token (its last
/// origin, its recent addresses) and in its first-use and new-address events.
#[derive(Clone, Copy, Default)]
pub(crate) struct UseFrom<'a> {
    pub(crate) client: Option<IpAddr>,
    pub(crate) user_agent: Option<&'a str>,
    /// The caller (the HTTP layer) reads the user agent only when the use needs it and
    /// then finishes the use itself ([`Authenticator::follow_up`]): the check leaves the
    /// follow-up in the principal.
    pub(crate) deferred: bool,
}

impl<'a> Credential<'a> {
    /// A token as sent by `Authorization: Bearer`.
    pub fn bearer(token: &'a str) -> Self {
        Self {
            token,
            username: None,
            from: UseFrom::default(),
        }
    }

    /// A username and password (HTTP Basic, SFTP, WebDAV): the password is the token and
    /// the username must be its owner.
    pub fn basic(username: &'a str, password: &'a str) -> Self {
        Self {
            token: password,
            username: Some(username),
            from: UseFrom::default(),
        }
    }

    /// From this client (its IP address): failures count against it, and a locked-out
    /// client is refused with [`AuthError::TooManyAttempts`] without a store read.
    #[must_use]
    ///
    /// The address is also recorded as where the token was last used from (shown in its
    /// view, filterable as `last_used_ip`); a use from an address not among its recent
    /// ones is a [`NewClientAddress`](crate::EventKind::NewClientAddress) event.
    pub fn with_client(mut self, client: Option<IpAddr>) -> Self {
        self.from.client = client;
        self
    }

    /// With the client's user agent, recorded with the address (cut to 256 characters,
    /// control characters dropped).
    #[must_use]
    pub fn with_user_agent(mut self, user_agent: Option<&'a str>) -> Self {
        self.from.user_agent = user_agent;
        self
    }

    /// The layer reads the user agent itself, only when a use needs it.
    #[must_use]
    pub(crate) fn deferring_origin(mut self) -> Self {
        self.from.deferred = true;
        self
    }
}

impl<'a> From<&'a str> for Credential<'a> {
    /// A Bearer token.
    fn from(token: &'a str) -> Self {
        Self::bearer(token)
    }
}

impl<'a> From<&'a String> for Credential<'a> {
    /// A Bearer token.
    fn from(token: &'a String) -> Self {
        Self::bearer(token)
    }
}

impl<'a> From<&'a crate::credentials::Credentials<'_>> for Credential<'a> {
    /// What [`parse_authorization`](crate::credentials::parse_authorization) read.
    fn from(credentials: &'a crate::credentials::Credentials<'_>) -> Self {
        use crate::credentials::Credentials;
        match credentials {
            Credentials::Bearer(token) => Self::bearer(token),
            Credentials::Basic { username, password } => Self::basic(username, password.expose()),
        }
    }
}

impl fmt::Debug for Credential<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credential")
            .field("token", &"****")
            .field("username", &self.username)
            .field("client", &self.from.client)
            .field("user_agent", &self.from.user_agent)
            .finish()
    }
}

/// What [`Authenticator::check`] made of a credential.
#[must_use = "a pending check decides nothing until it is finished"]
#[derive(Debug)]
pub enum Check {
    /// Decided from memory: a cached token, a malformed one, or a locked-out client.
    Decided(Result<Principal, AuthError>),
    /// A well-formed token that only the cache and the store can decide.
    Pending(PendingCheck),
}

impl Check {
    /// The decision, finishing a pending check.
    pub async fn finish(self) -> Result<Principal, AuthError> {
        match self {
            Check::Decided(result) => result,
            Check::Pending(pending) => pending.finish().await,
        }
    }
}

/// A check [`Authenticator::check`] started but could not decide from memory. It owns
/// what the rest needs (the token's id and secret hash, the time the check started, the
/// client and the Basic username), so it can be moved into a future of its own.
#[must_use = "a pending check decides nothing until it is finished"]
pub struct PendingCheck {
    pub(super) inner: Arc<Inner>,
    pub(super) id: TokenId,
    pub(super) hash: SecretHash,
    pub(super) now: i64,
    pub(super) client: Option<IpAddr>,
    pub(super) username: Option<Box<str>>,
    pub(super) user_agent: Option<Box<str>>,
    pub(super) deferred: bool,
}

impl fmt::Debug for PendingCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingCheck")
            .field("token_id", &self.id)
            .field("username", &self.username)
            .field("client", &self.client)
            .finish_non_exhaustive()
    }
}

impl PendingCheck {
    /// The id of the token being checked (public: safe to log).
    pub fn token_id(&self) -> &TokenId {
        &self.id
    }

    /// Decides from the cache and the store, and counts the result for the client.
    pub async fn finish(self) -> Result<Principal, AuthError> {
        let username = self.username.as_deref();
        let attempt = Attempt::resumed(self.client, username, self.now);
        let from = UseFrom {
            client: self.client,
            user_agent: self.user_agent.as_deref(),
            deferred: self.deferred,
        };
        let result = self
            .inner
            .check_cold(&self.id, &self.hash, username, self.now, from)
            .await;
        self.inner.count_attempt(attempt, &result);
        result
    }
}

impl Authenticator {
    /// Starts checking a credential: the decision at once when it can be made from
    /// memory (no await, no allocation), otherwise a [`PendingCheck`] to
    /// [`finish`](PendingCheck::finish). The HTTP layer calls this, so a cached token costs
    /// no future of its own; [`authenticate`](Self::authenticate) does both steps.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use std::sync::Arc;
    /// use tower_pat::{Authenticator, Check, Credential, MemoryStore, NewToken};
    ///
    /// let auth = Authenticator::new(Arc::new(MemoryStore::new()));
    /// let token = auth.create(NewToken::new("alice", "ci")).await.unwrap().token;
    /// let credential = Credential::basic("alice", token.expose());
    /// // Not cached yet: the store decides.
    /// let Check::Pending(pending) = auth.check(credential) else { unreachable!() };
    /// assert_eq!(pending.finish().await.unwrap().owner(), "alice");
    /// // Cached now: decided at once.
    /// assert!(matches!(auth.check(credential), Check::Decided(Ok(_))));
    /// # }
    /// ```
    pub fn check(&self, credential: Credential<'_>) -> Check {
        let Credential {
            token,
            username,
            from,
        } = credential;
        let client = from.client;
        let attempt = match self.inner.attempt(client, username) {
            Ok(attempt) => attempt,
            Err(locked) => return Check::Decided(Err(locked)),
        };
        match self.inner.check_cached(token, username, attempt.now, from) {
            Ok(result) => {
                self.inner.count_attempt(attempt, &result);
                Check::Decided(result)
            }
            Err((id, hash)) => Check::Pending(PendingCheck {
                inner: self.inner.clone(),
                id,
                hash,
                now: attempt.now,
                client,
                username: username.map(Box::from),
                user_agent: from.user_agent.map(Box::from),
                deferred: from.deferred,
            }),
        }
    }

    /// Checks a credential: a token (`&str`, as `Authorization: Bearer` sends it) or a
    /// [`Credential`] (Basic, a client address). [`check`](Self::check) followed by
    /// [`Check::finish`].
    pub async fn authenticate<'a>(
        &self,
        credential: impl Into<Credential<'a>>,
    ) -> Result<Principal, AuthError> {
        self.check(credential.into()).finish().await
    }
}
