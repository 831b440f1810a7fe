//! JSON Patch (RFC 6902) over a [`TokenView`]: a pure, all-or-nothing [`apply`], by the
//! [`json-patch`](https://docs.rs/json-patch) crate, behind an allow-list.
//!
//! `add`, `remove`, `replace` and `test` are supported; `add`/`remove`/`replace` may
//! touch only `/name`, `/scopes` (also `/scopes/-` and `/scopes/N`), `/active` and
//! `/expires_at` (`remove /expires_at` = never expires). `test` may read any field.
//! `move` and `copy` are refused. Every operation's path and value are checked first;
//! then the crate applies the patch, which it undoes if any operation fails, so the view
//! changes only when every operation succeeded. An error names the failing operation's
//! index and op.
//!
//! ```
//! use tower_pat::manage::{apply_patch as apply, parse_patch as parse};
//! # use tower_pat::manage::TokenView;
//! # fn view() -> TokenView {
//! #     let r = tower_pat::TokenRecord::new(tower_pat::TokenId::generate(), "alice", "ci",
//! #         Default::default(), tower_pat::Expiry::Never,
//! #         tower_pat::SecretHash::of("s"), time::OffsetDateTime::UNIX_EPOCH);
//! #     TokenView::from(&r)
//! # }
//! let mut v: TokenView = view();
//! let patch = parse(br#"[{"op":"replace","path":"/name","value":"deploy"},
//!                        {"op":"add","path":"/scopes/-","value":"repo:read"}]"#).unwrap();
//! apply(&patch, &mut v).unwrap();
//! assert_eq!(v.name, "deploy");
//! assert_eq!(v.scopes, ["repo:read"]);
//!
//! let before = v.clone();
//! let bad = parse(br#"[{"op":"replace","path":"/name","value":"x"},
//!                      {"op":"replace","path":"/owner","value":"mallory"}]"#).unwrap();
//! let err = apply(&bad, &mut v).unwrap_err();
//! assert_eq!(err.index, Some(1));
//! assert_eq!(v, before); // all or nothing
//! ```

use serde_json::Value;

pub use ::json_patch::{Patch, PatchOperation};

use super::validate::{check_name, parse_rfc3339};
use super::view::TokenView;
use crate::scope::Scope;

/// Most operations accepted in one patch.
pub(crate) const MAX_OPERATIONS: usize = 256;

/// The fields a patch may change.
const PATCHABLE: [&str; 4] = ["name", "scopes", "active", "expires_at"];

/// What went wrong with a patch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PatchErrorKind {
    /// The body is not a JSON array of operations, or an operation is malformed.
    Malformed,
    /// The path names a read-only field (`/id`, `/owner`, …) or the whole document.
    ForbiddenPath,
    /// The path names no field of a token.
    UnknownPath,
    /// The path's target does not exist (e.g. `/scopes/9` of a 2-scope token).
    NoTarget,
    /// A `test` operation found another value.
    TestFailed,
    /// The value has the wrong type or is invalid (a bad scope, a bad timestamp).
    InvalidValue,
    /// `move` and `copy` are not supported.
    Unsupported,
}

/// A JSON Patch failed; nothing was applied. Names the operation (by index from 0).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.describe())]
pub struct PatchError {
    /// Index of the failing operation, from 0; `None` when the document as a whole is bad.
    pub index: Option<usize>,
    /// The failing operation's `op`, when known.
    pub op: Option<String>,
    /// The failing operation's `path`, when known (cut to 128 characters).
    pub path: Option<String>,
    /// The kind of failure.
    pub kind: PatchErrorKind,
    /// What is wrong.
    pub reason: String,
}

impl PatchError {
    fn whole(reason: impl Into<String>) -> Self {
        Self {
            index: None,
            op: None,
            path: None,
            kind: PatchErrorKind::Malformed,
            reason: reason.into(),
        }
    }

    fn at(i: usize, op: &PatchOperation, (kind, reason): (PatchErrorKind, String)) -> Self {
        Self {
            index: Some(i),
            op: Some(op_name(op).to_owned()),
            path: Some(cut(op.path().as_str())),
            kind,
            reason,
        }
    }

