//! The SFTP gateway example, driven by the OpenSSH `sftp` client with the password given
//! by `sshpass`. `.ci/run` installs both.

#[path = "../examples/sftp_gateway.rs"]
#[allow(dead_code)]
mod sftp_gateway;

mod common;
use common::{example_binary, require_tool as require};

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use tower_pat::AttemptLimiter;
use tower_pat::{Authenticator, Expiry, MemoryStore, NewToken, ScopeSet};
use uuid::Uuid;

/// The gateway, served in this process on a free port over a temporary directory, with
/// a local working directory for the client.
struct Gateway {
    addr: SocketAddr,
    node: Uuid,
    auth: Authenticator,
    root: PathBuf,
    local: tempfile::TempDir,
    _dir: tempfile::TempDir,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl Gateway {
    async fn start(limiter: AttemptLimiter) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap().join("served");
        std::fs::create_dir(&root).unwrap();
        let auth = Authenticator::builder(Arc::new(MemoryStore::new()))
            .with_attempt_limiter(limiter)
            .build();
        let node = Uuid::new_v4();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let gateway = Arc::new(sftp_gateway::Gateway {
            auth: auth.clone(),
            root: root.clone(),
            node,
        });
        let key = sftp_gateway::generate_host_key().unwrap();
        let config = Arc::new(sftp_gateway::ssh_config(key, Duration::from_millis(200)));
        let server = tokio::spawn(sftp_gateway::serve(listener, gateway, config));
        Self {
            addr,
            node,
            auth,
            root,
            local: tempfile::tempdir().unwrap(),
            _dir: dir,
            server,
        }
    }

    async fn create(&self, new: NewToken) -> (tower_pat::TokenId, String) {
        let created = self.auth.create(new).await.unwrap();
        (created.record.id, created.token.expose().to_owned())
    }

    async fn token(&self, scopes: &str) -> String {
        let scopes: ScopeSet = scopes.parse().unwrap();
        self.create(NewToken::new("demo", "test").with_scopes(scopes))
            .await
            .1
    }

    fn local(&self, name: &str) -> PathBuf {
        self.local.path().join(name)
    }

    /// Runs `batch` with `sftp -b`, logging in as `user` with `password`.
    async fn sftp(&self, user: &str, password: &str, batch: &str) -> Output {
        sftp(
            self.addr.port(),
            self.local.path(),
            "127.0.0.1",
            user,
            password,
            batch,
        )
        .await
    }

    /// The same from another client address.
    async fn sftp_from(&self, source: &str, user: &str, password: &str, batch: &str) -> Output {
        sftp(
            self.addr.port(),
            self.local.path(),
            source,
            user,
            password,
            batch,
        )
        .await
    }
}

/// Runs OpenSSH `sftp -b` from `local` against `127.0.0.1:port`, bound to `source`.
async fn sftp(
    port: u16,
    local: &Path,
    source: &str,
    user: &str,
    password: &str,
    batch: &str,
) -> Output {
    require("sftp");
    require("sshpass");
    let batch_file = local.join("batch");
    std::fs::write(&batch_file, batch).unwrap();
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        Command::new("sshpass")
            .arg("-e") // the password from $SSHPASS, not the command line
            .env("SSHPASS", password)
            .arg("sftp")
            .args(["-F", "/dev/null"])
            .args([
                "-oStrictHostKeyChecking=no",
                "-oUserKnownHostsFile=/dev/null",
                "-oLogLevel=ERROR",
                "-oPubkeyAuthentication=no",
                "-oPreferredAuthentications=password",
                "-oNumberOfPasswordPrompts=1",
                "-oBatchMode=no",
                "-oConnectTimeout=20",
            ])
            .arg(format!("-oBindAddress={source}"))
            .arg("-P")
            .arg(port.to_string())
            .arg("-b")
            .arg(&batch_file)
            .arg(format!("{user}@127.0.0.1"))
            .current_dir(local)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("sftp timed out")
    .expect("sshpass runs");
    let _ = std::fs::remove_file(batch_file);
    out
}

fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn assert_login_refused(out: &Output, what: &str) {
    assert!(
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("Permission denied"),
        "{what}: login should be refused\n{}",
        text(out)
    );
}

