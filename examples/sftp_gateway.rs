//! An SFTP gateway: serves a directory over SSH, with a personal access token as the
//! password.
//!
//! `sftp -P 2222 demo@127.0.0.1` logs in with the token's owner as the username and the
//! token as the password; public-key authentication is off. Password logins go through
//! [`Authenticator::authenticate`] with a Basic [`Credential`](tower_pat::Credential) and
//! the client's address, so failed attempts count per client address and per address +
//! username, as they do over HTTP. The served directory is
//! one node: reading (open for reading, opendir/readdir, stat/lstat/fstat, realpath)
//! needs `node:<id>:r`, writing (open for writing, write, mkdir, remove, rmdir, rename,
//! setstat) needs `node:<id>:w`; a token with no scopes may do both. Paths cannot leave
//! the directory: `..` stops at its top, symbolic links that point out of it are
//! refused, and no link can be made.
//!
//! Environment:
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `PAT_LISTEN` | `127.0.0.1:2222` | address to listen on |
//! | `PAT_ROOT` | `.` | the directory served |
//! | `PAT_NODE_ID` | new UUID, printed as `node: <id>` | the served root's node id |
//! | `PAT_STORE_URL` | `sqlite://gateway.db` | the token store |
//! | `PAT_HOST_KEY` | a new key each start | OpenSSH private key file; made (Ed25519) when missing |
//! | `PAT_MAX_FAILURES`, `PAT_FAILURE_WINDOW` | `5`, `60s` | failed logins per client before refusal (`0` = off) |
//! | `PAT_DEMO_TOKEN=1` or `PAT_DEMO_SCOPES` | off | mint a token for `PAT_DEMO_USER` (default `demo`) and print `token: <value>` |
//!
//! ```text
//! PAT_ROOT=/srv/files PAT_DEMO_TOKEN=1 cargo run --example sftp_gateway
//! sftp -P 2222 demo@127.0.0.1     # password: the token
//! ```

mod support;

use std::collections::HashMap;
use std::io::{ErrorKind, SeekFrom};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use russh::keys::ssh_key::{self, HashAlg, LineEnding, PrivateKey};
use russh::server::{Auth, Msg, Server as _, Session};
use russh::{Channel, ChannelId, MethodKind, MethodSet};
use russh_sftp::protocol::{
    Attrs, Data, File, FileAttributes, Handle, Name, OpenFlags, Status, StatusCode,
};
use support::env;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tower_pat::NodePerm;
use tower_pat::{Authenticator, Principal, Scope};
use uuid::Uuid;

/// Most bytes answered to one read request.
const MAX_READ: u32 = 64 * 1024;
/// Most files and directories one session may hold open.
const MAX_HANDLES: usize = 256;
/// Most directory entries sent in one answer.
const DIR_CHUNK: usize = 128;

/// What the gateway serves, and who decides on logins.
#[derive(Debug)]
pub(crate) struct Gateway {
    /// Checks the passwords (tokens).
    pub(crate) auth: Authenticator,
    /// The served directory, canonical (absolute, no symbolic links).
    pub(crate) root: PathBuf,
    /// The served directory's node id.
    pub(crate) node: Uuid,
}

/// SSH settings: password authentication only, `host_key`, and failed logins answered
/// after `rejection_delay` (the same delay whatever the reason).
pub(crate) fn ssh_config(host_key: PrivateKey, rejection_delay: Duration) -> russh::server::Config {
    russh::server::Config {
        methods: MethodSet::from(&[MethodKind::Password][..]),
        auth_rejection_time: rejection_delay,
        // OpenSSH first asks with method "none" to learn the methods: answer at once.
        auth_rejection_time_initial: Some(Duration::ZERO),
        max_auth_attempts: 3,
        inactivity_timeout: Some(Duration::from_secs(600)),
        keys: vec![host_key],
        ..Default::default()
    }
}

/// A new Ed25519 host key.
pub(crate) fn generate_host_key() -> Result<PrivateKey, String> {
    let mut seed = [0u8; 32];
    getrandom::getrandom(&mut seed).map_err(|e| format!("no randomness for a host key: {e}"))?;
    Ok(PrivateKey::from(
        ssh_key::private::Ed25519Keypair::from_seed(&seed),
    ))
}

/// Serves SFTP on `listener` until the returned future is dropped or fails.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    gateway: Arc<Gateway>,
    config: Arc<russh::server::Config>,
) -> std::io::Result<()> {
    SshServer { gateway }.run_on_socket(config, &listener).await
}