    fn describe(&self) -> String {
        match (self.index, &self.op, &self.path) {
            (Some(i), Some(op), Some(path)) => {
                format!(
                    "JSON Patch operation {i} ({op} {path}) failed: {}",
                    self.reason
                )
            }
            (Some(i), Some(op), None) => {
                format!("JSON Patch operation {i} ({op}) failed: {}", self.reason)
            }
            (Some(i), None, _) => format!("JSON Patch operation {i} failed: {}", self.reason),
            (None, ..) => format!("invalid JSON Patch: {}", self.reason),
        }
    }
}

/// The `op` of an operation as written in a patch.
fn op_name(op: &PatchOperation) -> &'static str {
    match op {
        PatchOperation::Add(_) => "add",
        PatchOperation::Remove(_) => "remove",
        PatchOperation::Replace(_) => "replace",
        PatchOperation::Move(_) => "move",
        PatchOperation::Copy(_) => "copy",
        PatchOperation::Test(_) => "test",
    }
}

/// Parses a JSON Patch document (a JSON array of operations). Errors name the index of
/// the malformed operation.
pub fn parse(body: &[u8]) -> Result<Patch, PatchError> {
    let doc: Value = serde_json::from_slice(body)
        .map_err(|e| PatchError::whole(format!("the body is not JSON: {e}")))?;
    let Value::Array(items) = doc else {
        return Err(PatchError::whole(
            "a JSON Patch is a JSON array of operations",
        ));
    };
    if items.len() > MAX_OPERATIONS {
        return Err(PatchError::whole(format!(
            "more than {MAX_OPERATIONS} operations"
        )));
    }
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            let op = item.get("op").and_then(Value::as_str).map(cut);
            let path = item.get("path").and_then(Value::as_str).map(cut);
            let reason = match (&path, item.get("path")) {
                (Some(p), _) if !p.is_empty() && !p.starts_with('/') => Some(format!(
                    "{p:?} is not a JSON Pointer (it must start with '/')"
                )),
                _ => None,
            };
            let parsed = serde_json::from_value(item).map_err(|e| e.to_string());
            match (parsed, reason) {
                (Ok(op), None) => Ok(op),
                (Err(reason), None) | (_, Some(reason)) => Err(PatchError {
                    index: Some(i),
                    op,
                    path,
                    kind: PatchErrorKind::Malformed,
                    reason,
                }),
            }
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Patch)
}

fn cut(s: &str) -> String {
    s.chars().take(128).collect()
}

type OpResult<T> = Result<T, (PatchErrorKind, String)>;

/// Applies `patch` to `view`, all or nothing: on error `view` is unchanged.
pub fn apply(patch: &Patch, view: &mut TokenView) -> Result<(), PatchError> {
    for (i, op) in patch.0.iter().enumerate() {
        allowed(op).map_err(|e| PatchError::at(i, op, e))?;
    }
    let mut doc = serde_json::to_value(&*view)
        .map_err(|e| PatchError::whole(format!("cannot represent the token: {e}")))?;
    ::json_patch::patch(&mut doc, &patch.0).map_err(|e| {
        let i = e.operation;
        let failed = match e.kind {
            ::json_patch::PatchErrorKind::TestFailed => (
                PatchErrorKind::TestFailed,
                format!("the value at {} is not the one given", e.path),
            ),
            _ => (
                PatchErrorKind::NoTarget,
                format!("{} does not exist", e.path),
            ),
        };
        match patch.0.get(i) {
            Some(op) => PatchError::at(i, op, failed),
            None => PatchError::whole(failed.1),
        }
    })?;
    // `remove /expires_at` removed the member: the token never expires.
    if let Some(o) = doc.as_object_mut() {
        o.entry("expires_at").or_insert(Value::Null);
    }
    let patched: TokenView = serde_json::from_value(doc).map_err(|e| PatchError {
        index: patch.0.len().checked_sub(1),
        op: None,
        path: None,
        kind: PatchErrorKind::InvalidValue,
        reason: format!("the patched token is invalid: {e}"),
    })?;
    *view = patched;
    Ok(())
}

