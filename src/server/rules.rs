//! [`Rules`]: which scopes a request needs, by method and path, read from TOML.
//!
//! ```toml
//! default = "deny"             # or "authenticated": any valid token
//! [[rule]]
//! methods = ["GET", "HEAD", "PROPFIND"]
//! path = "/nodes/{node}/**"
//! scopes = ["node:{node}:r"]
//! ```
//!
//! Invariants:
//! - A rules file is validated whole when it is read: every error names its line, and a
//!   file with one is refused (no rule of it is used).
//! - The first rule whose methods and path match decides; no rule matching falls to the
//!   default, `deny` unless the file says otherwise.
//! - A path is matched only in its one spelling: `.` and `..` segments, empty segments,
//!   `;`, backslashes and percent-encoded `/`, `\` or unreserved characters are refused,
//!   never resolved; one trailing slash is no segment (`/a/` is `/a`). Matching is
//!   case-sensitive, byte for byte.
//! - A capture fills a scope only with unreserved characters (letters, digits, `-._~`):
//!   a `:` or `*` in it would reach into the scope's other segments, so the request is
//!   denied.

use std::fmt;

use http::Method;
use serde::Deserialize;

use crate::scope::{Scope, ScopeSet};

/// What a request needs when no rule matches it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fallback {
    /// Refused (403).
    Deny,
    /// Any valid token.
    Authenticated,
}

/// One rule: methods (none: every method), a path pattern and the scopes it needs.
#[derive(Debug, Clone)]
struct Rule {
    line: usize,
    methods: Option<Vec<Method>>,
    path: String,
    segments: Vec<Segment>,
    /// `**` at the end: any number of further segments (none included).
    rest: bool,
    scopes: Vec<Template>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    /// `{name}`: one whole segment, captured as capture `index`.
    Capture(usize),
    /// `*`: any one segment.
    Any,
}

/// A scope with `{name}` holes, filled from the path's captures.
#[derive(Debug, Clone)]
struct Template {
    text: String,
    parts: Vec<Part>,
}

#[derive(Debug, Clone)]
enum Part {
    Text(String),
    Capture(usize),
}

/// A rules file, validated: [`Rules::required`] answers which scopes a request needs.
#[derive(Debug, Clone)]
pub struct Rules {
    default: Fallback,
    rules: Vec<Rule>,
}

/// A rules file that cannot be used: the line and what is wrong, e.g.
/// `line 7: unknown method "GTE"`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct RulesError {
    /// The line (from 1) of the value at fault.
    pub line: usize,
    /// What is wrong, and what would be right.
    pub message: String,
}

/// What a request's path is refused for (400): it has another spelling than its one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PathError(&'static str);

/// What [`Rules::required`] decided for a request.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Needs {
    /// A rule matched (its line): a valid token holding every one of these scopes (none:
    /// any valid token).
    Scopes {
        /// The rule's line in the file, 0 for the default.
        line: usize,
        /// The scopes, with the path's captures filled in.
        scopes: ScopeSet,
    },
    /// No rule matched and the default is `deny`, or the matching rule's scope could not
    /// be made from the path (a capture that is no valid scope text).
    Denied,
}

/// Methods a rule may name: HTTP's and WebDAV's.
const METHODS: &[&str] = &[
    "GET",
    "HEAD",
    "POST",
    "PUT",
    "DELETE",
    "PATCH",
    "OPTIONS",
    "TRACE",
    "CONNECT",
    "PROPFIND",
    "PROPPATCH",
    "MKCOL",
    "COPY",
    "MOVE",
    "LOCK",
    "UNLOCK",
    "REPORT",
    "SEARCH",
    "MKCALENDAR",
    "ACL",
];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    default: Option<toml::Spanned<String>>,
    #[serde(default)]
    rule: Vec<toml::Spanned<RawRule>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    methods: Option<Vec<toml::Spanned<String>>>,
    path: toml::Spanned<String>,
    #[serde(default)]
    scopes: Vec<toml::Spanned<String>>,
}

/// The line (from 1) of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

impl Rules {
    /// Rules that let any valid token through, with no rule: what `pat serve` uses
    /// without `--rules`.
    pub fn authenticated() -> Self {
        Self {
            default: Fallback::Authenticated,
            rules: Vec::new(),
        }
    }

