//! [`Manager`]: the token lifecycle with rights, scope capping and cache invalidation.

use std::future::Future;
use std::time::Duration;

use super::error::ManageError;
use super::json_patch::{self, PatchOperation};
use super::request::{
    check_name, check_owner, parse_scopes, CreateTokenRequest, ExpiryPolicy, RotateRequest,
    TokenPatch,
};
use super::view::{IssuedToken, TokenView};
use crate::authenticator::{Authenticator, NewToken};
use crate::clock;
use crate::expiry::{parse_duration, Expiry};
use crate::principal::Principal;
use crate::record::{PreviousSecret, TokenRecord};
use crate::scope::{Scope, ScopeSet};
use crate::store::{ListQuery, Page, StoreError};
use crate::token::TokenId;

/// Who is asking: a trusted operator (the CLI, your own code) or the holder of a token.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Actor {
    /// Every right, no scope cap: the `pat` CLI and server-side code.
    Operator,
    /// The holder of this token: their own tokens only, unless the token holds the admin
    /// scope; never more scopes than the token grants.
    Principal(Principal),
}

impl From<Principal> for Actor {
    fn from(p: Principal) -> Self {
        Actor::Principal(p)
    }
}

/// The management API: create, get, list, patch, delete and rotate tokens, with rights.
///
/// - **Admins** (a token whose scopes imply the admin scope, default `pat:admin`, e.g.
///   `pat:admin`, `pat:*` or `*`) manage everyone's tokens. A full-access token (empty
///   scopes) is *not* an admin token: it holds what its owner may do, and the library
///   does not know that to include administration.
/// - **Everyone else** manages only their own tokens; another user's token is
///   [`ManageError::NotFound`] to them, and they cannot grant the admin scope.
/// - **Scope cap**: nobody creates or patches a token to hold a scope their own token
///   does not grant (a full-access token or `*` grants anything its owner has).
/// - [`Actor::Operator`] has every right.
///
/// Every change calls [`Authenticator::invalidate`], which also tells other replicas.
/// Cheap to clone.
#[derive(Debug, Clone)]
pub struct Manager {
    auth: Authenticator,
    admin_scope: Scope,
    policy: ExpiryPolicy,
    timeout: Duration,
}

impl Manager {
    /// A manager over `auth`'s store, with admin scope `pat:admin`, no expiry policy and
    /// a 5 s store timeout.
    pub fn new(auth: Authenticator) -> Self {
        Self {
            auth,
            admin_scope: Scope::Action {
                resource: Some("pat".into()),
                action: "admin".into(),
            },
            policy: ExpiryPolicy::default(),
            timeout: Duration::from_secs(5),
        }
    }

    /// The scope that makes a token an admin token (default `pat:admin`).
    #[must_use]
    pub fn with_admin_scope(mut self, scope: Scope) -> Self {
        self.admin_scope = scope;
        self
    }

