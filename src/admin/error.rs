//! [`ApiError`]: the admin API's JSON error body `{error, message, details}`.

use axum::response::{IntoResponse, Response};
use http::header::{CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderValue, StatusCode};
use serde::Serialize;
use serde_json::{json, Value};

use crate::manage::json_patch::PatchErrorKind;
use crate::manage::ManageError;
use crate::rejection::STORE_RETRY_AFTER;

/// The JSON body of every admin API error.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "admin", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    /// A short code: `invalid_request`, `invalid_patch`, `unauthorized`, `forbidden`,
    /// `not_found`, `conflict`, `unsupported_media_type`, `temporarily_unavailable`.
    pub error: String,
    /// A sentence that says what is wrong and what to do.
    pub message: String,
    /// Structured details: the field, scope or JSON Patch operation at fault.
    #[cfg_attr(feature = "admin", schema(value_type = Vec<Object>))]
    pub details: Vec<Value>,
}

/// An admin API error: a status and an [`ErrorBody`].
#[derive(Debug, Clone)]
pub struct ApiError {
    status: StatusCode,
    body: ErrorBody,
    realm: Option<String>,
    retry_after: Option<u64>,
}

impl ApiError {
    /// An error with this status, code, message and details.
    pub fn new(status: StatusCode, error: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            body: ErrorBody {
                error: error.to_owned(),
                message: message.into(),
                details: Vec::new(),
            },
            realm: None,
            retry_after: None,
        }
    }

    /// With these details.
    #[must_use]
    pub fn with_details(mut self, details: Vec<Value>) -> Self {
        self.body.details = details;
        self
    }

    pub(crate) fn unauthorized(realm: &str) -> Self {
        let mut e = Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "authentication required: send a personal access token as 'Authorization: Bearer <token>'",
        );
        e.realm = Some(realm.to_owned());
        e
    }

    /// 429 with `Retry-After`: this client made too many requests of a limited route.
    pub(crate) fn too_many_requests(retry_after: std::time::Duration) -> Self {
        let mut e = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_requests",
            "too many requests from this client; see Retry-After",
        );
        e.retry_after = Some(retry_after.as_secs().max(1));
        e
    }

    /// The status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The body.
    pub fn body(&self) -> &ErrorBody {
        &self.body
    }
}

impl From<ManageError> for ApiError {
    fn from(e: ManageError) -> Self {
        let message = e.to_string();
        let (status, details) = match &e {
            ManageError::BadInput { field, .. } => {
                (StatusCode::BAD_REQUEST, vec![json!({ "field": field })])
            }
            ManageError::Patch(p) => (
                // RFC 5789 §2.2: a patch that cannot apply to the token as it is (a
                // failed test, a missing element) is a conflict, not a bad request.
                match p.kind {
                    PatchErrorKind::TestFailed | PatchErrorKind::NoTarget => StatusCode::CONFLICT,
                    _ => StatusCode::BAD_REQUEST,
                },
                vec![json!({
                    "index": p.index,
                    "op": p.op,
                    "path": p.path,
                    "kind": format!("{:?}", p.kind),
                })],
            ),
            ManageError::NotFound { id } => (StatusCode::NOT_FOUND, vec![json!({ "id": id })]),
            ManageError::Forbidden { scope, .. } => (
                StatusCode::FORBIDDEN,
                scope.iter().map(|s| json!({ "scope": s })).collect(),
            ),
            ManageError::Policy { field, .. } => {
                (StatusCode::FORBIDDEN, vec![json!({ "field": field })])
            }
            ManageError::InsufficientScope { scope } => {
                crate::metrics::insufficient_scope();
                (StatusCode::FORBIDDEN, vec![json!({ "scope": scope })])
            }
            ManageError::OutlivesCaller { latest_end } => (
                StatusCode::FORBIDDEN,
                vec![json!({ "latest_end": crate::manage::rfc3339(*latest_end) })],
            ),
            ManageError::PreconditionFailed { current } => (
                StatusCode::PRECONDITION_FAILED,
                vec![json!({ "version": current })],
            ),
            ManageError::Conflict { .. } => (StatusCode::CONFLICT, Vec::new()),
            ManageError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, Vec::new()),
            #[allow(unreachable_patterns)]
            _ => (StatusCode::INTERNAL_SERVER_ERROR, Vec::new()),
        };
        let message = if status == StatusCode::SERVICE_UNAVAILABLE {
            tracing::warn!(error = %e, "token store failed during a management call");
            "the token store is unavailable; try again shortly".to_owned()
        } else {
            message
        };
        Self::new(status, e.code(), message).with_details(details)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::to_string(&self.body).unwrap_or_default();
        let mut res = (self.status, body).into_response();
        let h = res.headers_mut();
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            h.insert(
                RETRY_AFTER,
                HeaderValue::from(STORE_RETRY_AFTER.as_secs().max(1)),
            );
        }
        if let Some(secs) = self.retry_after {
            h.insert(RETRY_AFTER, HeaderValue::from(secs));
        }
        if let Some(realm) = self.realm {
            if let Ok(v) = HeaderValue::try_from(format!("Bearer realm=\"{realm}\"")) {
                h.insert(WWW_AUTHENTICATE, v);
            }
        }
        res
    }
}
