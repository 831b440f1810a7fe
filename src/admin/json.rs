//! JSON in and out of the admin API: answers that are JSON or a 500 (never an empty
//! success), and request bodies that must be JSON objects (serde alone would take an
//! array for a struct).

use axum::body::Bytes;
use axum::response::{IntoResponse, Response};
use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderValue, StatusCode};
use serde::Serialize;

use super::error::ApiError;
use crate::manage::ManageError;

/// `value` as JSON, or a 500 naming the failure (never an empty success).
pub(super) fn json_response<T: Serialize>(status: StatusCode, value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => {
            let mut res = (status, body).into_response();
            res.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            res
        }
        Err(e) => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            format!("cannot write the answer as JSON: {e}"),
        )
        .into_response(),
    }
}

/// The body of a create: required, and JSON.
pub(super) fn required_json<T: serde::de::DeserializeOwned>(
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<T, ApiError> {
    if !is_json(headers) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the request as JSON with Content-Type: application/json",
        ));
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ManageError::bad_input("body", "the body is empty: send a JSON object").into());
    }
    parse_json(body)
}

/// An optional JSON body: empty, `null` or an object.
pub(super) fn optional_json<T: serde::de::DeserializeOwned + Default>(
    body: &Bytes,
) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    match parse_value(body)? {
        serde_json::Value::Null => Ok(T::default()),
        v => from_object(v),
    }
}

fn parse_json<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    from_object(parse_value(body)?)
}

fn parse_value(body: &Bytes) -> Result<serde_json::Value, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ManageError::bad_input("body", format!("the body is not JSON: {e}")).into())
}

/// A JSON object as `T` (serde would also take an array for a struct).
fn from_object<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> Result<T, ApiError> {
    if !v.is_object() {
        return Err(ManageError::bad_input("body", "the body must be a JSON object").into());
    }
    serde_json::from_value(v).map_err(|e| {
        ManageError::bad_input("body", format!("the body is not the expected JSON: {e}")).into()
    })
}

/// Whether the request says its body is JSON (`application/json`, any parameters).
fn is_json(headers: &HeaderMap) -> bool {
    media_type(headers).as_deref() == Some("application/json")
}

pub(super) fn media_type(headers: &HeaderMap) -> Option<String> {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
}
