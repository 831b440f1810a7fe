//! A WebDAV gateway: serves a directory, with a personal access token as the password.
//!
//! Desktop clients (file managers, Finder, Windows' WebClient) and tools such as `curl`
//! log in with HTTP Basic: the username is the token's owner and the password the
//! token. `Authorization: Bearer <token>` works too. The served directory is one node:
//! reading (`OPTIONS`, `PROPFIND`, `GET`, `HEAD`) needs `node:<id>:r`, anything else
//! (`PUT`, `MKCOL`, `DELETE`, `MOVE`, `COPY`, `PROPPATCH`, `LOCK`, `UNLOCK`) needs
//! `node:<id>:w`; a token with no scopes may do both.
//!
//! Environment:
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `PAT_LISTEN` | `127.0.0.1:4918` | address to listen on |
//! | `PAT_ROOT` | `.` | the directory served |
//! | `PAT_NODE_ID` | new UUID, printed as `node: <id>` | the served root's node id |
//! | `PAT_STORE_URL` | `sqlite://gateway.db` | the token store |
//! | `PAT_MAX_FAILURES`, `PAT_FAILURE_WINDOW` | `5`, `60s` | failed logins per client before 429 (`0` = off) |
//! | `PAT_DEMO_TOKEN=1` or `PAT_DEMO_SCOPES` | off | mint a token for `PAT_DEMO_USER` (default `demo`) and print `token: <value>` |
//!
//! ```text
//! PAT_ROOT=/srv/files PAT_DEMO_TOKEN=1 cargo run --example webdav_gateway
//! curl -u demo:<token> -X PROPFIND -H 'Depth: 1' http://127.0.0.1:4918/
//! ```

mod support;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use axum::extract::Request;
use axum::Router;
use dav_server::davpath::DavPath;
use dav_server::fs::{
    DavDirEntry, DavFile, DavFileSystem, DavMetaData, DavProp, FsError, FsFuture, FsStream,
    OpenOptions, ReadDirMeta,
};
use dav_server::localfs::LocalFs;
use dav_server::memls::MemLs;
use dav_server::DavHandler;
use support::env;
use tower_pat::layer::node_root_scopes;
use tower_pat::{Authenticator, PatLayer, RequireScopesLayer};
use uuid::Uuid;

/// The realm desktop clients show in their password prompt.
pub(crate) const REALM: &str = "tower-pat webdav";

/// The gateway's router: `root` served as node `node`, behind the token layers.
pub(crate) fn app(auth: Authenticator, root: &Path, node: Uuid) -> Router {
    let dav = DavHandler::builder()
        .filesystem(Box::new(PropFs {
            fs: LocalFs::new(root, false, false, false),
            props: Arc::default(),
        }))
        .locksystem(MemLs::new())
        .build_handler();
    Router::new()
        .fallback(move |req: Request| {
            let dav = dav.clone();
            async move { dav.handle(req).await }
        })
        .layer(RequireScopesLayer::from_policy(node_root_scopes(node)))
        .layer(PatLayer::new(auth).with_realm(REALM))
}

type Props = BTreeMap<(Option<String>, String), DavProp>;

/// The local file system, plus the dead properties clients set with `PROPPATCH`
/// (dav-server's `LocalFs` keeps none; Office and Finder use them). They live in memory,
/// keyed by path, and follow `MOVE`, `COPY` and `DELETE`.
#[derive(Clone)]
struct PropFs {
    fs: Box<LocalFs>,
    props: Arc<Mutex<HashMap<Vec<u8>, Props>>>,
}

/// The properties' key of `path`: its bytes without a trailing `/`.
fn prop_key(path: &DavPath) -> Vec<u8> {
    let bytes = path.as_bytes();
    bytes.strip_suffix(b"/").unwrap_or(bytes).to_vec()
}

/// Whether key `k` is `base` or a path under it.
fn under(k: &[u8], base: &[u8]) -> bool {
    k.strip_prefix(base)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with(b"/"))
}

impl PropFs {
    fn table(&self) -> std::sync::MutexGuard<'_, HashMap<Vec<u8>, Props>> {
        self.props.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Drops the properties of `path` and everything under it.
    fn forget(&self, path: &DavPath) {
        let base = prop_key(path);
        self.table().retain(|k, _| !under(k, &base));
    }

    /// Gives `to` (and what is under it) the properties of `from`, moved or copied.
    fn carry(&self, from: &DavPath, to: &DavPath, copy: bool) {
        let (old, new) = (prop_key(from), prop_key(to));
        let mut table = self.table();
        table.retain(|k, _| !under(k, &new));
        let keys: Vec<Vec<u8>> = table.keys().filter(|k| under(k, &old)).cloned().collect();
        for k in keys {
            let props = if copy {
                table.get(&k).cloned()
            } else {
                table.remove(&k)
            };
            if let Some(props) = props {
                table.insert([new.as_slice(), &k[old.len()..]].concat(), props);
            }
        }
    }
}

