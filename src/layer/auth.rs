use std::fmt;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower_layer::Layer;
use tower_service::Service;

use crate::events::user_agent;

use super::ClientAddress;
use crate::authenticator::{Authenticator, Check, Credential, PendingCheck};
use crate::credentials::{
    decode_basic, decode_basic_in, parse_authorization_value, query_has_token, CredentialsError,
    ParseOptions, RawCredentials,
};
use crate::principal::Principal;
use crate::rejection::{Challenge, DefaultOnRejection, OnRejection, Rejection, RejectionKind};

/// Layer that authenticates every request with a personal access token.
///
/// Reads `Authorization` (Bearer and/or Basic, scheme in any case), asks the
/// [`Authenticator`], and on success puts the [`Principal`] (which carries this layer's
/// [`Challenge`], see [`Principal::challenge`]) into the request's extensions; otherwise
/// answers as [`Rejection`](crate::Rejection) describes.
///
/// The failed-attempt limiter ([`AttemptLimiter`](crate::AttemptLimiter), on by default) needs each request's
/// client address: serve with `into_make_service_with_connect_info::<SocketAddr>()`, or
/// set [`with_client_address`](Self::with_client_address) behind a proxy. A request with
/// no address is not limited (the first one logs a warning).
#[derive(Clone)]
#[must_use]
pub struct PatLayer<R = DefaultOnRejection> {
    auth: Authenticator,
    config: Arc<Config>,
    on_rejection: R,
}

#[derive(Clone)]
struct Config {
    options: ParseOptions,
    challenge: Challenge,
    client_address: ClientAddress,
    expiration_header: bool,
}

/// The response header [`PatLayer::with_expiration_header`] adds.
static EXPIRATION: http::HeaderName = http::HeaderName::from_static("pat-token-expiration");

/// The `Pat-Token-Expiration` value for a principal, when it has an end.
#[cold]
fn expiration_stamp(principal: &Principal) -> Option<http::HeaderValue> {
    let end = principal.expires_at()?;
    let text = end
        .format(&time::format_description::well_known::Rfc3339)
        .ok()?;
    http::HeaderValue::try_from(text).ok()
}

/// What every request of a [`PatService`] reads, behind one reference count (axum clones
/// the service for each request).
struct Shared<R> {
    auth: Authenticator,
    config: Config,
    on_rejection: R,
}

impl<R> Shared<R> {
    /// A valid token's principal, made ready for the inner service: what its use still
    /// needs done (a first use, a new client, a due write: [`Principal`]'s follow-up
    /// bits, with the `User-Agent` read only then), the challenge and the client address.
    #[inline]
    fn admit(
        &self,
        mut principal: Principal,
        client: Option<IpAddr>,
        headers: &http::HeaderMap,
    ) -> Principal {
        if principal.has_followup() {
            self.auth
                .follow_up(&mut principal, client, user_agent(headers));
        }
        principal
            .with_challenge(self.config.challenge.clone())
            .with_client(client)
    }
}

impl<R> fmt::Debug for PatLayer<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PatLayer")
            .field("options", &self.config.options)
            .field("challenge", &self.config.challenge)
            .field("client_address", &self.config.client_address)
            .finish_non_exhaustive()
    }
}

impl PatLayer {
    /// Bearer and Basic on, realm `tower-pat`, headers up to 4096 bytes.
    pub fn new(auth: Authenticator) -> Self {
        Self {
            auth,
            config: Arc::new(Config {
                options: ParseOptions::default(),
                challenge: Challenge::default(),
                client_address: ClientAddress::default(),
                expiration_header: false,
            }),
            on_rejection: DefaultOnRejection,
        }
    }
}

impl<R> PatLayer<R> {
    fn map_config(mut self, f: impl FnOnce(&mut ParseOptions, &mut String)) -> Self {
        let mut options = self.config.options;
        let mut realm = self.config.challenge.realm().to_owned();
        f(&mut options, &mut realm);
        self.config = Arc::new(Config {
            challenge: Challenge::new(&realm, options.bearer, options.basic),
            options,
            client_address: self.config.client_address,
            expiration_header: self.config.expiration_header,
        });
        self
    }

    /// Adds `Pat-Token-Expiration: <RFC 3339 time>` to the response of every request
    /// authenticated with a token that expires (default off), as GitHub's
    /// `GitHub-Authentication-Token-Expiration` does, so a client can warn its user in
    /// time. For an auto-refresh token it is the end after this use.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// use tower_pat::{Authenticator, MemoryStore, PatLayer};
    ///
    /// # let auth = Authenticator::new(Arc::new(MemoryStore::new()));
    /// let layer = PatLayer::new(auth).with_expiration_header(true);
    /// # let _ = layer;
    /// ```
    pub fn with_expiration_header(mut self, on: bool) -> Self {
        Arc::make_mut(&mut self.config).expiration_header = on;
        self
    }

