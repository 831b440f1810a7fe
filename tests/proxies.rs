//! `pat serve` behind real reverse proxies: nginx (`auth_request`) and Caddy
//! (`forward_auth`), each run with the committed config of `examples/proxies/` (its ports
//! replaced by free ones), in front of a small application that echoes the identity it
//! received. The PAT service is the `pat` binary on a private `redis-server`, so the
//! store can be taken down.
//!
//! The proxies come from `PAT_TEST_NGINX` and `PAT_TEST_CADDY` (paths), else `nginx` and
//! `caddy` on `PATH`; `.ci/run` installs both. Missing: the test fails in CI (`CI` set)
//! and is skipped elsewhere, saying so.
#![cfg(all(feature = "server", feature = "redis"))]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::routing::any;
use axum::Router;
use tower_pat::{Authenticator, Expiry, NewToken, ScopeSet};

const NODE: &str = "0b0f8d7e-3f44-4c4e-9d0e-0f6f0b8d2a11";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process killed when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The proxy binary: `$var`, else `name` on `PATH`; `None` (after saying so) outside CI.
fn binary(var: &str, name: &str) -> Option<PathBuf> {
    if let Ok(p) = std::env::var(var) {
        return Some(PathBuf::from(p));
    }
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {name}"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "`{name}` is not installed (set {var} or install it: apt-get install {name}); .ci/run installs it"
        );
        println!("skipped: `{name}` is not installed (set {var}, or apt-get install {name})");
    }
    found
}

fn wait_for_port(port: u16, what: &str) {
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{what} does not listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A private redis-server on a free port.
fn redis(dir: &Path) -> (Running, String) {
    let port = free_port();
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir)
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server is on PATH (.ci/run checks it)");
    wait_for_port(port, "redis-server");
    (Running(child), format!("redis://127.0.0.1:{port}"))
}

/// `pat serve` with the example rules on `store`; its address.
fn pat_serve(store: &str) -> (Running, SocketAddr) {
    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/proxies/rules.toml");
    let mut child = Command::new(env!("CARGO_BIN_EXE_pat"))
        .args(["serve", "--listen", "127.0.0.1:0", "--rules"])
        .arg(rules)
        .env("PAT_STORE_URL", store)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("pat serve printed its address")
            .unwrap();
        if let Some(rest) = line.strip_prefix("listening on http://") {
            break rest.split_whitespace().next().unwrap().parse().unwrap();
        }
    };
    // Keep draining its stderr so it never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (Running(child), addr)
}

/// The application: counts its requests and answers with the identity headers it got.
async fn application() -> (SocketAddr, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    let app = Router::new().fallback(any(move |req: axum::extract::Request| {
        let hits = counted.clone();
        async move {
            hits.fetch_add(1, Ordering::SeqCst);
            let h = req.headers();
            let get = |n: &str| h.get(n).map(|v| v.to_str().unwrap_or("?").to_owned());
            axum::Json(serde_json::json!({
                "owner": get("x-pat-owner"),
                "token_id": get("x-pat-token-id"),
                "scopes": get("x-pat-scopes"),
                "expires_at": get("x-pat-expires-at"),
                "proxy_secret": get("x-pat-proxy-secret"),
                "path": req.uri().path(),
            }))
        }
    }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, hits)
}

/// The committed config with its three addresses replaced.
fn config(file: &str, pat: SocketAddr, app: SocketAddr, port: u16) -> String {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("examples/proxies")
            .join(file),
    )
    .unwrap();
    assert!(text.contains("127.0.0.1:8080") && text.contains("127.0.0.1:9000"));
    text.replace("127.0.0.1:8080", &pat.to_string())
        .replace("127.0.0.1:9000", &app.to_string())
        .replace("127.0.0.1:8000", &format!("127.0.0.1:{port}"))
}