/// Whether the allow-list lets `op` through: its kind, its path, and its value.
fn allowed(op: &PatchOperation) -> OpResult<()> {
    let tokens: Vec<String> = op
        .path()
        .tokens()
        .map(|t| t.decoded().into_owned())
        .collect();
    let path = op.path().as_str();
    let field =
        match tokens.first() {
            Some(f) => f.as_str(),
            None if matches!(op, PatchOperation::Test(_)) => "",
            None => return Err((
                PatchErrorKind::ForbiddenPath,
                "the whole token cannot be replaced; patch /name, /scopes, /active or /expires_at"
                    .to_owned(),
            )),
        };
    let element = || match tokens.get(1) {
        Some(t) if t == "-" || array_index(t).is_some() => Ok(t.as_str()),
        Some(t) => Err((
            PatchErrorKind::NoTarget,
            format!("{t:?} is not an array index"),
        )),
        None => Err((PatchErrorKind::NoTarget, format!("{path} does not exist"))),
    };
    let value = match op {
        PatchOperation::Move(_) | PatchOperation::Copy(_) => {
            return Err((
                PatchErrorKind::Unsupported,
                "only add, remove, replace and test are supported".to_owned(),
            ))
        }
        // `test` reads: anything the token shows, compared by the crate.
        PatchOperation::Test(_) => return Ok(()),
        PatchOperation::Add(a) => Some(&a.value),
        PatchOperation::Replace(r) => Some(&r.value),
        PatchOperation::Remove(_) => None,
    };
    if !PATCHABLE.contains(&field) {
        let known = TokenView::FIELDS.contains(&field);
        return Err(if known {
            (
                PatchErrorKind::ForbiddenPath,
                format!("/{field} is read-only; patchable: /name, /scopes, /active, /expires_at"),
            )
        } else {
            (
                PatchErrorKind::UnknownPath,
                format!(
                    "/{field} is not a field of a token; patchable: /name, /scopes, /active, /expires_at"
                ),
            )
        });
    }
    match (value, field, tokens.len()) {
        (Some(v), _, 1) => check_field(field, v),
        (None, "expires_at", 1) => Ok(()),
        (None, "scopes", 1) => Err((
            PatchErrorKind::ForbiddenPath,
            "/scopes cannot be removed; replace it with [] for full access".to_owned(),
        )),
        (None, _, 1) => Err((
            PatchErrorKind::ForbiddenPath,
            format!("/{field} cannot be removed"),
        )),
        (v, "scopes", 2) => {
            let index = element()?;
            if index == "-" && !matches!(op, PatchOperation::Add(_)) {
                return Err((PatchErrorKind::NoTarget, format!("{path} does not exist")));
            }
            v.map_or(Ok(()), check_scope)
        }
        _ => Err((PatchErrorKind::NoTarget, format!("{path} does not exist"))),
    }
}

fn check_scope(v: &Value) -> OpResult<()> {
    let s = v.as_str().ok_or_else(|| {
        (
            PatchErrorKind::InvalidValue,
            "a scope is a string".to_owned(),
        )
    })?;
    s.parse::<Scope>()
        .map(drop)
        .map_err(|e| (PatchErrorKind::InvalidValue, e.to_string()))
}

fn check_field(field: &str, v: &Value) -> OpResult<()> {
    let bad = |m: &str| Err((PatchErrorKind::InvalidValue, m.to_owned()));
    match field {
        "name" => match v.as_str() {
            Some(s) => check_name(s).map_err(|m| (PatchErrorKind::InvalidValue, m)),
            None => bad("name is a string"),
        },
        "active" => match v {
            Value::Bool(_) => Ok(()),
            _ => bad("active is true or false"),
        },
        "expires_at" => match v {
            Value::Null => Ok(()),
            Value::String(s) => parse_rfc3339(s).map(drop).ok_or_else(|| {
                (
                    PatchErrorKind::InvalidValue,
                    format!(
                        "{:?} is not an RFC 3339 timestamp such as 2030-01-01T00:00:00Z",
                        cut(s)
                    ),
                )
            }),
            _ => bad("expires_at is an RFC 3339 timestamp or null"),
        },
        "scopes" => match v {
            Value::Array(items) => items.iter().try_for_each(check_scope),
            _ => bad("scopes is an array of scope strings"),
        },
        _ => bad("not patchable"),
    }
}

