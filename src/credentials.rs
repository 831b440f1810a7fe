//! Reading credentials from a request: `Authorization: Bearer <token>` or
//! `Authorization: Basic base64(user:token)` (RFC 6750 §2.1, RFC 7617 §2).
//!
//! Parsing is strict: one `Authorization` header, a known scheme (any case), exactly one
//! credential, and no `access_token` in the query string (RFC 6750 §2: one method only).
//!
//! ```
//! use http::{HeaderMap, HeaderValue, header::AUTHORIZATION};
//! use tower_pat::credentials::{parse_authorization, Credentials, ParseOptions};
//!
//! let mut h = HeaderMap::new();
//! h.insert(AUTHORIZATION, HeaderValue::from_static("bearer pat_abc"));
//! match parse_authorization(&h, &ParseOptions::default()).unwrap() {
//!     Some(Credentials::Bearer(t)) => assert_eq!(t, "pat_abc"),
//!     _ => unreachable!(),
//! }
//! ```

use std::fmt;

use base64::Engine as _;
use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderValue};

use crate::token::Secret;

/// Default cap on the `Authorization` header's length, in bytes.
pub const DEFAULT_MAX_HEADER_LEN: usize = 4096;

/// Credentials found in a request.
pub enum Credentials<'a> {
    /// `Bearer <token>`: the token, borrowed from the header.
    Bearer(&'a str),
    /// `Basic …`: the decoded username and password.
    Basic {
        /// The username (the token's owner).
        username: String,
        /// The password (the token).
        password: Secret,
    },
}

impl fmt::Debug for Credentials<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::Bearer(t) => write!(f, "Bearer({})", crate::token::redact(t)),
            Credentials::Basic { username, password } => f
                .debug_struct("Basic")
                .field("username", username)
                .field("password", password)
                .finish(),
        }
    }
}

/// Which schemes to accept and how long a header may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseOptions {
    /// Accept `Bearer` (default true).
    pub bearer: bool,
    /// Accept `Basic` (default true).
    pub basic: bool,
    /// Longest `Authorization` value accepted (default 4096 bytes).
    pub max_len: usize,
}

impl Default for ParseOptions {
    fn default() -> Self {
        Self {
            bearer: true,
            basic: true,
            max_len: DEFAULT_MAX_HEADER_LEN,
        }
    }
}

/// Why the `Authorization` header is malformed (answered with 400 `invalid_request`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CredentialsError {
    /// More than one `Authorization` header.
    #[error("more than one Authorization header")]
    MultipleHeaders,
    /// The header is longer than the configured cap.
    #[error("Authorization header too long")]
    TooLong,
    /// The header holds bytes other than visible ASCII and spaces.
    #[error("Authorization header holds invalid characters")]
    InvalidCharacters,
    /// The scheme is not followed by exactly one credential.
    #[error("Authorization header must be '<scheme> <credential>'")]
    Syntax,
    /// The Basic credential is not standard, padded base64.
    #[error("Basic credential is not valid base64")]
    Base64,
    /// The decoded Basic credential is not UTF-8, has no colon, or holds control characters.
    #[error("Basic credential must be UTF-8 'user:password' without control characters")]
    BasicContent,
    /// An `access_token` query parameter: only one way of sending a token is allowed.
    #[error("access_token in the query string is not accepted")]
    QueryToken,
}

/// RFC 7235 token68: `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
fn is_b64token(bytes: &[u8]) -> bool {
    let end = bytes.iter().rposition(|&b| b != b'=').map_or(0, |i| i + 1);
    let body = &bytes[..end];
    // No early exit, so the loop compiles to vector compares.
    !body.is_empty()
        && body.iter().fold(true, |ok, &b| {
            ok & (crate::token::is_alnum(b)
                | (b == b'-')
                | (b == b'.')
                | (b == b'_')
                | (b == b'~')
                | (b == b'+')
                | (b == b'/'))
        })
}

/// Whether a query string carries an `access_token` parameter.
pub fn query_has_token(query: Option<&str>) -> bool {
    query.is_some_and(|q| {
        q.split('&').any(|kv| {
            kv.split('=')
                .next()
                .is_some_and(|k| k.eq_ignore_ascii_case("access_token"))
        })
    })
}

/// Reads the request's credentials. `Ok(None)`: none, or a scheme that is switched off
/// or unknown (answered with a 401 challenge). `Err`: a malformed header (400).
pub fn parse_authorization<'a>(
    headers: &'a HeaderMap,
    options: &ParseOptions,
) -> Result<Option<Credentials<'a>>, CredentialsError> {
    Ok(match parse_authorization_raw(headers, options)? {
        None => None,
        Some(RawCredentials::Bearer(token)) => Some(Credentials::Bearer(token)),
        Some(RawCredentials::Basic(encoded)) => {
            let (username, password) = decode_basic(encoded)?;
            Some(Credentials::Basic { username, password })
        }
    })
}

