//! The handlers of the admin router and its OpenAPI document.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequestParts, OriginalUri, Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use http::header::{CACHE_CONTROL, ETAG, IF_MATCH, LOCATION};
use http::request::Parts;
use http::{HeaderMap, HeaderValue, StatusCode};
use serde::Serialize;
use serde_json::Value;
use utoipa::OpenApi;

use super::error::{ApiError, ErrorBody};
use super::json::{json_response, media_type, optional_json, required_json};
use crate::events::Event;
use crate::events::Origin;
use crate::limit::AttemptLimiter;
use crate::manage::filter::{apply_event_filter, apply_filter_at, parse_order};
use crate::manage::json_patch;
use crate::manage::{
    Actor, CreateTokenRequest, IssuedToken, ManageError, Manager, RotateRequest, TokenView,
};
use crate::principal::Principal;
use crate::rejection::Challenge;
use crate::store::{EventQuery, ListQuery};

/// Where the router's routes live.
pub const BASE: &str = "/personal-access-tokens";

/// A page of tokens, AWX style.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TokenList {
    /// Tokens matching the filters, over all pages.
    pub count: u64,
    /// The next page's URL, if any.
    pub next: Option<String>,
    /// The previous page's URL, if any.
    pub previous: Option<String>,
    /// This page's tokens.
    pub results: Vec<TokenView>,
}

/// The caller, from the [`Principal`] that [`crate::PatLayer`] put in the request, and
/// where the request came from (the client address the layer resolved, the
/// `User-Agent`), for events.
struct Caller(Actor, Origin);

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        match parts.extensions.get::<Principal>() {
            Some(p) => {
                // The address the layer resolved (a trusted proxy's header, if so
                // configured), else the connection's.
                let client = p.client().or_else(|| {
                    parts
                        .extensions
                        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                        .map(|c| c.0.ip().to_canonical())
                });
                let user_agent = crate::events::user_agent(&parts.headers);
                Ok(Caller(
                    Actor::Principal(p.clone()),
                    Origin::new(client, user_agent),
                ))
            }
            None => {
                let challenge = parts
                    .extensions
                    .get::<Challenge>()
                    .cloned()
                    .unwrap_or_default();
                Err(ApiError::unauthorized(challenge.realm()))
            }
        }
    }
}

/// The admin routes, serving `document` (made once, by the caller) as the OpenAPI
/// document.
pub(super) fn routes(manager: Manager, document: Value) -> Router {
    let document = Arc::new(document);
    Router::new()
        .route(BASE, post(create_token).get(list_tokens))
        .route(
            &format!("{BASE}/openapi.json"),
            get(move || openapi_json(document.clone())),
        )
        .route(
            &format!("{BASE}/{{id}}"),
            get(get_token).patch(patch_token).delete(delete_token),
        )
        .route(&format!("{BASE}/{{id}}/rotate"), post(rotate_token))
        .route(&format!("{BASE}/events"), get(list_events))
        .route(&format!("{BASE}/{{id}}/events"), get(token_events))
        .with_state(manager)
}

/// A token's JSON with its version as the `ETag`.
fn view_response(status: StatusCode, view: &TokenView) -> Response {
    let mut res = json_response(status, view);
    res.headers_mut().insert(ETAG, etag(view.version));
    res
}

/// The strong entity tag of a token version: `"<version>"`.
fn etag(version: u64) -> HeaderValue {
    // Digits in quotes are always a valid header value.
    HeaderValue::try_from(format!("\"{version}\"")).unwrap_or(HeaderValue::from_static("\"\""))
}

/// The version an `If-Match` header asks for: `None` without one or for `*` (any
/// version of a token that exists). A weak or malformed tag can match no version
/// (RFC 9110 §13.1.1 compares strongly), so it asks for one no token has.
fn if_match(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let mut tags = Vec::new();
    for v in headers.get_all(IF_MATCH) {
        let v = v.to_str().unwrap_or("");
        tags.extend(v.split(',').map(str::trim).filter(|t| !t.is_empty()));
    }
    if tags.is_empty() || tags.contains(&"*") {
        return Ok(None);
    }
    if tags.len() > 1 {
        return Err(ManageError::bad_input(
            "If-Match",
            "give one entity tag, the ETag of the token as last read",
        )
        .into());
    }
    let version = tags[0]
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .and_then(|t| t.parse::<u64>().ok());
    Ok(Some(version.unwrap_or(u64::MAX)))
}

