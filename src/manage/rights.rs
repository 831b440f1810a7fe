//! Rights over tokens: who is asking ([`Actor`]), what they may do ([`Right`], by the
//! [`ManagementScopes`] of their token), and the caps on what they may create (scopes no
//! broader than their own token's, an end no later than its end).

use time::OffsetDateTime;

use super::error::ManageError;
use crate::events::EventActor;
use crate::expiry::Expiry;
use crate::principal::Principal;
use crate::scope::{Scope, ScopeSet};

/// Who is asking: a trusted operator (the CLI, your own code) or the holder of a token.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Actor {
    /// Every right, no scope cap: the `pat` CLI and server-side code.
    Operator,
    /// The holder of this token: what its management scopes allow (`pat:read`,
    /// `pat:write`; `pat:admin` for every owner), never more scopes than the token grants
    /// and never an end later than its own.
    Principal(Principal),
    /// Someone signed in to the host application by its own login (the self-service
    /// page): every right over their own tokens, over everyone's when `admin`. No token
    /// caps what they create (the [`ExpiryPolicy`](super::ExpiryPolicy) still does),
    /// and only an admin may grant the admin scope. Build it with [`Actor::user`].
    User {
        /// The signed-in user's name: the owner of the tokens they manage.
        name: String,
        /// Whether they manage everyone's tokens, as `pat:admin` does.
        admin: bool,
    },
}

impl Actor {
    /// A user signed in to the host application (not an admin).
    ///
    /// ```
    /// use tower_pat::manage::Actor;
    ///
    /// let alice = Actor::user("alice");
    /// let root = Actor::user("root").with_admin(true);
    /// # let _ = (alice, root);
    /// ```
    pub fn user(name: impl Into<String>) -> Self {
        Actor::User {
            name: name.into(),
            admin: false,
        }
    }

    /// This user, as an admin (`true`) or not. Leaves other actors as they are.
    #[must_use]
    pub fn with_admin(mut self, is_admin: bool) -> Self {
        if let Actor::User { admin, .. } = &mut self {
            *admin = is_admin;
        }
        self
    }

    /// The owner this actor acts as (`None` for the operator).
    pub fn owner(&self) -> Option<&str> {
        match self {
            Actor::Operator => None,
            Actor::Principal(p) => Some(p.owner()),
            Actor::User { name, .. } => Some(name),
        }
    }

    /// Who this is, as events record it.
    pub(crate) fn to_event_actor(&self) -> EventActor {
        match self {
            Actor::Operator => EventActor::Operator,
            Actor::Principal(p) => EventActor::Token {
                id: *p.token_id(),
                owner: p.owner().to_owned(),
            },
            Actor::User { name, .. } => EventActor::User { name: name.clone() },
        }
    }
}

impl From<Principal> for Actor {
    fn from(p: Principal) -> Self {
        Actor::Principal(p)
    }
}

/// The management scopes, weakest first: `read ⊂ write ⊂ admin` (default `pat:read`,
/// `pat:write`, `pat:admin`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ManagementScopes {
    /// Lists and shows the owner's tokens.
    pub read: Scope,
    /// Also creates, patches, rotates and deletes them.
    pub write: Scope,
    /// All of it, for every owner.
    pub admin: Scope,
}

impl Default for ManagementScopes {
    /// `pat:read`, `pat:write`, `pat:admin`.
    fn default() -> Self {
        let pat = |action: &str| Scope::Action {
            resource: Some("pat".into()),
            action: action.into(),
        };
        Self {
            read: pat("read"),
            write: pat("write"),
            admin: pat("admin"),
        }
    }
}

impl ManagementScopes {
    /// These three scopes, weakest first.
    pub fn new(read: Scope, write: Scope, admin: Scope) -> Self {
        Self { read, write, admin }
    }
}

/// How much of token management an [`Actor`] may do, weakest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Right {
    /// List and show its owner's tokens.
    Read,
    /// Also create, patch, rotate and delete them.
    Write,
    /// All of it, for every owner.
    Admin,
}

impl ManagementScopes {
    /// What `actor` may do: [`Right::Admin`] for the operator, else by its token's
    /// management scopes; `None` for a token without any.
    pub(super) fn right(&self, actor: &Actor) -> Option<Right> {
        let p = match actor {
            Actor::Principal(p) => p,
            Actor::User { admin: true, .. } | Actor::Operator => return Some(Right::Admin),
            Actor::User { .. } => return Some(Right::Write),
        };
        let m = self;
        let has = |s: &Scope| p.scopes().iter().any(|x| x == s);
        let wildcard = |x: &Scope| match x {
            Scope::All => true,
            Scope::AnyAction { resource } => m.write.resource() == Some(&**resource),
            _ => false,
        };
        if has(&m.admin) {
            Some(Right::Admin)
        } else if p.scopes().is_full_access() || has(&m.write) || p.scopes().iter().any(wildcard) {
            Some(Right::Write)
        } else if has(&m.read) {
            Some(Right::Read)
        } else {
            None
        }
    }

    /// Whether `actor` may manage everyone's tokens.
    pub(super) fn is_admin(&self, actor: &Actor) -> bool {
        self.right(actor) == Some(Right::Admin)
    }

    /// Refuses an actor without `needed`, naming the scope it lacks.
    pub(super) fn require(&self, actor: &Actor, needed: Right) -> Result<(), ManageError> {
        if self.right(actor).is_some_and(|r| r >= needed) {
            return Ok(());
        }
        let scope = match needed {
            Right::Read => &self.read,
            Right::Write => &self.write,
            Right::Admin => &self.admin,
        };
        Err(ManageError::InsufficientScope {
            scope: scope.to_string(),
        })
    }

    /// Whether `actor` may act on `owner`'s tokens: an admin (or the operator) on
    /// everyone's, a token holder or a signed-in user on their own.
    pub(super) fn owns(&self, actor: &Actor, owner: &str) -> bool {
        match actor {
            Actor::Principal(p) if !self.is_admin(actor) => p.owner() == owner,
            Actor::User { name, admin: false } => name == owner,
            _ => true,
        }
    }

    /// Refuses scopes the actor's own token does not grant (a signed-in user has no
    /// token to cap them), and the admin scope to non-admins.
    pub(super) fn check_grant(
        &self,
        actor: &Actor,
        requested: &ScopeSet,
    ) -> Result<(), ManageError> {
        if matches!(actor, Actor::Operator) {
            return Ok(());
        }
        let admin = &self.admin;
        if !self.is_admin(actor) {
            if let Some(s) = requested.iter().find(|s| *s == admin) {
                return Err(ManageError::forbidden(
                    format!("only an admin may grant {s}"),
                    Some(s.to_string()),
                ));
            }
        }
        let Actor::Principal(p) = actor else {
            return Ok(());
        };
        if p.scopes().is_full_access() || p.scopes().iter().any(|s| *s == Scope::All) {
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
}

/// Refuses `expiry` if it ends after `caller_end` (or has no end while that is set).
pub(super) fn within(
    expiry: &Expiry,
    caller_end: Option<OffsetDateTime>,
) -> Result<(), ManageError> {
    let Some(latest_end) = caller_end else {
        return Ok(());
    };
    let end = match *expiry {
        Expiry::HardLimit { expires_at } => Some(expires_at),
        Expiry::AutoRefresh { not_after, .. } => not_after,
        _ => None,
    };
    match end {
        Some(e) if e <= latest_end => Ok(()),
        _ => Err(ManageError::OutlivesCaller { latest_end }),
    }
}