/// Checked credentials before any decoding: Basic still in base64.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum RawCredentials<'a> {
    Bearer(&'a str),
    Basic(&'a str),
}

/// [`parse_authorization`] without decoding Basic, so the caller chooses where to.
pub(crate) fn parse_authorization_raw<'a>(
    headers: &'a HeaderMap,
    options: &ParseOptions,
) -> Result<Option<RawCredentials<'a>>, CredentialsError> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    parse_authorization_value(values.next(), values.next().is_some(), options)
}

/// [`parse_authorization_raw`] of a request whose (first) `Authorization` value is
/// `value`, `more` telling whether it has another.
pub(crate) fn parse_authorization_value<'a>(
    value: Option<&'a HeaderValue>,
    more: bool,
    options: &ParseOptions,
) -> Result<Option<RawCredentials<'a>>, CredentialsError> {
    let Some(value) = value else {
        return Ok(None);
    };
    if more {
        return Err(CredentialsError::MultipleHeaders);
    }
    let bytes = value.as_bytes();
    if bytes.len() > options.max_len {
        return Err(CredentialsError::TooLong);
    }
    if let Some(usual) = parse_usual(bytes, options) {
        return Ok(Some(usual));
    }
    parse_checked(bytes, options)
}

/// The usual requests, `Bearer <token68>` and `Basic <credential>`, in one pass over the
/// credential: a token68, or a credential of visible ASCII without spaces, makes the whole
/// value visible ASCII, so [`parse_checked`] would give the same. Anything else (`None`)
/// takes those checks, in order, for the right error.
fn parse_usual<'a>(bytes: &'a [u8], options: &ParseOptions) -> Option<RawCredentials<'a>> {
    let starts = |scheme: &[u8]| {
        bytes.len() > scheme.len() && bytes[..scheme.len()].eq_ignore_ascii_case(scheme)
    };
    let (bearer, rest) = if options.bearer && starts(BEARER) {
        (true, &bytes[BEARER.len()..])
    } else if options.basic && starts(BASIC) {
        (false, &bytes[BASIC.len()..])
    } else {
        return None;
    };
    let credential = &rest[rest.iter().take_while(|&&b| b == b' ').count()..];
    let valid = if bearer {
        is_b64token(credential)
    } else {
        !credential.is_empty()
            && credential
                .iter()
                .fold(true, |ok, &b| ok & (b'!'..=b'~').contains(&b))
    };
    let credential = std::str::from_utf8(credential).ok().filter(|_| valid)?;
    Some(if bearer {
        RawCredentials::Bearer(credential)
    } else {
        RawCredentials::Basic(credential)
    })
}

/// Every check, in order: visible ASCII, scheme, credential syntax.
fn parse_checked<'a>(
    bytes: &'a [u8],
    options: &ParseOptions,
) -> Result<Option<RawCredentials<'a>>, CredentialsError> {
    // Visible ASCII and spaces only (no tabs), in one pass without early exit (vectorized);
    // then the bytes are ASCII, so UTF-8.
    let visible = bytes
        .iter()
        .fold(true, |ok, &b| ok & (b' '..=b'~').contains(&b));
    let value = std::str::from_utf8(bytes)
        .ok()
        .filter(|_| visible)
        .ok_or(CredentialsError::InvalidCharacters)?;
    // The scheme is short: a plain scan beats a memchr call.
    let (scheme, rest) = match value.bytes().position(|b| b == b' ') {
        Some(i) => (&value[..i], &value[i + 1..]),
        None => (value, ""),
    };
    if scheme.is_empty() {
        return Err(CredentialsError::Syntax);
    }
    let credential = rest.trim_start_matches(' ');
    if scheme.eq_ignore_ascii_case("bearer") {
        if !options.bearer {
            return Ok(None);
        }
        if !is_b64token(credential.as_bytes()) {
            return Err(CredentialsError::Syntax);
        }
        return Ok(Some(RawCredentials::Bearer(credential)));
    }
    if scheme.eq_ignore_ascii_case("basic") {
        if !options.basic {
            return Ok(None);
        }
        if credential.is_empty() || credential.contains(' ') {
            return Err(CredentialsError::Syntax);
        }
        return Ok(Some(RawCredentials::Basic(credential)));
    }
    Ok(None)
}

/// `Bearer` and the space after it, compared in any case.
const BEARER: &[u8] = b"bearer ";
/// `Basic` and the space after it, compared in any case.
const BASIC: &[u8] = b"basic ";

