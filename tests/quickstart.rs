//! `examples/quickstart.rs` as a user runs it: its failed-attempt limiter is on (it serves
//! with each connection's address) and counts per client, and its sliding token lives as
//! long as it is used once per window, on the real clock.
#![cfg(all(feature = "axum", feature = "sqlite", feature = "admin"))]

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod common;
use common::example_binary;

struct Quickstart {
    child: Child,
    addr: SocketAddr,
    token: String,
}

impl Drop for Quickstart {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the quickstart on a free port with an in-memory store and `env`.
fn start(env: &[(&str, &str)]) -> Quickstart {
    let mut cmd = Command::new(example_binary("quickstart"));
    cmd.env("PAT_LISTEN", "127.0.0.1:0")
        .env("PAT_STORE_URL", "memory://")
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let stderr = BufReader::new(child.stderr.take().unwrap());
    // Read stderr to its end, so the server never blocks on a full pipe.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stderr.lines() {
            let Ok(line) = line else { return };
            if let Some(rest) = line.strip_prefix("listening on http://") {
                let addr = rest.split_whitespace().next().unwrap_or_default();
                let _ = tx.send(addr.parse::<SocketAddr>().ok());
            }
        }
    });
    let token = stdout
        .lines()
        .map_while(Result::ok)
        .find_map(|l| l.strip_prefix("token: ").map(str::to_owned))
        .expect("no `token:` line");
    let addr = rx
        .recv_timeout(Duration::from_secs(30))
        .ok()
        .flatten()
        .expect("no `listening on` line");
    Quickstart { child, addr, token }
}

/// `GET path` with `authorization` (if any), over a connection from `from` (any address
/// of 127/8 reaches the loopback interface on Linux): the status, the response head and
/// its body.
async fn get(
    server: SocketAddr,
    from: [u8; 4],
    path: &str,
    authorization: Option<&str>,
) -> (u16, String, String) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(IpAddr::from(from), 0)).unwrap();
    let mut stream = socket.connect(server).await.unwrap();
    let authorization = authorization
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: quickstart\r\n{authorization}Connection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {response:?}"));
    (status, head.to_owned(), body.to_owned())
}

/// `GET /whoami` with `authorization`, from `from`: the status and the response head.
async fn whoami(server: SocketAddr, from: [u8; 4], authorization: &str) -> (u16, String) {
    let (status, head, _) = get(server, from, "/whoami", Some(authorization)).await;
    (status, head)
}

/// `token` with its last character changed (a different, wrong token).
fn altered(token: &str) -> String {
    let mut t = token.to_owned();
    let last = t.pop().unwrap();
    t.push(if last == 'A' { 'B' } else { 'A' });
    t
}

const ONE: [u8; 4] = [127, 0, 0, 1];
const TWO: [u8; 4] = [127, 0, 0, 2];

#[tokio::test]
async fn the_quickstart_locks_out_one_client_after_20_failures_and_serves_others() {
    let q = start(&[]);
    let good = format!("Bearer {}", q.token);
    let wrong = format!("Bearer {}", altered(&q.token));
    assert_eq!(whoami(q.addr, ONE, &good).await.0, 200);
    // The default limit: 20 failed attempts per client per 60 s.
    for i in 1..=20 {
        assert_eq!(whoami(q.addr, ONE, &wrong).await.0, 401, "attempt {i}");
    }
    let (status, head) = whoami(q.addr, ONE, &wrong).await;
    assert_eq!(status, 429, "the 21st wrong token: {head}");
    let retry_after = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("retry-after")
                .then(|| value.trim().parse::<u64>().ok())
                .flatten()
        })
        .unwrap_or_else(|| panic!("no Retry-After: {head}"));
    assert!(
        (1..=60).contains(&retry_after),
        "Retry-After: {retry_after}"
    );
    // Locked out: even the right token.
    assert_eq!(whoami(q.addr, ONE, &good).await.0, 429);
    // Another client is unaffected.
    assert_eq!(whoami(q.addr, TWO, &good).await.0, 200);
    assert_eq!(whoami(q.addr, TWO, &wrong).await.0, 401);
    assert_eq!(whoami(q.addr, TWO, &good).await.0, 200);
}

#[tokio::test]
async fn the_quickstart_keeps_a_sliding_token_used_every_1_4_s_of_a_2_s_window() {
    let q = start(&[("PAT_DEMO_AUTO", "2")]);
    let good = format!("Bearer {}", q.token);
    let started = Instant::now();
    let mut uses = 0;
    while started.elapsed() < Duration::from_secs(10) {
        let (status, head) = whoami(q.addr, ONE, &good).await;
        assert_eq!(
            status,
            200,
            "use {uses} after {:?}: {head}",
            started.elapsed()
        );
        uses += 1;
        tokio::time::sleep(Duration::from_millis(1_400)).await;
    }
    assert!(uses >= 7, "{uses} uses");
    // Idle for longer than the window and its rounding second: refused.
    tokio::time::sleep(Duration::from_millis(3_200)).await;
    assert_eq!(whoami(q.addr, ONE, &good).await.0, 401);
}

/// Built with the `metrics` feature, the quickstart serves its metrics, without a token,
/// in the Prometheus text format.
#[cfg(feature = "metrics")]
#[tokio::test]
async fn the_quickstart_serves_its_metrics() {
    let q = start(&[]);
    let good = format!("Bearer {}", q.token);
    assert_eq!(whoami(q.addr, ONE, &good).await.0, 200);
    assert_eq!(whoami(q.addr, ONE, "Bearer pat_wrong").await.0, 401);
    let (status, head, body) = get(q.addr, ONE, "/metrics", None).await;
    assert_eq!(status, 200, "{head}");
    for line in [
        "# TYPE pat_validations_total counter",
        r#"pat_validations_total{outcome="valid"} 1"#,
        r#"pat_validations_total{outcome="malformed"} 1"#,
        r#"pat_validations_total{outcome="not_found"} 0"#,
    ] {
        assert!(body.lines().any(|l| l == line), "no {line:?} in\n{body}");
    }
    assert!(body.contains("# HELP pat_validations_total Checks of a credential"));
    // The first check read the store: timed, into the quickstart's histogram buckets.
    assert!(
        body.contains(r#"pat_validation_duration_seconds_bucket{path="store",le="5"} 1"#),
        "{body}"
    );
}