fn issued_response(status: StatusCode, issued: &IssuedToken) -> Response {
    let mut res = json_response(status, issued);
    let h = res.headers_mut();
    h.insert(ETAG, etag(issued.view.version));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(v) = HeaderValue::try_from(format!("{BASE}/{}", issued.view.id)) {
        h.insert(LOCATION, v);
    }
    res
}

/// Create a personal access token.
///
/// The response holds the token value: the only time it is shown.
#[utoipa::path(
    post,
    path = "/personal-access-tokens",
    request_body(content = CreateTokenRequest, content_type = "application/json"),
    responses(
        (status = 201, description = "Created; the body holds the token value, shown this once", body = IssuedToken),
    ),
    security(("bearer" = []))
)]
async fn create_token(
    State(m): State<Manager>,
    Caller(actor, origin): Caller,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let m = m.with_origin(origin);
    let req: CreateTokenRequest = required_json(&headers, &body)?;
    let issued = m.create(&actor, req).await?;
    Ok(issued_response(StatusCode::CREATED, &issued))
}

/// List personal access tokens.
///
/// Non-admins see only their own (`owner-id` defaults to `me`); admins see everyone's
/// unless `owner-id` is given. Any other query field is a filter; an unknown one is 400.
#[utoipa::path(
    get,
    path = "/personal-access-tokens",
    params(
        ("owner-id" = Option<String>, Query, description = "`me` or an owner; admins only for others"),
        ("name__icontains" = Option<String>, Query, description = "Name contains, case-insensitive"),
        ("scope" = Option<String>, Query, description = "Holds exactly this scope"),
        ("expires__lt" = Option<String>, Query, description = "Expires before (RFC 3339)"),
        ("expires__gt" = Option<String>, Query, description = "Expires after (RFC 3339); never-expiring included"),
        ("last_used__lte" = Option<String>, Query, description = "Last used at or before (RFC 3339)"),
        ("last_used__isnull" = Option<bool>, Query, description = "Never used (true) or used (false)"),
        ("last_used_ip" = Option<String>, Query, description = "Last used from this client address, e.g. 192.0.2.7"),
        ("expires_within" = Option<String>, Query, description = "Expires within this duration from now (and has not yet), e.g. 7d"),
        ("active" = Option<bool>, Query, description = "Enabled or disabled"),
        ("search" = Option<String>, Query, description = "Free text over name and owner"),
        ("order_by" = Option<String>, Query, description = "created, last_used, expires or name; '-' prefix for descending"),
        ("page" = Option<u32>, Query, description = "Page, from 1"),
        ("page_size" = Option<u32>, Query, description = "Items per page, 1 to 1000 (default 25)"),
    ),
    responses(
        (status = 200, description = "A page of tokens", body = TokenList),
    ),
    security(("bearer" = []))
)]
async fn list_tokens(
    State(m): State<Manager>,
    Caller(actor, _): Caller,
    OriginalUri(uri): OriginalUri,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(pairs) = query.map_err(|e| ManageError::bad_input("query", e.body_text()))?;
    let mut q = ListQuery::new();
    let (mut page, mut page_size) = (1u32, 25u32);
    let mut owner_id = None;
    let now = m.authenticator().clock().now();
    for (k, v) in &pairs {
        match k.as_str() {
            "owner-id" | "owner_id" => owner_id = Some(v.clone()),
            "order_by" => q.order = parse_order(v)?,
            "page" => page = number(k, v, 1, u32::MAX)?,
            "page_size" => page_size = number(k, v, 1, ListQuery::MAX_PAGE_SIZE)?,
            _ => apply_filter_at(&mut q, k, v, now)?,
        }
    }
    let me = match &actor {
        Actor::Principal(p) => Some(p.owner().to_string()),
        _ => None,
    };
    q.owner = match owner_id.as_deref() {
        Some("me") => me,
        Some(o) => Some(o.to_owned()),
        None if m.is_admin(&actor) => q.owner,
        None => me,
    };
    let q = q.page(page, page_size);
    let result = m.list(&actor, q).await?;
    let link = |p: u32| {
        let mut s = format!("{}?", uri.path());
        let mut first = true;
        for (k, v) in pairs.iter().filter(|(k, _)| k != "page") {
            if !first {
                s.push('&');
            }
            first = false;
            s.push_str(&encode(k));
            s.push('=');
            s.push_str(&encode(v));
        }
        if !first {
            s.push('&');
        }
        s.push_str(&format!("page={p}"));
        s
    };
    let shown = u64::from(page) * u64::from(page_size);
    let body = TokenList {
        count: result.total,
        next: (shown < result.total).then(|| link(page + 1)),
        previous: (page > 1).then(|| link(page - 1)),
        results: result.items,
    };
    Ok(json_response(StatusCode::OK, &body))
}