#[derive(Clone)]
struct SshServer {
    gateway: Arc<Gateway>,
}

impl russh::server::Server for SshServer {
    type Handler = SshSession;

    fn new_client(&mut self, peer: Option<SocketAddr>) -> SshSession {
        SshSession {
            gateway: self.gateway.clone(),
            // Peers of unknown address share one count.
            client: peer.map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |a| a.ip()),
            principal: None,
            channels: HashMap::new(),
        }
    }
}

/// One SSH connection.
struct SshSession {
    gateway: Arc<Gateway>,
    client: IpAddr,
    principal: Option<Principal>,
    channels: HashMap<ChannelId, Channel<Msg>>,
}

impl russh::server::Handler for SshSession {
    type Error = russh::Error;

    async fn auth_password(&mut self, user: &str, password: &str) -> Result<Auth, Self::Error> {
        let verdict = self
            .gateway
            .auth
            .authenticate(
                tower_pat::Credential::basic(user, password).with_client(Some(self.client)),
            )
            .await;
        match verdict {
            Ok(principal) => {
                tracing::info!(client = %self.client, user, token_id = %principal.token_id(), "sftp login");
                self.principal = Some(principal);
                Ok(Auth::Accept)
            }
            Err(e) => {
                // The error never holds the password.
                tracing::info!(client = %self.client, user, error = %e, "sftp login refused");
                Ok(Auth::reject())
            }
        }
    }

    async fn auth_publickey_offered(
        &mut self,
        _: &str,
        _: &ssh_key::PublicKey,
    ) -> Result<Auth, Self::Error> {
        Ok(Auth::reject())
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        _: &mut Session,
    ) -> Result<bool, Self::Error> {
        if self.principal.is_none() || self.channels.len() >= 8 {
            return Ok(false);
        }
        self.channels.insert(channel.id(), channel);
        Ok(true)
    }

    async fn channel_eof(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.close(channel)
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        match (name, self.principal.clone(), self.channels.remove(&channel)) {
            ("sftp", Some(principal), Some(ch)) => {
                session.channel_success(channel)?;
                let sftp = SftpSession {
                    gateway: self.gateway.clone(),
                    principal,
                    handles: HashMap::new(),
                    next_handle: 0,
                };
                russh_sftp::server::run(ch.into_stream(), sftp).await;
            }
            _ => session.channel_failure(channel)?,
        }
        Ok(())
    }
}

enum OpenHandle {
    File {
        file: tokio::fs::File,
        path: PathBuf,
    },
    Dir {
        entries: Vec<File>,
    },
}

/// The SFTP subsystem of one logged-in connection.
struct SftpSession {
    gateway: Arc<Gateway>,
    principal: Principal,
    handles: HashMap<String, OpenHandle>,
    next_handle: u64,
}

fn ok(id: u32) -> Status {
    Status {
        id,
        status_code: StatusCode::Ok,
        error_message: "Ok".to_owned(),
        language_tag: "en-US".to_owned(),
    }
}

fn io_status(e: std::io::Error) -> StatusCode {
    match e.kind() {
        ErrorKind::NotFound => StatusCode::NoSuchFile,
        ErrorKind::PermissionDenied => StatusCode::PermissionDenied,
        _ => StatusCode::Failure,
    }
}

/// `path` as a clean absolute path of the served tree (`/` is its top; relative paths
/// start there). `..` cannot climb above the top.
fn normalize(path: &str) -> Result<String, StatusCode> {
    let mut parts: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                parts.pop().ok_or(StatusCode::PermissionDenied)?;
            }
            s if s.contains('\0') => return Err(StatusCode::BadMessage),
            s => parts.push(s),
        }
    }
    Ok(format!("/{}", parts.join("/")))
}

impl SftpSession {
    /// Refuses the operation unless the token may `perm` the served node.
    fn need(&self, perm: NodePerm) -> Result<(), StatusCode> {
        if self.principal.allows(&Scope::node(self.gateway.node, perm)) {
            Ok(())
        } else {
            tracing::debug!(token_id = %self.principal.token_id(), ?perm, "sftp operation refused: missing node scope");
            Err(StatusCode::PermissionDenied)
        }
    }

