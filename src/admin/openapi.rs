//! The OpenAPI document as served: [`AdminApi`]'s, generated from the types, with what
//! utoipa cannot say from them written in here (string patterns, bounds, the JSON Patch
//! operations the router takes, mutually exclusive fields, every answer of the layer in
//! front; every error answer is declared here, once). The document is the contract: schemathesis (`--checks all`, in `.ci/run`)
//! checks that every schema-valid request is accepted and every invalid one refused.

use serde_json::{json, Map, Value};
use utoipa::OpenApi;

use super::router::AdminApi;
use crate::manage::TokenView;
use crate::scope::MAX_SCOPE_LEN;
use crate::store::ListQuery;

/// A scope, exactly as [`Scope`](crate::Scope)'s parser takes it.
const SCOPE_PATTERN: &str = concat!(
    r"^(\*|node:\*|node:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}:(r|w|rw)",
    r"|(?!node:)[a-z0-9_][a-z0-9_-]*(:[a-z0-9_][a-z0-9_-]*)*(:\*)?)$"
);
/// A duration, exactly as [`parse_duration`](crate::expiry::parse_duration) takes it.
const DURATION_PATTERN: &str = r"^[1-9][0-9]{0,11}[smhdw]?$";
/// No control characters (Unicode `Cc`, as `char::is_control`).
const NAME_PATTERN: &str = r"^[^\u0000-\u001f\u007f-\u009f]*$";
/// No control characters and no `:` (Basic auth splits on it).
const OWNER_PATTERN: &str = r"^[^\u0000-\u001f\u007f-\u009f:]*$";
/// An RFC 3339 date-time, as the server parses it (a calendar check is left to `format`).
const DATE_TIME_PATTERN: &str = concat!(
    r"^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])[Tt]([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]",
    r"(\.[0-9]+)?([Zz]|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$"
);
/// A token id: 16 base62 characters.
const ID_PATTERN: &str = "^[0-9A-Za-z]{16}$";
/// The most seconds `validity_seconds` and `auto_refresh_seconds` take (100 years).
const MAX_SECONDS: u64 = 100 * 366 * 86_400;
/// The document served at `GET /personal-access-tokens/openapi.json`.
pub fn document() -> Value {
    let mut doc = serde_json::to_value(AdminApi::openapi()).unwrap_or_else(|_| json!({}));
    schemas(&mut doc);
    paths(&mut doc);
    doc
}

fn scope() -> Value {
    json!({"type": "string", "minLength": 1, "maxLength": MAX_SCOPE_LEN, "pattern": SCOPE_PATTERN})
}

fn name() -> Value {
    json!({"type": "string", "maxLength": crate::manage::MAX_NAME_LEN, "pattern": NAME_PATTERN})
}

fn date_time(nullable: bool) -> Value {
    if nullable {
        json!({"type": ["string", "null"], "format": "date-time", "pattern": DATE_TIME_PATTERN})
    } else {
        json!({"type": "string", "format": "date-time", "pattern": DATE_TIME_PATTERN})
    }
}

/// Both fields present and meant (not `null`, not `false`).
fn both(a: &str, b: &str) -> Value {
    let meant = |f: &str| match f {
        "never_expires" => json!({"const": true}),
        "validity_seconds" | "auto_refresh_seconds" => json!({"type": "integer"}),
        _ => json!({"type": "string"}),
    };
    json!({"required": [a, b], "properties": {a: meant(a), b: meant(b)}})
}

