//! Property tests for every parser: round-trips of what we print, and for any input
//! either `Ok` or a typed error, never a panic.

use base64::Engine as _;
use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderValue, StatusCode};
use proptest::prelude::*;
use serde_json::{json, Value};
use tower_pat::credentials::{decode_basic, parse_authorization, Credentials, ParseOptions};
use tower_pat::manage::TokenView;
use tower_pat::manage::{apply_patch as apply, parse_patch, PatchErrorKind};
use tower_pat::parse_duration;
use tower_pat::Challenge;
use tower_pat::{Expiry, Rejection, TokenId, TokenRecord};
use tower_pat::{NodePerm, Scope, ScopeHierarchy, ScopeSet};
use tower_pat::{SecretHash, TokenFormat, TokenFormatError};

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..max)
}

/// A lower-case base62 alphabet segment as scopes allow it: `[a-z0-9_][a-z0-9_-]*`.
fn segment() -> impl Strategy<Value = String> {
    "[a-z0-9_][a-z0-9_-]{0,9}"
}

/// A valid scope of any family, as a string.
fn valid_scope() -> impl Strategy<Value = String> {
    let action = segment();
    let resource_action = (proptest::collection::vec(segment(), 1..4), segment())
        .prop_filter("node: is the node family", |(r, _)| r[0] != "node")
        .prop_map(|(r, a)| format!("{}:{a}", r.join(":")));
    let node = (any::<u128>(), 0..3usize).prop_map(|(id, p)| {
        let perm = ["r", "w", "rw"][p];
        format!("node:{}:{perm}", uuid::Uuid::from_u128(id).hyphenated())
    });
    let any_action =
        proptest::collection::vec(segment(), 1..3).prop_map(|r| format!("{}:*", r.join(":")));
    prop_oneof![
        Just("*".to_owned()),
        action,
        resource_action,
        node,
        any_action,
    ]
}

fn headers_with(value: HeaderValue) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(AUTHORIZATION, value);
    h
}

fn view() -> TokenView {
    let record = TokenRecord::new(
        TokenId::generate(),
        "alice",
        "ci",
        "repo:read".parse().unwrap(),
        Expiry::Never,
        SecretHash::of("s"),
        time::OffsetDateTime::UNIX_EPOCH,
    );
    TokenView::from(&record)
}

