//! Arbitrary bytes as an `Authorization` header value, through `parse_authorization`.
#![no_main]

use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use tower_pat::credentials::{parse_authorization, query_has_token, Credentials, ParseOptions};

fuzz_target!(|data: &[u8]| {
    // The first byte picks the options; the rest is the header value.
    let Some((&switches, value)) = data.split_first() else {
        return;
    };
    let _ = query_has_token(std::str::from_utf8(value).ok());
    let Ok(value) = HeaderValue::from_bytes(value) else {
        return; // http refuses it before any parser could see it
    };
    let options = ParseOptions {
        bearer: switches & 1 == 0,
        basic: switches & 2 == 0,
        max_len: if switches & 4 == 0 { 4096 } else { 64 },
    };
    let mut headers = HeaderMap::new();
    headers.insert(AUTHORIZATION, value.clone());
    if let Ok(Some(c)) = parse_authorization(&headers, &options) {
        assert!(value.len() <= options.max_len);
        match c {
            Credentials::Bearer(t) => {
                assert!(options.bearer && !t.is_empty());
                assert!(!t.contains([' ', ',', '"', '\t']));
            }
            Credentials::Basic { username, .. } => {
                assert!(options.basic && !username.contains(':'));
            }
        }
    }
    // Two headers are always refused, whatever they hold.
    headers.append(AUTHORIZATION, value);
    assert!(parse_authorization(&headers, &options).is_err());
});