/// Bytes that are not text, so a transfer that changes any byte shows.
fn payload(len: usize) -> Vec<u8> {
    let mut x: u32 = 0x9e37_79b9;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x.to_le_bytes()[0]
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_token_uploads_and_downloads_byte_for_byte() {
    let gw = Gateway::start(AttemptLimiter::disabled()).await;
    let token = gw.token("").await;
    let data = payload(300_000);
    std::fs::write(gw.local("up.bin"), &data).unwrap();

    let out = gw
        .sftp(
            "demo",
            &token,
            "mkdir docs\nput up.bin docs/up.bin\nls -l docs\nget docs/up.bin down.bin\n\
             rename docs/up.bin docs/moved.bin\nput up.bin gone.bin\nrm gone.bin\n",
        )
        .await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("up.bin"),
        "{}",
        text(&out)
    );
    assert_eq!(std::fs::read(gw.root.join("docs/moved.bin")).unwrap(), data);
    assert_eq!(std::fs::read(gw.local("down.bin")).unwrap(), data);
    assert!(!gw.root.join("gone.bin").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_token_downloads_but_cannot_upload() {
    let gw = Gateway::start(AttemptLimiter::disabled()).await;
    let ro = gw.token(&format!("node:{}:r", gw.node)).await;
    let data = payload(70_000);
    std::fs::write(gw.root.join("shared.bin"), &data).unwrap();
    std::fs::write(gw.local("mine.bin"), b"mine").unwrap();

    let out = gw.sftp("demo", &ro, "ls\nget shared.bin copy.bin\n").await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(std::fs::read(gw.local("copy.bin")).unwrap(), data);

    let out = gw.sftp("demo", &ro, "put mine.bin mine.bin\n").await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("Permission denied"),
        "upload must fail with a permission error\n{}",
        text(&out)
    );
    assert!(!gw.root.join("mine.bin").exists());

    // Each other write, each allowed to fail so all run.
    let out = gw
        .sftp(
            "demo",
            &ro,
            "-mkdir d\n-rm shared.bin\n-rename shared.bin x.bin\n-chmod 600 shared.bin\n",
        )
        .await;
    assert!(out.status.success(), "{}", text(&out));
    let denied = String::from_utf8_lossy(&out.stderr)
        .matches("Permission denied")
        .count();
    assert_eq!(denied, 4, "{}", text(&out));
    assert!(!gw.root.join("d").exists());
    assert_eq!(std::fs::read(gw.root.join("shared.bin")).unwrap(), data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_expired_and_revoked_tokens_cannot_log_in() {
    let gw = Gateway::start(AttemptLimiter::disabled()).await;
    let good = gw.token("").await;

    let foreign = Authenticator::new(Arc::new(MemoryStore::new()));
    let unknown = foreign.create(NewToken::new("demo", "x")).await.unwrap();
    assert_login_refused(
        &gw.sftp("demo", unknown.token.expose(), "ls\n").await,
        "unknown token",
    );
    assert_login_refused(&gw.sftp("demo", "not-a-token", "ls\n").await, "not a token");
    assert_login_refused(
        &gw.sftp("alice", &good, "ls\n").await,
        "another user's name",
    );

    let now = gw.auth.clock().now();
    let expired = Expiry::hard(now - time::Duration::hours(2), Duration::from_secs(3600));
    let (_, expired) = gw
        .create(NewToken::new("demo", "old").with_expiry(expired))
        .await;
    assert_login_refused(&gw.sftp("demo", &expired, "ls\n").await, "expired token");

    let (id, revoked) = gw.create(NewToken::new("demo", "soon revoked")).await;
    let out = gw.sftp("demo", &revoked, "ls\n").await;
    assert!(out.status.success(), "before revocation\n{}", text(&out));
    assert!(gw.auth.store().delete(&id).await.unwrap());
    gw.auth.invalidate(&id).await.unwrap();
    assert_login_refused(&gw.sftp("demo", &revoked, "ls\n").await, "revoked token");

    let out = gw.sftp("demo", &good, "ls\n").await;
    assert!(
        out.status.success(),
        "the good token still works\n{}",
        text(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_repeated_failures_even_the_right_token_waits_for_the_window() {
    let window = Duration::from_secs(4);
    let gw = Gateway::start(AttemptLimiter::new(3, window)).await;
    let good = gw.token("").await;
    let foreign = Authenticator::new(Arc::new(MemoryStore::new()));
    let wrong = foreign.create(NewToken::new("demo", "x")).await.unwrap();
    let wrong = wrong.token.expose();

    let first = Instant::now();
    for i in 0..3 {
        assert_login_refused(
            &gw.sftp("demo", wrong, "ls\n").await,
            &format!("wrong #{i}"),
        );
    }
    assert!(
        first.elapsed() < window,
        "the failures took longer than the window"
    );
    assert_login_refused(&gw.sftp("demo", &good, "ls\n").await, "locked out");

    let out = gw.sftp_from("127.0.0.2", "demo", &good, "ls\n").await;
    assert!(
        out.status.success(),
        "another client is served\n{}",
        text(&out)
    );

    tokio::time::sleep(
        (first + window + Duration::from_millis(1100)).saturating_duration_since(Instant::now()),
    )
    .await;
    let out = gw.sftp("demo", &good, "ls\n").await;
    assert!(out.status.success(), "after the window\n{}", text(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_cannot_leave_the_served_directory() {
    let gw = Gateway::start(AttemptLimiter::disabled()).await;
    let token = gw.token("").await;
    let outside = gw.root.parent().unwrap().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("secret.txt"), "secret").unwrap();
    std::os::unix::fs::symlink(&outside, gw.root.join("link")).unwrap();
    std::os::unix::fs::symlink(outside.join("new.txt"), gw.root.join("dangling")).unwrap();
    std::fs::write(gw.local("evil.txt"), "evil").unwrap();

    let out = gw
        .sftp(
            "demo",
            &token,
            "-get ../outside/secret.txt s1\n-get link/secret.txt s2\n-ls link\n\
             -put evil.txt link/evil.txt\n-put evil.txt dangling\n-put evil.txt ../evil.txt\n\
             -rename link/secret.txt stolen.txt\n-symlink /etc/passwd pw\n",
        )
        .await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        !gw.local("s1").exists() && !gw.local("s2").exists(),
        "{}",
        text(&out)
    );
    assert!(!outside.join("evil.txt").exists() && !outside.join("new.txt").exists());
    assert!(!gw.root.parent().unwrap().join("evil.txt").exists());
    assert!(outside.join("secret.txt").exists() && !gw.root.join("stolen.txt").exists());
    assert!(!gw.root.join("pw").exists());
}

/// The example binary itself, configured by environment as the README shows.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_binary_serves_with_a_demo_token_and_a_saved_host_key() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir(&root).unwrap();
    std::fs::write(root.join("a.txt"), "a").unwrap();
    let node = Uuid::new_v4();
    let key = dir.path().join("host_key");
    let mut child = Child(
        std::process::Command::new(example_binary("sftp_gateway"))
            .env("PAT_LISTEN", "127.0.0.1:0")
            .env("PAT_ROOT", &root)
            .env("PAT_NODE_ID", node.to_string())
            .env("PAT_HOST_KEY", &key)
            .env("PAT_STORE_URL", "memory://")
            .env("PAT_DEMO_SCOPES", format!("node:{node}:r"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let stdout = tokio::process::ChildStdout::from_std(child.0.stdout.take().unwrap()).unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let (mut token, mut addr) = (None, None);
    while addr.is_none() {
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .expect("the example prints its address")
            .unwrap()
            .expect("the example exited early");
        assert!(!line.starts_with("node: "), "PAT_NODE_ID was given");
        if let Some(v) = line.strip_prefix("token: ") {
            token = Some(v.to_owned());
        } else if let Some(v) = line.strip_prefix("listening: ") {
            addr = Some(v.parse::<SocketAddr>().unwrap());
        }
    }
    let key_text = std::fs::read_to_string(&key).unwrap();
    assert!(key_text.starts_with("-----BEGIN OPENSSH PRIVATE KEY-----"));

    let local = tempfile::tempdir().unwrap();
    std::fs::write(local.path().join("x"), "x").unwrap();
    let token = token.expect("token printed");
    let out = sftp(
        addr.unwrap().port(),
        local.path(),
        "127.0.0.1",
        "demo",
        &token,
        "get a.txt\n-put x x\n",
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(std::fs::read(local.path().join("a.txt")).unwrap(), b"a");
    assert!(String::from_utf8_lossy(&out.stderr).contains("Permission denied"));
    assert!(!root.join("x").exists());
}