/// Decodes a Basic credential (`base64(user:password)`), splitting on the first colon.
pub fn decode_basic(credential: &str) -> Result<(String, Secret), CredentialsError> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(credential)
        .map_err(|_| CredentialsError::Base64)?;
    let text = String::from_utf8(bytes).map_err(|_| CredentialsError::BasicContent)?;
    let colon = basic_colon(&text)?;
    // Reuse the decoded buffer for the username: one allocation fewer per request.
    let mut user = text;
    let pass = user.split_off(colon + 1);
    user.truncate(colon);
    Ok((user, Secret::new(pass)))
}

/// [`decode_basic`] into `buf`, without allocating: `(username, password)` borrowed from
/// `buf`, or `Ok(None)` when `buf` is too small. The caller clears `buf` after use.
pub(crate) fn decode_basic_in<'b>(
    credential: &str,
    buf: &'b mut [u8],
) -> Result<Option<(&'b str, &'b str)>, CredentialsError> {
    use base64::engine::general_purpose::STANDARD;
    use base64::{DecodeSliceError, Engine as _};
    let len = match STANDARD.decode_slice(credential, buf) {
        Ok(len) => len,
        Err(DecodeSliceError::OutputSliceTooSmall) => return Ok(None),
        Err(DecodeSliceError::DecodeError(_)) => return Err(CredentialsError::Base64),
    };
    let text = std::str::from_utf8(&buf[..len]).map_err(|_| CredentialsError::BasicContent)?;
    let colon = basic_colon(text)?;
    Ok(Some((&text[..colon], &text[colon + 1..])))
}