impl DavFileSystem for PropFs {
    fn open<'a>(&'a self, path: &'a DavPath, o: OpenOptions) -> FsFuture<'a, Box<dyn DavFile>> {
        self.fs.open(path, o)
    }

    fn read_dir<'a>(
        &'a self,
        path: &'a DavPath,
        meta: ReadDirMeta,
    ) -> FsFuture<'a, FsStream<Box<dyn DavDirEntry>>> {
        self.fs.read_dir(path, meta)
    }

    fn metadata<'a>(&'a self, path: &'a DavPath) -> FsFuture<'a, Box<dyn DavMetaData>> {
        self.fs.metadata(path)
    }

    fn symlink_metadata<'a>(&'a self, path: &'a DavPath) -> FsFuture<'a, Box<dyn DavMetaData>> {
        self.fs.symlink_metadata(path)
    }

    fn create_dir<'a>(&'a self, path: &'a DavPath) -> FsFuture<'a, ()> {
        self.fs.create_dir(path)
    }

    fn remove_dir<'a>(&'a self, path: &'a DavPath) -> FsFuture<'a, ()> {
        Box::pin(async move {
            self.fs.remove_dir(path).await?;
            self.forget(path);
            Ok(())
        })
    }

    fn remove_file<'a>(&'a self, path: &'a DavPath) -> FsFuture<'a, ()> {
        Box::pin(async move {
            self.fs.remove_file(path).await?;
            self.forget(path);
            Ok(())
        })
    }

    fn rename<'a>(&'a self, from: &'a DavPath, to: &'a DavPath) -> FsFuture<'a, ()> {
        Box::pin(async move {
            self.fs.rename(from, to).await?;
            self.carry(from, to, false);
            Ok(())
        })
    }

    fn copy<'a>(&'a self, from: &'a DavPath, to: &'a DavPath) -> FsFuture<'a, ()> {
        Box::pin(async move {
            self.fs.copy(from, to).await?;
            self.carry(from, to, true);
            Ok(())
        })
    }

    fn set_accessed<'a>(&'a self, path: &'a DavPath, tm: SystemTime) -> FsFuture<'a, ()> {
        self.fs.set_accessed(path, tm)
    }

    fn set_modified<'a>(&'a self, path: &'a DavPath, tm: SystemTime) -> FsFuture<'a, ()> {
        self.fs.set_modified(path, tm)
    }

    fn have_props<'a>(&'a self, _: &'a DavPath) -> Pin<Box<dyn Future<Output = bool> + Send + 'a>> {
        Box::pin(async { true })
    }

    fn patch_props<'a>(
        &'a self,
        path: &'a DavPath,
        patch: Vec<(bool, DavProp)>,
    ) -> FsFuture<'a, Vec<(http::StatusCode, DavProp)>> {
        Box::pin(async move {
            self.fs.metadata(path).await?;
            let mut table = self.table();
            let props = table.entry(prop_key(path)).or_default();
            let mut result = Vec::with_capacity(patch.len());
            for (set, prop) in patch {
                let key = (prop.namespace.clone(), prop.name.clone());
                let name = DavProp {
                    xml: None,
                    ..prop.clone()
                };
                if set {
                    props.insert(key, prop);
                } else {
                    props.remove(&key);
                }
                result.push((http::StatusCode::OK, name));
            }
            Ok(result)
        })
    }

    fn get_props<'a>(&'a self, path: &'a DavPath, content: bool) -> FsFuture<'a, Vec<DavProp>> {
        Box::pin(async move {
            self.fs.metadata(path).await?;
            let table = self.table();
            Ok(table.get(&prop_key(path)).map_or_else(Vec::new, |props| {
                props
                    .values()
                    .map(|p| DavProp {
                        xml: if content { p.xml.clone() } else { None },
                        ..p.clone()
                    })
                    .collect()
            }))
        })
    }

    fn get_prop<'a>(&'a self, path: &'a DavPath, prop: DavProp) -> FsFuture<'a, Vec<u8>> {
        Box::pin(async move {
            let table = self.table();
            table
                .get(&prop_key(path))
                .and_then(|props| props.get(&(prop.namespace, prop.name)))
                .and_then(|p| p.xml.clone())
                .ok_or(FsError::NotFound)
        })
    }

    fn get_quota(&self) -> FsFuture<'_, (u64, Option<u64>)> {
        self.fs.get_quota()
    }
}

/// Serves `app` on `listener` until `shutdown` completes. Clients are told apart by
/// address, for failed-attempt limiting.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

async fn run() -> Result<(), String> {
    let listen = env("PAT_LISTEN").unwrap_or_else(|| "127.0.0.1:4918".to_owned());
    let support::Gateway { root, node, auth } = support::gateway("webdav gateway demo").await?;

    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    println!("listening: {addr}");
    eprintln!(
        "serving {} as node {node} over WebDAV at http://{addr}/",
        root.display()
    );
    serve(listener, app(auth.clone(), &root, node), support::ctrl_c())
        .await
        .map_err(|e| format!("server failed: {e}"))?;
    support::shutdown(&auth).await
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
