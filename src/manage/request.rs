//! What a caller asks for: [`CreateTokenRequest`], [`TokenPatch`], [`RotateRequest`], and
//! the [`ExpiryPolicy`] every new expiry must meet.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::error::ManageError;
use super::validate::{parse_rfc3339, rfc3339};
use crate::clock;
use crate::expiry::{parse_duration, Expiry};
use crate::scope::ScopeSet;

/// A request to create a token, as JSON (`POST /personal-access-tokens`) or built in code.
///
/// Expiry, at most one of: `expire` (a duration such as `20d`), `validity_seconds`
/// (SailPoint's `accessTokenValiditySeconds`), `expires_at` (RFC 3339) or
/// `never_expires`. `auto_refresh_seconds` makes the token sliding (Cells' auto-refresh);
/// with `expire`, `validity_seconds` or `expires_at` as well, that is its absolute end.
/// With none, the [`ExpiryPolicy`]'s default lifetime applies (30 days by default).
///
/// ```
/// use tower_pat::manage::CreateTokenRequest;
///
/// let req = CreateTokenRequest::for_owner("alice")
///     .name("terraform")
///     .scope("repo:read")
///     .expire("20d");
/// assert_eq!(req.scopes, ["repo:read"]);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "admin", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateTokenRequest {
    /// The user the token acts for; default the caller. Only an admin may name another.
    #[serde(default, alias = "owner-id", alias = "ownerId")]
    pub owner: Option<String>,
    /// Label, e.g. "terraform prod" (at most 255 characters).
    #[serde(default, alias = "description", alias = "label")]
    pub name: String,
    /// Scopes; empty = everything the owner may do. Capped by the caller's own scopes.
    #[serde(default, alias = "scope")]
    pub scopes: Vec<String>,
    /// Hard expiry after this duration: `<n><s|m|h|d|w>`, e.g. `20d`.
    #[serde(default)]
    pub expire: Option<String>,
    /// Hard expiry after this many seconds.
    #[serde(
        default,
        alias = "accessTokenValiditySeconds",
        deserialize_with = "whole"
    )]
    pub validity_seconds: Option<u64>,
    /// Hard expiry at this time (RFC 3339).
    #[serde(default)]
    pub expires_at: Option<String>,
    /// Sliding expiry: valid while used at least once per this many seconds.
    #[serde(default, alias = "auto", deserialize_with = "whole")]
    pub auto_refresh_seconds: Option<u64>,
    /// Never expires (refused unless the policy allows it: [`ExpiryPolicy::allow_never`]).
    #[serde(default)]
    pub never_expires: bool,
}

impl CreateTokenRequest {
    /// A request for a token of `owner` (no name, full access, default expiry).
    pub fn for_owner(owner: impl Into<String>) -> Self {
        Self {
            owner: Some(owner.into()),
            ..Self::default()
        }
    }

