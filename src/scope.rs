//! Scopes: what a token may do, and when one scope implies another.
//! (Its longer documentation is on the public item, where rustdoc shows it.)

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use uuid::Uuid;

/// Longest scope string accepted.
pub(crate) const MAX_SCOPE_LEN: usize = 128;

/// Read and/or write permission on a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NodePerm {
    /// `r`
    pub read: bool,
    /// `w`
    pub write: bool,
}

impl NodePerm {
    /// Read only.
    pub const READ: NodePerm = NodePerm {
        read: true,
        write: false,
    };
    /// Write only.
    pub const WRITE: NodePerm = NodePerm {
        read: false,
        write: true,
    };
    /// Read and write.
    pub const READ_WRITE: NodePerm = NodePerm {
        read: true,
        write: true,
    };

    fn contains(self, other: NodePerm) -> bool {
        (self.read || !other.read) && (self.write || !other.write)
    }
}

/// One scope. Parse with [`str::parse`]; `Display` gives back the same string.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Scope {
    /// `*`: everything.
    All,
    /// `<resource>:*`: every action on a resource (and its sub-resources).
    AnyAction {
        /// e.g. `repo` or `sp:scopes`.
        resource: Box<str>,
    },
    /// `<resource>:<action>`, or a plain `<action>` when `resource` is `None`.
    Action {
        /// e.g. `repo`; `None` for AWX-style `read`/`write`.
        resource: Option<Box<str>>,
        /// e.g. `write`.
        action: Box<str>,
    },
    /// `node:<uuid>:<r|w|rw>`.
    Node {
        /// The node's id.
        id: Uuid,
        /// The permission.
        perm: NodePerm,
    },
}

impl Scope {
    /// `node:<id>:r`, `node:<id>:w` or `node:<id>:rw`.
    pub fn node(id: Uuid, perm: NodePerm) -> Self {
        Scope::Node { id, perm }
    }

    /// The resource part (`repo` of `repo:write`, `node` of a node scope), if any.
    pub fn resource(&self) -> Option<&str> {
        match self {
            Scope::All => None,
            Scope::AnyAction { resource } => Some(resource),
            Scope::Action { resource, .. } => resource.as_deref(),
            Scope::Node { .. } => Some("node"),
        }
    }

    /// Whether holding `self` grants `needed`, under `hierarchy`.
    pub fn implies(&self, needed: &Scope, hierarchy: &ScopeHierarchy) -> bool {
        match (self, needed) {
            (Scope::All, _) => true,
            (_, Scope::All) => false,
            (Scope::AnyAction { resource }, n) => n.resource().is_some_and(|r| {
                r == &**resource
                    || (r.len() > resource.len()
                        && r.starts_with(&**resource)
                        && r.as_bytes()[resource.len()] == b':')
            }),
            (
                Scope::Action {
                    resource: r1,
                    action: a1,
                },
                Scope::Action {
                    resource: r2,
                    action: a2,
                },
            ) => r1 == r2 && (a1 == a2 || hierarchy.outranks(r1.as_deref(), a1, a2)),
            (Scope::Node { id: i1, perm: p1 }, Scope::Node { id: i2, perm: p2 }) => {
                i1 == i2 && p1.contains(*p2)
            }
            _ => false,
        }
    }
}