    /// The expiry policy (default: none).
    #[must_use]
    pub fn with_policy(mut self, policy: ExpiryPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Longest a store call may take before it counts as a failure (default 5 s).
    #[must_use]
    pub fn with_store_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The authenticator (its store, format, clock).
    pub fn authenticator(&self) -> &Authenticator {
        &self.auth
    }

    /// The admin scope.
    pub fn admin_scope(&self) -> &Scope {
        &self.admin_scope
    }

    /// The expiry policy.
    pub fn policy(&self) -> &ExpiryPolicy {
        &self.policy
    }

    /// Whether `actor` may manage everyone's tokens.
    pub fn is_admin(&self, actor: &Actor) -> bool {
        match actor {
            Actor::Operator => true,
            Actor::Principal(p) => p
                .scopes
                .iter()
                .any(|s| s.implies(&self.admin_scope, p.hierarchy())),
        }
    }

    fn owns(&self, actor: &Actor, owner: &str) -> bool {
        match actor {
            Actor::Principal(p) if !self.is_admin(actor) => &*p.owner == owner,
            _ => true,
        }
    }

    /// Refuses scopes the actor's own token does not grant, and the admin scope to
    /// non-admins.
    fn check_grant(&self, actor: &Actor, requested: &ScopeSet) -> Result<(), ManageError> {
        let Actor::Principal(p) = actor else {
            return Ok(());
        };
        let h = p.hierarchy();
        if !self.is_admin(actor) {
            if let Some(s) = requested.iter().find(|s| s.implies(&self.admin_scope, h)) {
                return Err(ManageError::forbidden(
                    format!(
                        "only an admin may grant {s}, which implies {}",
                        self.admin_scope
                    ),
                    Some(s.to_string()),
                ));
            }
        }
        if p.scopes.is_full_access() || p.scopes.iter().any(|s| *s == Scope::All) {
            return Ok(());
        }
        if requested.is_full_access() {
            return Err(ManageError::forbidden(
                "your token has limited scopes, so it cannot grant full access; name the scopes",
                None,
            ));
        }
        match p.missing(requested) {
            Some(m) => Err(ManageError::forbidden(
                format!("your token does not grant {m}"),
                Some(m.to_string()),
            )),
            None => Ok(()),
        }
    }

    async fn io<T>(
        &self,
        fut: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, ManageError> {
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(r) => r.map_err(ManageError::from),
            Err(_) => Err(ManageError::Unavailable(StoreError::Timeout(self.timeout))),
        }
    }

    async fn invalidate(&self, id: &TokenId) {
        if let Err(e) = self.auth.invalidate(id).await {
            // The change is stored; other replicas see it within their cache TTL.
            tracing::warn!(token_id = %id, error = %e, "could not tell other replicas about a token change");
        }
    }

    /// The record, if `actor` may see it; anything else is `NotFound`.
    async fn visible(&self, actor: &Actor, id: &str) -> Result<TokenRecord, ManageError> {
        let parsed: TokenId = id.parse().map_err(|_| ManageError::not_found(id))?;
        match self.io(self.auth.store().get(&parsed)).await? {
            Some(r) if self.owns(actor, &r.owner) => Ok(r),
            _ => Err(ManageError::not_found(id)),
        }
    }

    /// Creates a token. The returned [`IssuedToken::token`] is the only time the token
    /// string is shown.
    pub async fn create(
        &self,
        actor: &Actor,
        req: CreateTokenRequest,
    ) -> Result<IssuedToken, ManageError> {
        let owner = match (&req.owner, actor) {
            (Some(o), _) => o.clone(),
            (None, Actor::Principal(p)) => p.owner.to_string(),
            (None, Actor::Operator) => {
                return Err(ManageError::bad_input("owner", "the owner is required"))
            }
        };
        check_owner(&owner)?;
        if !self.owns(actor, &owner) {
            return Err(ManageError::forbidden(
                "only an admin may create tokens for another user",
                None,
            ));
        }
        check_name(&req.name).map_err(|m| ManageError::bad_input("name", m))?;
        let scopes = req.parse_scopes()?;
        self.check_grant(actor, &scopes)?;
        let expiry = req.resolve_expiry(self.auth.clock().now(), &self.policy)?;
        let created = self
            .io(self.auth.create(NewToken {
                owner,
                name: req.name,
                scopes,
                expiry,
            }))
            .await?;
        self.invalidate(&created.record.id).await;
        tracing::info!(token_id = %created.record.id, owner = %created.record.owner, "token created");
        Ok(IssuedToken {
            view: TokenView::from(&created.record),
            token: created.token,
            replaces: None,
        })
    }

    /// One token.
    pub async fn get(&self, actor: &Actor, id: &str) -> Result<TokenView, ManageError> {
        self.visible(actor, id).await.map(TokenView::from)
    }

    /// One page of tokens. A non-admin sees only their own (`query.owner` must be unset
    /// or theirs, else [`ManageError::Forbidden`]).
    pub async fn list(
        &self,
        actor: &Actor,
        mut query: ListQuery,
    ) -> Result<Page<TokenView>, ManageError> {
        if let Actor::Principal(p) = actor {
            if !self.is_admin(actor) {
                if query.owner.as_deref().is_some_and(|o| o != &*p.owner) {
                    return Err(ManageError::forbidden(
                        "only an admin may list another user's tokens",
                        None,
                    ));
                }
                query.owner = Some(p.owner.to_string());
            }
        }
        let page = self.io(self.auth.store().list(&query)).await?;
        Ok(Page {
            total: page.total,
            items: page.items.iter().map(TokenView::from).collect(),
        })
    }

    /// Changes name, scopes, active flag or expiry. Validation happens before anything is
    /// written: a refused patch changes nothing.
    pub async fn patch(
        &self,
        actor: &Actor,
        id: &str,
        patch: TokenPatch,
    ) -> Result<TokenView, ManageError> {
        let record = self.visible(actor, id).await?;
        self.patch_record(actor, record, patch).await
    }

    /// Applies a JSON Patch (RFC 6902) to the token's [`TokenView`], all or nothing, then
    /// checks and stores the result like [`patch`](Self::patch).
    pub async fn json_patch(
        &self,
        actor: &Actor,
        id: &str,
        ops: &[PatchOperation],
    ) -> Result<TokenView, ManageError> {
        let record = self.visible(actor, id).await?;
        let before = TokenView::from(&record);
        let mut after = before.clone();
        json_patch::apply(ops, &mut after)?;
        let mut patch = TokenPatch::new();
        if after.name != before.name {
            patch.name = Some(after.name);
        }
        if after.scopes != before.scopes {
            patch.scopes = Some(parse_scopes(&after.scopes)?);
        }
        if after.active != before.active {
            patch.active = Some(after.active);
        }
        if after.expires_at != before.expires_at {
            patch.expires_at = Some(after.expires_at);
        }
        if patch.is_empty() {
            return Ok(before);
        }
        self.patch_record(actor, record, patch).await
    }

    async fn patch_record(
        &self,
        actor: &Actor,
        mut record: TokenRecord,
        patch: TokenPatch,
    ) -> Result<TokenView, ManageError> {
        let now = self.auth.clock().now();
        if let Some(name) = patch.name {
            check_name(&name).map_err(|m| ManageError::bad_input("name", m))?;
            record.name = name;
        }
        if let Some(scopes) = patch.scopes {
            if scopes != record.scopes {
                self.check_grant(actor, &scopes)?;
            }
            record.scopes = scopes;
        }
        if let Some(active) = patch.active {
            record.active = active;
        }
        if let Some(at) = patch.expires_at {
            let expiry = match at {
                None => Expiry::Never,
                Some(expires_at) => Expiry::HardLimit { expires_at },
            };
            let expiry = self.policy.check(expiry, record.created, now)?;
            record.expires_at = expiry.expires_at_from(now);
            record.expiry = expiry;
        }
        record.modified = now;
        if !self.io(self.auth.store().update(&record)).await? {
            return Err(ManageError::not_found(record.id.as_str()));
        }
        self.invalidate(&record.id).await;
        tracing::info!(token_id = %record.id, "token changed");
        Ok(TokenView::from(&record))
    }

    /// Deletes a token; it stops working at once here and, through the store's change
    /// messages, on other replicas.
    pub async fn delete(&self, actor: &Actor, id: &str) -> Result<(), ManageError> {
        let record = self.visible(actor, id).await?;
        if !self.io(self.auth.store().delete(&record.id)).await? {
            return Err(ManageError::not_found(id));
        }
        self.invalidate(&record.id).await;
        tracing::info!(token_id = %record.id, "token deleted");
        Ok(())
    }

    /// Rotates a token: a new secret for the same id, or a new linked token (see
    /// [`RotateRequest`]). The old secret works until the grace period ends, or not at
    /// all without one.
    pub async fn rotate(
        &self,
        actor: &Actor,
        id: &str,
        req: RotateRequest,
    ) -> Result<IssuedToken, ManageError> {
        let grace = req
            .grace
            .as_deref()
            .map(parse_duration)
            .transpose()
            .map_err(|e| ManageError::bad_input("grace", e.to_string()))?;
        let record = self.visible(actor, id).await?;
        let now = self.auth.clock().now();
        let format = self.auth.format();
        if !req.new_id {
            let minted = format.mint_with_id(record.id);
            let mut r = record.clone();
            r.previous_secret = grace.map(|g| PreviousSecret {
                hash: record.secret_hash,
                valid_until: clock::add(now, g),
            });
            r.secret_hash = minted.secret_hash;
            r.modified = now;
            if !self.io(self.auth.store().update(&r)).await? {
                return Err(ManageError::not_found(id));
            }
            self.invalidate(&r.id).await;
            tracing::info!(token_id = %r.id, "token rotated");
            return Ok(IssuedToken {
                view: TokenView::from(&r),
                token: minted.token,
                replaces: None,
            });
        }
        let minted = format.mint();
        let mut new = TokenRecord::new(
            minted.id,
            record.owner.clone(),
            record.name.clone(),
            record.scopes.clone(),
            record.expiry,
            minted.secret_hash,
            now,
        );
        new.active = record.active;
        self.io(self.auth.store().insert(&new)).await?;
        match grace {
            Some(g) => {
                let end = clock::add(now, g);
                let end = record.expires_at.map_or(end, |e| e.min(end));
                let mut old = record.clone();
                old.expiry = Expiry::HardLimit { expires_at: end };
                old.expires_at = Some(end);
                old.modified = now;
                self.io(self.auth.store().update(&old)).await?;
            }
            None => {
                self.io(self.auth.store().delete(&record.id)).await?;
            }
        }
        self.invalidate(&record.id).await;
        self.invalidate(&new.id).await;
        tracing::info!(token_id = %new.id, replaces = %record.id, "token rotated to a new id");
        Ok(IssuedToken {
            view: TokenView::from(&new),
            token: minted.token,
            replaces: Some(record.id),
        })
    }
}