/// RFC 6901 array index: `0` or digits without a leading zero.
fn array_index(t: &str) -> Option<usize> {
    let ok = !t.is_empty()
        && t.bytes().all(|b| b.is_ascii_digit())
        && (t == "0" || !t.starts_with('0'))
        && t.len() <= 9;
    ok.then(|| t.parse().ok()).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Expiry, TokenId, TokenRecord};

    fn view() -> TokenView {
        let r = TokenRecord::new(
            TokenId::generate(),
            "alice",
            "ci",
            "repo:read read".parse().unwrap(),
            Expiry::Never,
            crate::token::SecretHash::of("s"),
            time::OffsetDateTime::UNIX_EPOCH,
        );
        TokenView::from(&r)
    }

    fn run(patch: &str) -> (TokenView, Result<(), PatchError>) {
        let mut v = view();
        let r = parse(patch.as_bytes()).and_then(|p| apply(&p, &mut v));
        (v, r)
    }

    #[test]
    fn good_patches() {
        let (v, r) = run(r#"[{"op":"add","path":"/scopes/0","value":"write"},
            {"op":"remove","path":"/scopes/2"},
            {"op":"replace","path":"/active","value":false},
            {"op":"add","path":"/expires_at","value":"2030-01-01T00:00:00Z"},
            {"op":"test","path":"/owner","value":"alice"},
            {"op":"test","path":"/scopes/1","value":"repo:read"}]"#);
        r.unwrap();
        assert_eq!(v.scopes, ["write", "repo:read"]);
        assert!(!v.active);
        assert!(v.expires_at.is_some());
        let (v, r) = run(r#"[{"op":"remove","path":"/expires_at"}]"#);
        r.unwrap();
        assert_eq!(v.expires_at, None);
    }

    #[test]
    fn bad_patches_name_the_operation_and_change_nothing() {
        for (patch, index, kind) in [
            (
                r#"[{"op":"replace","path":"/name","value":"x"},{"op":"replace","path":"/owner","value":"m"}]"#,
                Some(1),
                PatchErrorKind::ForbiddenPath,
            ),
            (
                r#"[{"op":"replace","path":"/id","value":"x"}]"#,
                Some(0),
                PatchErrorKind::ForbiddenPath,
            ),
            (
                r#"[{"op":"add","path":"/nope","value":1}]"#,
                Some(0),
                PatchErrorKind::UnknownPath,
            ),
            (
                r#"[{"op":"add","path":"/scopes/-","value":"Repo:X"}]"#,
                Some(0),
                PatchErrorKind::InvalidValue,
            ),
            (
                r#"[{"op":"remove","path":"/scopes/5"}]"#,
                Some(0),
                PatchErrorKind::NoTarget,
            ),
            (
                r#"[{"op":"test","path":"/name","value":"other"}]"#,
                Some(0),
                PatchErrorKind::TestFailed,
            ),
            (
                r#"[{"op":"move","from":"/name","path":"/name"}]"#,
                Some(0),
                PatchErrorKind::Unsupported,
            ),
            (
                r#"[{"op":"replace","path":"/active","value":"yes"}]"#,
                Some(0),
                PatchErrorKind::InvalidValue,
            ),
            (
                r#"[{"op":"replace","path":"/name"}]"#,
                Some(0),
                PatchErrorKind::Malformed,
            ),
            (
                r#"[{"op":"frob","path":"/name"}]"#,
                Some(0),
                PatchErrorKind::Malformed,
            ),
            (r#"{"op":"add"}"#, None, PatchErrorKind::Malformed),
            ("not json", None, PatchErrorKind::Malformed),
            (
                r#"[{"op":"replace","path":"name","value":"x"}]"#,
                Some(0),
                PatchErrorKind::Malformed,
            ),
            (
                r#"[{"op":"replace","path":"/scopes/01","value":"read"}]"#,
                Some(0),
                PatchErrorKind::NoTarget,
            ),
            (
                r#"[{"op":"replace","path":"","value":{}}]"#,
                Some(0),
                PatchErrorKind::ForbiddenPath,
            ),
        ] {
            let mut v = view();
            let before = v.clone();
            let err = parse(patch.as_bytes())
                .and_then(|p| apply(&p, &mut v))
                .unwrap_err();
            assert_eq!(err.index, index, "{patch}: {err}");
            assert_eq!(err.kind, kind, "{patch}: {err}");
            assert_eq!(v, before, "{patch}");
        }
    }

    #[test]
    fn pointer_escapes() {
        let p = parse(br#"[{"op":"test","path":"/a~1b/c~0","value":1}]"#).unwrap();
        let tokens: Vec<String> = p.0[0]
            .path()
            .tokens()
            .map(|t| t.decoded().into_owned())
            .collect();
        assert_eq!(tokens, ["a/b", "c~"]);
        assert!(parse(br#"[{"op":"test","path":"/a~2","value":1}]"#).is_err());
        assert_eq!(array_index("0"), Some(0));
        assert_eq!(array_index("012"), None);
        assert_eq!(array_index("99999999999999999999"), None);
    }
}