    /// The real path of `path`, refused when it (with `follow`, the file itself; else its
    /// directory) resolves out of the served directory through a symbolic link.
    async fn real(&self, path: &str, follow: bool) -> Result<(String, PathBuf), StatusCode> {
        let virt = normalize(path)?;
        let root = &self.gateway.root;
        let real = root.join(virt.trim_start_matches('/'));
        if virt == "/" {
            return Ok((virt, real));
        }
        let mut probe = if follow {
            real.clone()
        } else {
            real.parent()
                .map_or_else(|| root.clone(), Path::to_path_buf)
        };
        loop {
            match tokio::fs::canonicalize(&probe).await {
                Ok(c) if c.starts_with(root) => return Ok((virt, real)),
                Ok(_) => return Err(StatusCode::PermissionDenied),
                Err(e) if e.kind() == ErrorKind::NotFound => {
                    // A dangling link is "not found" too: never create through one.
                    if tokio::fs::symlink_metadata(&probe).await.is_ok() {
                        return Err(StatusCode::PermissionDenied);
                    }
                    match probe.parent() {
                        Some(parent) if parent.starts_with(root) => probe = parent.to_path_buf(),
                        _ => return Err(StatusCode::PermissionDenied),
                    }
                }
                Err(e) => return Err(io_status(e)),
            }
        }
    }

    fn add_handle(&mut self, handle: OpenHandle) -> Result<String, StatusCode> {
        if self.handles.len() >= MAX_HANDLES {
            return Err(StatusCode::Failure);
        }
        self.next_handle += 1;
        let key = self.next_handle.to_string();
        self.handles.insert(key.clone(), handle);
        Ok(key)
    }

    async fn attrs_of(&self, path: &str, follow: bool) -> Result<FileAttributes, StatusCode> {
        let (_, real) = self.real(path, follow).await?;
        let meta = if follow {
            tokio::fs::metadata(&real).await
        } else {
            tokio::fs::symlink_metadata(&real).await
        };
        Ok(FileAttributes::from(&meta.map_err(io_status)?))
    }
}

/// Applies `attrs` (size, permissions, times; owners are ignored) to `path`.
fn apply_attrs(path: &Path, attrs: &FileAttributes) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(size) = attrs.size {
        std::fs::OpenOptions::new()
            .write(true)
            .open(path)?
            .set_len(size)?;
    }
    if let Some(mode) = attrs.permissions {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o7777))?;
    }
    if let (Some(atime), Some(mtime)) = (attrs.atime, attrs.mtime) {
        let at = |s: u32| std::time::UNIX_EPOCH + Duration::from_secs(s.into());
        let times = std::fs::FileTimes::new()
            .set_accessed(at(atime))
            .set_modified(at(mtime));
        std::fs::File::options()
            .read(true)
            .open(path)?
            .set_times(times)?;
    }
    Ok(())
}

async fn apply_attrs_async(path: PathBuf, attrs: FileAttributes) -> Result<(), StatusCode> {
    tokio::task::spawn_blocking(move || apply_attrs(&path, &attrs))
        .await
        .map_err(|_| StatusCode::Failure)?
        .map_err(io_status)
}

impl russh_sftp::server::Handler for SftpSession {
    type Error = StatusCode;

    fn unimplemented(&self) -> Self::Error {
        StatusCode::OpUnsupported
    }

    async fn realpath(&mut self, id: u32, path: String) -> Result<Name, Self::Error> {
        self.need(NodePerm::READ)?;
        let virt = normalize(&path)?;
        Ok(Name {
            id,
            files: vec![File::dummy(virt)],
        })
    }

    async fn open(
        &mut self,
        id: u32,
        filename: String,
        pflags: OpenFlags,
        attrs: FileAttributes,
    ) -> Result<Handle, Self::Error> {
        use std::os::unix::fs::OpenOptionsExt;
        let writes = pflags.intersects(
            OpenFlags::WRITE
                | OpenFlags::APPEND
                | OpenFlags::CREATE
                | OpenFlags::TRUNCATE
                | OpenFlags::EXCLUDE,
        );
        if pflags.contains(OpenFlags::READ) || !writes {
            self.need(NodePerm::READ)?;
        }
        if writes {
            self.need(NodePerm::WRITE)?;
        }
        let (_, real) = self.real(&filename, true).await?;
        let mut options = std::fs::OpenOptions::from(pflags);
        if let Some(mode) = attrs.permissions {
            options.mode(mode & 0o777);
        }
        let file = tokio::fs::OpenOptions::from(options)
            .open(&real)
            .await
            .map_err(io_status)?;
        let handle = self.add_handle(OpenHandle::File { file, path: real })?;
        Ok(Handle { id, handle })
    }

