//! JSON Patch (RFC 6902) over a [`TokenView`]: a pure, all-or-nothing [`apply`].
//!
//! `add`, `remove`, `replace` and `test` are supported; `add`/`remove`/`replace` may
//! touch only `/name`, `/scopes` (also `/scopes/-` and `/scopes/N`), `/active` and
//! `/expires_at` (`remove /expires_at` = never expires). `test` may read any field.
//! `move` and `copy` are refused. The patch runs on a copy; the view changes only when
//! every operation succeeded, and an error names the failing operation's index and op.
//!
//! ```
//! use tower_pat::manage::json_patch::{apply, parse};
//! # use tower_pat::manage::TokenView;
//! # fn view() -> TokenView {
//! #     let r = tower_pat::TokenRecord::new(tower_pat::TokenId::generate(), "alice", "ci",
//! #         Default::default(), tower_pat::Expiry::Never,
//! #         tower_pat::token::SecretHash::of("s"), time::OffsetDateTime::UNIX_EPOCH);
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

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::request::check_name;
use super::view::TokenView;
use crate::scope::Scope;

/// Most operations accepted in one patch.
pub const MAX_OPERATIONS: usize = 256;

/// The fields a patch may change.
pub const PATCHABLE: [&str; 4] = ["name", "scopes", "active", "expires_at"];

/// A JSON Patch operation name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "admin", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum PatchOp {
    /// Add a member or an array element (on an existing member: replace it).
    Add,
    /// Remove a member or an array element.
    Remove,
    /// Replace an existing value.
    Replace,
    /// Move a value (refused here).
    Move,
    /// Copy a value (refused here).
    Copy,
    /// Check that a value equals `value`.
    Test,
}

impl PatchOp {
    /// The name as written in a patch (`add`, `remove`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            PatchOp::Add => "add",
            PatchOp::Remove => "remove",
            PatchOp::Replace => "replace",
            PatchOp::Move => "move",
            PatchOp::Copy => "copy",
            PatchOp::Test => "test",
        }
    }
}

/// One operation of a JSON Patch document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "admin", derive(utoipa::ToSchema))]
pub struct PatchOperation {
    /// The operation.
    pub op: PatchOp,
    /// A JSON Pointer (RFC 6901), e.g. `/name` or `/scopes/-`.
    pub path: String,
    /// The value for `add`, `replace` and `test` (`null` is a value).
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(feature = "admin", schema(value_type = Option<Object>))]
    pub value: Option<Value>,
    /// The source pointer of `move` and `copy`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
}

/// Keeps an explicit `null` as `Some(Value::Null)` (absent stays `None`).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

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

/// Parses a JSON Patch document (a JSON array of operations). Errors name the index of
/// the malformed operation.
pub fn parse(body: &[u8]) -> Result<Vec<PatchOperation>, PatchError> {
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
            serde_json::from_value(item).map_err(|e| PatchError {
                index: Some(i),
                op,
                path,
                kind: PatchErrorKind::Malformed,
                reason: e.to_string(),
            })
        })
        .collect()
}

fn cut(s: &str) -> String {
    s.chars().take(128).collect()
}

type OpResult<T> = Result<T, (PatchErrorKind, String)>;

/// Applies `patch` to `view`, all or nothing: on error `view` is unchanged.
pub fn apply(patch: &[PatchOperation], view: &mut TokenView) -> Result<(), PatchError> {
    let mut doc = serde_json::to_value(&*view)
        .map_err(|e| PatchError::whole(format!("cannot represent the token: {e}")))?;
    for (i, op) in patch.iter().enumerate() {
        apply_one(&mut doc, op).map_err(|(kind, reason)| PatchError {
            index: Some(i),
            op: Some(op.op.as_str().to_owned()),
            path: Some(cut(&op.path)),
            kind,
            reason,
        })?;
    }
    let patched: TokenView = serde_json::from_value(doc).map_err(|e| PatchError {
        index: patch.len().checked_sub(1),
        op: None,
        path: None,
        kind: PatchErrorKind::InvalidValue,
        reason: format!("the patched token is invalid: {e}"),
    })?;
    *view = patched;
    Ok(())
}

