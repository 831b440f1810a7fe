use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower_layer::Layer;
use tower_service::Service;

use crate::authenticator::Authenticator;
use crate::credentials::{
    parse_authorization, query_has_token, Credentials, CredentialsError, ParseOptions,
};
use crate::principal::Principal;
use crate::rejection::{Challenge, DefaultOnRejection, OnRejection, Rejection, RejectionKind};

/// Layer that authenticates every request with a personal access token.
///
/// Reads `Authorization` (Bearer and/or Basic, scheme in any case), asks the
/// [`Authenticator`], and on success puts the [`Principal`] (and the [`Challenge`]) into
/// the request's extensions; otherwise answers as [`crate::rejection`] describes.
#[derive(Clone)]
#[must_use]
pub struct PatLayer<R = DefaultOnRejection> {
    auth: Authenticator,
    config: Arc<Config>,
    on_rejection: R,
}

struct Config {
    options: ParseOptions,
    challenge: Challenge,
}

impl<R> fmt::Debug for PatLayer<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PatLayer")
            .field("options", &self.config.options)
            .field("challenge", &self.config.challenge)
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
        });
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
            auth: self.auth.clone(),
            config: self.config.clone(),
            on_rejection: self.on_rejection.clone(),
        }
    }
}

/// The service made by [`PatLayer`].
#[derive(Clone)]
pub struct PatService<S, R = DefaultOnRejection> {
    inner: S,
    auth: Authenticator,
    config: Arc<Config>,
    on_rejection: R,
}

impl<S: fmt::Debug, R> fmt::Debug for PatService<S, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PatService")
            .field("inner", &self.inner)
            .field("options", &self.config.options)
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

async fn authorize(
    auth: &Authenticator,
    config: &Config,
    headers: &http::HeaderMap,
    uri: &http::Uri,
    client: Option<&str>,
) -> Result<Principal, Rejection> {
    let challenge = || config.challenge.clone();
    if query_has_token(uri.query()) {
        return Err(Rejection::from_credentials_error(
            CredentialsError::QueryToken,
            challenge(),
        ));
    }
    let creds = parse_authorization(headers, &config.options)
        .map_err(|e| {
            tracing::debug!(error = %e, "malformed Authorization header");
            Rejection::from_credentials_error(e, challenge())
        })?
        .ok_or_else(|| Rejection::new(RejectionKind::MissingCredentials, challenge()))?;
    let result = match (&creds, client) {
        (Credentials::Bearer(token), Some(ip)) => auth.authenticate_from(ip, token).await,
        (Credentials::Bearer(token), None) => auth.authenticate(token).await,
        (Credentials::Basic { username, password }, Some(ip)) => {
            auth.authenticate_basic_from(ip, username, password.expose())
                .await
        }
        (Credentials::Basic { username, password }, None) => {
            auth.authenticate_basic(username, password.expose()).await
        }
    };
    result.map_err(|e| Rejection::from_auth_error(&e, challenge()))
}

/// The client's address, for failed-attempt limiting: axum's `ConnectInfo<SocketAddr>`,
/// or a plain `SocketAddr` extension.
fn client_key(ext: &http::Extensions) -> Option<String> {
    #[cfg(feature = "axum")]
    if let Some(info) = ext.get::<axum::extract::ConnectInfo<std::net::SocketAddr>>() {
        return Some(info.0.ip().to_string());
    }
    ext.get::<std::net::SocketAddr>()
        .map(|a| a.ip().to_string())
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
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        // The header goes on to the inner service: keep it out of `Debug` (and so logs).
        if let http::header::Entry::Occupied(mut e) =
            req.headers_mut().entry(http::header::AUTHORIZATION)
        {
            e.iter_mut().for_each(|v| v.set_sensitive(true));
        }
        // The clone is the one polled ready; keep the fresh one for the next call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let auth = self.auth.clone();
        let config = self.config.clone();
        let on_rejection = self.on_rejection.clone();
        Box::pin(async move {
            let client = client_key(req.extensions());
            let verdict =
                authorize(&auth, &config, req.headers(), req.uri(), client.as_deref()).await;
            match verdict {
                Ok(principal) => {
                    let ext = req.extensions_mut();
                    ext.insert(principal);
                    ext.insert(config.challenge.clone());
                    inner.call(req).await
                }
                Err(rejection) => Ok(on_rejection.on_rejection(rejection)),
            }
        })
    }
}