    /// Accept `Authorization: Bearer` (default on).
    pub fn with_bearer(self, on: bool) -> Self {
        self.map_config(|o, _| o.bearer = on)
    }

    /// Accept `Authorization: Basic` with the token as password (default on).
    pub fn with_basic(self, on: bool) -> Self {
        self.map_config(|o, _| o.basic = on)
    }

    /// The realm named in challenges (default `tower-pat`).
    pub fn with_realm(self, realm: &str) -> Self {
        self.map_config(|_, r| *r = realm.to_owned())
    }

    /// Longest `Authorization` header accepted (default 4096 bytes); longer is 400.
    pub fn with_max_header_len(self, len: usize) -> Self {
        self.map_config(|o, _| o.max_len = len)
    }

    /// Where the failed-attempt limiter finds the client's address (default
    /// [`ClientAddress::connection`]). Behind reverse proxies, the address they forward:
    /// see [`ClientAddress`] for which entry is trusted.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// use tower_pat::layer::ClientAddress;
    /// use tower_pat::{Authenticator, MemoryStore, PatLayer};
    ///
    /// # let auth = Authenticator::new(Arc::new(MemoryStore::new()));
    /// // Behind one proxy that appends to `Forwarded` (RFC 7239).
    /// let layer = PatLayer::new(auth).with_client_address(ClientAddress::forwarded(1));
    /// # let _ = layer;
    /// ```
    pub fn with_client_address(mut self, source: ClientAddress) -> Self {
        Arc::make_mut(&mut self.config).client_address = source;
        self
    }

    /// Answer rejections with `handler` instead of the standard response.
    pub fn with_on_rejection<R2>(self, handler: R2) -> PatLayer<R2> {
        PatLayer {
            auth: self.auth,
            config: self.config,
            on_rejection: handler,
        }
    }
}

impl<S, R: Clone> Layer<S> for PatLayer<R> {
    type Service = PatService<S, R>;

    fn layer(&self, inner: S) -> Self::Service {
        PatService {
            inner,
            shared: Arc::new(Shared {
                auth: self.auth.clone(),
                config: Config::clone(&self.config),
                on_rejection: self.on_rejection.clone(),
            }),
        }
    }
}

/// The service made by [`PatLayer`].
pub struct PatService<S, R = DefaultOnRejection> {
    inner: S,
    shared: Arc<Shared<R>>,
}

impl<S: Clone, R> Clone for PatService<S, R> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<S: fmt::Debug, R> fmt::Debug for PatService<S, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PatService")
            .field("inner", &self.inner)
            .field("options", &self.shared.config.options)
            .finish_non_exhaustive()
    }
}

impl<S> PatService<S> {
    /// Wraps `inner` with the defaults of [`PatLayer::new`].
    pub fn new(inner: S, auth: Authenticator) -> Self {
        PatLayer::new(auth).layer(inner)
    }

    /// A [`PatLayer`] (tower-http naming).
    pub fn layer(auth: Authenticator) -> PatLayer {
        PatLayer::new(auth)
    }
}

/// The request's credentials, Basic still encoded, or the rejection for a request that
/// carries none usable.
fn raw_credentials<'h>(
    config: &Config,
    header: Header<'h>,
) -> Result<RawCredentials<'h>, Rejection> {
    if header.query_token {
        return Err(malformed(config, CredentialsError::QueryToken));
    }
    parse_authorization_value(header.value, header.more, &config.options)
        .map_err(|e| malformed(config, e))?
        .ok_or_else(|| Rejection::new(RejectionKind::MissingCredentials, config.challenge.clone()))
}

/// What the decision reads of a request: its (first) `Authorization` value, whether it
/// has more, and whether its query carries a token.
#[derive(Clone, Copy)]
struct Header<'h> {
    value: Option<&'h http::HeaderValue>,
    more: bool,
    query_token: bool,
}

/// The 400 for a malformed `Authorization` header (or a token in the query).
fn malformed(config: &Config, e: CredentialsError) -> Rejection {
    tracing::debug!(error = %e, "malformed Authorization header");
    Rejection::from_credentials_error(e, config.challenge.clone())
}

/// What [`authorize_now`] made of a request: the decision, or a pending check for a
/// well-formed token the hot table cannot decide (the cache and store decide).
enum Now {
    Decided(Result<Principal, Rejection>),
    Pending(PendingCheck),
}

