//! [`Principal`]: who a valid token acts for, and what it may do.

use std::sync::Arc;

use time::OffsetDateTime;

use crate::cache::{CachedToken, PrincipalData};
use crate::rejection::Challenge;
use crate::scope::{Scope, ScopeHierarchy, ScopeSet};
use crate::token::TokenId;

/// The result of a successful authentication; the layer puts it in the request's
/// extensions. Holds no secret. Cheap to clone (one reference count).
///
/// With the `axum` feature it is an extractor; without a [`PatLayer`](crate::PatLayer)
/// in front, extraction fails with a 500 that says so.
///
/// ```
/// use tower_pat::Principal;
///
/// async fn whoami(principal: Principal) -> String {
///     format!("{} ({})", principal.owner(), principal.token_name())
/// }
/// ```
#[derive(Clone)]
pub struct Principal {
    /// The cached entry of the token (its [`PrincipalData`] and what validation needs).
    live: Arc<CachedToken>,
    /// When the token expires (after this use, for sliding tokens); `None` = never.
    expires_at: Option<OffsetDateTime>,
    /// The challenge of the layer that accepted the token, for inner layers' refusals.
    challenge: Option<Challenge>,
    /// The client address the layer resolved for the request (its
    /// [`ClientAddress`](crate::ClientAddress) setting), for the events of what it does.
    client: Option<std::net::IpAddr>,
    /// What the use still needs that the HTTP layer finishes
    /// (`followup` bits; 0 for most uses).
    followup: u8,
}

impl std::fmt::Debug for Principal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Principal")
            .field("owner", &self.owner())
            .field("token_id", self.token_id())
            .field("token_name", &self.token_name())
            .field("scopes", self.scopes())
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

impl Principal {
    pub(crate) fn new(live: Arc<CachedToken>, expires_at: Option<OffsetDateTime>) -> Self {
        Self {
            live,
            expires_at,
            challenge: None,
            client: None,
            followup: 0,
        }
    }

    /// The cached entry.
    pub(crate) fn entry(&self) -> &Arc<CachedToken> {
        &self.live
    }

    pub(crate) fn set_followup(&mut self, bits: u8) {
        self.followup = bits;
    }

    /// Whether the use needs finishing (`Authenticator::follow_up`).
    #[inline]
    pub(crate) fn has_followup(&self) -> bool {
        self.followup != 0
    }

    pub(crate) fn take_followup(&mut self) -> u8 {
        std::mem::take(&mut self.followup)
    }

    fn data(&self) -> &PrincipalData {
        &self.live.principal
    }

    /// The user the token acts for.
    pub fn owner(&self) -> &str {
        &self.data().owner
    }

    /// The token's public id (safe to log).
    pub fn token_id(&self) -> &TokenId {
        &self.data().token_id
    }

    /// The token's name.
    pub fn token_name(&self) -> &str {
        &self.data().token_name
    }

    /// The token's scopes; empty = full access of the owner.
    pub fn scopes(&self) -> &ScopeSet {
        &self.data().scopes
    }

    /// When the token expires (after this use, for a sliding token); `None` = never.
    pub fn expires_at(&self) -> Option<OffsetDateTime> {
        self.expires_at
    }

    pub(crate) fn with_challenge(mut self, challenge: Challenge) -> Self {
        self.challenge = Some(challenge);
        self
    }

    pub(crate) fn with_client(mut self, client: Option<std::net::IpAddr>) -> Self {
        self.client = client;
        self
    }

    /// The client address of the request, as the [`PatLayer`](crate::PatLayer) that
    /// accepted the token resolved it (its
    /// [`ClientAddress`](crate::ClientAddress) setting: the connection, or a trusted
    /// proxy's header); `None` without a layer or when it could not tell.
    pub fn client(&self) -> Option<std::net::IpAddr> {
        self.client
    }

    /// The challenge (realm, schemes) of the [`PatLayer`](crate::PatLayer) that accepted
    /// this token, which inner layers answer refusals with; `None` when the principal
    /// came from calling the [`Authenticator`](crate::Authenticator) directly.
    pub fn challenge(&self) -> Option<&Challenge> {
        self.challenge.as_ref()
    }

    /// Whether the token grants `needed`.
    pub fn allows(&self, needed: &Scope) -> bool {
        self.scopes().allows(needed, self.hierarchy())
    }

    /// The first scope of `needed` the token lacks, if any.
    pub fn missing<'a>(&self, needed: &'a ScopeSet) -> Option<&'a Scope> {
        self.scopes().missing(needed, self.hierarchy())
    }

    /// The hierarchy the token's scopes are judged under.
    pub fn hierarchy(&self) -> &ScopeHierarchy {
        &self.data().hierarchy
    }
}

impl serde::Serialize for Principal {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("Principal", 4)?;
        st.serialize_field("owner", self.owner())?;
        st.serialize_field("token_id", self.token_id())?;
        st.serialize_field("scopes", self.scopes())?;
        let exp = self.expires_at.and_then(|e| {
            e.format(&time::format_description::well_known::Rfc3339)
                .ok()
        });
        st.serialize_field("expires_at", &exp)?;
        st.end()
    }
}
