//! The WebDAV gateway example, driven by clients nobody on this project wrote: the
//! litmus compliance suite and curl. `.ci/run` installs them.
#![cfg(feature = "axum")]

#[path = "../examples/webdav_gateway.rs"]
#[allow(dead_code)]
mod webdav_gateway;

mod common;
use common::{example_binary, require_tool as require};

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::collections::HashMap;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use tower_pat::AttemptLimiter;
use tower_pat::{Authenticator, MemoryStore, NewToken, ScopeSet};
use uuid::Uuid;

/// The gateway, served in this process on a free port over a temporary directory.
struct Gateway {
    addr: SocketAddr,
    node: Uuid,
    auth: Authenticator,
    root: PathBuf,
    _dir: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Gateway {
    async fn start(limiter: AttemptLimiter) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        let auth = Authenticator::builder(Arc::new(MemoryStore::new()))
            .with_attempt_limiter(limiter)
            .build();
        let node = Uuid::new_v4();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = webdav_gateway::app(auth.clone(), &root, node);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(webdav_gateway::serve(listener, app, async {
            let _ = stopped.await;
        }));
        Self {
            addr,
            node,
            auth,
            root,
            _dir: dir,
            _stop: stop,
        }
    }

    async fn token(&self, scopes: &str) -> String {
        let scopes: ScopeSet = scopes.parse().unwrap();
        let created = self
            .auth
            .create(NewToken::new("demo", "test").with_scopes(scopes))
            .await
            .unwrap();
        created.token.expose().to_owned()
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

/// A well-formed token that no gateway store knows.
async fn foreign_token() -> String {
    let other = Authenticator::new(Arc::new(MemoryStore::new()));
    let created = other
        .create(NewToken::new("demo", "elsewhere"))
        .await
        .unwrap();
    created.token.expose().to_owned()
}

/// A curl answer: status, lower-cased header lines, body.
#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<String>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Vec<&str> {
        let prefix = format!("{}:", name.to_ascii_lowercase());
        self.headers
            .iter()
            .filter(|h| h.to_ascii_lowercase().starts_with(&prefix))
            .map(|h| h[prefix.len()..].trim())
            .collect()
    }
}