/// The decision, if it can be made now, from memory: no await, and no allocation but for
/// a Basic credential too long for the stack buffer (decoded on the heap instead).
fn authorize_now(
    auth: &Authenticator,
    config: &Config,
    header: Header<'_>,
    client: Option<IpAddr>,
) -> Now {
    // A pending check keeps the username (not secret), never the password.
    let check_basic = |username: &str, password: &str| {
        auth.check(
            Credential::basic(username, password)
                .with_client(client)
                .deferring_origin(),
        )
    };
    let check = match raw_credentials(config, header) {
        Err(rejection) => return Now::Decided(Err(rejection)),
        Ok(RawCredentials::Bearer(token)) => auth.check(
            Credential::bearer(token)
                .with_client(client)
                .deferring_origin(),
        ),
        Ok(RawCredentials::Basic(encoded)) => {
            // Room for any usual `user:token`. Small, since it is zeroed before and after
            // use on every request.
            let mut buf = [0u8; 512];
            let outcome = match decode_basic_in(encoded, &mut buf) {
                Ok(Some((username, password))) => Ok(check_basic(username, password)),
                // Longer than the buffer: on the heap (the password is a `Secret`).
                Ok(None) => decode_basic(encoded)
                    .map(|(username, password)| check_basic(&username, password.expose())),
                Err(e) => Err(e),
            };
            // Whatever happened, the decoded token does not stay on the stack (base64
            // writes at most 3 bytes per 4 characters).
            let written = (encoded.len() / 4 + 1).saturating_mul(3).min(buf.len());
            buf[..written].fill(0);
            std::hint::black_box(&buf);
            match outcome {
                Err(e) => return Now::Decided(Err(malformed(config, e))),
                Ok(check) => check,
            }
        }
    };
    match check {
        Check::Decided(result) => Now::Decided(
            result.map_err(|e| Rejection::from_auth_error(&e, config.challenge.clone())),
        ),
        Check::Pending(pending) => Now::Pending(pending),
    }
}

/// Set once the layer has warned that a request came with no client address.
static WARNED_NO_ADDRESS: AtomicBool = AtomicBool::new(false);

/// Warnings logged about requests without a client address (at most one per process).
#[cfg(test)]
pub(crate) static NO_ADDRESS_WARNINGS: std::sync::atomic::AtomicUsize =
    std::sync::atomic::AtomicUsize::new(0);

/// The limiter is on but cannot see who the client is: say so once, with the fix.
#[cold]
fn warn_no_client_address() {
    if WARNED_NO_ADDRESS.load(Ordering::Relaxed) || WARNED_NO_ADDRESS.swap(true, Ordering::Relaxed)
    {
        return;
    }
    #[cfg(test)]
    NO_ADDRESS_WARNINGS.fetch_add(1, Ordering::Relaxed);
    tracing::warn!(
        "tower-pat: a request came with no client address, so failed attempts are not \
         limited (this is logged once). Serve with \
         `app.into_make_service_with_connect_info::<SocketAddr>()`, or behind a reverse proxy \
         set `PatLayer::with_client_address(ClientAddress::x_forwarded_for(hops))` (or \
         `ClientAddress::forwarded(hops)`), or switch the limiter off with \
         `AttemptLimiter::disabled()`"
    );
}