    /// Reads and validates a rules file's text. Every error names its line.
    ///
    /// ```
    /// use tower_pat::server::{Needs, Rules};
    ///
    /// let rules = Rules::parse(r#"
    /// [[rule]]
    /// methods = ["GET"]
    /// path = "/repos/{repo}/**"
    /// scopes = ["repo:read"]
    /// "#).unwrap();
    /// assert!(matches!(rules.required(&http::Method::GET, "/repos/a/b").unwrap(), Needs::Scopes { .. }));
    /// assert_eq!(rules.required(&http::Method::GET, "/elsewhere").unwrap(), Needs::Denied);
    /// let bad = Rules::parse("[[rule]]\nmethods = [\"GTE\"]\npath = \"/\"\n").unwrap_err();
    /// assert_eq!(bad.to_string(), r#"line 2: unknown method "GTE"; known: GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS, TRACE, CONNECT, PROPFIND, PROPPATCH, MKCOL, COPY, MOVE, LOCK, UNLOCK, REPORT, SEARCH, MKCALENDAR, ACL"#);
    /// ```
    pub fn parse(text: &str) -> Result<Self, RulesError> {
        let at = |offset: usize, message: String| RulesError {
            line: line_of(text, offset),
            message,
        };
        let raw: RawFile = toml::from_str(text).map_err(|e| {
            let offset = e.span().map_or(0, |s| s.start);
            at(offset, e.message().trim().replace('\n', "; "))
        })?;
        let default = match raw.default {
            None => Fallback::Deny,
            Some(d) => match d.get_ref().as_str() {
                "deny" => Fallback::Deny,
                "authenticated" => Fallback::Authenticated,
                other => {
                    return Err(at(
                        d.span().start,
                        format!("default is {other:?}; use \"deny\" or \"authenticated\""),
                    ))
                }
            },
        };
        let mut rules = Vec::new();
        for raw in raw.rule {
            let line = line_of(text, raw.span().start);
            let raw = raw.into_inner();
            let methods = match raw.methods {
                None => None,
                Some(list) if list.is_empty() => {
                    return Err(at(
                        raw.path.span().start,
                        "methods is empty; leave it out for every method".into(),
                    ))
                }
                Some(list) => {
                    let mut methods = Vec::new();
                    for m in list {
                        let name = m.get_ref().to_ascii_uppercase();
                        if !METHODS.contains(&name.as_str()) {
                            return Err(at(
                                m.span().start,
                                format!(
                                    "unknown method {:?}; known: {}",
                                    m.get_ref(),
                                    METHODS.join(", ")
                                ),
                            ));
                        }
                        methods.push(Method::from_bytes(name.as_bytes()).map_err(|_| {
                            at(m.span().start, format!("bad method {:?}", m.get_ref()))
                        })?);
                    }
                    Some(methods)
                }
            };
            let path_at = raw.path.span().start;
            let (segments, rest, captures) =
                pattern(raw.path.get_ref()).map_err(|m| at(path_at, m))?;
            let mut scopes = Vec::new();
            for s in raw.scopes {
                scopes.push(template(s.get_ref(), &captures).map_err(|m| at(s.span().start, m))?);
            }
            rules.push(Rule {
                line,
                methods,
                path: raw.path.into_inner(),
                segments,
                rest,
                scopes,
            });
        }
        Ok(Self { default, rules })
    }

    /// The default for requests no rule matches.
    pub fn fallback(&self) -> Fallback {
        self.default
    }

    /// Which scopes a request with this method and path (no query) needs: the first
    /// matching rule's, else the default's. A path in another than its one spelling
    /// (`.`, `..`, empty or encoded-separator segments) is a [`PathError`].
    pub fn required(&self, method: &Method, path: &str) -> Result<Needs, PathError> {
        let segments = path_segments(path)?;
        for rule in &self.rules {
            if rule
                .methods
                .as_ref()
                .is_some_and(|ms| !ms.iter().any(|m| m == method))
            {
                continue;
            }
            let Some(captured) = rule.matches(&segments) else {
                continue;
            };
            let mut set = Vec::new();
            for t in &rule.scopes {
                match t.fill(&captured) {
                    Some(scope) => set.push(scope),
                    None => return Ok(Needs::Denied),
                }
            }
            return Ok(Needs::Scopes {
                line: rule.line,
                scopes: ScopeSet::new(set),
            });
        }
        Ok(match self.default {
            Fallback::Deny => Needs::Denied,
            Fallback::Authenticated => Needs::Scopes {
                line: 0,
                scopes: ScopeSet::full_access(),
            },
        })
    }
}