fn nginx(bin: &Path, dir: &Path, conf: &str, port: u16) -> Running {
    std::fs::create_dir_all(dir.join("tmp")).unwrap();
    std::fs::write(dir.join("nginx.conf"), conf).unwrap();
    let child = Command::new(bin)
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        .arg("-e")
        .arg(dir.join("error.log"))
        .args(["-g", "daemon off; pid nginx.pid;"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_port(port, "nginx");
    Running(child)
}

fn caddy(bin: &Path, dir: &Path, conf: &str, port: u16) -> Running {
    let file = dir.join("Caddyfile");
    std::fs::write(&file, conf).unwrap();
    let child = Command::new(bin)
        .args(["run", "--adapter", "caddyfile", "--config"])
        .arg(&file)
        .env("HOME", dir)
        .env("XDG_DATA_HOME", dir)
        .env("XDG_CONFIG_HOME", dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_port(port, "caddy");
    Running(child)
}

/// A reply as curl saw it: status, headers (lower-cased names), body.
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

/// A request through curl, as a client would send it (`--path-as-is`: the path as
/// written, dot segments included).
fn curl(method: &str, url: &str, headers: &[(&str, &str)]) -> Reply {
    let mut c = Command::new("curl");
    c.args(["-s", "-i", "--path-as-is", "-X", method, "--max-time", "10"]);
    for (k, v) in headers {
        c.arg("-H").arg(format!("{k}: {v}"));
    }
    let out = c.arg(url).output().expect("curl is installed");
    let text = String::from_utf8_lossy(&out.stdout).replace("\r\n", "\n");
    let (head, body) = text.split_once("\n\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no answer from {url}: {text}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Reply {
        status,
        headers,
        body: body.to_owned(),
    }
}

/// What every proxy must do, walked with real requests.
async fn scenario(
    which: &str,
    start_proxy: impl FnOnce(&Path, SocketAddr, SocketAddr, u16) -> Running,
) {
    let dir = tempfile::tempdir().unwrap();
    let (redis_server, store_url) = redis(dir.path());
    let store = tower_pat::store::open(&store_url).await.unwrap();
    let auth = Authenticator::new(store);
    let mint = |scopes: &str, expiry: Expiry| {
        let auth = auth.clone();
        let scopes: ScopeSet = scopes.parse().unwrap();
        async move {
            auth.create(
                NewToken::new("alice", "proxy")
                    .with_scopes(scopes)
                    .with_expiry(expiry),
            )
            .await
            .unwrap()
        }
    };
    let week = Expiry::HardLimit {
        expires_at: time::OffsetDateTime::now_utc() + Duration::from_secs(7 * 86_400),
    };
    let reader = mint(&format!("node:{NODE}:r"), week).await;
    let forever = mint(&format!("node:{NODE}:r pat:write"), Expiry::Never).await;
    let unused = mint(&format!("node:{NODE}:r"), week).await;
    let (pat, _pat_serve) = {
        let (child, addr) = pat_serve(&store_url);
        (addr, child)
    };
    let (app, hits) = application().await;
    let port = free_port();
    let _proxy = start_proxy(dir.path(), pat, app, port);
    let base = format!("http://127.0.0.1:{port}");
    let node = format!("{base}/nodes/{NODE}/report.txt");
    let bearer = |t: &tower_pat::CreatedToken| format!("Bearer {}", t.token.expose());

    // A token's request reaches the application with the identity.
    let r = curl(
        "GET",
        &format!("{node}?download=1"),
        &[("Authorization", &bearer(&reader))],
    );
    assert_eq!(r.status, 200, "{which}: {}", r.body);
    let seen = r.json();
    assert_eq!(seen["owner"], "alice", "{which}");
    assert_eq!(seen["token_id"], reader.record.id.to_string(), "{which}");
    assert_eq!(seen["scopes"], format!("node:{NODE}:r"), "{which}");
    assert!(
        seen["expires_at"]
            .as_str()
            .is_some_and(|e| e.ends_with('Z')),
        "{which}: {seen}"
    );
    // Identity headers a client sends itself do not reach the application.
    let r = curl(
        "GET",
        &node,
        &[
            ("Authorization", &bearer(&forever)),
            ("X-Pat-Owner", "mallory"),
            ("X-Pat-Token-Id", "AAAAAAAAAAAAAAAA"),
            ("X-Pat-Scopes", "*"),
            ("X-Pat-Expires-At", "2999-01-01T00:00:00Z"),
            ("X-Pat-Proxy-Secret", "guess"),
        ],
    );
    assert_eq!(r.status, 200, "{which}: {}", r.body);
    let seen = r.json();
    assert_eq!(seen["owner"], "alice", "{which}: {seen}");
    assert_eq!(seen["token_id"], forever.record.id.to_string(), "{which}");
    assert_eq!(
        seen["expires_at"], "never",
        "{which}: a spoofed end survived"
    );
    assert_eq!(seen["proxy_secret"], serde_json::Value::Null, "{which}");
    // No token: 401 with the challenge, at the client.
    let before = hits.load(Ordering::SeqCst);
    let r = curl("GET", &node, &[]);
    assert_eq!(r.status, 401, "{which}");
    assert!(
        r.header("www-authenticate")
            .is_some_and(|c| c.starts_with("Bearer realm=")),
        "{which}: {:?}",
        r.headers
    );
    // The wrong scope: 403 insufficient_scope.
    let r = curl("PUT", &node, &[("Authorization", &bearer(&reader))]);
    assert_eq!(r.status, 403, "{which}: {}", r.body);
    assert!(
        r.header("www-authenticate")
            .is_some_and(|c| c.contains("insufficient_scope")),
        "{which}: {:?}",
        r.headers
    );
    // A path in another spelling is refused, not resolved.
    let r = curl(
        "GET",
        &format!("{base}/nodes/{NODE}/../{}/x", uuid_other()),
        &[("Authorization", &bearer(&reader))],
    );
    assert_eq!(r.status, 400, "{which}: {}", r.body);
    assert_eq!(
        hits.load(Ordering::SeqCst),
        before,
        "{which}: a refusal reached the application"
    );
    // Revoked through pat serve's admin API: refused at once.
    let revoke = curl(
        "DELETE",
        &format!("http://{pat}/personal-access-tokens/{}", reader.record.id),
        &[("Authorization", &bearer(&forever))],
    );
    assert_eq!(revoke.status, 204, "{which}: {}", revoke.body);
    let r = curl("GET", &node, &[("Authorization", &bearer(&reader))]);
    assert_eq!(r.status, 401, "{which}: a revoked token passed");
    // The store down: no pass, for a token pat serve has not cached.
    drop(redis_server);
    let before = hits.load(Ordering::SeqCst);
    let r = curl("GET", &node, &[("Authorization", &bearer(&unused))]);
    assert_eq!(r.status, 503, "{which}: {}", r.body);
    assert!(
        r.header("retry-after").is_some(),
        "{which}: {:?}",
        r.headers
    );
    assert_eq!(
        hits.load(Ordering::SeqCst),
        before,
        "{which}: passed with the store down"
    );
}

fn uuid_other() -> &'static str {
    "9c1d7a52-0000-4000-8000-000000000001"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_nginx_auth_request() {
    let Some(bin) = binary("PAT_TEST_NGINX", "nginx") else {
        return;
    };
    scenario("nginx", |dir, pat, app, port| {
        nginx(&bin, dir, &config("nginx.conf", pat, app, port), port)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_caddy_forward_auth() {
    let Some(bin) = binary("PAT_TEST_CADDY", "caddy") else {
        return;
    };
    scenario("caddy", |dir, pat, app, port| {
        caddy(&bin, dir, &config("Caddyfile", pat, app, port), port)
    })
    .await;
}

/// Two `pat serve` replicas on one store behind one nginx `upstream`: a token revoked
/// through the admin API of one is refused through the other, and through nginx, within
/// 1 s (measured and printed).
async fn replicas(which: &str, store_url: &str) {
    let Some(bin) = binary("PAT_TEST_NGINX", "nginx") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let auth = Authenticator::new(tower_pat::store::open(store_url).await.unwrap());
    let token = auth
        .create(
            NewToken::new("alice", "replicas")
                .with_scopes(format!("node:{NODE}:r pat:write").parse().unwrap()),
        )
        .await
        .unwrap();
    let (_one, a) = pat_serve(store_url);
    let (_two, b) = pat_serve(store_url);
    let (app, _hits) = application().await;
    let port = free_port();
    let conf = config("nginx.conf", a, app, port).replace(
        &format!("server {a};"),
        &format!("server {a};\n        server {b};"),
    );
    assert!(conf.contains(&format!("server {b};")));
    let _nginx = nginx(&bin, dir.path(), &conf, port);
    let bearer = format!("Bearer {}", token.token.expose());
    let node = format!("/nodes/{NODE}/a");
    let check = |replica: SocketAddr| {
        curl(
            "GET",
            &format!("http://{replica}/auth"),
            &[
                ("Authorization", &bearer),
                ("X-Forwarded-Method", "GET"),
                ("X-Forwarded-Uri", &node),
            ],
        )
        .status
    };
    // Both replicas know (and cache) the token; so does the way through nginx.
    assert_eq!((check(a), check(b)), (200, 200), "{which}");
    let through = format!("http://127.0.0.1:{port}{node}");
    for _ in 0..4 {
        assert_eq!(
            curl("GET", &through, &[("Authorization", &bearer)]).status,
            200
        );
    }
    let revoke = curl(
        "DELETE",
        &format!("http://{a}/personal-access-tokens/{}", token.record.id),
        &[("Authorization", &bearer)],
    );
    assert_eq!(revoke.status, 204, "{which}: {}", revoke.body);
    let start = Instant::now();
    while check(b) != 401 {
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "{which}: the other replica still accepts the revoked token after 1 s"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let took = start.elapsed();
    println!("{which}: revoked on one replica, refused by the other after {took:?}");
    for _ in 0..4 {
        assert_eq!(
            curl("GET", &through, &[("Authorization", &bearer)]).status,
            401,
            "{which}: through nginx"
        );
    }
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_on_postgres_behind_one_nginx_upstream() {
    let Some(url) = std::env::var("PAT_TEST_POSTGRES_URL")
        .ok()
        .filter(|u| !u.is_empty())
    else {
        assert!(
            std::env::var_os("CI").is_none(),
            "PAT_TEST_POSTGRES_URL is not set"
        );
        println!("skipped: PAT_TEST_POSTGRES_URL not set");
        return;
    };
    replicas("postgres", &url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_on_redis_behind_one_nginx_upstream() {
    let dir = tempfile::tempdir().unwrap();
    let (_redis, url) = redis(dir.path());
    replicas("redis", &url).await;
}