fn schemas(doc: &mut Value) {
    let Some(s) = doc
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    s.insert("Scope".into(), scope());
    s.insert(
        "Duration".into(),
        json!({"type": "string", "pattern": DURATION_PATTERN, "examples": ["20d", "12h", "90s"]}),
    );
    if let Some(c) = s.get_mut("CreateTokenRequest") {
        let seconds = json!({"type": ["integer", "null"], "minimum": 1, "maximum": MAX_SECONDS});
        set_properties(
            c,
            &[
                (
                    "owner",
                    json!({"type": ["string", "null"], "minLength": 1,
                    "maxLength": crate::manage::MAX_OWNER_LEN, "pattern": OWNER_PATTERN}),
                ),
                ("name", name()),
                (
                    "scopes",
                    json!({"type": "array", "items": {"$ref": "#/components/schemas/Scope"}}),
                ),
                (
                    "expire",
                    json!({"type": ["string", "null"], "pattern": DURATION_PATTERN}),
                ),
                ("validity_seconds", seconds.clone()),
                ("expires_at", date_time(true)),
                ("auto_refresh_seconds", seconds),
                ("never_expires", json!({"type": "boolean"})),
            ],
        );
        let exclusive = ["expire", "validity_seconds", "expires_at", "never_expires"];
        let mut pairs = Vec::new();
        for (i, a) in exclusive.iter().enumerate() {
            for b in &exclusive[i + 1..] {
                pairs.push(both(a, b));
            }
        }
        pairs.push(both("auto_refresh_seconds", "never_expires"));
        if let Some(o) = c.as_object_mut() {
            o.insert("additionalProperties".into(), json!(false));
            o.insert("not".into(), json!({"anyOf": pairs}));
        }
    }
    if let Some(r) = s.get_mut("RotateRequest") {
        set_properties(
            r,
            &[
                (
                    "grace",
                    json!({"type": ["string", "null"], "pattern": DURATION_PATTERN}),
                ),
                ("new_id", json!({"type": "boolean"})),
            ],
        );
        if let Some(o) = r.as_object_mut() {
            o.insert("additionalProperties".into(), json!(false));
        }
    }
    s.insert("PatchOperation".into(), patch_operation());
    if let Some(e) = s.get_mut("ErrorBody") {
        // The layer in front answers `{error, message}`; the router adds `details`.
        if let Some(o) = e.as_object_mut() {
            o.insert("required".into(), json!(["error", "message"]));
        }
    }
    if let Some(v) = s.get_mut("TokenView") {
        set_properties(
            v,
            &[(
                "expiry",
                json!({"type": "string", "enum": ["never", "hard_limit", "auto_refresh"]}),
            )],
        );
    }
}

/// Replaces the schemas of these properties, keeping their descriptions.
fn set_properties(schema: &mut Value, props: &[(&str, Value)]) {
    let Some(p) = schema.get_mut("properties").and_then(Value::as_object_mut) else {
        return;
    };
    for (k, v) in props {
        let description = p.get(*k).and_then(|old| old.get("description")).cloned();
        let mut v = v.clone();
        if let (Some(d), Some(o)) = (description, v.as_object_mut()) {
            o.insert("description".into(), d);
        }
        p.insert((*k).to_owned(), v);
    }
}

/// The operations [`json_patch`](crate::manage::json_patch) applies, one alternative
/// per target: what each may be, exactly. Unknown members are ignored (RFC 6902 §4).
fn patch_operation() -> Value {
    let op = |ops: &[&str], path: Value, value: Option<Value>| {
        let mut props = Map::new();
        props.insert("op".into(), json!({"type": "string", "enum": ops}));
        props.insert("path".into(), path);
        let mut required = vec!["op", "path"];
        if let Some(v) = value {
            props.insert("value".into(), v);
            required.push("value");
        }
        json!({"type": "object", "properties": props, "required": required})
    };
    let path = |p: &str| json!({"type": "string", "const": p});
    let element = |first: &str| json!({"type": "string", "pattern": format!("^/scopes/({first}0|[1-9][0-9]*)$")});
    let set = ["add", "replace"];
    let view_fields: Vec<String> = TokenView::FIELDS.iter().map(|f| format!("/{f}")).collect();
    json!({
        "description": "One operation of a JSON Patch (RFC 6902): add or replace /name, /active, /expires_at (null: never) or /scopes; add (/scopes/- appends), replace or remove one scope; remove /expires_at; test any field. A test that fails, or an element that does not exist, is 409.",
        "anyOf": [
            op(&set, path("/name"), Some(name())),
            op(&set, path("/active"), Some(json!({"type": "boolean"}))),
            op(&set, path("/expires_at"), Some(date_time(true))),
            op(&set, path("/scopes"), Some(json!({"type": "array", "items": {"$ref": "#/components/schemas/Scope"}}))),
            op(&["add"], element("-|"), Some(json!({"$ref": "#/components/schemas/Scope"}))),
            op(&["replace"], element(""), Some(json!({"$ref": "#/components/schemas/Scope"}))),
            op(&["remove"], element(""), None),
            op(&["remove"], path("/expires_at"), None),
            op(&["test"], json!({"type": "string", "enum": view_fields}), Some(json!({}))),
            op(&["test"], element(""), Some(json!({}))),
        ]
    })
}