async fn curl(args: &[&str]) -> Reply {
    require("curl");
    let out = tokio::time::timeout(
        Duration::from_secs(30),
        Command::new("curl")
            .args(["-sS", "-i", "--max-time", "20"])
            .args(args)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("curl timed out")
    .expect("curl runs");
    assert!(out.status.success(), "curl failed: {out:?}");
    let text = String::from_utf8_lossy(&out.stdout).replace("\r\n", "\n");
    let (head, body) = text.split_once("\n\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    Reply {
        status,
        headers: lines.map(str::to_owned).collect(),
        body: body.to_owned(),
    }
}

/// One `<- summary for `group': of N tests run: P passed, F failed.` line of litmus.
fn litmus_summary(output: &str, group: &str) -> Option<(u32, u32, u32)> {
    let marker = format!("<- summary for `{group}': of ");
    let line = output.lines().find_map(|l| l.split_once(&marker))?.1;
    let nums: Vec<u32> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .filter_map(|s| s.parse().ok())
        .collect();
    match nums[..] {
        [run, passed, failed, ..] => Some((run, passed, failed)),
        _ => None,
    }
}

#[test]
fn litmus_summary_parser_reads_groups() {
    let out = "-> running `basic':\n<- summary for `basic': of 16 tests run: 15 passed, 1 failed. 93.8%\n";
    assert_eq!(litmus_summary(out, "basic"), Some((16, 15, 1)));
    assert_eq!(litmus_summary(out, "props"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn litmus_basic_copymove_props_pass_with_a_pat_as_password() {
    require("litmus");
    let gw = Gateway::start(AttemptLimiter::disabled()).await;
    let token = gw.token("").await;
    let workdir = tempfile::tempdir().unwrap();
    let out = tokio::time::timeout(
        Duration::from_secs(300),
        Command::new("litmus")
            .arg("-k")
            .arg(gw.url("/"))
            .arg("demo")
            .arg(&token)
            .env("TESTS", "basic copymove props")
            .current_dir(workdir.path())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("litmus timed out")
    .expect("litmus runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    println!("{text}");
    for group in ["basic", "copymove", "props"] {
        let (run, passed, failed) = litmus_summary(&text, group)
            .unwrap_or_else(|| panic!("no litmus summary for {group}:\n{text}"));
        assert!(run > 0, "litmus ran no {group} test");
        assert_eq!(
            (failed, passed),
            (0, run),
            "litmus group {group} failed:\n{text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_token_reads_but_cannot_write() {
    let gw = Gateway::start(AttemptLimiter::disabled()).await;
    std::fs::write(gw.root.join("hello.txt"), "hello from the gateway\n").unwrap();
    let ro = format!("demo:{}", gw.token(&format!("node:{}:r", gw.node)).await);

    let r = curl(&["-u", &ro, "-X", "PROPFIND", "-H", "Depth: 1", &gw.url("/")]).await;
    assert_eq!(r.status, 207, "{r:?}");
    assert!(r.body.contains("hello.txt"), "{r:?}");

    let r = curl(&["-u", &ro, &gw.url("/hello.txt")]).await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (200, "hello from the gateway\n")
    );

    let local = gw.root.join("../upload-src.txt");
    std::fs::write(&local, "new").unwrap();
    let r = curl(&[
        "-u",
        &ro,
        "-T",
        local.to_str().unwrap(),
        &gw.url("/new.txt"),
    ])
    .await;
    assert_eq!(r.status, 403, "{r:?}");
    assert_insufficient_scope(&r, gw.node);
    assert!(!gw.root.join("new.txt").exists());

    let r = curl(&["-u", &ro, "-X", "DELETE", &gw.url("/hello.txt")]).await;
    assert_eq!(r.status, 403, "{r:?}");
    assert_insufficient_scope(&r, gw.node);
    assert!(gw.root.join("hello.txt").exists());

    let r = curl(&["-u", &ro, "-X", "MKCOL", &gw.url("/dir/")]).await;
    assert_eq!(r.status, 403, "{r:?}");
    std::fs::remove_file(local).unwrap();
}

fn assert_insufficient_scope(r: &Reply, node: Uuid) {
    let challenges = r.header("www-authenticate").join(" | ");
    assert!(
        challenges.contains("error=\"insufficient_scope\"")
            && challenges.contains(&format!("scope=\"node:{node}:w\"")),
        "{r:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_token_writes_and_bearer_works_too() {
    let gw = Gateway::start(AttemptLimiter::disabled()).await;
    let rw = gw.token(&format!("node:{}:rw", gw.node)).await;
    let w_only = gw.token(&format!("node:{}:w", gw.node)).await;
    let other = gw.token(&format!("node:{}:rw", Uuid::new_v4())).await;

    let bearer = format!("Authorization: Bearer {rw}");
    let r = curl(&["-H", &bearer, "-X", "MKCOL", &gw.url("/docs/")]).await;
    assert_eq!(r.status, 201, "{r:?}");
    assert!(gw.root.join("docs").is_dir());

    let r = curl(&[
        "-u",
        &format!("demo:{w_only}"),
        "-X",
        "PUT",
        "--data-binary",
        "x",
        &gw.url("/docs/a.txt"),
    ])
    .await;
    assert_eq!(r.status, 201, "{r:?}");
    let r = curl(&["-u", &format!("demo:{w_only}"), &gw.url("/docs/a.txt")]).await;
    assert_eq!(r.status, 403, "a write-only token cannot read: {r:?}");

    let r = curl(&["-u", &format!("demo:{other}"), &gw.url("/docs/a.txt")]).await;
    assert_eq!(
        r.status, 403,
        "a scope on another node grants nothing: {r:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_or_missing_credentials_get_the_basic_challenge() {
    let gw = Gateway::start(AttemptLimiter::disabled()).await;
    let token = gw.token("").await;
    let realm = format!("Basic realm=\"{}\"", webdav_gateway::REALM);

    let r = curl(&["-X", "PROPFIND", &gw.url("/")]).await;
    assert_eq!(r.status, 401, "{r:?}");
    assert!(
        r.header("www-authenticate")
            .iter()
            .any(|h| h.starts_with(&realm)),
        "{r:?}"
    );

    let wrong = format!("demo:{}x", &token[..token.len() - 1]);
    let r = curl(&["-u", &wrong, "-X", "PROPFIND", &gw.url("/")]).await;
    assert_eq!(r.status, 401, "{r:?}");
    assert!(
        r.header("www-authenticate")
            .iter()
            .any(|h| h.starts_with(&realm)),
        "{r:?}"
    );

    let unknown = format!("demo:{}", foreign_token().await);
    let r = curl(&["-u", &unknown, "-X", "PROPFIND", &gw.url("/")]).await;
    assert_eq!(r.status, 401, "{r:?}");
    assert!(
        r.header("www-authenticate")
            .iter()
            .any(|h| h.contains("invalid_token")),
        "{r:?}"
    );

    let r = curl(&[
        "-u",
        &format!("alice:{token}"),
        "-X",
        "PROPFIND",
        &gw.url("/"),
    ])
    .await;
    assert_eq!(r.status, 401, "another user's name with the token: {r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_failures_get_429_and_other_clients_are_still_served() {
    let window = Duration::from_secs(3);
    let gw = Gateway::start(AttemptLimiter::new(3, window)).await;
    let token = format!("demo:{}", gw.token("").await);
    let wrong = format!("demo:{}", foreign_token().await);
    let url = gw.url("/");

    let first = Instant::now();
    for _ in 0..3 {
        let r = curl(&["-u", &wrong, "-X", "PROPFIND", &url]).await;
        assert_eq!(r.status, 401, "{r:?}");
    }
    let r = curl(&["-u", &token, "-X", "PROPFIND", &url]).await;
    assert_eq!(r.status, 429, "even the right token is refused now: {r:?}");
    let retry: u64 = r.header("retry-after")[0].parse().unwrap();
    assert!((1..=3).contains(&retry), "{r:?}");

    let r = curl(&[
        "--interface",
        "127.0.0.2",
        "-u",
        &token,
        "-X",
        "PROPFIND",
        &url,
    ])
    .await;
    assert_eq!(r.status, 207, "another client is served: {r:?}");

    tokio::time::sleep(
        (first + window + Duration::from_millis(1100)).saturating_duration_since(Instant::now()),
    )
    .await;
    let r = curl(&["-u", &token, "-X", "PROPFIND", &url]).await;
    assert_eq!(r.status, 207, "served again once the window passed: {r:?}");
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
async fn example_binary_prints_node_token_and_address_and_serves() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.txt"), "a").unwrap();
    let (_child, seen) = start_example(&[
        ("PAT_ROOT", dir.path().display().to_string()),
        ("PAT_STORE_URL", "memory://".to_owned()),
        ("PAT_DEMO_TOKEN", "1".to_owned()),
    ])
    .await;
    Uuid::try_parse(&seen["node"]).expect("a generated node id is printed");
    let token = &seen["token"];
    let r = curl(&[
        "-u",
        &format!("demo:{token}"),
        "-X",
        "PROPFIND",
        "-H",
        "Depth: 1",
        &format!("http://{}/", seen["listening"]),
    ])
    .await;
    assert_eq!(r.status, 207, "{r:?}");
    assert!(r.body.contains("a.txt"), "{r:?}");
}

/// Starts the example binary with `envs`; returns it and its `key: value` stdout lines
/// up to `listening`.
async fn start_example(envs: &[(&str, String)]) -> (Child, HashMap<String, String>) {
    let mut cmd = std::process::Command::new(example_binary("webdav_gateway"));
    for name in [
        "PAT_NODE_ID",
        "PAT_DEMO_TOKEN",
        "PAT_DEMO_SCOPES",
        "PAT_MAX_FAILURES",
    ] {
        cmd.env_remove(name);
    }
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = Child(
        cmd.env("PAT_LISTEN", "127.0.0.1:0")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let stdout = tokio::process::ChildStdout::from_std(child.0.stdout.take().unwrap()).unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let mut seen = HashMap::new();
    while !seen.contains_key("listening") {
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .expect("the example prints its address")
            .unwrap()
            .expect("the example exited early");
        if let Some((k, v)) = line.split_once(": ") {
            seen.insert(k.to_owned(), v.to_owned());
        }
    }
    (child, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_binary_uses_a_shared_sqlite_store_and_the_limiter_settings() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir(&root).unwrap();
    std::fs::write(root.join("a.txt"), "a").unwrap();
    let url = format!("sqlite://{}", dir.path().join("tokens.db").display());
    let node = Uuid::new_v4();
    let ro = {
        let store = tower_pat::store::open(&url).await.unwrap();
        let auth = Authenticator::new(store);
        let scopes: ScopeSet = format!("node:{node}:r").parse().unwrap();
        let created = auth
            .create(NewToken::new("demo", "ro").with_scopes(scopes))
            .await
            .unwrap();
        format!("demo:{}", created.token.expose())
    };
    let (_child, seen) = start_example(&[
        ("PAT_ROOT", root.display().to_string()),
        ("PAT_STORE_URL", url),
        ("PAT_NODE_ID", node.to_string()),
        ("PAT_MAX_FAILURES", "2".to_owned()),
        ("PAT_FAILURE_WINDOW", "30s".to_owned()),
    ])
    .await;
    assert!(
        !seen.contains_key("node") && !seen.contains_key("token"),
        "{seen:?}"
    );
    let base = format!("http://{}/", seen["listening"]);

    let r = curl(&["-u", &ro, "-X", "PROPFIND", "-H", "Depth: 1", &base]).await;
    assert_eq!(r.status, 207, "{r:?}");
    let r = curl(&[
        "-u",
        &ro,
        "-X",
        "PUT",
        "--data-binary",
        "x",
        &format!("{base}b.txt"),
    ])
    .await;
    assert_eq!(r.status, 403, "{r:?}");

    let wrong = format!("demo:{}", foreign_token().await);
    for _ in 0..2 {
        assert_eq!(curl(&["-u", &wrong, &base]).await.status, 401);
    }
    let r = curl(&["-u", &ro, "-X", "PROPFIND", &base]).await;
    assert_eq!(r.status, 429, "PAT_MAX_FAILURES=2: {r:?}");
    assert!(!r.header("retry-after").is_empty(), "{r:?}");
}
