//! A store that becomes unreachable mid-run gives `StoreUnavailable` (503 on the wire),
//! never `Invalid` (401) and never a pass, and the authenticator recovers when the store
//! returns.
//!
//! Redis: a private `redis-server` on a free port, started, killed and restarted by the
//! test. PostgreSQL: the shared server reached through a TCP proxy inside the test, which
//! is stopped and restarted, so the server itself is never disturbed.
#![cfg(any(feature = "redis", feature = "postgres"))]

mod store_env;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tower_pat::store::TokenStore;
use tower_pat::{AuthError, Authenticator, NewToken};
use tower_pat::{Challenge, Rejection};

const CACHE_TTL: Duration = Duration::from_millis(200);

fn authenticator(store: Arc<dyn TokenStore>) -> Authenticator {
    Authenticator::builder(store)
        .with_cache_ttl(CACHE_TTL)
        .with_store_timeout(Duration::from_secs(1))
        .build()
}

/// Asserts the outage is a 503 for a token that was valid a moment ago, several times.
async fn assert_unavailable(auth: &Authenticator, token: &str) {
    // Let the cached entry expire, so the store must be asked.
    tokio::time::sleep(CACHE_TTL + Duration::from_millis(100)).await;
    for _ in 0..3 {
        match auth.authenticate(token).await {
            Err(e @ AuthError::StoreUnavailable(_)) => {
                let r = Rejection::from_auth_error(&e, Challenge::new("test", true, false));
                assert_eq!(r.status(), http::StatusCode::SERVICE_UNAVAILABLE);
            }
            other => panic!("store down: expected StoreUnavailable, got {other:?}"),
        }
    }
}