/// `POST …/revoke`: outside the layer, so none of its answers and no security; its own
/// refusals, and a required body.
fn revoke_path(doc: &mut Value, base: &str) {
    let Some(o) = doc
        .get_mut("paths")
        .and_then(|p| p.get_mut(format!("{base}/revoke")))
        .and_then(|p| p.get_mut("post"))
    else {
        return;
    };
    if let Some(responses) = o.get_mut("responses").and_then(Value::as_object_mut) {
        for (status, description) in [
            (
                "400",
                "Not a JSON object with a `tokens` array of at most 1,000 strings",
            ),
            ("415", "Not application/json"),
            ("429", "Too many reports from this client; see Retry-After"),
            ("503", "Token store unavailable; see Retry-After"),
        ] {
            responses.insert(status.to_owned(), error(description));
        }
    }
    if let Some(o) = o.as_object_mut() {
        o.insert("security".into(), json!([]));
        if let Some(b) = o.get_mut("requestBody").and_then(Value::as_object_mut) {
            b.insert("required".into(), json!(true));
        }
    }
}

/// The answers of the layer in front, on every route.
fn layer_answers() -> [(&'static str, &'static str); 4] {
    [
        ("400", "Malformed Authorization header"),
        ("401", "No valid token"),
        (
            "429",
            "Too many failed attempts from this client; see Retry-After",
        ),
        ("503", "Token store unavailable; see Retry-After"),
    ]
}

fn error(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
    })
}

/// A route, its method, and the answers it adds to the layer's.
type Operation = (
    String,
    &'static str,
    &'static [(&'static str, &'static str)],
);