/// Why a scope string was refused. Names the offending scope.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid scope {scope:?}: {reason}")]
pub struct ScopeError {
    /// The scope as given (cut to 128 characters).
    pub scope: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

fn scope_err(s: &str, reason: &'static str) -> ScopeError {
    ScopeError {
        scope: s.chars().take(MAX_SCOPE_LEN).collect(),
        reason,
    }
}

fn valid_segment(seg: &str) -> bool {
    !seg.is_empty()
        && seg
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        && seg.as_bytes()[0] != b'-'
}

impl FromStr for Scope {
    type Err = ScopeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err(scope_err(s, "empty scope"));
        }
        if s.len() > MAX_SCOPE_LEN {
            return Err(scope_err(s, "longer than 128 characters"));
        }
        if s == "*" {
            return Ok(Scope::All);
        }
        let segments: Vec<&str> = s.split(':').collect();
        if segments[0] == "node" && segments.len() >= 2 && s != "node:*" {
            if segments.len() != 3 {
                return Err(scope_err(s, "node scopes look like node:<uuid>:<r|w|rw>"));
            }
            let id = segments[1];
            // Only the canonical hyphenated lower-case form, so the scope round-trips.
            let uuid = Uuid::try_parse(id)
                .ok()
                .filter(|u| u.hyphenated().to_string() == id)
                .ok_or_else(|| scope_err(s, "node id is not a lower-case hyphenated UUID"))?;
            let perm = match segments[2] {
                "r" => NodePerm::READ,
                "w" => NodePerm::WRITE,
                "rw" => NodePerm::READ_WRITE,
                _ => return Err(scope_err(s, "node permission must be r, w or rw")),
            };
            return Ok(Scope::Node { id: uuid, perm });
        }
        let (last, resource) = segments.split_last().unwrap_or((&"", &[]));
        for seg in resource {
            if !valid_segment(seg) {
                return Err(scope_err(
                    s,
                    "segments are lower-case letters, digits, '_' and '-'",
                ));
            }
        }
        let resource = (!resource.is_empty()).then(|| resource.join(":").into_boxed_str());
        if *last == "*" {
            return match resource {
                Some(resource) => Ok(Scope::AnyAction { resource }),
                None => Err(scope_err(s, "empty resource before ':*'")),
            };
        }
        if !valid_segment(last) {
            return Err(scope_err(
                s,
                "segments are lower-case letters, digits, '_' and '-'",
            ));
        }
        Ok(Scope::Action {
            resource,
            action: (*last).into(),
        })
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::All => f.write_str("*"),
            Scope::AnyAction { resource } => write!(f, "{resource}:*"),
            Scope::Action {
                resource: Some(r),
                action,
            } => write!(f, "{r}:{action}"),
            Scope::Action {
                resource: None,
                action,
            } => f.write_str(action),
            Scope::Node { id, perm } => {
                let p = match (perm.read, perm.write) {
                    (true, true) => "rw",
                    (false, true) => "w",
                    _ => "r",
                };
                write!(f, "node:{}:{p}", id.hyphenated())
            }
        }
    }
}

impl serde::Serialize for Scope {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Scope {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The scopes a token holds, or a request needs. Empty = full access of the owner.
///
/// Parses from a list separated by spaces or commas; `Display` joins with a space.
///
/// One grammar covers the three families seen in the products we match:
///
/// - `resource:action` (and a plain `action`), with an ordered hierarchy per resource
///   ([`ScopeHierarchy`]): by default `repo:admin ⊃ repo:write ⊃ repo:read ⊃ repo:public_read`
///   (Docker Hub) and `write ⊃ read` (AWX);
/// - `node:<uuid>:<r|w|rw>` (Pydio Cells): `rw` grants `r` and `w`, on that node only;
/// - wildcards: `*` (everything) and `<resource>:*` (every action on a resource).
///
/// An empty [`ScopeSet`] means the token may do everything its owner may do.
///
/// ```
/// use tower_pat::{Scope, ScopeHierarchy, ScopeSet};
///
/// let h = ScopeHierarchy::default();
/// let have: ScopeSet = "repo:write node:0b0f8d7e-3f44-4c4e-9d0e-0f6f0b8d2a11:r".parse().unwrap();
/// assert!(have.allows(&"repo:read".parse().unwrap(), &h));
/// assert!(!have.allows(&"repo:admin".parse().unwrap(), &h));
/// assert!("Repo:Write".parse::<Scope>().is_err());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct ScopeSet(Vec<Scope>);

impl ScopeSet {
    /// The empty set: full access of the owner.
    pub fn full_access() -> Self {
        Self(Vec::new())
    }

    /// A set from scopes (duplicates removed, order kept).
    pub fn new(scopes: impl IntoIterator<Item = Scope>) -> Self {
        let mut v: Vec<Scope> = Vec::new();
        for s in scopes {
            if !v.contains(&s) {
                v.push(s);
            }
        }
        Self(v)
    }

