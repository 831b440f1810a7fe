use std::borrow::Cow;
use std::fmt;
use std::task::{Context, Poll};

use futures_util::future::{Either, Ready};
use http::request::Parts;
use http::{Method, Request, Response};
use tower_layer::Layer;
use tower_service::Service;
use uuid::Uuid;

use crate::principal::Principal;
use crate::rejection::{Challenge, Rejection, RejectionKind};
use crate::scope::{NodePerm, Scope, ScopeSet};

/// Computes the scopes a request needs. A [`ScopeSet`] is a static policy; a closure
/// `Fn(&Parts) -> Result<ScopeSet, RejectionKind>` computes them per request.
pub trait ScopePolicy: Clone + Send + Sync + 'static {
    /// The scopes `parts` needs, or why the request is refused outright. A static policy
    /// lends its set (no copy per request).
    fn required(&self, parts: &Parts) -> Result<Cow<'_, ScopeSet>, RejectionKind>;
}

impl ScopePolicy for ScopeSet {
    fn required(&self, _: &Parts) -> Result<Cow<'_, ScopeSet>, RejectionKind> {
        Ok(Cow::Borrowed(self))
    }
}

impl<F> ScopePolicy for F
where
    F: Fn(&Parts) -> Result<ScopeSet, RejectionKind> + Clone + Send + Sync + 'static,
{
    fn required(&self, parts: &Parts) -> Result<Cow<'_, ScopeSet>, RejectionKind> {
        self(parts).map(Cow::Owned)
    }
}

/// A policy for paths `<prefix><uuid>[/…]`: safe methods (`GET`, `HEAD`, `OPTIONS`,
/// `PROPFIND`) need `node:<uuid>:r`, all others `node:<uuid>:w`.
///
/// Paths with `..` or `.` segments, empty segments, or percent-encoded `/`, `\` or `.`
/// are refused with 400, so no spelling of a path reaches another node than the one
/// whose scope was checked.
///
/// ```
/// use tower_pat::layer::node_scopes;
/// use tower_pat::RequireScopesLayer;
///
/// let layer = RequireScopesLayer::from_policy(node_scopes("/nodes/"));
/// ```
pub fn node_scopes(
    prefix: &'static str,
) -> impl Fn(&Parts) -> Result<ScopeSet, RejectionKind> + Clone + Send + Sync + 'static {
    move |parts: &Parts| {
        let bad = |m: &str| RejectionKind::InvalidRequest(m.to_owned());
        let path = parts.uri.path();
        let rest = path
            .strip_prefix(prefix)
            .ok_or_else(|| bad("path is not under the node prefix"))?;
        let lower = rest.to_ascii_lowercase();
        if lower.contains("%2f")
            || lower.contains("%5c")
            || lower.contains("%2e")
            || rest.contains('\\')
        {
            return Err(bad("encoded path separators are not accepted"));
        }
        let mut segments = rest.split('/');
        let id = segments.next().unwrap_or_default();
        let remaining: Vec<&str> = segments.collect();
        let n = remaining.len();
        if remaining
            .iter()
            .enumerate()
            .any(|(i, s)| *s == ".." || *s == "." || (s.is_empty() && i + 1 != n))
        {
            return Err(bad("path segments '.', '..' and '' are not accepted"));
        }
        let id = Uuid::try_parse(id).map_err(|_| bad("node id is not a UUID"))?;
        let perm = if is_read_method(&parts.method) {
            NodePerm::READ
        } else {
            NodePerm::WRITE
        };
        Ok(ScopeSet::new([Scope::node(id, perm)]))
    }
}

/// Whether a method only reads (`GET`, `HEAD`, `OPTIONS`, WebDAV `PROPFIND`).
pub fn is_read_method(m: &Method) -> bool {
    matches!(*m, Method::GET | Method::HEAD | Method::OPTIONS) || m.as_str() == "PROPFIND"
}

/// Layer that refuses requests whose [`Principal`] lacks the scopes a policy names
/// (403 `insufficient_scope`). Put it behind [`crate::PatLayer`].
#[derive(Clone)]
#[must_use]
pub struct RequireScopesLayer<P = ScopeSet> {
    policy: P,
}

impl<P> fmt::Debug for RequireScopesLayer<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequireScopesLayer").finish_non_exhaustive()
    }
}

impl RequireScopesLayer {
    /// Requires every scope in `scopes`.
    pub fn new(scopes: ScopeSet) -> Self {
        Self { policy: scopes }
    }
}

impl<P: ScopePolicy> RequireScopesLayer<P> {
    /// Requires what `policy` computes for each request.
    pub fn from_policy(policy: P) -> Self {
        Self { policy }
    }
}

impl<S, P: Clone> Layer<S> for RequireScopesLayer<P> {
    type Service = RequireScopes<S, P>;
    fn layer(&self, inner: S) -> Self::Service {
        RequireScopes {
            inner,
            policy: self.policy.clone(),
        }
    }
}

/// The service made by [`RequireScopesLayer`].
#[derive(Clone)]
pub struct RequireScopes<S, P = ScopeSet> {
    inner: S,
    policy: P,
}

impl<S: fmt::Debug, P> fmt::Debug for RequireScopes<S, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequireScopes")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, P, ReqBody, ResBody> Service<Request<ReqBody>> for RequireScopes<S, P>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    P: ScopePolicy,
    ResBody: From<String>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = Either<S::Future, Ready<Result<Response<ResBody>, S::Error>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let (parts, body) = req.into_parts();
        let challenge = parts
            .extensions
            .get::<Principal>()
            .and_then(Principal::challenge)
            .or_else(|| parts.extensions.get::<Challenge>())
            .cloned()
            .unwrap_or_default();
        let verdict = match parts.extensions.get::<Principal>() {
            None => Err(RejectionKind::MissingPrincipal),
            Some(principal) => {
                self.policy
                    .required(&parts)
                    .and_then(|needed| match principal.missing(&needed) {
                        Some(scope) => {
                            crate::metrics::insufficient_scope();
                            Err(RejectionKind::InsufficientScope(scope.clone()))
                        }
                        None => Ok(()),
                    })
            }
        };
        match verdict {
            Ok(()) => Either::Left(self.inner.call(Request::from_parts(parts, body))),
            Err(kind) => {
                tracing::debug!(kind = ?kind, "request refused by scope policy");
                Either::Right(futures_util::future::ready(Ok(Rejection::new(
                    kind, challenge,
                )
                .into_response())))
            }
        }
    }
}