impl<S, R, ReqBody, ResBody> Service<Request<ReqBody>> for PatService<S, R>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
    R: OnRejection<ResBody>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let shared = &*self.shared;
        // The client's address: for the attempt limiter, and recorded as where the token
        // was last used from.
        let client = shared
            .config
            .client_address
            .of(req.headers(), req.extensions());
        if client.is_none() && shared.auth.limits_attempts() {
            warn_no_client_address();
        }
        let query_token = query_has_token(req.uri().query());
        // One look-up of the header: mark it sensitive (it goes on to the inner service:
        // keep it out of `Debug`, and so logs), then decide from it.
        let entry = match req.headers_mut().entry(http::header::AUTHORIZATION) {
            http::header::Entry::Occupied(mut e) => {
                e.iter_mut().for_each(|v| v.set_sensitive(true));
                Some(e)
            }
            http::header::Entry::Vacant(_) => None,
        };
        let header = Header {
            value: entry.as_ref().map(|e| e.get()),
            more: entry.as_ref().is_some_and(|e| e.iter().nth(1).is_some()),
            query_token,
        };
        let decided = authorize_now(&shared.auth, &shared.config, header, client);
        // Cached tokens and bad requests are decided here, with nothing cloned or boxed.
        let pending = match decided {
            Now::Decided(Ok(principal)) => {
                let principal = shared.admit(principal, client, req.headers());
                if shared.config.expiration_header {
                    // Opt-in: a future of its own, so the default's future stays as small.
                    let stamp = expiration_stamp(&principal);
                    req.extensions_mut().insert(principal);
                    let future = self.inner.call(req);
                    return ResponseFuture::boxed(Box::pin(async move {
                        let mut res = future.await?;
                        if let Some(stamp) = stamp {
                            res.headers_mut().insert(EXPIRATION.clone(), stamp);
                        }
                        Ok(res)
                    }));
                }
                req.extensions_mut().insert(principal);
                return ResponseFuture::inner(self.inner.call(req));
            }
            Now::Decided(Err(rejection)) => {
                return ResponseFuture::ready(shared.on_rejection.on_rejection(rejection));
            }
            Now::Pending(pending) => pending,
        };
        // A cache miss: read the store (and maybe wait) in a future of its own.
        // The clone is the one polled ready; keep the fresh one for the next call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let shared = self.shared.clone();
        ResponseFuture::boxed(Box::pin(async move {
            let config = &shared.config;
            let verdict = pending
                .finish()
                .await
                .map_err(|e| Rejection::from_auth_error(&e, config.challenge.clone()));
            match verdict {
                Ok(principal) => {
                    let principal = shared.admit(principal, client, req.headers());
                    let stamp = config
                        .expiration_header
                        .then(|| expiration_stamp(&principal))
                        .flatten();
                    req.extensions_mut().insert(principal);
                    let mut res = inner.call(req).await?;
                    if let Some(stamp) = stamp {
                        res.headers_mut().insert(EXPIRATION.clone(), stamp);
                    }
                    Ok(res)
                }
                Err(rejection) => Ok(shared.on_rejection.on_rejection(rejection)),
            }
        }))
    }
}

type BoxedResponse<B, E> = Pin<Box<dyn Future<Output = Result<Response<B>, E>> + Send>>;

pin_project_lite::pin_project! {
    /// The response future of [`PatService`]: the inner service's future for a request
    /// decided at once (a cached token, or a rejection), a boxed one when the store had to
    /// be read.
    pub struct ResponseFuture<F, B, E> {
        #[pin]
        kind: Kind<F, B, E>,
    }
}

pin_project_lite::pin_project! {
    #[project = KindProj]
    enum Kind<F, B, E> {
        Inner { #[pin] future: F },
        Ready { response: Option<Response<B>> },
        Boxed { future: BoxedResponse<B, E> },
    }
}

impl<F, B, E> ResponseFuture<F, B, E> {
    fn inner(future: F) -> Self {
        Self {
            kind: Kind::Inner { future },
        }
    }

    fn ready(response: Response<B>) -> Self {
        Self {
            kind: Kind::Ready {
                response: Some(response),
            },
        }
    }

    fn boxed(future: BoxedResponse<B, E>) -> Self {
        Self {
            kind: Kind::Boxed { future },
        }
    }
}

impl<F, B, E> fmt::Debug for ResponseFuture<F, B, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F, B, E> Future for ResponseFuture<F, B, E>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Inner { future } => future.poll(cx),
            KindProj::Ready { response } => Poll::Ready(Ok(response
                .take()
                .expect("ResponseFuture polled after it completed"))),
            KindProj::Boxed { future } => future.as_mut().poll(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;
    use std::convert::Infallible;
    use tower::ServiceExt as _;

    async fn status(svc: &PatService<tower::util::ServiceFn<Handler>>, addr: bool) -> u16 {
        let mut req = Request::builder()
            .uri("/")
            .header("authorization", "Bearer pat_wrong")
            .body(())
            .unwrap();
        if addr {
            req.extensions_mut()
                .insert(std::net::SocketAddr::from(([192, 0, 2, 1], 4711)));
        }
        svc.clone().oneshot(req).await.unwrap().status().as_u16()
    }

    type Handler = fn(Request<()>) -> std::future::Ready<Result<Response<String>, Infallible>>;

    fn ok(_: Request<()>) -> std::future::Ready<Result<Response<String>, Infallible>> {
        std::future::ready(Ok(Response::new(String::new())))
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_request_without_a_client_address_warns_once() {
        let auth = Authenticator::new(Arc::new(MemoryStore::new()));
        assert!(auth.limits_attempts(), "the limiter is on by default");
        let svc = PatLayer::new(auth).layer(tower::service_fn(ok as Handler));
        for _ in 0..3 {
            assert_eq!(status(&svc, true).await, 401);
            assert_eq!(status(&svc, false).await, 401);
        }
        // Other tests of this binary may have been first; either way, one warning.
        assert_eq!(NO_ADDRESS_WARNINGS.load(Ordering::Relaxed), 1);
    }
}
