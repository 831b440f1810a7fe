//! How a refused request is answered: [`Rejection`], mapped to a response in one place.
//! (Its longer documentation is on the public item, where rustdoc shows it.)

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::header::{CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderValue, Response, StatusCode};

use crate::credentials::CredentialsError;
use crate::error::AuthError;
use crate::scope::Scope;

/// What the server says in its `WWW-Authenticate` challenges: the realm and which
/// schemes it accepts. The layer puts it in request extensions for inner layers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    realm: Realm,
    bearer: bool,
    basic: bool,
}

/// A realm, shared for free: realms are configuration, so the first
/// [`MAX_INTERNED_REALMS`] distinct ones live for the program's life and cloning a
/// challenge (once per request) touches no reference count shared between threads.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Realm {
    Interned(&'static str),
    Shared(Arc<str>),
}

const MAX_INTERNED_REALMS: usize = 256;

impl Realm {
    fn new(realm: String) -> Self {
        static REALMS: std::sync::Mutex<Vec<&'static str>> = std::sync::Mutex::new(Vec::new());
        let mut realms = REALMS.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(known) = realms.iter().find(|r| **r == realm) {
            return Realm::Interned(known);
        }
        if realms.len() < MAX_INTERNED_REALMS {
            let leaked: &'static str = Box::leak(realm.into_boxed_str());
            realms.push(leaked);
            return Realm::Interned(leaked);
        }
        Realm::Shared(realm.into())
    }

    fn as_str(&self) -> &str {
        match self {
            Realm::Interned(r) => r,
            Realm::Shared(r) => r,
        }
    }
}

impl fmt::Display for Realm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Default for Challenge {
    /// Realm `tower-pat`, Bearer and Basic.
    fn default() -> Self {
        Self::new("tower-pat", true, true)
    }
}

impl Challenge {
    /// A challenge for `realm` naming the enabled schemes. Quotes and backslashes are
    /// dropped from the realm so the header stays well formed.
    pub fn new(realm: &str, bearer: bool, basic: bool) -> Self {
        let realm: String = realm
            .chars()
            .filter(|c| *c != '"' && *c != '\\' && (' '..='~').contains(c))
            .collect();
        Self {
            realm: Realm::new(realm),
            bearer,
            basic,
        }
    }

    /// The realm.
    pub fn realm(&self) -> &str {
        self.realm.as_str()
    }

    fn headers(&self, error: Option<&str>, scope: Option<&str>) -> Vec<HeaderValue> {
        let mut params = String::new();
        if let Some(e) = error {
            params.push_str(&format!(", error=\"{e}\""));
        }
        if let Some(s) = scope {
            params.push_str(&format!(", scope=\"{s}\""));
        }
        let mut out = Vec::with_capacity(2);
        let primary_bearer = self.bearer || !self.basic;
        if primary_bearer {
            out.push(format!("Bearer realm=\"{}\"{params}", self.realm));
        }
        if self.basic {
            let extra = if primary_bearer { "" } else { &params };
            out.push(format!(
                "Basic realm=\"{}\", charset=\"UTF-8\"{extra}",
                self.realm
            ));
        }
        out.into_iter()
            .filter_map(|v| HeaderValue::try_from(v).ok())
            .collect()
    }
}

/// Why a request was refused.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum RejectionKind {
    /// No credentials (or a scheme that is off): 401 with a challenge.
    MissingCredentials,
    /// A malformed request: 400 `invalid_request`.
    InvalidRequest(String),
    /// An unknown, wrong, expired or disabled token: 401 `invalid_token`.
    InvalidToken,
    /// The token lacks a scope: 403 `insufficient_scope`.
    InsufficientScope(Scope),
    /// No scope would do: a valid token, but nothing allows this request (`pat serve`'s
    /// rules deny it). 403 `insufficient_scope` without a `scope`.
    Forbidden,
    /// Too many failed attempts: 429 with `Retry-After`.
    TooManyAttempts(Duration),
    /// The store failed: 503 with `Retry-After`.
    StoreUnavailable(Duration),
    /// A scope check ran without the authentication layer in front of it: 500.
    MissingPrincipal,
}

/// A refused request: its kind and the challenge to answer with.
///
/// | case | status | `WWW-Authenticate` / header |
/// |---|---|---|
/// | no credentials | 401 | `Bearer realm="…"` (and `Basic realm="…"` where Basic is on) |
/// | malformed header, two headers | 400 | `error="invalid_request"` |
/// | unknown, wrong, expired, disabled token | 401 | `error="invalid_token"`, one body for all |
/// | valid token, missing scope | 403 | `error="insufficient_scope", scope="…"` |
/// | too many failed attempts | 429 | `Retry-After` |
/// | store unavailable | 503 | `Retry-After` |
#[derive(Clone)]
pub struct Rejection {
    kind: RejectionKind,
    challenge: Challenge,
}

impl fmt::Debug for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rejection")
            .field("kind", &self.kind)
            .finish()
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message())
    }
}

impl std::error::Error for Rejection {}

/// Default `Retry-After` for a failed store.
pub(crate) const STORE_RETRY_AFTER: Duration = Duration::from_secs(1);

impl Rejection {
    /// A rejection answered with `challenge`.
    pub fn new(kind: RejectionKind, challenge: Challenge) -> Self {
        Self { kind, challenge }
    }

