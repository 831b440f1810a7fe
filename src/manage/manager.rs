//! [`Manager`]: the token lifecycle (create, get, list, patch, delete, rotate) with
//! compare-and-swap and cache invalidation; who may do what is in `rights`.

use std::future::Future;

use super::error::ManageError;
use super::json_patch::{self, Patch};
use super::mint::NewToken;
use super::request::{parse_scopes, CreateTokenRequest, ExpiryPolicy, TokenPatch};
use super::rights::{within, Actor, ManagementScopes, Right};
use super::validate::{check_name, check_owner};
use super::view::{IssuedToken, TokenView};
use crate::authenticator::Authenticator;
use crate::events::{Event, EventActor, EventKind, Origin};
use crate::expiry::Expiry;
use crate::metrics::StoreOp;
use crate::record::TokenRecord;
use crate::scope::Scope;
use crate::store::{EventQuery, ListQuery, Page, StoreError, Update};
use crate::token::TokenId;
use time::OffsetDateTime;

/// Tries of a change whose token another writer changed in between (fields it does not
/// touch), before it is answered as a conflict.
pub(super) const MAX_TRIES: usize = 8;

/// The fields an operation writes: a concurrent change to any of them is a conflict, a
/// change to others is merged by trying again.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Fields {
    name: bool,
    scopes: bool,
    active: bool,
    expiry: bool,
    secret: bool,
}

impl Fields {
    pub(super) const SECRET: Fields = Fields {
        name: false,
        scopes: false,
        active: false,
        expiry: false,
        secret: true,
    };

    fn of(p: &TokenPatch) -> Self {
        Self {
            name: p.name.is_some(),
            scopes: p.scopes.is_some(),
            active: p.active.is_some(),
            expiry: p.expires_at.is_some(),
            secret: false,
        }
    }

    /// Whether `a` and `b` agree on these fields.
    fn same(self, a: &TokenRecord, b: &TokenRecord) -> bool {
        (!self.name || a.name == b.name)
            && (!self.scopes || a.scopes == b.scopes)
            && (!self.active || a.active == b.active)
            && (!self.expiry || a.expiry == b.expiry)
            && (!self.secret
                || (a.secret_hash == b.secret_hash && a.previous_secret == b.previous_secret))
    }
}

/// The management API: create, get, list, patch, delete and rotate tokens, with rights.
///
/// **Rights through a token** ([`Actor::Principal`]) come from its management scopes
/// ([`ManagementScopes`], `pat:read ⊂ pat:write ⊂ pat:admin` by default):
///
/// | the token holds | it may |
/// |---|---|
/// | `pat:read` | list and show its owner's tokens |
/// | `pat:write`, `pat:*`, `*`, or no scopes (full access) | also create, patch, rotate and delete them |
/// | `pat:admin` (exactly; no wildcard implies it) | all of it, for every owner |
/// | none of these | nothing: [`ManageError::InsufficientScope`] naming the scope needed |
///
/// Another user's token is [`ManageError::NotFound`] to a non-admin.
///
/// **A child never holds more, nor outlives its parent.** When the actor is a token:
/// - *scope cap*: nobody creates or patches a token to hold a scope their own token does
///   not grant (a full-access token or `*` grants anything its owner has), and only an
///   admin grants the admin scope;
/// - *lifetime cap*: the new or patched token's absolute end (a hard `expires_at`, or an
///   auto-refresh token's `not_after` cap) is no later than the actor token's own, when
///   it has one; otherwise [`ManageError::OutlivesCaller`] names the latest allowed end.
///   A token that never expires, or slides without a cap, has no end and is refused
///   as a child of one that has;
/// - *rotation keeps the end*: the new secret or id has the old token's expiry.
///
/// **Rights of a signed-in user** ([`Actor::User`], the self-service page's actor): write
/// over their own tokens, over everyone's when the host marks them as an admin; no token
/// caps their scopes or ends, and only an admin grants the admin scope.
///
/// The [`ExpiryPolicy`] (30 days by default, at most 366, "never" only where allowed)
/// applies to everyone, [`Actor::Operator`] included; the operator has every right.
///
/// **No lost updates.** Every change is a compare-and-swap on the token's
/// [`version`](TokenRecord::version): a change whose token was changed in between in
/// fields it does not write is tried again on the fresh record; one that collides with
/// a change to its own fields is [`ManageError::Conflict`], and one made with an
/// expected version ([`TokenPatch::if_version`], `If-Match` over HTTP) that no longer
/// holds is [`ManageError::PreconditionFailed`]. So an acknowledged disable is never
/// undone by a rename that read the token before it.
///
/// Every change calls [`Authenticator::invalidate`], which also tells other replicas.
/// Cheap to clone.
#[derive(Debug, Clone)]
pub struct Manager {
    pub(super) auth: Authenticator,
    pub(super) scopes: ManagementScopes,
    pub(super) policy: ExpiryPolicy,
    pub(super) origin: Origin,
}