impl Rule {
    /// The captures, if the path's segments match.
    fn matches<'p>(&self, path: &[&'p str]) -> Option<Vec<&'p str>> {
        if path.len() < self.segments.len() || (!self.rest && path.len() != self.segments.len()) {
            return None;
        }
        let mut captured = Vec::new();
        for (seg, got) in self.segments.iter().zip(path) {
            match seg {
                Segment::Literal(l) if l != got => return None,
                Segment::Literal(_) => {}
                Segment::Any | Segment::Capture(_) if got.is_empty() => return None,
                Segment::Any => {}
                Segment::Capture(_) => captured.push(*got),
            }
        }
        Some(captured)
    }
}

impl Template {
    fn fill(&self, captured: &[&str]) -> Option<Scope> {
        let mut text = String::with_capacity(self.text.len() + 40);
        for p in &self.parts {
            match p {
                Part::Text(t) => text.push_str(t),
                Part::Capture(i) => {
                    // Unreserved characters only: a `:` or `*` would reach into the
                    // scope's other segments.
                    let value = captured.get(*i)?;
                    if !value
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
                    {
                        return None;
                    }
                    text.push_str(value);
                }
            }
        }
        text.parse().ok()
    }
}

/// A path pattern: its segments, whether it ends in `**`, and its capture names in order.
#[allow(clippy::type_complexity)]
fn pattern(path: &str) -> Result<(Vec<Segment>, bool, Vec<String>), String> {
    let Some(rest) = path.strip_prefix('/') else {
        return Err(format!("path {path:?} must start with '/'"));
    };
    let mut segments = Vec::new();
    let mut names: Vec<String> = Vec::new();
    let mut tail = false;
    let parts: Vec<&str> = if rest.is_empty() {
        Vec::new()
    } else {
        rest.split('/').collect()
    };
    for (i, s) in parts.iter().enumerate() {
        if tail {
            return Err(format!("path {path:?}: '**' must be the last segment"));
        }
        match *s {
            "**" => tail = true,
            "*" => segments.push(Segment::Any),
            // A trailing slash is not a segment of its own (as in a request's path).
            "" if i + 1 == parts.len() => {}
            "" | "." | ".." => {
                return Err(format!(
                    "path {path:?}: empty, '.' and '..' segments never match"
                ))
            }
            s if s.starts_with('{') && s.ends_with('}') => {
                let name = &s[1..s.len() - 1];
                if name.is_empty()
                    || !name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_')
                {
                    return Err(format!(
                        "path {path:?}: capture {s} is not a name of letters, digits and '_'"
                    ));
                }
                if names.iter().any(|n| n == name) {
                    return Err(format!(
                        "path {path:?}: capture {{{name}}} appears twice; give each a name of its own"
                    ));
                }
                names.push(name.to_owned());
                segments.push(Segment::Capture(names.len() - 1));
            }
            s if s.contains(['{', '}', '*']) => {
                return Err(format!(
                    "path {path:?}: segment {s:?} mixes text with a capture or a wildcard; a capture or '*' is a whole segment"
                ))
            }
            s => segments.push(Segment::Literal(s.to_owned())),
        }
    }
    Ok((segments, tail, names))
}

/// A scope template: text with `{name}` holes naming the path's captures; checked by
/// filling every hole with a sample value and parsing the scope.
fn template(text: &str, captures: &[String]) -> Result<Template, String> {
    let mut parts = Vec::new();
    let mut sample = String::new();
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        let (before, after) = rest.split_at(open);
        let close = after
            .find('}')
            .ok_or_else(|| format!("scope {text:?}: '{{' without '}}'"))?;
        let name = &after[1..close];
        let index = captures
            .iter()
            .position(|c| c == name)
            .ok_or_else(|| format!("scope {text:?}: {{{name}}} is not a capture of the path"))?;
        if !before.is_empty() {
            parts.push(Part::Text(before.to_owned()));
        }
        sample.push_str(before);
        sample.push_str("00000000-0000-0000-0000-000000000000");
        parts.push(Part::Capture(index));
        rest = &after[close + 1..];
    }
    if rest.contains('}') {
        return Err(format!("scope {text:?}: '}}' without '{{'"));
    }
    if !rest.is_empty() {
        parts.push(Part::Text(rest.to_owned()));
    }
    sample.push_str(rest);
    sample
        .parse::<Scope>()
        .map_err(|e| format!("scope {text:?}: {e}"))?;
    Ok(Template {
        text: text.to_owned(),
        parts,
    })
}

