//! A self-service page for users' tokens (feature `ui`): list, create, see once, copy,
//! rotate, disable, enable and revoke, with each token's history, in server-rendered
//! HTML that any axum application mounts behind its own login.
//!
//! ```
//! use std::sync::Arc;
//! use axum::Router;
//! use tower_pat::manage::Manager;
//! use tower_pat::ui::{self, User};
//! use tower_pat::{Authenticator, MemoryStore};
//!
//! let manager = Manager::new(Authenticator::new(Arc::new(MemoryStore::new())));
//! // Who is signed in, from the application's own session (here a header its login
//! // middleware sets; a cookie session works the same way).
//! let identify = |req: &http::request::Parts| {
//!     let user = req.headers.get("x-user").and_then(|v| v.to_str().ok()).map(User::new);
//!     async move { user }
//! };
//! let app: Router = Router::new().nest("/settings/tokens", ui::router(manager, identify));
//! ```
//!
//! **Who may do what.** The page never signs anyone in and never takes a personal access
//! token as its login: `identify` says who the application has signed in, and `None`
//! answers 401. A user manages their own tokens ([`Actor::User`]); a user the
//! application marks as an admin ([`User::with_admin`]) gets an owner filter and acts on
//! everyone's tokens, as `pat:admin` does in the admin API. The
//! [`ExpiryPolicy`](crate::manage::ExpiryPolicy) of the [`Manager`] applies to every
//! token made here, and its limits are shown on the form.
//!
//! **What it protects.** Every form that changes something carries a token bound to the
//! browser (a random `pat_ui` cookie, `HttpOnly`, `SameSite=Lax`) and to the user, and
//! a request whose `Sec-Fetch-Site` is not `same-origin` (or, from a browser too old to
//! send it, whose `Origin` names another host) is refused with 403 before anything
//! changes. Every page is sent with a strict
//! `Content-Security-Policy` (scripts and styles only from the page's own two files, no
//! inline script), `frame-ancestors 'none'` and `X-Frame-Options: DENY`,
//! `Referrer-Policy: no-referrer` and `Cache-Control: no-store`. A new token is shown on
//! a page of its own, once: it waits in memory, bound to the browser and the user, until
//! that page is opened or ten minutes have passed (it is then dropped at the next visit
//! to the page), at most 8 per user; a reload or the back button shows that it was
//! already shown. It never appears in a URL. Opening that page is the one change a `GET`
//! makes, so it is never linked from anywhere a prefetcher could follow.
//!
//! With several replicas behind a load balancer, send a browser to the same replica
//! between creating a token and seeing it (sticky sessions), since the show-once step is
//! held in the memory of the replica that made the token.

mod form;
mod pages;

use std::collections::VecDeque;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::request::Parts;
use http::StatusCode;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::events::Origin;
use crate::layer::ClientAddress;
use crate::manage::{
    Actor, CreateTokenRequest, IssuedToken, ManageError, Manager, RotateRequest, TokenPatch,
};
use crate::scope::Scope;
use crate::store::{EventQuery, ListQuery};
use crate::token::{hex, unhex};

use form::Form;
use pages::Flash;

/// Who the host application has signed in, as [`Identify`] tells the page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    name: String,
    admin: bool,
}

impl User {
    /// A signed-in user, the owner of the tokens they manage (not an admin).
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            admin: false,
        }
    }

    /// Whether this user manages everyone's tokens (the host's own rule, e.g. a role).
    #[must_use]
    pub fn with_admin(mut self, admin: bool) -> Self {
        self.admin = admin;
        self
    }

    /// The user's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the user manages everyone's tokens.
    pub fn is_admin(&self) -> bool {
        self.admin
    }

    fn actor(&self) -> Actor {
        Actor::user(self.name.clone()).with_admin(self.admin)
    }
}

/// How the page learns who is signed in: from the host application's own session,
/// cookie or header. Implemented for every `Fn(&Parts) -> impl Future<Output =
/// Option<User>>` that is `Clone + Send + Sync`; `None` means nobody is signed in (401).
///
/// The future may not borrow the request: take what it needs first (a session handle
/// from the extensions, a header's value), then `async move`.
pub trait Identify: Clone + Send + Sync + 'static {
    /// The user signed in for this request, if any.
    fn identify(&self, request: &Parts) -> impl Future<Output = Option<User>> + Send;
}