    /// From an authentication error.
    pub fn from_auth_error(err: &AuthError, challenge: Challenge) -> Self {
        let kind = match err {
            AuthError::Malformed(_) | AuthError::Invalid(_) => RejectionKind::InvalidToken,
            AuthError::TooManyAttempts { retry_after } => {
                RejectionKind::TooManyAttempts(*retry_after)
            }
            AuthError::StoreUnavailable(_) => RejectionKind::StoreUnavailable(STORE_RETRY_AFTER),
            #[allow(unreachable_patterns)]
            _ => RejectionKind::StoreUnavailable(STORE_RETRY_AFTER),
        };
        Self::new(kind, challenge)
    }

    /// From a malformed header.
    pub fn from_credentials_error(err: CredentialsError, challenge: Challenge) -> Self {
        Self::new(RejectionKind::InvalidRequest(err.to_string()), challenge)
    }

    /// The kind.
    pub fn kind(&self) -> &RejectionKind {
        &self.kind
    }

    /// The challenge.
    pub fn challenge(&self) -> &Challenge {
        &self.challenge
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self.kind {
            RejectionKind::MissingCredentials | RejectionKind::InvalidToken => {
                StatusCode::UNAUTHORIZED
            }
            RejectionKind::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            RejectionKind::InsufficientScope(_) | RejectionKind::Forbidden => StatusCode::FORBIDDEN,
            RejectionKind::TooManyAttempts(_) => StatusCode::TOO_MANY_REQUESTS,
            RejectionKind::StoreUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            RejectionKind::MissingPrincipal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The short error code (`invalid_token`, `insufficient_scope`, …).
    pub fn error_code(&self) -> &'static str {
        match self.kind {
            RejectionKind::MissingCredentials => "missing_credentials",
            RejectionKind::InvalidRequest(_) => "invalid_request",
            RejectionKind::InvalidToken => "invalid_token",
            RejectionKind::InsufficientScope(_) | RejectionKind::Forbidden => "insufficient_scope",
            RejectionKind::TooManyAttempts(_) => "too_many_attempts",
            RejectionKind::StoreUnavailable(_) => "temporarily_unavailable",
            RejectionKind::MissingPrincipal => "server_error",
        }
    }

    /// A message for the body. The same for every invalid token, whatever the reason.
    pub fn message(&self) -> String {
        match &self.kind {
            RejectionKind::MissingCredentials => "authentication required".to_owned(),
            RejectionKind::InvalidRequest(m) => m.clone(),
            RejectionKind::InvalidToken => "the access token is invalid".to_owned(),
            RejectionKind::InsufficientScope(s) => format!("the access token lacks the scope {s}"),
            RejectionKind::Forbidden => "no rule allows this request".to_owned(),
            RejectionKind::TooManyAttempts(_) => {
                "too many failed attempts; try again later".to_owned()
            }
            RejectionKind::StoreUnavailable(_) => {
                "the token store is unavailable; try again shortly".to_owned()
            }
            RejectionKind::MissingPrincipal => {
                "authentication layer missing in front of this route".to_owned()
            }
        }
    }

    /// The response: status, `WWW-Authenticate` / `Retry-After`, and a small JSON body
    /// `{"error": …, "message": …}`.
    pub fn into_response<B: From<String>>(self) -> Response<B> {
        let body =
            serde_json::json!({"error": self.error_code(), "message": self.message()}).to_string();
        let mut res = Response::new(B::from(body));
        *res.status_mut() = self.status();
        let h = res.headers_mut();
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        let challenges = match &self.kind {
            RejectionKind::MissingCredentials => self.challenge.headers(None, None),
            RejectionKind::InvalidRequest(_) => {
                self.challenge.headers(Some("invalid_request"), None)
            }
            RejectionKind::InvalidToken => self.challenge.headers(Some("invalid_token"), None),
            RejectionKind::InsufficientScope(s) => self
                .challenge
                .headers(Some("insufficient_scope"), Some(&s.to_string())),
            RejectionKind::Forbidden => self.challenge.headers(Some("insufficient_scope"), None),
            _ => Vec::new(),
        };
        for c in challenges {
            h.append(WWW_AUTHENTICATE, c);
        }
        if let RejectionKind::TooManyAttempts(d) | RejectionKind::StoreUnavailable(d) = self.kind {
            h.insert(RETRY_AFTER, HeaderValue::from(d.as_secs().max(1)));
        }
        res
    }
}

#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
impl axum::response::IntoResponse for Rejection {
    fn into_response(self) -> axum::response::Response {
        Rejection::into_response(self)
    }
}

/// Turns a [`Rejection`] into a response; implement it to answer differently.
///
/// Closures `Fn(Rejection) -> Response<B>` implement it.
pub trait OnRejection<B>: Clone + Send + Sync + 'static {
    /// The response for `rejection`.
    fn on_rejection(&self, rejection: Rejection) -> Response<B>;
}

/// The standard answer: [`Rejection::into_response`].
#[derive(Debug, Clone, Copy, Default)]
pub struct DefaultOnRejection;

impl<B: From<String>> OnRejection<B> for DefaultOnRejection {
    fn on_rejection(&self, rejection: Rejection) -> Response<B> {
        rejection.into_response()
    }
}

impl<B, F> OnRejection<B> for F
where
    F: Fn(Rejection) -> Response<B> + Clone + Send + Sync + 'static,
{
    fn on_rejection(&self, rejection: Rejection) -> Response<B> {
        self(rejection)
    }
}