/// Where the decoded `user:password` splits; an error if it has no colon or holds control
/// characters.
fn basic_colon(text: &str) -> Result<usize, CredentialsError> {
    // Control characters: ASCII ones checked a byte at a time without branches (the usual
    // case is all ASCII); other text char by char (for U+0080..U+009F).
    let ascii_control = text
        .bytes()
        .fold(false, |found, b| found | (b < b' ') | (b == 0x7f));
    if ascii_control || (!text.is_ascii() && text.chars().any(char::is_control)) {
        return Err(CredentialsError::BasicContent);
    }
    text.bytes()
        .position(|b| b == b':')
        .ok_or(CredentialsError::BasicContent)
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// The one-pass path for the usual requests gives what all the checks in order give.
        #[test]
        fn usual_requests_path_agrees_with_every_check(
            scheme in proptest::sample::select(vec!["Bearer ", "bearer  ", "BEARER ", "Bearer", "Bearer\t", "Bearerx ", "Basic ", "basic  ", "BASIC ", "Basic", "Basic\t", " Bearer ", ""]),
            lead in "[ \\t]{0,3}",
            token in "[A-Za-z0-9._~+/\\-!\"#$%&'()*,:;<>?@^`{|}]{0,40}={0,2}",
            tail in "|[ \\t\\u{0}\\u{7f}\\u{80}-\\u{ff}é=A-Za-z]{1,5}",
            bearer in proptest::bool::ANY,
            basic in proptest::bool::ANY,
            max_len in 0usize..80,
        ) {
            let text = format!("{scheme}{lead}{token}{tail}");
            let Ok(value) = HeaderValue::from_bytes(text.as_bytes()) else { return Ok(()) };
            let options = ParseOptions { bearer, basic, max_len };
            let checked = if value.len() > max_len {
                Err(CredentialsError::TooLong)
            } else {
                parse_checked(value.as_bytes(), &options)
            };
            proptest::prop_assert_eq!(parse_authorization_value(Some(&value), false, &options), checked);
        }
    }

    #[test]
    fn decoding_in_place_agrees_with_decode_basic() {
        use base64::Engine as _;
        let cases = [
            "alice:pat_x",
            ":",
            "a:b:c",
            "nocolon",
            "\u{85}x:y",
            "ü:pw",
            "a\tb:c",
            "",
        ];
        for case in cases {
            let b64 = base64::engine::general_purpose::STANDARD.encode(case);
            let mut buf = [0u8; 64];
            let in_place = decode_basic_in(&b64, &mut buf)
                .map(|o| o.map(|(u, p)| (u.to_owned(), p.to_owned())));
            let owned = decode_basic(&b64).map(|(u, p)| Some((u, p.expose().to_owned())));
            assert_eq!(in_place, owned, "{case:?}");
        }
        assert_eq!(
            decode_basic_in("!!!!", &mut [0u8; 64]),
            Err(CredentialsError::Base64)
        );
        let long = base64::engine::general_purpose::STANDARD.encode("u:".repeat(100));
        assert_eq!(
            decode_basic_in(&long, &mut [0u8; 64]),
            Ok(None),
            "too small: caller falls back"
        );
    }

    proptest::proptest! {
        /// Decoding into a buffer and onto the heap agree on every input, valid base64 of
        /// arbitrary bytes or arbitrary text; the buffer only ever declines (`None`) input
        /// too long for it.
        #[test]
        fn in_place_decoding_agrees_with_owned(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..700),
            text in ".{0,64}",
        ) {
            use base64::Engine as _;
            for encoded in [base64::engine::general_purpose::STANDARD.encode(&bytes), text.clone()] {
                let mut buf = [0u8; 512];
                let owned = decode_basic(&encoded).map(|(u, p)| (u, p.expose().to_owned()));
                match decode_basic_in(&encoded, &mut buf) {
                    Ok(Some((u, p))) => proptest::prop_assert_eq!(Ok((u.to_owned(), p.to_owned())), owned),
                    Ok(None) => proptest::prop_assert!(encoded.len() / 4 * 3 > 500, "declined {} chars", encoded.len()),
                    Err(e) => proptest::prop_assert_eq!(Err(e), owned),
                }
            }
        }
    }

    #[test]
    fn basic_refuses_exactly_the_control_characters() {
        use base64::Engine as _;
        let chars = (0u32..0x200)
            .chain([0x2028, 0x200b, 0xfeff, 0x1f600])
            .filter_map(char::from_u32);
        for c in chars {
            let b64 = base64::engine::general_purpose::STANDARD.encode(format!("al{c}ce:pw{c}"));
            assert_eq!(
                decode_basic(&b64).is_err(),
                c.is_control(),
                "U+{:04X}",
                u32::from(c)
            );
        }
    }
    use http::HeaderValue;

    fn parse(v: &[u8]) -> Result<Option<String>, CredentialsError> {
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, HeaderValue::from_bytes(v).unwrap());
        parse_authorization(&h, &ParseOptions::default()).map(|c| {
            c.map(|c| match c {
                Credentials::Bearer(t) => format!("bearer:{t}"),
                Credentials::Basic { username, password } => {
                    format!("basic:{username}:{}", password.expose())
                }
            })
        })
    }

    fn b64(s: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    #[test]
    fn bearer() {
        assert_eq!(parse(b"Bearer abc").unwrap().unwrap(), "bearer:abc");
        assert_eq!(parse(b"bearer abc").unwrap().unwrap(), "bearer:abc");
        assert_eq!(parse(b"BEARER   abc==").unwrap().unwrap(), "bearer:abc==");
        for bad in [
            &b"Bearer"[..],
            b"Bearer ",
            b"Bearer a b",
            b"Bearer a,b",
            b"Bearer \"a\"",
            b"Bearer =",
            b"Bearer a=b",
            b"Bearer\ta",
        ] {
            assert!(parse(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        assert_eq!(
            parse(b"Bearer \xffabc").unwrap_err(),
            CredentialsError::InvalidCharacters
        );
        assert!(parse(b"Digest abc").unwrap().is_none());
    }

    #[test]
    fn basic() {
        let ok = format!("Basic {}", b64(b"alice:pat_x:y"));
        assert_eq!(
            parse(ok.as_bytes()).unwrap().unwrap(),
            "basic:alice:pat_x:y"
        );
        let ok = format!("basic {}", b64(b":"));
        assert_eq!(parse(ok.as_bytes()).unwrap().unwrap(), "basic::");
        for bad in [
            "Basic".to_owned(),
            "Basic pat_abc_def".to_owned(),
            "Basic !!!!".to_owned(),
            format!("Basic {}", b64(b"no-colon")),
            format!("Basic {}", b64(b"a:b\0")),
            format!("Basic {}", b64(b"a:b\tc")),
            format!("Basic {}", b64(b"a:b\r\nc")),
            format!("Basic {}", b64(b"a:\xff")),
            format!("Basic {}", b64(b"a:\xc0\xaf")),
            format!(
                "Basic {}",
                base64::engine::general_purpose::URL_SAFE.encode(b"a:>>>?")
            ),
            format!("Basic {} x", b64(b"a:b")),
        ] {
            assert!(parse(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn limits_and_switches() {
        let mut h = HeaderMap::new();
        h.append(AUTHORIZATION, HeaderValue::from_static("Bearer a"));
        h.append(AUTHORIZATION, HeaderValue::from_static("Bearer b"));
        assert_eq!(
            parse_authorization(&h, &ParseOptions::default()).unwrap_err(),
            CredentialsError::MultipleHeaders
        );
        let long = format!("Bearer {}", "a".repeat(5000));
        assert_eq!(
            parse(long.as_bytes()).unwrap_err(),
            CredentialsError::TooLong
        );
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, HeaderValue::from_static("Basic YTpi"));
        let opts = ParseOptions {
            basic: false,
            ..Default::default()
        };
        assert!(parse_authorization(&h, &opts).unwrap().is_none());
        assert!(query_has_token(Some("a=1&access_token=x")));
        assert!(query_has_token(Some("ACCESS_TOKEN")));
        assert!(!query_has_token(Some("my_access_token_x=1")));
        assert!(!query_has_token(None));
    }
}