/// A page of the audit log, newest first, AWX style.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct EventList {
    /// Events matching the filters, over all pages.
    pub count: u64,
    /// The next page's URL, if any.
    pub next: Option<String>,
    /// The previous page's URL, if any.
    pub previous: Option<String>,
    /// This page's events: `at`, `token_id`, `owner`, `actor`, `client`, `user_agent`,
    /// `type` and the type's fields (`fields`, `new_id`, `lead` in seconds). Never a
    /// secret.
    #[schema(value_type = Vec<Object>)]
    pub results: Vec<Event>,
}

/// List the audit log's events, newest first.
///
/// An owner sees the events of their own tokens; an admin (`pat:admin`) everyone's.
#[utoipa::path(
    get,
    path = "/personal-access-tokens/events",
    params(
        ("token_id" = Option<String>, Query, description = "Only this token's events"),
        ("owner" = Option<String>, Query, description = "Only events of this owner's tokens (another owner's needs pat:admin)"),
        ("type" = Option<String>, Query, description = "created, changed, rotated, disabled, enabled, deleted, revoked_as_leaked, first_use, new_client_address, expiring_soon or expired"),
        ("since" = Option<String>, Query, description = "RFC 3339 time, or a duration before now such as 7d"),
        ("until" = Option<String>, Query, description = "RFC 3339 time, or a duration before now such as 1h"),
        ("page" = Option<u32>, Query, description = "Page, from 1"),
        ("page_size" = Option<u32>, Query, description = "Items per page, 1 to 1000 (default 25)"),
    ),
    responses(
        (status = 200, description = "A page of events", body = EventList),
    ),
    security(("bearer" = []))
)]
async fn list_events(
    State(m): State<Manager>,
    Caller(actor, _): Caller,
    OriginalUri(uri): OriginalUri,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Response, ApiError> {
    events_page(m, actor, uri, query, None).await
}

/// List one token's events, newest first.
///
/// 404 for an unknown id, another user's token, or a deleted token, whose events stay
/// listed at `GET /personal-access-tokens/events?token_id=…`.
#[utoipa::path(
    get,
    path = "/personal-access-tokens/{id}/events",
    params(
        ("id" = String, Path, description = "The token's id"),
        ("type" = Option<String>, Query, description = "Only events of this type"),
        ("since" = Option<String>, Query, description = "RFC 3339 time, or a duration before now such as 7d"),
        ("until" = Option<String>, Query, description = "RFC 3339 time, or a duration before now"),
        ("page" = Option<u32>, Query, description = "Page, from 1"),
        ("page_size" = Option<u32>, Query, description = "Items per page, 1 to 1000 (default 25)"),
    ),
    responses(
        (status = 200, description = "A page of the token's events", body = EventList),
    ),
    security(("bearer" = []))
)]
async fn token_events(
    State(m): State<Manager>,
    Caller(actor, _): Caller,
    Path(id): Path<String>,
    OriginalUri(uri): OriginalUri,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Response, ApiError> {
    // The token as the caller may see it: 404 for an unknown id, a deleted token or
    // another user's (a deleted token's events stay at `/events?token_id=…`).
    let view = m.get(&actor, &id).await?;
    let id = view.id;
    events_page(m, actor, uri, query, Some(id)).await
}

async fn events_page(
    m: Manager,
    actor: Actor,
    uri: http::Uri,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
    token: Option<crate::token::TokenId>,
) -> Result<Response, ApiError> {
    let Query(pairs) = query.map_err(|e| ManageError::bad_input("query", e.body_text()))?;
    let mut q = EventQuery::new();
    let (mut page, mut page_size) = (1u32, 25u32);
    let now = m.authenticator().clock().now();
    for (k, v) in &pairs {
        match k.as_str() {
            "page" => page = number(k, v, 1, u32::MAX)?,
            "page_size" => page_size = number(k, v, 1, ListQuery::MAX_PAGE_SIZE)?,
            "token_id" if token.is_some() => {
                return Err(ManageError::bad_input(k, "the path names the token").into())
            }
            _ => apply_event_filter(&mut q, k, v, now)?,
        }
    }
    if token.is_some() {
        q.token_id = token;
    }
    let q = q.page(page, page_size);
    let result = m.events(&actor, q).await?;
    let shown = u64::from(page) * u64::from(page_size);
    let body = EventList {
        count: result.total,
        next: (shown < result.total).then(|| page_link(&uri, &pairs, page + 1)),
        previous: (page > 1).then(|| page_link(&uri, &pairs, page - 1)),
        results: result.items,
    };
    Ok(json_response(StatusCode::OK, &body))
}

/// The URL of page `p` of a listing at `uri` with the query `pairs`.
fn page_link(uri: &http::Uri, pairs: &[(String, String)], p: u32) -> String {
    let mut s = format!("{}?", uri.path());
    for (k, v) in pairs.iter().filter(|(k, _)| k != "page") {
        s.push_str(&encode(k));
        s.push('=');
        s.push_str(&encode(v));
        s.push('&');
    }
    s.push_str(&format!("page={p}"));
    s
}

/// A whole number in `min..=max`, written as the document says: digits, no sign, no
/// leading zero.
fn number(key: &str, v: &str, min: u32, max: u32) -> Result<u32, ManageError> {
    let canonical =
        !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) && (v == "0" || !v.starts_with('0'));
    canonical
        .then(|| v.parse::<u32>().ok())
        .flatten()
        .filter(|n| (min..=max).contains(n))
        .ok_or_else(|| {
            ManageError::bad_input(key, format!("expected a whole number from {min} to {max}"))
        })
}