    /// Parses each string, failing on the first bad one (the error names it).
    pub fn parse_all<I, S>(items: I) -> Result<Self, ScopeError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        items
            .into_iter()
            .map(|s| s.as_ref().parse())
            .collect::<Result<Vec<_>, _>>()
            .map(Self::new)
    }

    /// True for the empty set (full access).
    pub fn is_full_access(&self) -> bool {
        self.0.is_empty()
    }

    /// The scopes.
    pub fn iter(&self) -> std::slice::Iter<'_, Scope> {
        self.0.iter()
    }

    /// Number of scopes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there are no scopes (full access).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether a token holding these scopes may do what `needed` names.
    pub fn allows(&self, needed: &Scope, hierarchy: &ScopeHierarchy) -> bool {
        self.0.is_empty() || self.0.iter().any(|have| have.implies(needed, hierarchy))
    }

    /// The first scope of `needed` that these scopes do not grant, if any.
    pub fn missing<'a>(
        &self,
        needed: &'a ScopeSet,
        hierarchy: &ScopeHierarchy,
    ) -> Option<&'a Scope> {
        needed.iter().find(|n| !self.allows(n, hierarchy))
    }

    /// Whether every scope of `other` is granted by `self` (used to cap what a token may
    /// mint: nobody creates a token stronger than their own).
    pub fn covers(&self, other: &ScopeSet, hierarchy: &ScopeHierarchy) -> bool {
        if self.is_full_access() {
            return true;
        }
        if other.is_full_access() {
            return false;
        }
        self.missing(other, hierarchy).is_none()
    }
}

impl FromStr for ScopeSet {
    type Err = ScopeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse_all(s.split([' ', ',']).filter(|p| !p.is_empty()))
    }
}

impl fmt::Display for ScopeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{s}")?;
        }
        Ok(())
    }
}

impl FromIterator<Scope> for ScopeSet {
    fn from_iter<T: IntoIterator<Item = Scope>>(iter: T) -> Self {
        Self::new(iter)
    }
}

impl<'a> IntoIterator for &'a ScopeSet {
    type Item = &'a Scope;
    type IntoIter = std::slice::Iter<'a, Scope>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// Per-resource ordering of actions, strongest first: `repo: admin > write > read > public_read`.
///
/// An action that is not listed implies only itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeHierarchy {
    ranks: HashMap<Option<Box<str>>, Vec<Box<str>>>,
}

impl Default for ScopeHierarchy {
    /// `repo: admin > write > read > public_read` (Docker Hub) and plain `write > read` (AWX).
    fn default() -> Self {
        Self::empty()
            .with_resource(Some("repo"), &["admin", "write", "read", "public_read"])
            .with_resource(None, &["write", "read"])
    }
}

impl ScopeHierarchy {
    /// No orderings: every action implies only itself.
    pub fn empty() -> Self {
        Self {
            ranks: HashMap::new(),
        }
    }

    /// Sets the ordering for `resource` (`None` for plain actions), strongest first.
    #[must_use]
    pub fn with_resource(mut self, resource: Option<&str>, strongest_first: &[&str]) -> Self {
        self.ranks.insert(
            resource.map(Into::into),
            strongest_first.iter().map(|a| (*a).into()).collect(),
        );
        self
    }