impl<F, Fut> Identify for F
where
    F: Fn(&Parts) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Option<User>> + Send,
{
    fn identify(&self, request: &Parts) -> impl Future<Output = Option<User>> + Send {
        self(request)
    }
}

/// The self-service page with its options; [`router`] builds one with the defaults.
///
/// ```
/// use std::sync::Arc;
/// use tower_pat::manage::Manager;
/// use tower_pat::ui::{TokenPage, User};
/// use tower_pat::{Authenticator, MemoryStore, Scope};
///
/// let manager = Manager::new(Authenticator::new(Arc::new(MemoryStore::new())));
/// let identify = |_: &http::request::Parts| async { Some(User::new("alice")) };
/// let page = TokenPage::new(manager, identify)
///     .with_scope("repo:read".parse::<Scope>().unwrap(), "Read your repositories")
///     .with_scope("repo:write".parse::<Scope>().unwrap(), "Push to your repositories");
/// let app: axum::Router = axum::Router::new().nest("/settings/tokens", page.router());
/// ```
#[derive(Debug)]
pub struct TokenPage<I> {
    manager: Manager,
    identify: I,
    catalogue: Vec<(Scope, String)>,
    secure_cookie: bool,
    client_address: ClientAddress,
}

impl<I: Identify> TokenPage<I> {
    /// The page for `manager`'s tokens, for the users `identify` names; no scope
    /// catalogue yet (users type scopes, or ask for full access).
    pub fn new(manager: Manager, identify: I) -> Self {
        Self {
            manager,
            identify,
            catalogue: Vec::new(),
            secure_cookie: false,
            client_address: ClientAddress::default(),
        }
    }

    /// Where the audit log's events find the client's address (default: the
    /// connection's); behind a reverse proxy, the same setting as the layer's, e.g.
    /// [`ClientAddress::x_forwarded_for`].
    #[must_use]
    pub fn with_client_address(mut self, source: ClientAddress) -> Self {
        self.client_address = source;
        self
    }

    /// Marks the page's cookie `Secure` always (`true`), not only when a request shows
    /// HTTPS (`X-Forwarded-Proto: https`, an `https` origin or URI). Turn it on when
    /// the page is served over HTTPS only.
    #[must_use]
    pub fn with_secure_cookie(mut self, always: bool) -> Self {
        self.secure_cookie = always;
        self
    }

    /// Offers `scope` on the create form, as a checkbox with `description`.
    #[must_use]
    pub fn with_scope(mut self, scope: Scope, description: impl Into<String>) -> Self {
        self.catalogue.push((scope, description.into()));
        self
    }

    /// The routes, to mount with [`Router::nest`] where the host likes (e.g.
    /// `/settings/tokens`). Relative to the mount point: `/` (the list), `/new`,
    /// `/shown/{slot}`, `/{id}`, `/{id}/rotate`, `/{id}/disable`, `/{id}/enable`,
    /// `/{id}/revoke`, and `/assets/style.css`, `/assets/page.js` and `/assets/icon.svg`.
    pub fn router(self) -> Router {
        let mut key = [0u8; 32];
        // Without randomness no form could be trusted: refuse them all (a key of zeros
        // would be guessable), which `Ui::csrf_ok` does when `key` is `None`.
        let key = getrandom::getrandom(&mut key).ok().map(|()| key);
        let ui = Arc::new(Ui {
            manager: self.manager,
            identify: self.identify,
            catalogue: self.catalogue,
            secure_cookie: self.secure_cookie,
            client_address: self.client_address,
            key,
            shown: Mutex::new(VecDeque::new()),
        });
        Router::new()
            .route("/", get(list::<I>))
            .route("/new", get(new_form::<I>).post(create::<I>))
            .route("/shown/{slot}", get(shown::<I>))
            .route("/assets/style.css", get(style))
            .route("/assets/page.js", get(script))
            .route("/assets/icon.svg", get(icon))
            .route("/{id}", get(detail::<I>))
            .route("/{id}/rotate", axum::routing::post(rotate::<I>))
            .route("/{id}/disable", axum::routing::post(disable::<I>))
            .route("/{id}/enable", axum::routing::post(enable::<I>))
            .route("/{id}/revoke", get(revoke_form::<I>).post(revoke::<I>))
            .layer(axum::middleware::map_response(secure_headers))
            .with_state(ui)
    }
}