/// Percent-encodes a query component.
pub(crate) fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b':' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Get one personal access token.
#[utoipa::path(
    get,
    path = "/personal-access-tokens/{id}",
    params(("id" = String, Path, description = "The token's id")),
    responses(
        (status = 200, description = "The token (never its secret)", body = TokenView),
    ),
    security(("bearer" = []))
)]
async fn get_token(
    State(m): State<Manager>,
    Caller(actor, _): Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let view = m.get(&actor, &id).await?;
    Ok(view_response(StatusCode::OK, &view))
}

/// Patch a personal access token with JSON Patch (RFC 6902).
///
/// `add`, `remove`, `replace` and `test` on `/name`, `/scopes` (`/scopes/-`,
/// `/scopes/N`), `/active` and `/expires_at`. All or nothing: a failing operation
/// changes nothing and the 400 names its index and op.
#[utoipa::path(
    patch,
    path = "/personal-access-tokens/{id}",
    params(("id" = String, Path, description = "The token's id")),
    request_body(content = Vec<Object>, content_type = "application/json-patch+json"),
    responses(
        (status = 200, description = "The patched token", body = TokenView),
    ),
    security(("bearer" = []))
)]
async fn patch_token(
    State(m): State<Manager>,
    Caller(actor, origin): Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let m = m.with_origin(origin);
    if !matches!(
        media_type(&headers).as_deref(),
        Some("application/json-patch+json" | "application/json")
    ) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send a JSON Patch with Content-Type: application/json-patch+json",
        ));
    }
    let expected = if_match(&headers)?;
    let ops = json_patch::parse(&body).map_err(ManageError::from)?;
    let view = m.json_patch(&actor, &id, &ops, expected).await?;
    Ok(view_response(StatusCode::OK, &view))
}

/// Delete a personal access token; it stops working at once.
#[utoipa::path(
    delete,
    path = "/personal-access-tokens/{id}",
    params(("id" = String, Path, description = "The token's id")),
    responses(
        (status = 204, description = "Deleted"),
    ),
    security(("bearer" = []))
)]
async fn delete_token(
    State(m): State<Manager>,
    Caller(actor, origin): Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let m = m.with_origin(origin);
    m.delete_if(&actor, &id, if_match(&headers)?).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Rotate a personal access token: a new secret for the same id (default) or a new id.
///
/// With `grace`, the old secret keeps working that long. The response holds the new
/// token value: the only time it is shown.
#[utoipa::path(
    post,
    path = "/personal-access-tokens/{id}/rotate",
    params(("id" = String, Path, description = "The token's id")),
    request_body(content = Option<RotateRequest>, content_type = "application/json"),
    responses(
        (status = 200, description = "Rotated in place; the body holds the new token value", body = IssuedToken),
        (status = 201, description = "Replaced by a new id; the body holds the new token value", body = IssuedToken),
    ),
    security(("bearer" = []))
)]
async fn rotate_token(
    State(m): State<Manager>,
    Caller(actor, origin): Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let m = m.with_origin(origin);
    let mut req: RotateRequest = optional_json(&body)?;
    req.if_version = if_match(&headers)?;
    let status = if req.new_id {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let issued = m.rotate(&actor, &id, req).await?;
    Ok(issued_response(status, &issued))
}

/// This API's OpenAPI 3 document.
#[utoipa::path(
    get,
    path = "/personal-access-tokens/openapi.json",
    responses((status = 200, description = "The OpenAPI 3 document", content_type = "application/json"))
)]
async fn openapi_json(document: Arc<Value>) -> Response {
    json_response(StatusCode::OK, &*document)
}