    /// Whether `have` ranks above `need` for `resource`.
    fn outranks(&self, resource: Option<&str>, have: &str, need: &str) -> bool {
        let Some(order) = self.ranks.get(&resource.map(Box::from)) else {
            return false;
        };
        let pos = |a: &str| order.iter().position(|x| &**x == a);
        matches!((pos(have), pos(need)), (Some(h), Some(n)) if h < n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> Scope {
        v.parse().unwrap()
    }

    const A: &str = "0b0f8d7e-3f44-4c4e-9d0e-0f6f0b8d2a11";
    const B: &str = "7c9e6679-7425-40de-944b-e07fc1f90ae7";

    #[test]
    fn round_trip() {
        for v in [
            "*",
            "repo:*",
            "repo:write",
            "read",
            "sp:scopes:all",
            "sp:scopes:*",
            "pat:admin",
            &format!("node:{A}:rw"),
            &format!("node:{A}:r"),
            &format!("node:{A}:w"),
        ] {
            assert_eq!(s(v).to_string(), v);
        }
        let set: ScopeSet = "repo:read, read  write".parse().unwrap();
        assert_eq!(set.to_string(), "repo:read read write");
        assert_eq!(set.to_string().parse::<ScopeSet>().unwrap(), set);
    }

    #[test]
    fn rejects_bad_scopes_naming_them() {
        for bad in [
            "",
            "Repo:read",
            "repo:",
            ":read",
            "repo::read",
            "{repo}",
            "repo:..",
            "a b",
            "a,b",
            "..",
            "node:xyz:r",
            "node:*:r",
            "repo:read\n",
            "-x",
            "node:A:r",
            "node:0B0F8D7E-3F44-4C4E-9D0E-0F6F0B8D2A11:r",
            "node:0b0f8d7e-3f44-4c4e-9d0e-0f6f0b8d2a11:x",
            "node:0b0f8d7e-3f44-4c4e-9d0e-0f6f0b8d2a11:wr",
            "node:0b0f8d7e-3f44-4c4e-9d0e-0f6f0b8d2a11",
            "é",
            ":*",
        ] {
            let err = bad.parse::<Scope>().unwrap_err();
            assert_eq!(err.scope, bad);
            assert!(err.to_string().contains("invalid scope"));
        }
        let err = "repo:read Repo:write".parse::<ScopeSet>().unwrap_err();
        assert_eq!(err.scope, "Repo:write");
    }

    #[test]
    fn long_scope_rejected() {
        assert!("a".repeat(129).parse::<Scope>().is_err());
        assert!("a".repeat(128).parse::<Scope>().is_ok());
    }

    #[test]
    fn hierarchy() {
        let h = ScopeHierarchy::default();
        assert!(s("repo:admin").implies(&s("repo:public_read"), &h));
        assert!(s("repo:write").implies(&s("repo:read"), &h));
        assert!(!s("repo:read").implies(&s("repo:write"), &h));
        assert!(s("write").implies(&s("read"), &h));
        assert!(!s("read").implies(&s("write"), &h));
        assert!(!s("write").implies(&s("repo:read"), &h));
        assert!(!s("repo:write").implies(&s("org:read"), &h));
        assert!(!s("org:write").implies(&s("org:read"), &h));
        let h2 = ScopeHierarchy::default().with_resource(Some("org"), &["write", "read"]);
        assert!(s("org:write").implies(&s("org:read"), &h2));
    }

    #[test]
    fn nodes_and_wildcards() {
        let h = ScopeHierarchy::default();
        let rw = s(&format!("node:{A}:rw"));
        assert!(rw.implies(&s(&format!("node:{A}:r")), &h));
        assert!(rw.implies(&s(&format!("node:{A}:w")), &h));
        assert!(!rw.implies(&s(&format!("node:{B}:r")), &h));
        assert!(!s(&format!("node:{A}:r")).implies(&s(&format!("node:{A}:w")), &h));
        assert!(!s(&format!("node:{A}:r")).implies(&s(&format!("node:{A}:rw")), &h));
        assert!(s("*").implies(&s("repo:admin"), &h));
        assert!(s("repo:*").implies(&s("repo:admin"), &h));
        assert!(!s("repo:*").implies(&s("repository:read"), &h));
        assert!(s("sp:*").implies(&s("sp:scopes:all"), &h));
        assert!(s("node:*").implies(&s(&format!("node:{B}:w")), &h));
        assert!(!s("repo:*").implies(&s("*"), &h));
        assert!(!s("repo:admin").implies(&s("repo:*"), &h));
    }

    #[test]
    fn sets() {
        let h = ScopeHierarchy::default();
        let full = ScopeSet::full_access();
        assert!(full.allows(&s("anything"), &h));
        let set: ScopeSet = "repo:write".parse().unwrap();
        let need: ScopeSet = "repo:read repo:admin".parse().unwrap();
        assert_eq!(set.missing(&need, &h), Some(&s("repo:admin")));
        assert!(full.covers(&set, &h));
        assert!(!set.covers(&full, &h));
        assert!(set.covers(&"repo:read".parse().unwrap(), &h));
        assert_eq!(ScopeSet::new([s("read"), s("read")]).len(), 1);
    }
}