    /// With this name.
    #[must_use]
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// With one more scope.
    #[must_use]
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.scopes.push(scope.into());
        self
    }

    /// Expiring after `duration` (e.g. `20d`).
    #[must_use]
    pub fn expire(mut self, duration: impl Into<String>) -> Self {
        self.expire = Some(duration.into());
        self
    }

    /// Sliding, with a window of `seconds`.
    #[must_use]
    pub fn auto_refresh(mut self, seconds: u64) -> Self {
        self.auto_refresh_seconds = Some(seconds);
        self
    }

    /// Never expiring (where the policy allows it).
    #[must_use]
    pub fn never_expires(mut self) -> Self {
        self.never_expires = true;
        self
    }

    pub(crate) fn parse_scopes(&self) -> Result<ScopeSet, ManageError> {
        parse_scopes(&self.scopes)
    }

    /// The expiry asked for, at `now`, under `policy`.
    pub(crate) fn resolve_expiry(
        &self,
        now: OffsetDateTime,
        policy: &ExpiryPolicy,
    ) -> Result<Expiry, ManageError> {
        let hard_end = {
            let given = [
                self.expire.is_some(),
                self.validity_seconds.is_some(),
                self.expires_at.is_some(),
                self.never_expires,
            ];
            if given.iter().filter(|g| **g).count() > 1 {
                return Err(ManageError::bad_input(
                    "expire",
                    "give only one of expire, validity_seconds, expires_at and never_expires",
                ));
            }
            if let Some(e) = &self.expire {
                let d = parse_duration(e)
                    .map_err(|e| ManageError::bad_input("expire", e.to_string()))?;
                Some(clock::add(now, d))
            } else if let Some(s) = self.validity_seconds {
                Some(clock::add(now, seconds("validity_seconds", s)?))
            } else if let Some(at) = &self.expires_at {
                Some(parse_time("expires_at", at)?)
            } else {
                None
            }
        };
        let expiry = match (self.auto_refresh_seconds, hard_end) {
            (Some(_), _) if self.never_expires => {
                return Err(ManageError::bad_input(
                    "auto_refresh_seconds",
                    "an auto-refresh token cannot also never expire",
                ))
            }
            (Some(w), end) => Expiry::AutoRefresh {
                window: seconds("auto_refresh_seconds", w)?,
                not_after: end,
            },
            (None, Some(expires_at)) => Expiry::HardLimit { expires_at },
            (None, None) if self.never_expires => Expiry::Never,
            (None, None) => match policy.default_for_new() {
                Some(d) => Expiry::hard(now, d),
                None if policy.never_allowed => Expiry::Never,
                None => {
                    return Err(ManageError::bad_input(
                        "expire",
                        "an expiry is required: give expire (e.g. 20d), validity_seconds, expires_at or auto_refresh_seconds",
                    ))
                }
            },
        };
        policy.check(expiry, now, now)
    }
}

/// A change to a token; `None` fields stay as they are.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TokenPatch {
    /// New name.
    pub name: Option<String>,
    /// New scopes (capped by the caller's own).
    pub scopes: Option<ScopeSet>,
    /// Enable or disable.
    pub active: Option<bool>,
    /// New hard expiry (`Some(None)` = never); replaces any auto-refresh model.
    pub expires_at: Option<Option<OffsetDateTime>>,
    /// Change only a token at this version (`If-Match`); else
    /// [`ManageError::PreconditionFailed`] and nothing changes.
    pub if_version: Option<u64>,
}

impl TokenPatch {
    /// An empty patch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Set the name.
    #[must_use]
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Set the scopes.
    #[must_use]
    pub fn scopes(mut self, scopes: ScopeSet) -> Self {
        self.scopes = Some(scopes);
        self
    }

    /// Enable (`true`) or disable (`false`).
    #[must_use]
    pub fn active(mut self, active: bool) -> Self {
        self.active = Some(active);
        self
    }

    /// Set the expiry (`None` = never).
    #[must_use]
    pub fn expires_at(mut self, at: Option<OffsetDateTime>) -> Self {
        self.expires_at = Some(at);
        self
    }

    /// Only if the token is at `version` (see [`TokenPatch::if_version`]).
    #[must_use]
    pub fn if_version(mut self, version: u64) -> Self {
        self.if_version = Some(version);
        self
    }

    /// True when it changes nothing.
    pub fn is_empty(&self) -> bool {
        self.name.is_none()
            && self.scopes.is_none()
            && self.active.is_none()
            && self.expires_at.is_none()
    }
}

/// A request to rotate a token (`POST /personal-access-tokens/{id}/rotate`).
///
/// By default the token keeps its id and gets a new secret; the old secret stops working
/// at once, or after `grace` (e.g. `1h`). With `new_id`, a new token with the same owner,
/// name, scopes and expiry model replaces the old one, which is deleted, or expires after
/// `grace`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "admin", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RotateRequest {
    /// How long the old secret keeps working: a duration such as `1h` or `90s`.
    #[serde(default)]
    pub grace: Option<String>,
    /// Issue a new id instead of a new secret for the same id.
    #[serde(default)]
    pub new_id: bool,
    /// Rotate only a token at this version (`If-Match` over HTTP).
    #[serde(skip)]
    pub if_version: Option<u64>,
}