    async fn read(
        &mut self,
        id: u32,
        handle: String,
        offset: u64,
        len: u32,
    ) -> Result<Data, Self::Error> {
        self.need(NodePerm::READ)?;
        let Some(OpenHandle::File { file, .. }) = self.handles.get_mut(&handle) else {
            return Err(StatusCode::Failure);
        };
        file.seek(SeekFrom::Start(offset))
            .await
            .map_err(io_status)?;
        let mut data = vec![0u8; len.min(MAX_READ) as usize];
        let mut filled = 0;
        while filled < data.len() {
            match file.read(&mut data[filled..]).await.map_err(io_status)? {
                0 => break,
                n => filled += n,
            }
        }
        if filled == 0 && !data.is_empty() {
            return Err(StatusCode::Eof);
        }
        data.truncate(filled);
        Ok(Data { id, data })
    }

    async fn write(
        &mut self,
        id: u32,
        handle: String,
        offset: u64,
        data: Vec<u8>,
    ) -> Result<Status, Self::Error> {
        self.need(NodePerm::WRITE)?;
        let Some(OpenHandle::File { file, .. }) = self.handles.get_mut(&handle) else {
            return Err(StatusCode::Failure);
        };
        file.seek(SeekFrom::Start(offset))
            .await
            .map_err(io_status)?;
        file.write_all(&data).await.map_err(io_status)?;
        Ok(ok(id))
    }

    async fn close(&mut self, id: u32, handle: String) -> Result<Status, Self::Error> {
        match self.handles.remove(&handle) {
            // Writes are done in the background: finish them before saying "closed".
            Some(OpenHandle::File { mut file, .. }) => file.flush().await.map_err(io_status)?,
            Some(OpenHandle::Dir { .. }) => {}
            None => return Err(StatusCode::Failure),
        }
        Ok(ok(id))
    }

    async fn opendir(&mut self, id: u32, path: String) -> Result<Handle, Self::Error> {
        self.need(NodePerm::READ)?;
        let (_, real) = self.real(&path, true).await?;
        let mut dir = tokio::fs::read_dir(&real).await.map_err(io_status)?;
        let mut entries = Vec::new();
        while let Some(entry) = dir.next_entry().await.map_err(io_status)? {
            let Ok(meta) = entry.metadata().await else {
                continue;
            };
            let name = entry.file_name().to_string_lossy().into_owned();
            entries.push(File::new(name, FileAttributes::from(&meta)));
        }
        entries.reverse(); // handed out from the end
        let handle = self.add_handle(OpenHandle::Dir { entries })?;
        Ok(Handle { id, handle })
    }

    async fn readdir(&mut self, id: u32, handle: String) -> Result<Name, Self::Error> {
        self.need(NodePerm::READ)?;
        let Some(OpenHandle::Dir { entries }) = self.handles.get_mut(&handle) else {
            return Err(StatusCode::Failure);
        };
        if entries.is_empty() {
            return Err(StatusCode::Eof);
        }
        let split = entries.len().saturating_sub(DIR_CHUNK);
        let files = entries.split_off(split);
        Ok(Name { id, files })
    }

    async fn stat(&mut self, id: u32, path: String) -> Result<Attrs, Self::Error> {
        self.need(NodePerm::READ)?;
        let attrs = self.attrs_of(&path, true).await?;
        Ok(Attrs { id, attrs })
    }

    async fn lstat(&mut self, id: u32, path: String) -> Result<Attrs, Self::Error> {
        self.need(NodePerm::READ)?;
        let attrs = self.attrs_of(&path, false).await?;
        Ok(Attrs { id, attrs })
    }

    async fn fstat(&mut self, id: u32, handle: String) -> Result<Attrs, Self::Error> {
        self.need(NodePerm::READ)?;
        let Some(OpenHandle::File { file, .. }) = self.handles.get(&handle) else {
            return Err(StatusCode::Failure);
        };
        let meta = file.metadata().await.map_err(io_status)?;
        Ok(Attrs {
            id,
            attrs: FileAttributes::from(&meta),
        })
    }

    async fn setstat(
        &mut self,
        id: u32,
        path: String,
        attrs: FileAttributes,
    ) -> Result<Status, Self::Error> {
        self.need(NodePerm::WRITE)?;
        let (_, real) = self.real(&path, true).await?;
        apply_attrs_async(real, attrs).await?;
        Ok(ok(id))
    }