/// The segments of a request path, in its one spelling: `.`, `..`, empty segments,
/// backslashes, `;` (path parameters, which some servers strip) and percent-encoded
/// `/`, `\` or unreserved characters (letters, digits, `-`, `.`, `_`, `~`, which have a
/// plain spelling) are refused. One trailing slash is not a segment: `/a/` is `/a`.
fn path_segments(path: &str) -> Result<Vec<&str>, PathError> {
    let Some(rest) = path.strip_prefix('/') else {
        return Err(PathError("the original path must start with '/'"));
    };
    if rest.contains(['\\', ';']) {
        return Err(PathError(
            "backslashes and ';' are not accepted in the path",
        ));
    }
    let bytes = rest.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        if *b != b'%' {
            continue;
        }
        let hex = |b: Option<&u8>| b.and_then(|b| (*b as char).to_digit(16));
        let (Some(hi), Some(lo)) = (hex(bytes.get(i + 1)), hex(bytes.get(i + 2))) else {
            return Err(PathError(
                "a '%' in the path is not followed by two hex digits",
            ));
        };
        let decoded = (hi * 16 + lo) as u8;
        if decoded.is_ascii_alphanumeric() || b"-._~/\\".contains(&decoded) {
            return Err(PathError(
                "encoded separators and encoded letters, digits or '-._~' are not accepted",
            ));
        }
    }
    if rest == "/" {
        return Err(PathError("path segments '.', '..' and '' are not accepted"));
    }
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.is_empty() {
        return Ok(Vec::new());
    }
    let segments: Vec<&str> = rest.split('/').collect();
    if segments
        .iter()
        .any(|s| *s == "." || *s == ".." || s.is_empty())
    {
        return Err(PathError("path segments '.', '..' and '' are not accepted"));
    }
    Ok(segments)
}