fn paths(doc: &mut Value) {
    let base = crate::admin::BASE;
    revoke_path(doc, base);
    let ops: [Operation; 9] = [
        (base.to_owned(), "post", &[
            ("400", "Bad input (names the field or scope), or no JSON body"),
            ("403", "insufficient_scope (pat:write, or pat:admin for another owner), a scope the caller's token lacks, an end after the caller's own, or refused by the expiry policy"),
            ("415", "Not application/json"),
        ]),
        (base.to_owned(), "get", &[
            ("400", "Unknown filter field or bad value"),
            ("403", "insufficient_scope: pat:read, or pat:admin for another owner"),
        ]),
        (format!("{base}/openapi.json"), "get", &[]),
        (format!("{base}/events"), "get", &[
            ("400", "Unknown filter field or bad value"),
            ("403", "insufficient_scope: pat:read, or pat:admin for another owner"),
        ]),
        (format!("{base}/{{id}}/events"), "get", &[
            ("400", "An unknown filter field or bad value"),
            ("403", "insufficient_scope: pat:read"),
            ("404", "No such token (or no longer: see /events?token_id=), or another user's"),
        ]),
        (format!("{base}/{{id}}"), "get", &[
            ("403", "insufficient_scope: pat:read"),
            ("404", "No such token, or another user's"),
        ]),
        (format!("{base}/{{id}}"), "patch", &[
            ("400", "A malformed or forbidden operation (names its index and op)"),
            ("403", "insufficient_scope (pat:write), a scope the caller's token lacks, an end after the caller's own, or refused by the expiry policy"),
            ("404", "No such token, or another user's"),
            ("409", "A failed test, an element that does not exist, or a concurrent change to the same fields"),
            ("412", "If-Match names another version"),
            ("415", "Not application/json-patch+json"),
        ]),
        (format!("{base}/{{id}}"), "delete", &[
            ("403", "insufficient_scope: pat:write"),
            ("404", "No such token, or another user's"),
            ("412", "If-Match names another version"),
        ]),
        (format!("{base}/{{id}}/rotate"), "post", &[
            ("400", "Bad grace period, or a body that is not a JSON object"),
            ("403", "insufficient_scope: pat:write"),
            ("404", "No such token, or another user's"),
            ("409", "A concurrent rotation"),
            ("412", "If-Match names another version"),
        ]),
    ];
    for (path, method, extra) in ops {
        let Some(o) = doc
            .get_mut("paths")
            .and_then(|p| p.get_mut(&path))
            .and_then(|p| p.get_mut(method))
        else {
            continue;
        };
        if let Some(responses) = o.get_mut("responses").and_then(Value::as_object_mut) {
            for (status, description) in layer_answers().iter().chain(extra.iter()) {
                responses
                    .entry((*status).to_owned())
                    .or_insert_with(|| error(description));
                if let Some(d) = responses
                    .get_mut(*status)
                    .and_then(|r| r.get_mut("description"))
                {
                    *d = json!(description);
                }
            }
        }
        o.as_object_mut()
            .map(|o| o.insert("security".into(), json!([{"bearer": []}])));
        if method == "post" && path == base {
            if let Some(b) = o.get_mut("requestBody").and_then(Value::as_object_mut) {
                b.insert("required".into(), json!(true));
            }
        }
        if let Some(params) = o.get_mut("parameters").and_then(Value::as_array_mut) {
            for p in params {
                let schema = match p.get("name").and_then(Value::as_str) {
                    Some("scope") => scope(),
                    Some("expires__lt" | "expires__gt" | "last_used__lte") => date_time(false),
                    Some("last_used__isnull" | "active") => json!({"type": "boolean"}),
                    Some("last_used_ip") => json!({"type": "string",
                        "anyOf": [{"format": "ipv4"}, {"format": "ipv6"}]}),
                    Some("expires_within") => {
                        json!({"type": "string", "pattern": DURATION_PATTERN})
                    }
                    Some("since" | "until") => json!({"type": "string",
                        "anyOf": [date_time(false), {"pattern": DURATION_PATTERN}]}),
                    Some("type") => json!({"type": "string",
                        "enum": crate::manage::filter::EVENT_TYPES}),
                    Some("token_id") => json!({"type": "string", "pattern": ID_PATTERN}),
                    Some("owner") => json!({"type": "string",
                        "maxLength": crate::manage::MAX_OWNER_LEN, "pattern": OWNER_PATTERN}),
                    Some("order_by") => {
                        let fields = ["created", "last_used", "expires", "expires_at", "name"];
                        let all: Vec<String> = fields
                            .iter()
                            .flat_map(|f| [(*f).to_owned(), format!("-{f}")])
                            .collect();
                        json!({"type": "string", "enum": all})
                    }
                    Some("page") => json!({"type": "integer", "minimum": 1, "maximum": u32::MAX}),
                    Some("page_size") => json!({"type": "integer", "minimum": 1,
                        "maximum": ListQuery::MAX_PAGE_SIZE, "default": 25}),
                    _ => continue,
                };
                if let Some(o) = p.as_object_mut() {
                    o.insert("schema".into(), schema);
                }
            }
        }
    }
    let body = format!(
        "/paths/{}~1{{id}}/patch/requestBody",
        base.replace('/', "~1")
    );
    if let Some(b) = doc.pointer_mut(&body) {
        b["required"] = json!(true);
        if let Some(s) = b.pointer_mut("/content/application~1json-patch+json/schema") {
            *s = json!({"type": "array", "maxItems": crate::manage::json_patch::MAX_OPERATIONS,
                "items": {"$ref": "#/components/schemas/PatchOperation"}});
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_states_the_contract() {
        let doc = document();
        let create = &doc["components"]["schemas"]["CreateTokenRequest"];
        assert_eq!(create["additionalProperties"], false);
        assert_eq!(create["not"]["anyOf"].as_array().unwrap().len(), 7);
        assert_eq!(create["properties"]["expire"]["pattern"], DURATION_PATTERN);
        let post = &doc["paths"]["/personal-access-tokens"]["post"];
        assert_eq!(post["requestBody"]["required"], true);
        for status in ["201", "400", "401", "403", "415", "429", "503"] {
            assert!(post["responses"][status].is_object(), "{status}");
        }
        let patch = &doc["paths"]["/personal-access-tokens/{id}"]["patch"];
        for status in ["409", "412"] {
            assert!(patch["responses"][status].is_object(), "{status}");
        }
        assert_eq!(
            patch["requestBody"]["content"]["application/json-patch+json"]["schema"]["items"]
                ["$ref"],
            "#/components/schemas/PatchOperation"
        );
        let params = doc["paths"]["/personal-access-tokens"]["get"]["parameters"]
            .as_array()
            .unwrap();
        let page = params.iter().find(|p| p["name"] == "page").unwrap();
        assert_eq!(page["schema"]["minimum"], 1);
    }
}