/// The self-service page with the defaults (no scope catalogue): see [`TokenPage`].
pub fn router<I: Identify>(manager: Manager, identify: I) -> Router {
    TokenPage::new(manager, identify).router()
}

/// How long a new token waits for its show-once page.
const SHOWN_TTL: Duration = Duration::from_secs(600);
/// New tokens waiting at most; the oldest is dropped beyond.
const SHOWN_MAX: usize = 1024;
/// New tokens of one user waiting at most; their oldest is dropped beyond.
const PER_USER: usize = 8;
/// Spent slots remembered, to say "already shown" on a reload.
const SPENT_MAX: usize = 4096;
/// The browser cookie that binds forms and show-once pages to one browser.
const COOKIE: &str = "pat_ui";
/// The largest form accepted.
const MAX_FORM: usize = 16 * 1024;

struct Ui<I> {
    manager: Manager,
    identify: I,
    catalogue: Vec<(Scope, String)>,
    secure_cookie: bool,
    client_address: ClientAddress,
    /// Keys the forms' tokens; `None` if the system had no randomness at start.
    key: Option<[u8; 32]>,
    shown: Mutex<VecDeque<Slot>>,
}

/// A token waiting for its show-once page, or (`issued: None`) one already shown.
struct Slot {
    id: String,
    browser: [u8; 32],
    user: String,
    at: Instant,
    issued: Option<Box<IssuedToken>>,
    token_id: String,
    rotated: bool,
}

/// What every page knows about its request.
pub(crate) struct Ctx {
    pub(crate) user: User,
    /// The mount point, e.g. `/settings/tokens` (no trailing slash).
    pub(crate) base: String,
    /// The form token for this browser and user.
    pub(crate) csrf: String,
    browser: [u8; 32],
    /// A new browser cookie to set, when the request had none.
    set_cookie: Option<HeaderValue>,
    origin: Origin,
    /// The manager's clock at the start of the request.
    pub(crate) now: time::OffsetDateTime,
}

impl Ctx {
    /// The list's address: the mount point itself (`/` when mounted at the root).
    pub(crate) fn home(&self) -> &str {
        if self.base.is_empty() {
            "/"
        } else {
            &self.base
        }
    }

    fn actor(&self) -> Actor {
        self.user.actor()
    }

    /// `res` with the browser cookie set if it is new.
    fn finish(&self, mut res: Response) -> Response {
        if let Some(c) = &self.set_cookie {
            res.headers_mut().append(header::SET_COOKIE, c.clone());
        }
        res
    }

    /// 303 to `path` under the mount point; `path` starting with `?` is the list's.
    fn see_other(&self, path: &str) -> Response {
        let to = if path.starts_with('?') {
            format!("{}{path}", self.home())
        } else {
            format!("{}{path}", self.base)
        };
        self.finish(Redirect::to(&to).into_response())
    }
}

impl<I: Identify> Ui<I> {
    /// A page's request (no body): its head and context, or the answer to give instead.
    async fn open(&self, req: Request) -> Result<(Parts, Ctx), Response> {
        let (parts, _) = req.into_parts();
        let ctx = self.ctx(&parts).await?;
        Ok((parts, ctx))
    }

    /// The request's context, or the answer to give instead (401 for nobody signed in).
    async fn ctx(&self, parts: &Parts) -> Result<Ctx, Response> {
        let Some(user) = self.identify.identify(parts).await else {
            return Err(pages::message(
                StatusCode::UNAUTHORIZED,
                "Not signed in",
                "Sign in to the application first, then come back to this page.",
            ));
        };
        let base = base_path(parts);
        let (browser, set_cookie) = match browser_cookie(&parts.headers) {
            Some(b) => (b, None),
            None => {
                let mut b = [0u8; 32];
                if getrandom::getrandom(&mut b).is_err() {
                    return Err(pages::message(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "Try again",
                        "The server could not make a session for this page; try again in a moment.",
                    ));
                }
                let secure = self.secure_cookie || is_https(parts);
                let cookie = format!(
                    "{COOKIE}={}; Path={}; HttpOnly; SameSite=Lax{}",
                    hex(&b),
                    if base.is_empty() { "/" } else { &base },
                    if secure { "; Secure" } else { "" }
                );
                (b, HeaderValue::from_str(&cookie).ok())
            }
        };
        let csrf = self.csrf_for(&browser, &user.name);
        forget_stale(
            &mut self.shown.lock().unwrap_or_else(|e| e.into_inner()),
            Instant::now(),
        );
        let client = self.client_address.of(&parts.headers, &parts.extensions);
        let user_agent = crate::events::user_agent(&parts.headers);
        Ok(Ctx {
            user,
            base,
            csrf,
            browser,
            set_cookie,
            origin: Origin::new(client, user_agent),
            now: self.manager.authenticator().clock().now(),
        })
    }