impl Manager {
    /// A manager over `auth`'s store, with the management scopes `pat:read`,
    /// `pat:write`, `pat:admin`, the default [`ExpiryPolicy`] (30 days by default, at
    /// most 366, never "never"). Store calls time out as the authenticator's do
    /// ([`AuthenticatorBuilder::with_store_timeout`](crate::AuthenticatorBuilder::with_store_timeout)).
    pub fn new(auth: Authenticator) -> Self {
        Self {
            auth,
            scopes: ManagementScopes::default(),
            policy: ExpiryPolicy::default(),
            origin: Origin::default(),
        }
    }

    /// The scope that makes a token an admin token (default `pat:admin`).
    #[must_use]
    pub fn with_admin_scope(mut self, scope: Scope) -> Self {
        self.scopes.admin = scope;
        self
    }

    /// The three management scopes (default `pat:read`, `pat:write`, `pat:admin`).
    #[must_use]
    pub fn with_management_scopes(mut self, scopes: ManagementScopes) -> Self {
        self.scopes = scopes;
        self
    }

    /// The expiry policy (default [`ExpiryPolicy::default`]).
    #[must_use]
    pub fn with_policy(mut self, policy: ExpiryPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// This manager acting for a request from `origin`: the events of its changes carry
    /// the request's client address and user agent (the admin router does this).
    #[must_use]
    pub fn with_origin(mut self, origin: Origin) -> Self {
        self.origin = origin;
        self
    }

    /// The authenticator (its store, format, clock).
    pub fn authenticator(&self) -> &Authenticator {
        &self.auth
    }

    /// The admin scope.
    pub fn admin_scope(&self) -> &Scope {
        &self.scopes.admin
    }

    /// The management scopes.
    pub fn management_scopes(&self) -> &ManagementScopes {
        &self.scopes
    }

    /// The expiry policy.
    pub fn policy(&self) -> &ExpiryPolicy {
        &self.policy
    }

    /// What `actor` may do: [`Right::Admin`] for the operator, else by its token's
    /// management scopes (see [`Manager`]); `None` for a token without any.
    pub fn right(&self, actor: &Actor) -> Option<Right> {
        self.scopes.right(actor)
    }

    /// Whether `actor` may manage everyone's tokens.
    pub fn is_admin(&self, actor: &Actor) -> bool {
        self.scopes.is_admin(actor)
    }

    /// The end the actor's own token puts on what it creates or changes: its absolute
    /// end, read from the store (`None`: no end, or the operator).
    pub(super) async fn caller_end(
        &self,
        actor: &Actor,
    ) -> Result<Option<OffsetDateTime>, ManageError> {
        let Actor::Principal(p) = actor else {
            return Ok(None);
        };
        match self
            .io(StoreOp::Get, self.auth.store().get(p.token_id()))
            .await?
        {
            Some(r) => Ok(r.absolute_end()),
            // Revoked while the request ran: it may not act any more.
            None => Err(ManageError::forbidden(
                "your token was revoked while this request ran",
                None,
            )),
        }
    }
    /// Queues a lifecycle event about `record`, done by `actor` from this manager's
    /// [`Origin`].
    pub(super) fn emit(&self, actor: &Actor, record: &TokenRecord, kind: EventKind) {
        self.emit_as(actor.to_event_actor(), record, kind);
    }

    /// [`emit`](Self::emit) for an actor of the system's own.
    pub(super) fn emit_as(&self, actor: EventActor, record: &TokenRecord, kind: EventKind) {
        self.auth.emit(Event {
            at: self.auth.clock().now(),
            token_id: record.id,
            owner: record.owner.clone(),
            actor,
            client: self.origin.client,
            user_agent: self.origin.user_agent.clone(),
            kind,
        });
    }

    /// The events of a patch that turned `before` into `after`: the fields that changed,
    /// then a disable or an enable.
    fn emit_changes(&self, actor: &Actor, before: &TokenRecord, after: &TokenRecord) {
        let mut fields = Vec::new();
        if before.name != after.name {
            fields.push("name".to_owned());
        }
        if before.scopes != after.scopes {
            fields.push("scopes".to_owned());
        }
        if before.expiry != after.expiry || before.expires_at != after.expires_at {
            fields.push("expiry".to_owned());
        }
        if !fields.is_empty() {
            self.emit(actor, after, EventKind::Changed { fields });
        }
        match (before.active, after.active) {
            (true, false) => self.emit(actor, after, EventKind::Disabled),
            (false, true) => self.emit(actor, after, EventKind::Enabled),
            _ => {}
        }
    }

    pub(super) async fn io<T>(
        &self,
        op: StoreOp,
        fut: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, ManageError> {
        self.auth
            .store_call(op, fut)
            .await
            .map_err(ManageError::from)
    }

    pub(super) async fn invalidate(&self, id: &TokenId) {
        if let Err(e) = self.auth.invalidate(id).await {
            // The change is stored; other replicas see it within their cache TTL.
            tracing::warn!(token_id = %id, error = %e, "could not tell other replicas about a token change");
        }
    }

    /// The record, if `actor` may see it; anything else is `NotFound`.
    pub(super) async fn visible(
        &self,
        actor: &Actor,
        id: &str,
    ) -> Result<TokenRecord, ManageError> {
        let parsed: TokenId = id.parse().map_err(|_| ManageError::not_found(id))?;
        match self
            .io(StoreOp::Get, self.auth.store().get(&parsed))
            .await?
        {
            Some(r) if self.scopes.owns(actor, &r.owner) => Ok(r),
            _ => Err(ManageError::not_found(id)),
        }
    }

    /// The record again after a write found it changed: refused if `if_version` was
    /// given, or if another writer changed `fields` since `first` was read.
    pub(super) async fn reread(
        &self,
        actor: &Actor,
        id: &str,
        if_version: Option<u64>,
        fields: Fields,
        first: &TokenRecord,
    ) -> Result<TokenRecord, ManageError> {
        let current = self.visible(actor, id).await?;
        if if_version.is_some() {
            return Err(ManageError::PreconditionFailed {
                current: current.version,
            });
        }
        if !fields.same(first, &current) {
            return Err(ManageError::Conflict {
                message: "the token was changed in the same fields at the same time; read it again and retry".into(),
            });
        }
        Ok(current)
    }

    /// Refuses `record` unless it is at `if_version` (when given).
    pub(super) fn expect(record: &TokenRecord, if_version: Option<u64>) -> Result<(), ManageError> {
        match if_version {
            Some(v) if v != record.version => Err(ManageError::PreconditionFailed {
                current: record.version,
            }),
            _ => Ok(()),
        }
    }

    /// Creates a token. The returned [`IssuedToken::token`] is the only time the token
    /// string is shown.
    pub async fn create(
        &self,
        actor: &Actor,
        req: CreateTokenRequest,
    ) -> Result<IssuedToken, ManageError> {
        self.scopes.require(actor, Right::Write)?;
        let owner = match (&req.owner, actor) {
            (Some(o), _) => o.clone(),
            (None, actor) => match actor.owner() {
                Some(o) => o.to_owned(),
                None => return Err(ManageError::bad_input("owner", "the owner is required")),
            },
        };
        check_owner(&owner).map_err(|m| ManageError::bad_input("owner", m))?;
        if !self.scopes.owns(actor, &owner) {
            return Err(ManageError::InsufficientScope {
                scope: self.scopes.admin.to_string(),
            });
        }
        check_name(&req.name).map_err(|m| ManageError::bad_input("name", m))?;
        let scopes = req.parse_scopes()?;
        self.scopes.check_grant(actor, &scopes)?;
        let expiry = req.resolve_expiry(self.auth.clock().now(), &self.policy)?;
        within(&expiry, self.caller_end(actor).await?)?;
        // `create` times its store call out itself.
        let created = self
            .auth
            .create(NewToken {
                owner,
                name: req.name,
                scopes,
                expiry,
                from: self.origin.clone(),
            })
            .await?;
        self.emit(actor, &created.record, EventKind::Created);
        self.invalidate(&created.record.id).await;
        Ok(IssuedToken {
            view: TokenView::from(&created.record),
            token: created.token,
            replaces: None,
        })
    }

    /// One token.
    pub async fn get(&self, actor: &Actor, id: &str) -> Result<TokenView, ManageError> {
        self.scopes.require(actor, Right::Read)?;
        self.visible(actor, id).await.map(TokenView::from)
    }

    /// A read for `actor` (`pat:read`): a non-admin reads only their own, so `owner`
    /// becomes theirs, and naming another owner is [`ManageError::InsufficientScope`]
    /// naming the admin scope. An admin or the operator reads what `owner` names.
    fn reading(&self, actor: &Actor, owner: &mut Option<String>) -> Result<(), ManageError> {
        self.scopes.require(actor, Right::Read)?;
        if let Some(me) = actor.owner() {
            if !self.is_admin(actor) {
                if owner.as_deref().is_some_and(|o| o != me) {
                    return Err(ManageError::InsufficientScope {
                        scope: self.scopes.admin.to_string(),
                    });
                }
                *owner = Some(me.to_owned());
            }
        }
        Ok(())
    }

    /// One page of tokens. A non-admin sees only their own (`query.owner` must be unset
    /// or theirs, else [`ManageError::InsufficientScope`] naming the admin scope).
    pub async fn list(
        &self,
        actor: &Actor,
        mut query: ListQuery,
    ) -> Result<Page<TokenView>, ManageError> {
        self.reading(actor, &mut query.owner)?;
        let page = self
            .io(StoreOp::List, self.auth.store().list(&query))
            .await?;
        Ok(Page {
            total: page.total,
            items: page.items.iter().map(TokenView::from).collect(),
        })
    }

    /// One page of the audit log, newest first: an owner sees the events of their own
    /// tokens (`pat:read`), an admin (`pat:admin`) everyone's. A non-admin asking for
    /// another owner's events gets 403; asking for another owner's token id finds
    /// nothing, as for an unknown id.
    pub async fn events(
        &self,
        actor: &Actor,
        mut query: EventQuery,
    ) -> Result<Page<Event>, ManageError> {
        self.reading(actor, &mut query.owner)?;
        self.io(StoreOp::ListEvents, self.auth.store().list_events(&query))
            .await
    }

    /// Changes name, scopes, active flag or expiry. Validation happens before anything is
    /// written: a refused patch changes nothing. With [`TokenPatch::if_version`], only
    /// a token still at that version is changed.
    pub async fn patch(
        &self,
        actor: &Actor,
        id: &str,
        patch: TokenPatch,
    ) -> Result<TokenView, ManageError> {
        self.scopes.require(actor, Right::Write)?;
        let record = self.visible(actor, id).await?;
        self.patch_record(actor, id, record, patch).await
    }

    /// Applies a JSON Patch (RFC 6902) to the token's [`TokenView`], all or nothing, then
    /// checks and stores the result like [`patch`](Self::patch); `if_version` as
    /// [`TokenPatch::if_version`].
    pub async fn json_patch(
        &self,
        actor: &Actor,
        id: &str,
        ops: &Patch,
        if_version: Option<u64>,
    ) -> Result<TokenView, ManageError> {
        self.scopes.require(actor, Right::Write)?;
        let record = self.visible(actor, id).await?;
        Self::expect(&record, if_version)?;
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
        patch.if_version = if_version;
        self.patch_record(actor, id, record, patch).await
    }

    /// Applies `patch` to `record` (as first read) and stores it by compare-and-swap,
    /// trying again on a fresh read while no one else changed the fields it writes.
    async fn patch_record(
        &self,
        actor: &Actor,
        id: &str,
        mut record: TokenRecord,
        patch: TokenPatch,
    ) -> Result<TokenView, ManageError> {
        Self::expect(&record, patch.if_version)?;
        let fields = Fields::of(&patch);
        if let Some(name) = &patch.name {
            check_name(name).map_err(|m| ManageError::bad_input("name", m))?;
        }
        let caller_end = match patch.expires_at {
            Some(_) => self.caller_end(actor).await?,
            None => None,
        };
        let first = record.clone();
        for _ in 0..MAX_TRIES {
            let now = self.auth.clock().now();
            let mut next = record.clone();
            if let Some(name) = &patch.name {
                next.name.clone_from(name);
            }
            if let Some(scopes) = &patch.scopes {
                if *scopes != next.scopes {
                    self.scopes.check_grant(actor, scopes)?;
                }
                next.scopes = scopes.clone();
            }
            if let Some(active) = patch.active {
                next.active = active;
            }
            if let Some(at) = patch.expires_at {
                let expiry = match at {
                    None => Expiry::Never,
                    Some(expires_at) => Expiry::HardLimit { expires_at },
                };
                let expiry = self.policy.check(expiry, next.created, now)?;
                within(&expiry, caller_end)?;
                next.expires_at = expiry.expires_at_from(now);
                next.expiry = expiry;
            }
            next.modified = now;
            match self
                .io(StoreOp::Update, self.auth.store().update(&next))
                .await?
            {
                Update::Written => {
                    next.version = record.version.wrapping_add(1);
                    self.emit_changes(actor, &record, &next);
                    self.invalidate(&next.id).await;
                    return Ok(TokenView::from(&next));
                }
                Update::Stale => {
                    record = self
                        .reread(actor, id, patch.if_version, fields, &first)
                        .await?;
                }
                _ => return Err(ManageError::not_found(id)),
            }
        }
        Err(busy())
    }

    /// Deletes a token; it stops working at once here and, through the store's change
    /// messages, on other replicas.
    pub async fn delete(&self, actor: &Actor, id: &str) -> Result<(), ManageError> {
        self.delete_if(actor, id, None).await
    }

    /// [`delete`](Self::delete), only if the token is at `if_version` (when given).
    pub async fn delete_if(
        &self,
        actor: &Actor,
        id: &str,
        if_version: Option<u64>,
    ) -> Result<(), ManageError> {
        self.scopes.require(actor, Right::Write)?;
        let record = self.visible(actor, id).await?;
        Self::expect(&record, if_version)?;
        if !self
            .io(StoreOp::Delete, self.auth.store().delete(&record.id))
            .await?
        {
            return Err(ManageError::not_found(id));
        }
        self.emit(actor, &record, EventKind::Deleted);
        self.invalidate(&record.id).await;
        Ok(())
    }
}

/// The answer when a token kept changing under a change.
pub(super) fn busy() -> ManageError {
    ManageError::Conflict {
        message: "the token kept changing while this change was tried; try again".into(),
    }
}