/// A report of leaked tokens (`POST /personal-access-tokens/revoke`).
#[derive(Debug, Clone, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokeRequest {
    /// The tokens found, at most 1,000; malformed or unknown ones are skipped.
    #[schema(max_items = 1000)]
    pub tokens: Vec<String>,
}

/// The answer to a leaked-token report: the same whatever the tokens were.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RevokeAnswer {
    /// How many entries the report had.
    pub received: usize,
}

/// What the leaked-token route needs: the manager, and a per-client request limit.
#[derive(Clone)]
pub(super) struct Revoke {
    manager: Manager,
    limiter: AttemptLimiter,
    /// Where the client's address is read (the connection, or a trusted proxy's header).
    source: crate::layer::ClientAddress,
    /// Set once a report without a client address has been logged.
    warned: Arc<std::sync::atomic::AtomicBool>,
}

/// Largest report body read (1,000 tokens and JSON around them).
const MAX_REPORT_BYTES: usize = 256 * 1024;

/// The leaked-token route, with `limiter` counting every request per client.
pub(super) fn revoke_routes(
    manager: Manager,
    limiter: AttemptLimiter,
    source: crate::layer::ClientAddress,
) -> Router {
    Router::new()
        .route(&format!("{BASE}/revoke"), post(revoke_leaked))
        .with_state(Revoke {
            manager,
            limiter,
            source,
            warned: Arc::default(),
        })
}

/// Report leaked tokens.
///
/// No authentication: whoever found a token may revoke it. Every listed token whose
/// secret matches is disabled (not deleted) with a `revoked_as_leaked` event; malformed
/// and unknown entries are skipped. The answer is always 202 and does not say which
/// tokens were valid. Limited per client (60 requests an hour by default).
#[utoipa::path(
    post,
    path = "/personal-access-tokens/revoke",
    request_body = RevokeRequest,
    responses((status = 202, description = "Taken; says nothing about the tokens", body = RevokeAnswer))
)]
async fn revoke_leaked(
    State(r): State<Revoke>,
    req: axum::extract::Request,
) -> Result<Response, ApiError> {
    // An IPv6 client holds a whole /64: its reports count together.
    let client = r
        .source
        .of(req.headers(), req.extensions())
        .map(|ip| match ip.to_canonical() {
            std::net::IpAddr::V6(v6) => {
                std::net::IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into())
            }
            v4 => v4,
        });
    if let Some(client) = client {
        let keys = crate::limit::Keys {
            client,
            username: None,
        };
        let now = r.manager.authenticator().clock().unix_now();
        if let Err(retry_after) = r.limiter.check(keys, now) {
            return Err(ApiError::too_many_requests(retry_after));
        }
        r.limiter.failure(keys, now);
    } else if r.limiter.is_enabled() && !r.warned.swap(true, std::sync::atomic::Ordering::Relaxed) {
        tracing::warn!(
            "tower-pat: a leaked-token report came with no client address, so reports are not \
             limited (this is logged once): serve with \
             `into_make_service_with_connect_info::<SocketAddr>()`"
        );
    }
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, MAX_REPORT_BYTES)
        .await
        .map_err(|_| ManageError::bad_input("tokens", "the report is too large"))?;
    let report: RevokeRequest = required_json(&parts.headers, &body)?;
    r.manager.revoke_leaked(&report.tokens).await?;
    Ok(json_response(
        StatusCode::ACCEPTED,
        &RevokeAnswer {
            received: report.tokens.len(),
        },
    ))
}

struct BearerScheme;

impl utoipa::Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// The OpenAPI 3 document of the admin router as generated from its types
/// (`AdminApi::openapi()`); what is served at `GET /personal-access-tokens/openapi.json`
/// is [`document`](super::document), this with the patterns, bounds and answers the
/// types cannot state.
#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "tower-pat personal access tokens",
        description = "Create, list, inspect, patch, rotate and delete personal access tokens."
    ),
    paths(
        create_token,
        list_tokens,
        get_token,
        patch_token,
        delete_token,
        rotate_token,
        list_events,
        token_events,
        openapi_json,
        revoke_leaked
    ),
    components(schemas(
        RevokeRequest,
        RevokeAnswer,
        CreateTokenRequest,
        RotateRequest,
        TokenView,
        IssuedToken,
        TokenList,
        EventList,
        ErrorBody
    )),
    modifiers(&BearerScheme)
)]
pub struct AdminApi;