/// A JSON Patch operation drawn from paths and values that hit every branch of `apply`.
fn patch_op() -> impl Strategy<Value = Value> {
    let ops = prop::sample::select(vec![
        "add", "remove", "replace", "test", "move", "copy", "bogus",
    ]);
    let paths = prop::sample::select(vec![
        "",
        "/",
        "/name",
        "/scopes",
        "/scopes/-",
        "/scopes/0",
        "/scopes/1",
        "/scopes/01",
        "/scopes/99999999999999999999",
        "/active",
        "/expires_at",
        "/owner",
        "/id",
        "/secret_hash",
        "/nope",
        "/name/x",
        "name",
        "/scopes/~1",
        "/~0",
    ]);
    let values = prop::sample::select(vec![
        json!(null),
        json!("deploy"),
        json!(""),
        json!("repo:write"),
        json!("Repo:Write"),
        json!(["repo:read", "node:0b0f8d7e-3f44-4c4e-9d0e-0f6f0b8d2a11:rw"]),
        json!(["bad scope"]),
        json!(true),
        json!(7),
        json!("2030-01-01T00:00:00Z"),
        json!("yesterday"),
        json!({"a": 1}),
    ]);
    (ops, paths, proptest::option::of(values)).prop_map(|(op, path, value)| {
        let mut o = json!({"op": op, "path": path});
        if let Some(v) = value {
            o["value"] = v;
        }
        o
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn token_mint_parse_round_trip(prefix in "[a-z0-9]{1,16}") {
        let format = TokenFormat::with_prefix(&prefix).unwrap();
        let minted = format.mint();
        let token = minted.token.expose();
        prop_assert_eq!(token.len(), format.token_len());
        let head = format!("{prefix}_");
        prop_assert!(token.starts_with(&head));
        let parsed = format.parse(token).unwrap();
        prop_assert_eq!(parsed.id, minted.id);
        prop_assert_eq!(parsed.secret_hash(), minted.secret_hash);
        // Another prefix never accepts it.
        let other_prefix = match prefix.len() {
            16 if prefix.ends_with('x') => format!("{}y", &prefix[..15]),
            16 => format!("{}x", &prefix[..15]),
            _ => format!("{prefix}x"),
        };
        let other = TokenFormat::with_prefix(&other_prefix).unwrap();
        prop_assert!(other.parse(token).is_err());
    }

    #[test]
    fn any_single_character_change_is_caught_without_io(pos in any::<prop::sample::Index>(), c in "[0-9A-Za-z_]") {
        let format = TokenFormat::default();
        let token = format.mint().token.expose().to_owned();
        let i = pos.index(token.len());
        let c = c.chars().next().unwrap();
        prop_assume!(token.as_bytes()[i] != c as u8);
        let mut changed = token.into_bytes();
        changed[i] = c as u8;
        let changed = String::from_utf8(changed).unwrap();
        prop_assert!(format.parse(&changed).is_err(), "{} accepted", i);
    }

    #[test]
    fn truncated_or_extended_tokens_are_refused(cut in 1usize..40, extra in "[0-9A-Za-z]{1,8}") {
        let format = TokenFormat::default();
        let token = format.mint().token.expose().to_owned();
        let short = &token[..token.len() - cut.min(token.len())];
        prop_assert!(format.parse(short).is_err());
        prop_assert_eq!(
            format.parse(&format!("{token}{extra}")).unwrap_err(),
            TokenFormatError::Length
        );
    }

    #[test]
    fn token_parse_any_string_is_ok_or_typed_error(s in any::<String>(), b in bytes(80)) {
        let format = TokenFormat::default();
        let lossy = String::from_utf8_lossy(&b);
        for input in [s.as_str(), &lossy, &format!("pat_{s}")] {
            match format.parse(input) {
                Ok(p) => prop_assert!(input.contains(p.id.as_str())),
                Err(e) => prop_assert!(!e.to_string().is_empty()),
            }
        }
    }

    #[test]
    fn scope_format_parse_round_trip(s in valid_scope()) {
        let scope: Scope = s.parse().unwrap();
        prop_assert_eq!(scope.to_string(), s.clone());
        let again: Scope = scope.to_string().parse().unwrap();
        prop_assert_eq!(&again, &scope);
        prop_assert!(scope.implies(&scope, &ScopeHierarchy::default()));
        // Serde goes through the same grammar.
        let json = serde_json::to_string(&scope).unwrap();
        prop_assert_eq!(serde_json::from_str::<Scope>(&json).unwrap(), scope);
    }

    #[test]
    fn scope_set_round_trip(list in proptest::collection::vec(valid_scope(), 0..6), comma in any::<bool>()) {
        let text = list.join(if comma { "," } else { " " });
        let set: ScopeSet = text.parse().unwrap();
        let again: ScopeSet = set.to_string().parse().unwrap();
        prop_assert_eq!(again, set);
    }

    #[test]
    fn node_scopes_grant_only_their_node(a in any::<u128>(), b in any::<u128>()) {
        prop_assume!(a != b);
        let h = ScopeHierarchy::default();
        let (a, b) = (uuid::Uuid::from_u128(a), uuid::Uuid::from_u128(b));
        let rw = Scope::node(a, NodePerm::READ_WRITE);
        prop_assert!(rw.implies(&Scope::node(a, NodePerm::READ), &h));
        prop_assert!(rw.implies(&Scope::node(a, NodePerm::WRITE), &h));
        prop_assert!(!rw.implies(&Scope::node(b, NodePerm::READ), &h));
        prop_assert!(!Scope::node(a, NodePerm::READ).implies(&Scope::node(a, NodePerm::WRITE), &h));
    }

    #[test]
    fn scope_parse_any_string_is_ok_or_typed_error(s in any::<String>(), b in bytes(200)) {
        let lossy = String::from_utf8_lossy(&b);
        for input in [s.as_str(), &lossy] {
            match input.parse::<Scope>() {
                Ok(scope) => prop_assert_eq!(scope.to_string(), input),
                Err(e) => prop_assert!(e.scope.chars().count() <= 128),
            }
            if let Ok(set) = input.parse::<ScopeSet>() {
                let again: ScopeSet = set.to_string().parse().unwrap();
                prop_assert_eq!(again, set);
            }
        }
    }

    #[test]
    fn scope_strings_outside_the_grammar_are_refused(
        s in valid_scope(),
        junk in prop::sample::select(vec!["A", "{", "}", "..", " ", ",", "/", "\0", "é", "::"]),
        at in any::<prop::sample::Index>(),
    ) {
        let mut chars: Vec<char> = s.chars().collect();
        let i = at.index(chars.len() + 1);
        for (k, c) in junk.chars().enumerate() {
            chars.insert(i + k, c);
        }
        let bad: String = chars.into_iter().collect();
        // `..`, `:` pairs and the like are never valid; a lone `-` or `_` could be, so the
        // junk set holds none of those.
        prop_assert!(bad.parse::<Scope>().is_err(), "{:?} accepted", bad);
    }

    #[test]
    fn duration_round_trip(n in 1u64..100_000, unit in 0..6usize) {
        let (suffix, mult) = [("", 1), ("s", 1), ("m", 60), ("h", 3_600), ("d", 86_400), ("w", 604_800)][unit];
        let secs = n * mult;
        let parsed = parse_duration(&format!("{n}{suffix}"));
        prop_assert_eq!(parsed.unwrap().as_secs(), secs);
        // A leading zero is refused, as the OpenAPI document's pattern says.
        let padded = format!("0{n}{suffix}");
        prop_assert!(parse_duration(&padded).is_err());
    }

    #[test]
    fn duration_any_string_is_ok_or_typed_error(s in any::<String>(), d in "[0-9]{0,30}[smhdwy ]?") {
        for input in [s.as_str(), d.as_str()] {
            match parse_duration(input) {
                Ok(dur) => prop_assert!(dur.as_secs() > 0 && !input.starts_with('0')),
                Err(e) => prop_assert!(e.input.chars().count() <= 64),
            }
        }
    }

    #[test]
    fn authorization_any_bytes_is_ok_or_typed_error(b in bytes(300), scheme in prop::sample::select(vec!["", "Bearer ", "bearer ", "Basic ", "BASIC "])) {
        let mut value = scheme.as_bytes().to_vec();
        value.extend_from_slice(&b);
        let Ok(header) = HeaderValue::from_bytes(&value) else {
            return Ok(()); // http refuses it before the parser sees it
        };
        for options in [ParseOptions::default(), ParseOptions { max_len: 32, ..Default::default() }] {
            match parse_authorization(&headers_with(header.clone()), &options) {
                Ok(None) => {}
                Ok(Some(Credentials::Bearer(t))) => {
                    prop_assert!(!t.is_empty() && !t.contains([' ', ',', '"', '\t']));
                    prop_assert!(value.len() <= options.max_len);
                }
                Ok(Some(Credentials::Basic { username, password })) => {
                    prop_assert!(!username.contains(':'));
                    prop_assert!(!password.expose().chars().any(char::is_control));
                }
                Err(e) => {
                    let r = Rejection::from_credentials_error(e, Challenge::default());
                    prop_assert_eq!(r.status(), StatusCode::BAD_REQUEST);
                }
            }
        }
    }

    #[test]
    fn basic_any_bytes_is_ok_or_typed_error(b in bytes(200), s in any::<String>()) {
        let encoded = base64::engine::general_purpose::STANDARD.encode(&b);
        for input in [encoded.as_str(), s.as_str()] {
            match decode_basic(input) {
                Ok((user, password)) => {
                    // Splits on the first colon: user:password gives back the decoded text.
                    let decoded = base64::engine::general_purpose::STANDARD.decode(input).unwrap();
                    prop_assert_eq!(format!("{user}:{}", password.expose()).into_bytes(), decoded);
                    prop_assert!(!user.contains(':'));
                }
                Err(e) => prop_assert!(!e.to_string().is_empty()),
            }
        }
    }

    #[test]
    fn basic_round_trip(user in "[^:\\p{Cc}]{0,20}", password in "[^\\p{Cc}]{0,60}") {
        let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        let (u, p) = decode_basic(&encoded).unwrap();
        prop_assert_eq!(u, user);
        prop_assert_eq!(p.expose(), password);
    }

    #[test]
    fn json_patch_any_bytes_is_ok_or_typed_error(b in bytes(300)) {
        if let Ok(patch) = parse_patch(&b) {
            let mut v = view();
            let before = v.clone();
            if apply(&patch, &mut v).is_err() {
                prop_assert_eq!(v, before);
            }
        }
    }

    #[test]
    fn json_patch_is_all_or_nothing(ops in proptest::collection::vec(patch_op(), 0..6)) {
        let body = serde_json::to_vec(&Value::Array(ops)).unwrap();
        let mut v = view();
        let before = v.clone();
        match parse_patch(&body) {
            Err(e) => prop_assert_eq!(e.kind, PatchErrorKind::Malformed),
            Ok(patch) => match apply(&patch, &mut v) {
                Ok(()) => {
                    // Read-only fields never change.
                    prop_assert_eq!(&v.id, &before.id);
                    prop_assert_eq!(&v.owner, &before.owner);
                    prop_assert_eq!(v.created, before.created);
                    for s in &v.scopes {
                        prop_assert!(s.parse::<Scope>().is_ok(), "{} stored", s);
                    }
                }
                Err(e) => {
                    prop_assert_eq!(&v, &before);
                    prop_assert!(e.index.map_or(true, |i| i < patch.len()));
                }
            },
        }
    }
}