/// Polls until `token` is accepted again; panics after `limit`. Until then only
/// `StoreUnavailable` is acceptable.
async fn assert_recovers(auth: &Authenticator, token: &str, limit: Duration) -> Duration {
    let start = Instant::now();
    loop {
        match auth.authenticate(token).await {
            Ok(p) => {
                assert_eq!(p.owner(), "alice");
                return start.elapsed();
            }
            Err(AuthError::StoreUnavailable(_)) => {}
            Err(e) => panic!("while recovering: expected StoreUnavailable, got {e:?}"),
        }
        assert!(
            start.elapsed() < limit,
            "not recovered {limit:?} after the store came back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

#[cfg(feature = "redis")]
mod redis {
    use super::*;

    // ----- Redis -----

    struct RedisServer {
        child: std::process::Child,
        _dir: tempfile::TempDir,
    }

    impl RedisServer {
        /// A redis-server on `port`, retried a few times: the port was free when probed,
        /// but another socket may hold it for a moment.
        async fn start(port: u16) -> Self {
            for _ in 0..20 {
                if let Some(server) = Self::try_start(port).await {
                    return server;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            panic!("redis-server could not listen on port {port}");
        }

        /// `None` if the server exits (port taken) before answering PING.
        async fn try_start(port: u16) -> Option<Self> {
            use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
            let dir = tempfile::tempdir().unwrap();
            let mut child = std::process::Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .arg("--dir")
                .arg(dir.path())
                .stdout(std::process::Stdio::null())
                .spawn()
                .expect("start redis-server");
            let start = Instant::now();
            loop {
                if child.try_wait().ok().flatten().is_some() {
                    return None;
                }
                // Our server answers PING; something else on the port would not.
                if let Ok(mut conn) = TcpStream::connect(("127.0.0.1", port)).await {
                    let mut reply = [0u8; 7];
                    let pong = conn.write_all(b"PING\r\n").await.is_ok()
                        && conn.read_exact(&mut reply).await.is_ok()
                        && &reply == b"+PONG\r\n";
                    if pong && child.try_wait().ok().flatten().is_none() {
                        return Some(Self { child, _dir: dir });
                    }
                }
                if start.elapsed() > Duration::from_secs(10) {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("redis-server did not start on port {port}");
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }

        fn kill(mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    impl Drop for RedisServer {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    fn redis_server_available() -> bool {
        let found = std::process::Command::new("redis-server")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            // CI sets PAT_TEST_REDIS_URL and must run this test.
            assert!(
                std::env::var_os("PAT_TEST_REDIS_URL").is_none(),
                "PAT_TEST_REDIS_URL is set but redis-server is not on PATH"
            );
            println!("skipped: redis-server not on PATH");
        }
        found
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn redis_outage_gives_503_and_recovers() {
        if !redis_server_available() {
            return;
        }
        let port = free_port();
        let server = RedisServer::start(port).await;
        let url = format!("redis://127.0.0.1:{port}");
        let store = tower_pat::store::open(&url).await.unwrap();
        let auth = authenticator(store);
        let created = auth.create(NewToken::new("alice", "ci")).await.unwrap();
        let token = created.token.expose().to_owned();
        auth.authenticate(&token).await.unwrap();

        server.kill();
        assert_unavailable(&auth, &token).await;

        // The data lived in the killed server's memory: put the token back as an
        // administrator restoring a backup would, then expect recovery.
        let _server = RedisServer::start(port).await;
        let restored = tower_pat::store::RedisStore::connect(&url).await.unwrap();
        restored.insert(&created.record).await.unwrap();
        let took = assert_recovers(&auth, &token, Duration::from_secs(2)).await;
        println!("redis: recovered {took:?} after the server came back");
    }
}

#[cfg(feature = "postgres")]
mod postgres {
    use super::*;

    // ----- PostgreSQL -----

    /// A TCP proxy to `target` on a fixed local port that can be stopped (closing every
    /// connection through it) and started again.
    struct Proxy {
        port: u16,
        target: String,
        tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
    }

    impl Proxy {
        async fn start(target: &str) -> Self {
            // Bound here, not probed and bound later: another socket could take a probed
            // port in between.
            let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
            let p = Self {
                port: listener.local_addr().unwrap().port(),
                target: target.to_owned(),
                tasks: Arc::default(),
            };
            p.serve(listener);
            p
        }

        async fn resume(&self) {
            // While stopped, an outgoing connection may briefly hold the port as its local
            // port: retry rather than fail the test for that.
            let mut tries = 0;
            let listener = loop {
                match TcpListener::bind(("127.0.0.1", self.port)).await {
                    Ok(l) => break l,
                    Err(e) if tries < 100 => {
                        tries += 1;
                        eprintln!("proxy port {} busy ({e}), retrying", self.port);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    Err(e) => panic!("cannot listen again on {}: {e}", self.port),
                }
            };
            self.serve(listener);
        }

        fn serve(&self, listener: TcpListener) {
            let (target, tasks) = (self.target.clone(), self.tasks.clone());
            let accept = tokio::spawn(async move {
                while let Ok((mut client, _)) = listener.accept().await {
                    let target = target.clone();
                    let conn = tokio::spawn(async move {
                        if let Ok(mut server) = TcpStream::connect(&target).await {
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                        }
                    });
                    tasks.lock().unwrap().push(conn);
                }
            });
            self.tasks.lock().unwrap().push(accept);
        }

        fn stop(&self) {
            for t in self.tasks.lock().unwrap().drain(..) {
                t.abort();
            }
        }
    }

    impl Drop for Proxy {
        fn drop(&mut self) {
            self.stop();
        }
    }

    /// `host:port` of a `postgres://user@host:port/db` URL, and the URL through `local_port`.
    fn via_proxy(url: &str, local_port: u16) -> (String, String) {
        let (scheme, rest) = url.split_once("://").expect("URL with ://");
        let auth_end = rest.find('/').unwrap_or(rest.len());
        let (authority, path) = rest.split_at(auth_end);
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (format!("{u}@"), h),
            None => (String::new(), authority),
        };
        let target = if hostport.contains(':') {
            hostport.to_owned()
        } else {
            format!("{hostport}:5432")
        };
        (
            target,
            format!("{scheme}://{userinfo}127.0.0.1:{local_port}{path}"),
        )
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_outage_gives_503_and_recovers() {
        let Some(url) = store_env::server_url("PAT_TEST_POSTGRES_URL") else {
            return;
        };
        let (target, _) = via_proxy(&url, 0);
        let proxy = Proxy::start(&target).await;
        let (_, proxied) = via_proxy(&url, proxy.port);
        let schema = store_env::unique("pat_test");
        let s = schema.clone();
        let test = async move {
            let store = store_env::postgres_store(&proxied, &s).await;
            let auth = authenticator(Arc::new(store));
            let created = auth.create(NewToken::new("alice", "ci")).await.unwrap();
            let token = created.token.expose().to_owned();
            auth.authenticate(&token).await.unwrap();

            proxy.stop();
            assert_unavailable(&auth, &token).await;

            proxy.resume().await;
            let took = assert_recovers(&auth, &token, Duration::from_secs(2)).await;
            println!("postgres: recovered {took:?} after the server came back");
        };
        let result =
            futures_util::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(test)).await;
        store_env::drop_schema(&url, &schema).await;
        if let Err(p) = result {
            std::panic::resume_unwind(p);
        }
    }

    #[test]
    fn proxy_url_rewriting() {
        assert_eq!(
            via_proxy("postgres://postgres@127.0.0.1:5432/test", 9),
            (
                "127.0.0.1:5432".to_owned(),
                "postgres://postgres@127.0.0.1:9/test".to_owned()
            )
        );
        assert_eq!(
            via_proxy("postgres://u:p@db/x?sslmode=disable", 9),
            (
                "db:5432".to_owned(),
                "postgres://u:p@127.0.0.1:9/x?sslmode=disable".to_owned()
            )
        );
    }
}