impl fmt::Display for Rules {
    /// The table `pat serve --check-rules` prints: one line per rule, then the default.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{:<6}{:<28}{:<36}SCOPES", "LINE", "METHODS", "PATH")?;
        for r in &self.rules {
            let methods = r.methods.as_ref().map_or_else(
                || "any".to_owned(),
                |ms| ms.iter().map(Method::as_str).collect::<Vec<_>>().join(","),
            );
            let scopes = if r.scopes.is_empty() {
                "(any valid token)".to_owned()
            } else {
                r.scopes
                    .iter()
                    .map(|t| t.text.as_str())
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            writeln!(f, "{:<6}{:<28}{:<36}{scopes}", r.line, methods, r.path)?;
        }
        let default = match self.default {
            Fallback::Deny => "deny",
            Fallback::Authenticated => "any valid token",
        };
        write!(f, "otherwise: {default}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
default = "deny"
[[rule]]
methods = ["GET", "HEAD", "PROPFIND"]
path = "/nodes/{node}/**"
scopes = ["node:{node}:r"]
[[rule]]
methods = ["PUT", "DELETE", "MKCOL", "MOVE", "COPY"]
path = "/nodes/{node}/**"
scopes = ["node:{node}:w"]
[[rule]]
path = "/public/*"
"#;
    const NODE: &str = "0b0f8d7e-3f44-4c4e-9d0e-0f6f0b8d2a11";

    fn scopes(n: Needs) -> Vec<String> {
        match n {
            Needs::Scopes { scopes, .. } => scopes.iter().map(ToString::to_string).collect(),
            Needs::Denied => vec!["DENIED".into()],
        }
    }

    #[test]
    fn first_match_fills_captures() {
        let r = Rules::parse(EXAMPLE).unwrap();
        let get = |m: Method, p: &str| r.required(&m, p).map(scopes);
        assert_eq!(
            get(Method::GET, &format!("/nodes/{NODE}/a/b.txt")).unwrap(),
            [format!("node:{NODE}:r")]
        );
        assert_eq!(
            get(Method::GET, &format!("/nodes/{NODE}")).unwrap(),
            [format!("node:{NODE}:r")],
            "** matches no further segment too"
        );
        let propfind = Method::from_bytes(b"PROPFIND").unwrap();
        assert_eq!(
            get(propfind, &format!("/nodes/{NODE}/")).unwrap(),
            [format!("node:{NODE}:r")]
        );
        assert_eq!(
            get(Method::PUT, &format!("/nodes/{NODE}/x")).unwrap(),
            [format!("node:{NODE}:w")]
        );
        assert_eq!(
            get(Method::POST, &format!("/nodes/{NODE}/x")).unwrap(),
            ["DENIED"]
        );
        assert_eq!(
            get(Method::POST, "/public/a").unwrap(),
            Vec::<String>::new()
        );
        assert_eq!(get(Method::GET, "/public/a/b").unwrap(), ["DENIED"]);
        assert_eq!(get(Method::GET, "/").unwrap(), ["DENIED"]);
        // A capture that makes no valid scope, or reaches into another segment, denies.
        assert_eq!(get(Method::GET, "/nodes/a:b/x").unwrap(), ["DENIED"]);
        assert_eq!(get(Method::GET, "/nodes/*/x").unwrap(), ["DENIED"]);
        // One trailing slash is no segment; other escapes are plain text.
        assert_eq!(
            get(Method::POST, "/public/a/").unwrap(),
            Vec::<String>::new()
        );
        assert_eq!(
            get(Method::POST, "/public/a%20b").unwrap(),
            Vec::<String>::new()
        );
    }

    #[test]
    fn other_spellings_of_a_path_are_refused() {
        let r = Rules::parse(EXAMPLE).unwrap();
        for p in [
            format!("/nodes/{NODE}/../other"),
            format!("/nodes/{NODE}/./x"),
            format!("/nodes/{NODE}//x"),
            format!("/nodes/{NODE}%2Fx"),
            format!("/nodes/{NODE}/%2e%2e/x"),
            format!("/nodes/{NODE}\\x"),
            format!("/%6Eodes/{NODE}/x"),
            format!("/nodes/{NODE};p=1/x"),
            "//".to_owned(),
            "/a%2".to_owned(),
            "nodes/x".to_owned(),
            String::new(),
        ] {
            assert!(r.required(&Method::GET, &p).is_err(), "{p}");
        }
    }

    #[test]
    fn errors_name_their_line() {
        for (text, line, needle) in [
            (
                "default = \"allow\"\n",
                1,
                "use \"deny\" or \"authenticated\"",
            ),
            (
                "[[rule]]\npath = \"/x\"\nmethods = [\"GET\", \"FETCH\"]\n",
                3,
                "unknown method \"FETCH\"",
            ),
            ("\n[[rule]]\npath = \"/a/{x}/{x}\"\n", 3, "appears twice"),
            (
                "[[rule]]\npath = \"/a/{x}\"\nscopes = [\"node:{y}:r\"]\n",
                3,
                "{y} is not a capture",
            ),
            ("[[rule]]\npath = \"/a/**/b\"\n", 2, "'**' must be the last"),
            ("[[rule]]\npath = \"a\"\n", 2, "must start with '/'"),
            (
                "[[rule]]\npath = \"/a\"\nscopes = [\"bad scope\"]\n",
                3,
                "bad scope",
            ),
            ("[[rule]]\npath = \"/a/x{y}\"\n", 2, "mixes text"),
            ("[[rule]]\npath = \"/a\"\ncolour = 1\n", 3, "colour"),
            ("[[rule]]\n\npath = 1\n", 3, "invalid type"),
            ("[[rule]]\npath = \"/a\"\nscopes = [\"x\",\n", 4, "expected"),
            (
                "[[rule]]\nmethods = []\npath = \"/a\"\n",
                3,
                "methods is empty",
            ),
        ] {
            let e = Rules::parse(text).unwrap_err();
            assert_eq!(e.line, line, "{text:?}: {e}");
            assert!(e.message.contains(needle), "{text:?}: {e}");
            assert!(!e.to_string().contains('\n'), "one line: {e}");
        }
    }

    #[test]
    fn the_table_lists_every_rule() {
        let r = Rules::parse(EXAMPLE).unwrap();
        let t = r.to_string();
        assert!(t.contains("GET,HEAD,PROPFIND"), "{t}");
        assert!(t.contains("node:{node}:w"), "{t}");
        assert!(t.contains("(any valid token)"), "{t}");
        assert!(t.ends_with("otherwise: deny"), "{t}");
        assert_eq!(t.lines().count(), 5);
    }
}