    fn csrf_for(&self, browser: &[u8; 32], user: &str) -> String {
        let mut h = Sha256::new();
        h.update(self.key.unwrap_or_default());
        h.update(browser);
        h.update([0]);
        h.update(user.as_bytes());
        hex(&h.finalize()[..16])
    }

    /// Whether a state-changing request comes from this page: same origin by the
    /// browser's own headers, from a browser that had the cookie, with its form token.
    fn csrf_ok(&self, parts: &Parts, ctx: &Ctx, form: &Form) -> bool {
        if self.key.is_none() || ctx.set_cookie.is_some() || !same_origin(parts) {
            return false;
        }
        let sent = form.one("csrf").unwrap_or_default();
        bool::from(sent.as_bytes().ct_eq(ctx.csrf.as_bytes()))
    }

    fn manager(&self, ctx: &Ctx) -> Manager {
        self.manager.clone().with_origin(ctx.origin.clone())
    }

    /// Keeps `issued` for its show-once page; returns the slot's id.
    fn keep(&self, ctx: &Ctx, issued: IssuedToken, rotated: bool) -> Option<String> {
        let mut id = [0u8; 16];
        getrandom::getrandom(&mut id).ok()?;
        let id = hex(&id);
        let mut slots = self.shown.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        forget_stale(&mut slots, now);
        // A user has at most PER_USER tokens waiting (their oldest goes first), so no
        // user can push another's out by making many.
        let mine = |s: &&mut Slot| s.issued.is_some() && s.user == ctx.user.name;
        if slots.iter_mut().filter(mine).count() >= PER_USER {
            if let Some(oldest) = slots.iter_mut().find(mine) {
                oldest.issued = None;
            }
        }
        while slots.iter().filter(|s| s.issued.is_some()).count() >= SHOWN_MAX
            || slots.len() >= SPENT_MAX
        {
            slots.pop_front();
        }
        slots.push_back(Slot {
            id: id.clone(),
            browser: ctx.browser,
            user: ctx.user.name.clone(),
            at: now,
            token_id: issued.view.id.to_string(),
            issued: Some(Box::new(issued)),
            rotated,
        });
        Some(id)
    }

    /// Takes the token waiting in `slot` for this browser and user: `Ok(token)` the
    /// first time, `Err(Some(token id))` once it was shown (or waited too long),
    /// `Err(None)` for a slot unknown to them.
    fn take(&self, ctx: &Ctx, slot: &str) -> Result<(Box<IssuedToken>, bool), Option<String>> {
        let mut slots = self.shown.lock().unwrap_or_else(|e| e.into_inner());
        let Some(s) = slots.iter_mut().find(|s| {
            bool::from(s.id.as_bytes().ct_eq(slot.as_bytes()))
                && bool::from(s.browser.ct_eq(&ctx.browser))
                && s.user == ctx.user.name
        }) else {
            return Err(None);
        };
        match s.issued.take() {
            Some(i) if s.at.elapsed() <= SHOWN_TTL => Ok((i, s.rotated)),
            _ => Err(Some(s.token_id.clone())),
        }
    }
}

/// Forgets the tokens that waited longer than [`SHOWN_TTL`] for their page.
fn forget_stale(slots: &mut VecDeque<Slot>, now: Instant) {
    for s in slots.iter_mut() {
        if s.issued.is_some() && now.duration_since(s.at) > SHOWN_TTL {
            s.issued = None;
        }
    }
}

/// Security headers on every answer of the page.
async fn secure_headers(mut res: Response) -> Response {
    let h = res.headers_mut();
    let set = |h: &mut HeaderMap, name: HeaderName, value: &'static str| {
        h.insert(name, HeaderValue::from_static(value));
    };
    set(
        h,
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    );
    set(h, header::X_FRAME_OPTIONS, "DENY");
    set(h, header::REFERRER_POLICY, "no-referrer");
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(
        h,
        HeaderName::from_static("cross-origin-opener-policy"),
        "same-origin",
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        set(h, header::CACHE_CONTROL, "no-store");
    }
    res
}