    async fn fsetstat(
        &mut self,
        id: u32,
        handle: String,
        attrs: FileAttributes,
    ) -> Result<Status, Self::Error> {
        self.need(NodePerm::WRITE)?;
        let Some(OpenHandle::File { file, path }) = self.handles.get_mut(&handle) else {
            return Err(StatusCode::Failure);
        };
        file.flush().await.map_err(io_status)?;
        apply_attrs_async(path.clone(), attrs).await?;
        Ok(ok(id))
    }

    async fn mkdir(
        &mut self,
        id: u32,
        path: String,
        attrs: FileAttributes,
    ) -> Result<Status, Self::Error> {
        use std::os::unix::fs::DirBuilderExt;
        self.need(NodePerm::WRITE)?;
        let (_, real) = self.real(&path, false).await?;
        let mut builder = std::fs::DirBuilder::new();
        builder.mode(attrs.permissions.map_or(0o777, |m| m & 0o777));
        tokio::task::spawn_blocking(move || builder.create(real))
            .await
            .map_err(|_| StatusCode::Failure)?
            .map_err(io_status)?;
        Ok(ok(id))
    }

    async fn rmdir(&mut self, id: u32, path: String) -> Result<Status, Self::Error> {
        self.need(NodePerm::WRITE)?;
        let (virt, real) = self.real(&path, false).await?;
        if virt == "/" {
            return Err(StatusCode::PermissionDenied);
        }
        tokio::fs::remove_dir(&real).await.map_err(io_status)?;
        Ok(ok(id))
    }

    async fn remove(&mut self, id: u32, filename: String) -> Result<Status, Self::Error> {
        self.need(NodePerm::WRITE)?;
        let (_, real) = self.real(&filename, false).await?;
        tokio::fs::remove_file(&real).await.map_err(io_status)?;
        Ok(ok(id))
    }

    async fn rename(
        &mut self,
        id: u32,
        oldpath: String,
        newpath: String,
    ) -> Result<Status, Self::Error> {
        self.need(NodePerm::WRITE)?;
        let (old_virt, old) = self.real(&oldpath, false).await?;
        let (new_virt, new) = self.real(&newpath, false).await?;
        if old_virt == "/" || new_virt == "/" {
            return Err(StatusCode::PermissionDenied);
        }
        // SFTP v3: renaming onto an existing name fails.
        if tokio::fs::symlink_metadata(&new).await.is_ok() {
            return Err(StatusCode::Failure);
        }
        tokio::fs::rename(&old, &new).await.map_err(io_status)?;
        Ok(ok(id))
    }
}

/// Loads the host key at `path`, or makes one and saves it there (mode 0600).
fn host_key(path: Option<&str>) -> Result<PrivateKey, String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let Some(path) = path else {
        return generate_host_key();
    };
    match std::fs::read_to_string(path) {
        Ok(pem) => PrivateKey::from_openssh(&pem).map_err(|e| format!("PAT_HOST_KEY {path}: {e}")),
        Err(e) if e.kind() == ErrorKind::NotFound => {
            let key = generate_host_key()?;
            let pem = key
                .to_openssh(LineEnding::LF)
                .map_err(|e| format!("cannot encode the host key: {e}"))?;
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .and_then(|mut f| f.write_all(pem.as_bytes()))
                .map_err(|e| format!("PAT_HOST_KEY {path}: {e}"))?;
            Ok(key)
        }
        Err(e) => Err(format!("PAT_HOST_KEY {path}: {e}")),
    }
}

async fn run() -> Result<(), String> {
    let listen = env("PAT_LISTEN").unwrap_or_else(|| "127.0.0.1:2222".to_owned());
    let key = host_key(env("PAT_HOST_KEY").as_deref())?;
    let support::Gateway { root, node, auth } = support::gateway("sftp gateway demo").await?;

    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    println!("listening: {addr}");
    eprintln!(
        "serving {} as node {node} over SFTP at {addr}, host key {}",
        root.display(),
        key.public_key().fingerprint(HashAlg::Sha256)
    );
    let gateway = Arc::new(Gateway {
        auth: auth.clone(),
        root,
        node,
    });
    let config = Arc::new(ssh_config(key, Duration::from_secs(1)));
    tokio::select! {
        served = serve(listener, gateway, config) => {
            served.map_err(|e| format!("server failed: {e}"))?;
        }
        _ = support::ctrl_c() => {}
    }
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
