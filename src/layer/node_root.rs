//! A scope policy for a server whose whole served tree is one node (a WebDAV gateway).

use http::request::Parts;
use uuid::Uuid;

use super::is_read_method;
use crate::rejection::RejectionKind;
use crate::scope::{NodePerm, Scope, ScopeSet};

/// A policy for a server whose whole tree is the node `id`, whatever the path: read
/// methods ([`is_read_method`]) need `node:<id>:r`, all others `node:<id>:w`. Methods
/// it does not know (`REPORT`, `SEARCH`, …) count as writes.
///
/// ```
/// use tower_pat::layer::node_root_scopes;
/// use tower_pat::RequireScopesLayer;
///
/// let root = uuid::Uuid::new_v4();
/// let layer = RequireScopesLayer::from_policy(node_root_scopes(root));
/// ```
pub fn node_root_scopes(
    id: Uuid,
) -> impl Fn(&Parts) -> Result<ScopeSet, RejectionKind> + Clone + Send + Sync + 'static {
    let read = ScopeSet::new([Scope::node(id, NodePerm::READ)]);
    let write = ScopeSet::new([Scope::node(id, NodePerm::WRITE)]);
    move |parts: &Parts| {
        Ok(if is_read_method(&parts.method) {
            read.clone()
        } else {
            write.clone()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{Method, Request};

    fn needed(id: Uuid, method: &str, path: &str) -> ScopeSet {
        let (parts, ()) = Request::builder()
            .method(Method::from_bytes(method.as_bytes()).unwrap())
            .uri(path)
            .body(())
            .unwrap()
            .into_parts();
        node_root_scopes(id)(&parts).unwrap()
    }

    #[test]
    fn reads_need_r_and_everything_else_w_on_any_path() {
        let id = Uuid::new_v4();
        let r = ScopeSet::new([Scope::node(id, NodePerm::READ)]);
        let w = ScopeSet::new([Scope::node(id, NodePerm::WRITE)]);
        for m in ["GET", "HEAD", "OPTIONS", "PROPFIND"] {
            assert_eq!(needed(id, m, "/a/b.txt"), r, "{m}");
        }
        for m in [
            "PUT",
            "MKCOL",
            "DELETE",
            "MOVE",
            "COPY",
            "PROPPATCH",
            "LOCK",
            "UNLOCK",
            "POST",
            "REPORT",
        ] {
            assert_eq!(needed(id, m, "/"), w, "{m}");
        }
    }
}