/// Rules for expiries, checked on create and patch (rotation keeps a token's end).
///
/// The default is deliberately strict, because a token that never expires is the one
/// that leaks years later:
///
/// | field | default | why |
/// |---|---|---|
/// | [`default_lifetime`](Self::default_lifetime) | 30 days | a token created without any expiry field still dies on its own (GitLab, GitHub's classic default) |
/// | [`max_lifetime`](Self::max_lifetime) | 366 days | no token lives longer than a year and a day (GitHub fine-grained tokens' maximum) |
/// | [`never_allowed`](Self::never_allowed) | `false` | "never expires" only where the policy says so: [`ExpiryPolicy::allow_never`] |
///
/// ```
/// use std::time::Duration;
/// use tower_pat::manage::ExpiryPolicy;
///
/// let strict = ExpiryPolicy::default(); // 30 days by default, at most 366, never "never"
/// assert_eq!(strict.default_lifetime, Some(Duration::from_secs(30 * 86_400)));
/// let ci = ExpiryPolicy::default().with_max_lifetime(Duration::from_secs(90 * 86_400));
/// let legacy = ExpiryPolicy::unrestricted(); // no default, no maximum, "never" allowed
/// # let _ = (ci, legacy);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExpiryPolicy {
    /// The lifetime of a token created without any expiry field (default 30 days; never
    /// more than [`max_lifetime`](Self::max_lifetime)). `None`: such a token never
    /// expires if [`never_allowed`](Self::never_allowed), else the request is refused.
    pub default_lifetime: Option<Duration>,
    /// Longest a token may live, from its creation (default 366 days). A sliding token's
    /// absolute end is capped at it. `None`: no maximum.
    pub max_lifetime: Option<Duration>,
    /// Whether a token may be asked never to expire (`never_expires`; default `false`).
    /// A token that never expires has no end, so the maximum does not apply to it.
    pub never_allowed: bool,
}

/// 30 days.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(30 * 86_400);
/// 366 days.
const MAX_LIFETIME: Duration = Duration::from_secs(366 * 86_400);

impl Default for ExpiryPolicy {
    /// 30 days by default, at most 366 days, "never" refused.
    fn default() -> Self {
        Self {
            default_lifetime: Some(DEFAULT_LIFETIME),
            max_lifetime: Some(MAX_LIFETIME),
            never_allowed: false,
        }
    }
}

impl ExpiryPolicy {
    /// The default policy: 30 days by default, at most 366 days, "never" refused.
    pub fn new() -> Self {
        Self::default()
    }

    /// No rules: no default lifetime (a token without an expiry never expires), no
    /// maximum, "never" allowed. For tests and migrations; not for a server.
    pub fn unrestricted() -> Self {
        Self {
            default_lifetime: None,
            max_lifetime: None,
            never_allowed: true,
        }
    }

    /// Tokens live at most `d` from their creation.
    #[must_use]
    pub fn with_max_lifetime(mut self, d: Duration) -> Self {
        self.max_lifetime = Some(d);
        self
    }

    /// No maximum lifetime.
    #[must_use]
    pub fn without_max_lifetime(mut self) -> Self {
        self.max_lifetime = None;
        self
    }

    /// Lifetime of tokens created without an expiry (`None`: they never expire where
    /// "never" is allowed, and are refused elsewhere).
    #[must_use]
    pub fn with_default_lifetime(mut self, d: Option<Duration>) -> Self {
        self.default_lifetime = d;
        self
    }