fn apply_one(doc: &mut Value, op: &PatchOperation) -> OpResult<()> {
    let tokens = parse_pointer(&op.path)?;
    if op.op == PatchOp::Test {
        let want = value_of(op)?;
        let got = resolve(doc, &tokens).ok_or_else(|| {
            (
                PatchErrorKind::NoTarget,
                format!("{} does not exist", op.path),
            )
        })?;
        if got != want {
            return Err((
                PatchErrorKind::TestFailed,
                format!("the value at {} is {got}, not {want}", op.path),
            ));
        }
        return Ok(());
    }
    if matches!(op.op, PatchOp::Move | PatchOp::Copy) {
        return Err((
            PatchErrorKind::Unsupported,
            "only add, remove, replace and test are supported".to_owned(),
        ));
    }
    let Some(field) = tokens.first().map(String::as_str) else {
        return Err((
            PatchErrorKind::ForbiddenPath,
            "the whole token cannot be replaced; patch /name, /scopes, /active or /expires_at"
                .to_owned(),
        ));
    };
    if !PATCHABLE.contains(&field) {
        let known = doc.get(field).is_some();
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
    let obj = doc.as_object_mut().ok_or_else(|| {
        (
            PatchErrorKind::Malformed,
            "the token is not an object".to_owned(),
        )
    })?;
    match (op.op, field, tokens.len()) {
        (PatchOp::Add | PatchOp::Replace, _, 1) => {
            let v = value_of(op)?.clone();
            check_field(field, &v)?;
            obj.insert(field.to_owned(), v);
            Ok(())
        }
        (PatchOp::Remove, "expires_at", 1) => {
            obj.insert(field.to_owned(), Value::Null);
            Ok(())
        }
        (PatchOp::Remove, "scopes", 1) => Err((
            PatchErrorKind::ForbiddenPath,
            "/scopes cannot be removed; replace it with [] for full access".to_owned(),
        )),
        (PatchOp::Remove, _, 1) => Err((
            PatchErrorKind::ForbiddenPath,
            format!("/{field} cannot be removed"),
        )),
        (_, "scopes", 2) => {
            let arr = obj
                .get_mut("scopes")
                .and_then(Value::as_array_mut)
                .ok_or_else(|| {
                    (
                        PatchErrorKind::Malformed,
                        "scopes is not an array".to_owned(),
                    )
                })?;
            scopes_element(arr, op, &tokens[1])
        }
        _ => Err((
            PatchErrorKind::NoTarget,
            format!("{} does not exist", op.path),
        )),
    }
}

fn scopes_element(arr: &mut Vec<Value>, op: &PatchOperation, token: &str) -> OpResult<()> {
    let len = arr.len();
    let index = if token == "-" {
        None
    } else {
        Some(array_index(token).ok_or_else(|| {
            (
                PatchErrorKind::NoTarget,
                format!("{token:?} is not an array index"),
            )
        })?)
    };
    let missing = || {
        (
            PatchErrorKind::NoTarget,
            format!("{} does not exist (the token has {len} scopes)", op.path),
        )
    };
    match op.op {
        PatchOp::Add => {
            let v = value_of(op)?.clone();
            check_scope(&v)?;
            match index {
                None => arr.push(v),
                Some(i) if i <= len => arr.insert(i, v),
                Some(_) => return Err(missing()),
            }
        }
        PatchOp::Replace => {
            let v = value_of(op)?.clone();
            check_scope(&v)?;
            match index {
                Some(i) if i < len => arr[i] = v,
                _ => return Err(missing()),
            }
        }
        PatchOp::Remove => match index {
            Some(i) if i < len => {
                arr.remove(i);
            }
            _ => return Err(missing()),
        },
        _ => return Err(missing()),
    }
    Ok(())
}

fn value_of(op: &PatchOperation) -> OpResult<&Value> {
    op.value.as_ref().ok_or_else(|| {
        (
            PatchErrorKind::Malformed,
            format!("{} needs a \"value\"", op.op.as_str()),
        )
    })
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
            Value::String(s) => super::error::parse_rfc3339(s).map(drop).ok_or_else(|| {
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

fn parse_pointer(p: &str) -> OpResult<Vec<String>> {
    if p.is_empty() {
        return Ok(Vec::new());
    }
    let Some(rest) = p.strip_prefix('/') else {
        return Err((
            PatchErrorKind::Malformed,
            format!(
                "{:?} is not a JSON Pointer (it must start with '/')",
                cut(p)
            ),
        ));
    };
    rest.split('/')
        .map(|t| {
            let mut out = String::with_capacity(t.len());
            let mut chars = t.chars();
            while let Some(c) = chars.next() {
                match (c, c == '~') {
                    (_, false) => out.push(c),
                    (_, true) => match chars.next() {
                        Some('0') => out.push('~'),
                        Some('1') => out.push('/'),
                        _ => {
                            return Err((
                                PatchErrorKind::Malformed,
                                "'~' must be followed by 0 or 1 in a JSON Pointer".to_owned(),
                            ))
                        }
                    },
                }
            }
            Ok(out)
        })
        .collect()
}

fn resolve<'a>(mut v: &'a Value, tokens: &[String]) -> Option<&'a Value> {
    for t in tokens {
        v = match v {
            Value::Object(m) => m.get(t)?,
            Value::Array(a) => a.get(array_index(t)?)?,
            _ => return None,
        };
    }
    Some(v)
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
        assert_eq!(parse_pointer("/a~1b/c~0").unwrap(), ["a/b", "c~"]);
        assert!(parse_pointer("/a~2").is_err());
        assert_eq!(array_index("0"), Some(0));
        assert_eq!(array_index("012"), None);
        assert_eq!(array_index("99999999999999999999"), None);
    }
}