/// The mount point: the original path less the path inside the page's router.
fn base_path(parts: &Parts) -> String {
    let inner = parts.uri.path();
    let outer = parts
        .extensions
        .get::<axum::extract::OriginalUri>()
        .map_or(inner, |o| o.0.path());
    let base = if inner == "/" {
        outer.trim_end_matches('/')
    } else {
        outer.strip_suffix(inner).unwrap_or("")
    };
    base.to_owned()
}

fn is_https(parts: &Parts) -> bool {
    parts.uri.scheme_str() == Some("https")
        || parts
            .headers
            .get("x-forwarded-proto")
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"))
        || parts
            .headers
            .get(header::ORIGIN)
            .is_some_and(|v| v.as_bytes().starts_with(b"https://"))
}

/// The browser's `pat_ui` cookie, if it has a well-formed one.
fn browser_cookie(headers: &HeaderMap) -> Option<[u8; 32]> {
    let mut found = None;
    for v in headers.get_all(header::COOKIE) {
        let Ok(v) = v.to_str() else { continue };
        for pair in v.split(';') {
            if let Some((k, val)) = pair.trim().split_once('=') {
                if k == COOKIE {
                    found = unhex(val);
                }
            }
        }
    }
    found
}

/// The browser's own word on where a form came from. `Sec-Fetch-Site`, which every
/// current browser sends, must be `same-origin` (its `Origin` may then be `null`, as a
/// browser sends for a form posted from a page with `Referrer-Policy: no-referrer`).
/// Without it (an older browser), an `Origin`, when sent, must name this host: the
/// request's authority, `Host` or `X-Forwarded-Host`.
fn same_origin(parts: &Parts) -> bool {
    let headers = &parts.headers;
    if let Some(site) = headers.get("sec-fetch-site") {
        return site.as_bytes() == b"same-origin";
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let Some(authority) = origin
        .to_str()
        .ok()
        .and_then(|o| o.split_once("://"))
        .map(|(_, a)| a)
    else {
        return false; // `null`, or not a URL
    };
    let named = |h: Option<&str>| h.is_some_and(|h| h.eq_ignore_ascii_case(authority));
    named(parts.uri.authority().map(|a| a.as_str()))
        || ["x-forwarded-host", "host"]
            .iter()
            .any(|name| named(headers.get(*name).and_then(|h| h.to_str().ok())))
}

/// Splits a request; the body only for forms, at most [`MAX_FORM`] bytes.
async fn read_form(req: Request) -> Result<(Parts, Form), Response> {
    let (parts, body) = req.into_parts();
    let bytes: Bytes = axum::body::to_bytes(body, MAX_FORM).await.map_err(|_| {
        pages::message(
            StatusCode::PAYLOAD_TOO_LARGE,
            "Too much",
            "The form sent more than this page accepts.",
        )
    })?;
    Ok((parts, Form::parse(&bytes)))
}

fn forged() -> Response {
    pages::message(
        StatusCode::FORBIDDEN,
        "Not sent from this page",
        "This request did not come from this page, or the page was open too long. Nothing was changed. Go back, reload the page and try again.",
    )
}

/// The page for a management error that is not about one form field.
fn failure(ctx: &Ctx, e: &ManageError) -> Response {
    let status = match e {
        ManageError::NotFound { .. } => StatusCode::NOT_FOUND,
        ManageError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        ManageError::Conflict { .. } | ManageError::PreconditionFailed { .. } => {
            StatusCode::CONFLICT
        }
        ManageError::BadInput { .. } | ManageError::Patch(_) => StatusCode::BAD_REQUEST,
        _ => StatusCode::FORBIDDEN,
    };
    let text = match e {
        ManageError::NotFound { .. } => {
            "There is no such token, or it is not yours. It may have been revoked.".to_owned()
        }
        ManageError::Unavailable(_) => {
            "The token store did not answer. Nothing was changed; try again in a moment.".to_owned()
        }
        other => pages::sentence(&other.to_string()),
    };
    ctx.finish(pages::message_in(ctx, status, "That did not work", &text))
}

async fn list<I: Identify>(State(ui): State<Arc<Ui<I>>>, req: Request) -> Response {
    let (parts, ctx) = match ui.open(req).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let params = Form::parse(parts.uri.query().unwrap_or_default().as_bytes());
    let mut query = ListQuery::new();
    query.page_size = 50;
    query.page = params
        .one("page")
        .and_then(|p| p.parse().ok())
        .filter(|p| (1..=100_000).contains(p))
        .unwrap_or(1);
    let owner_filter = if ctx.user.admin {
        params
            .one("owner")
            .map(str::trim)
            .filter(|o| !o.is_empty())
            .map(str::to_owned)
    } else {
        None
    };
    query.owner = owner_filter.clone();
    match ui.manager(&ctx).list(&ctx.actor(), query.clone()).await {
        Ok(page) => {
            let flash = Flash::from_query(params.one("done"));
            let now = ui.manager.authenticator().clock().now();
            ctx.finish(pages::list(
                &ctx,
                &page,
                query.page,
                query.page_size,
                owner_filter.as_deref(),
                flash,
                now,
            ))
        }
        Err(e) => failure(&ctx, &e),
    }
}

async fn new_form<I: Identify>(State(ui): State<Arc<Ui<I>>>, req: Request) -> Response {
    let (_, ctx) = match ui.open(req).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let form = pages::CreateForm::default();
    ctx.finish(pages::create(
        &ctx,
        &ui.catalogue,
        ui.manager.policy(),
        &form,
        &pages::FieldErrors::default(),
        StatusCode::OK,
    ))
}

async fn create<I: Identify>(State(ui): State<Arc<Ui<I>>>, req: Request) -> Response {
    let (ctx, form) = match post_start(&ui, req).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let filled = pages::CreateForm::from_form(&form);
    let mut errors = pages::FieldErrors::default();
    let refused = |errors: &pages::FieldErrors| {
        ctx.finish(pages::create(
            &ctx,
            &ui.catalogue,
            ui.manager.policy(),
            &filled,
            errors,
            StatusCode::BAD_REQUEST,
        ))
    };
    let request = match filled.request(&ui.catalogue, &mut errors) {
        Some(r) if errors.is_empty() => r,
        _ => return refused(&errors),
    };
    let request: CreateTokenRequest = match (ctx.user.admin, filled.owner.trim()) {
        (true, o) if !o.is_empty() => CreateTokenRequest {
            owner: Some(o.to_owned()),
            ..request
        },
        _ => request,
    };
    match ui.manager(&ctx).create(&ctx.actor(), request).await {
        Ok(issued) => match ui.keep(&ctx, issued, false) {
            Some(slot) => ctx.see_other(&format!("/shown/{slot}")),
            None => failure(
                &ctx,
                &ManageError::Conflict {
                    message:
                        "the token was made but could not be shown; revoke it and make another"
                            .into(),
                },
            ),
        },
        Err(e) => {
            let message = pages::sentence(&message_of(&e));
            match pages::FieldErrors::field_of(&e) {
                // Only admins see the owner field: a user's own name is at fault.
                Some("owner") if !ctx.user.admin => errors.set(
                    "form",
                    format!("Your user name cannot own tokens here: {message}"),
                ),
                Some(field) => errors.set(field, message),
                None => return failure(&ctx, &e),
            }
            refused(&errors)
        }
    }
}

/// The message of an error about one field, without the field's API name.
fn message_of(e: &ManageError) -> String {
    match e {
        ManageError::BadInput { message, .. } | ManageError::Policy { message, .. } => {
            message.clone()
        }
        ManageError::Forbidden { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

async fn shown<I: Identify>(
    State(ui): State<Arc<Ui<I>>>,
    Path(slot): Path<String>,
    req: Request,
) -> Response {
    let (_, ctx) = match ui.open(req).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let now = ui.manager.authenticator().clock().now();
    match ui.take(&ctx, &slot) {
        Ok((issued, rotated)) => ctx.finish(pages::shown(&ctx, &issued, rotated, now)),
        Err(token_id) => ctx.finish(pages::already_shown(&ctx, token_id.as_deref())),
    }
}

async fn detail<I: Identify>(
    State(ui): State<Arc<Ui<I>>>,
    Path(id): Path<String>,
    req: Request,
) -> Response {
    let (parts, ctx) = match ui.open(req).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let m = ui.manager(&ctx);
    let actor = ctx.actor();
    let view = match m.get(&actor, &id).await {
        Ok(v) => v,
        Err(e) => return failure(&ctx, &e),
    };
    let q = EventQuery {
        token_id: Some(view.id),
        page_size: 50,
        ..EventQuery::default()
    };
    let events = m.events(&actor, q).await.ok();
    let params = Form::parse(parts.uri.query().unwrap_or_default().as_bytes());
    let flash = Flash::from_query(params.one("done"));
    let now = ui.manager.authenticator().clock().now();
    ctx.finish(pages::detail(&ctx, &view, events.as_ref(), flash, now))
}

/// The common start of a POST on one token: the form, the context, the CSRF check.
async fn post_start<I: Identify>(ui: &Ui<I>, req: Request) -> Result<(Ctx, Form), Response> {
    let (parts, form) = read_form(req).await?;
    let ctx = ui.ctx(&parts).await?;
    if !ui.csrf_ok(&parts, &ctx, &form) {
        return Err(ctx.finish(forged()));
    }
    Ok((ctx, form))
}

async fn rotate<I: Identify>(
    State(ui): State<Arc<Ui<I>>>,
    Path(id): Path<String>,
    req: Request,
) -> Response {
    let (ctx, form) = match post_start(&ui, req).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    // Only the grace periods the form offers.
    let grace = match form.one("grace").map(str::trim).unwrap_or("0") {
        "0" | "" => None,
        g if pages::GRACES.iter().any(|(v, _)| *v == g) => Some(g.to_owned()),
        _ => {
            return failure(
                &ctx,
                &ManageError::bad_input("grace", "choose one of the grace periods offered"),
            )
        }
    };
    let request = RotateRequest {
        grace,
        ..RotateRequest::default()
    };
    match ui.manager(&ctx).rotate(&ctx.actor(), &id, request).await {
        Ok(issued) => match ui.keep(&ctx, issued, true) {
            Some(slot) => ctx.see_other(&format!("/shown/{slot}")),
            None => failure(
                &ctx,
                &ManageError::Conflict {
                    message: "the token was rotated but could not be shown; rotate it again".into(),
                },
            ),
        },
        Err(e) => failure(&ctx, &e),
    }
}

async fn set_active<I: Identify>(ui: &Ui<I>, id: &str, req: Request, active: bool) -> Response {
    let (ctx, _) = match post_start(ui, req).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let patch = TokenPatch::new().active(active);
    match ui.manager(&ctx).patch(&ctx.actor(), id, patch).await {
        Ok(view) => {
            let done = if active { "enabled" } else { "disabled" };
            ctx.see_other(&format!("/{}?done={done}", view.id))
        }
        Err(e) => failure(&ctx, &e),
    }
}

async fn disable<I: Identify>(
    State(ui): State<Arc<Ui<I>>>,
    Path(id): Path<String>,
    req: Request,
) -> Response {
    set_active(&ui, &id, req, false).await
}

async fn enable<I: Identify>(
    State(ui): State<Arc<Ui<I>>>,
    Path(id): Path<String>,
    req: Request,
) -> Response {
    set_active(&ui, &id, req, true).await
}

async fn revoke_form<I: Identify>(
    State(ui): State<Arc<Ui<I>>>,
    Path(id): Path<String>,
    req: Request,
) -> Response {
    let (_, ctx) = match ui.open(req).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    match ui.manager(&ctx).get(&ctx.actor(), &id).await {
        Ok(view) => ctx.finish(pages::revoke(&ctx, &view)),
        Err(e) => failure(&ctx, &e),
    }
}

async fn revoke<I: Identify>(
    State(ui): State<Arc<Ui<I>>>,
    Path(id): Path<String>,
    req: Request,
) -> Response {
    let (ctx, _) = match post_start(&ui, req).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    match ui.manager(&ctx).delete(&ctx.actor(), &id).await {
        Ok(()) => ctx.see_other("?done=revoked"),
        Err(e) => failure(&ctx, &e),
    }
}

async fn style() -> Response {
    asset("text/css; charset=utf-8", include_str!("style.css"))
}

async fn icon() -> Response {
    asset("image/svg+xml", include_str!("icon.svg"))
}

async fn script() -> Response {
    asset("text/javascript; charset=utf-8", include_str!("page.js"))
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut res = Response::new(Body::from(body));
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    res
}