    /// Allows tokens that never expire, when asked for explicitly (`never_expires`).
    #[must_use]
    pub fn allow_never(mut self) -> Self {
        self.never_allowed = true;
        self
    }

    /// The lifetime a token created without an expiry gets.
    fn default_for_new(&self) -> Option<Duration> {
        match (self.default_lifetime, self.max_lifetime) {
            (Some(d), Some(m)) => Some(d.min(m)),
            (d, m) => d.or(m),
        }
    }

    /// Checks `expiry` for a token created at `created`, now being `now`; caps the end of
    /// an auto-refresh token at the maximum lifetime.
    pub(crate) fn check(
        &self,
        expiry: Expiry,
        created: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<Expiry, ManageError> {
        let limit = self.max_lifetime.map(|m| clock::add(created, m));
        match expiry {
            Expiry::Never if !self.never_allowed => Err(ManageError::policy(
                "never_expires",
                "this server's policy does not allow tokens that never expire: give expire (e.g. 30d), validity_seconds or expires_at",
            )),
            Expiry::HardLimit { expires_at } => {
                if expires_at <= now {
                    return Err(ManageError::policy(
                        "expires_at",
                        "the expiry is in the past; disable or delete the token instead",
                    ));
                }
                if let Some(l) = limit.filter(|l| expires_at > *l) {
                    return Err(ManageError::policy(
                        "expire",
                        format!(
                            "longer than this server's maximum lifetime of {} days: the latest allowed expiry is {}",
                            self.max_lifetime.unwrap_or_default().as_secs() / 86_400,
                            rfc3339(l)
                        ),
                    ));
                }
                Ok(expiry)
            }
            Expiry::AutoRefresh { window, not_after } => {
                if not_after.is_some_and(|n| n <= now) {
                    return Err(ManageError::policy(
                        "expires_at",
                        "the end of the auto-refresh token is in the past",
                    ));
                }
                let not_after = match (not_after, limit) {
                    (Some(n), Some(l)) => Some(n.min(l)),
                    (n, l) => n.or(l),
                };
                Ok(Expiry::AutoRefresh { window, not_after })
            }
            other => Ok(other),
        }
    }
}

/// Parses scope strings; the error names the first bad one.
pub fn parse_scopes<S: AsRef<str>>(scopes: &[S]) -> Result<ScopeSet, ManageError> {
    ScopeSet::parse_all(scopes).map_err(|e| ManageError::bad_input("scopes", e.to_string()))
}

fn seconds(field: &str, s: u64) -> Result<Duration, ManageError> {
    if s == 0 || s > 100 * 366 * 86_400 {
        return Err(ManageError::bad_input(
            field,
            format!("{s} is not between 1 second and 100 years"),
        ));
    }
    Ok(Duration::from_secs(s))
}

/// Parses an RFC 3339 timestamp, truncated to the second.
pub(crate) fn parse_time(field: &str, s: &str) -> Result<OffsetDateTime, ManageError> {
    parse_rfc3339(s)
        .map(|t| clock::from_unix(t.unix_timestamp()))
        .ok_or_else(|| {
            ManageError::bad_input(
                field,
                format!(
                    "{:?} is not an RFC 3339 timestamp such as 2030-01-01T00:00:00Z",
                    s.chars().take(64).collect::<String>()
                ),
            )
        })
}

/// A whole number of seconds, also written as a float with no fraction (`60.0`): JSON
/// Schema's `integer` takes both.
fn whole<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    use serde::de::Error;
    let Some(n) = Option::<serde_json::Number>::deserialize(d)? else {
        return Ok(None);
    };
    if let Some(u) = n.as_u64() {
        return Ok(Some(u));
    }
    match n.as_f64() {
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        Some(f) if f.fract() == 0.0 && (0.0..=u64::MAX as f64).contains(&f) => Ok(Some(f as u64)),
        _ => Err(D::Error::custom(format!(
            "{n} is not a whole number of seconds"
        ))),
    }
}
