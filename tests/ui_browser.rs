//! The self-service page in real Chromium, driven through WebDriver (chromedriver): the
//! quickstart as a user runs it, from its login to a revoked token, with a forged form
//! from another origin, console errors and an axe-core accessibility check on each page.
//!
//! Needs `chromium` and `chromedriver` (Debian packages; or `PAT_TEST_CHROMIUM` and
//! `PAT_TEST_CHROMEDRIVER`) and axe-core's `axe.min.js` (`PAT_TEST_AXE_JS`; `.ci/run`
//! fetches it from the npm registry). In CI (`CI` set) a missing one fails the test;
//! elsewhere it is skipped with the reason printed. Screenshots land in
//! `target/tmp/ui-screenshots/`.
#![cfg(all(feature = "ui", feature = "sqlite"))]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

mod common;
use common::example_binary;

/// Kills a child process when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A program from `var`, else `name` on PATH; `None` (skip) outside CI, a failure in it.
fn program(var: &str, name: &str) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(var) {
        return Some(PathBuf::from(p));
    }
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        let why = format!("{name} not found (set {var} or put it on PATH; apt-get install chromium chromium-driver)");
        assert!(std::env::var_os("CI").is_none(), "{why}");
        eprintln!("skipped: {why}");
    }
    found
}

fn axe_source() -> Option<String> {
    let path = std::env::var_os("PAT_TEST_AXE_JS").map(PathBuf::from);
    match path.and_then(|p| std::fs::read_to_string(p).ok()) {
        Some(s) => Some(s),
        None => {
            let why = "axe-core not found: set PAT_TEST_AXE_JS to axe.min.js (`npm pack axe-core@4` and unpack it; .ci/run does)";
            assert!(std::env::var_os("CI").is_none(), "{why}");
            eprintln!("skipped: {why}");
            None
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One HTTP/1.1 exchange on a new connection: (status, body).
fn http(
    method: &str,
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).unwrap();
    // Read the head, then the body by its length: a server may keep the connection open.
    let mut r = BufReader::new(s);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap() == 0 || line == "\r\n" {
            break;
        }
        head.push_str(&line);
    }
    let lower = head.to_ascii_lowercase();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let length = lower
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok());
    let body = if let Some(n) = length {
        let mut buf = vec![0; n];
        r.read_exact(&mut buf).unwrap();
        String::from_utf8_lossy(&buf).into_owned()
    } else if lower.contains("transfer-encoding: chunked") {
        let mut out = Vec::new();
        loop {
            let mut size = String::new();
            r.read_line(&mut size).unwrap();
            let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            let mut chunk = vec![0; n + 2];
            r.read_exact(&mut chunk).unwrap();
            if n == 0 {
                break;
            }
            out.extend_from_slice(&chunk[..n]);
        }
        String::from_utf8_lossy(&out).into_owned()
    } else {
        let mut rest = String::new();
        let _ = r.read_to_string(&mut rest);
        rest
    };
    (status, body)
}

/// A WebDriver session on chromedriver.
struct Driver {
    addr: SocketAddr,
    session: String,
    shots: PathBuf,
}

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

impl Driver {
    fn call(&self, method: &str, path: &str, body: Value) -> Value {
        let path = format!("/session/{}{path}", self.session);
        if std::env::var_os("PAT_TEST_TRACE").is_some() {
            eprintln!("webdriver: {method} {path}");
        }
        let (status, text) = http(
            method,
            self.addr,
            &path,
            &[("Content-Type", "application/json")],
            &if method == "GET" {
                String::new()
            } else {
                body.to_string()
            },
        );
        let v: Value =
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("{path}: {status} {text}"));
        assert_eq!(status, 200, "{method} {path}: {v}");
        v["value"].clone()
    }

    fn go(&self, url: &str) {
        self.call("POST", "/url", json!({ "url": url }));
    }

    fn url(&self) -> String {
        self.call("GET", "/url", json!(null))
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    fn find(&self, css: &str) -> String {
        let v = self.call(
            "POST",
            "/element",
            json!({ "using": "css selector", "value": css }),
        );
        v[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("no {css}"))
            .to_owned()
    }

    fn click(&self, css: &str) {
        let e = self.find(css);
        self.call("POST", &format!("/element/{e}/click"), json!({}));
    }

    /// Clicks `css` and waits until a new page has loaded.
    fn click_to(&self, css: &str) {
        self.js("window.__before_click = true;");
        self.click(css);
        let start = Instant::now();
        loop {
            let done = self.js(
                "return window.__before_click === undefined && document.readyState === 'complete';",
            );
            if done.as_bool() == Some(true) {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "no new page after clicking {css}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn type_into(&self, css: &str, text: &str) {
        let e = self.find(css);
        self.call("POST", &format!("/element/{e}/clear"), json!({}));
        self.call(
            "POST",
            &format!("/element/{e}/value"),
            json!({ "text": text }),
        );
    }

    fn value(&self, css: &str) -> String {
        let e = self.find(css);
        self.call("GET", &format!("/element/{e}/property/value"), json!(null))
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    fn js(&self, script: &str) -> Value {
        self.call(
            "POST",
            "/execute/sync",
            json!({ "script": script, "args": [] }),
        )
    }

    fn text(&self) -> String {
        self.js("return document.body.innerText;")
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// The HTTP status of the page now shown.
    fn status(&self) -> u64 {
        self.js("return performance.getEntriesByType('navigation')[0].responseStatus;")
            .as_u64()
            .unwrap_or(0)
    }

    fn screenshot(&self, name: &str) {
        let b64 = self.call("GET", "/screenshot", json!(null));
        let png = base64::Engine::decode(
            &base64::engine::general_purpose::STANDARD,
            b64.as_str().unwrap(),
        )
        .unwrap();
        std::fs::write(self.shots.join(name), png).unwrap();
    }

    /// The console's messages since the last call: (level, message).
    fn console(&self) -> Vec<(String, String)> {
        let v = self.call("POST", "/se/log", json!({ "type": "browser" }));
        v.as_array()
            .into_iter()
            .flatten()
            .map(|e| {
                (
                    e["level"].as_str().unwrap_or_default().to_owned(),
                    e["message"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    }

    /// axe-core's serious and critical violations on the page now shown.
    fn accessibility(&self, axe: &str) -> Vec<String> {
        self.call(
            "POST",
            "/execute/sync",
            json!({ "script": format!("{axe}\n;return typeof axe;"), "args": [] }),
        );
        let script = "const done = arguments[arguments.length - 1];
            axe.run(document, { resultTypes: ['violations'] })
              .then(r => done(r.violations.map(v => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map(n => n.target.join(' ')) }))))
              .catch(e => done([{ id: 'axe failed', impact: 'critical', help: String(e), nodes: [] }]));";
        let v = self.call(
            "POST",
            "/execute/async",
            json!({ "script": script, "args": [] }),
        );
        v.as_array()
            .into_iter()
            .flatten()
            .filter(|x| matches!(x["impact"].as_str(), Some("serious" | "critical")))
            .map(|x| x.to_string())
            .collect()
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let path = format!("/session/{}", self.session);
        let _ = std::panic::catch_unwind(|| http("DELETE", self.addr, &path, &[], ""));
    }
}

fn wait_for_port(port: u16, what: &str) {
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{what} did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The quickstart on a free port with an in-memory store: (process, address, password).
fn quickstart() -> (Running, SocketAddr, String) {
    let mut child = Command::new(example_binary("quickstart"))
        .env("PAT_LISTEN", "127.0.0.1:0")
        .env("PAT_STORE_URL", "memory://")
        .env("PAT_WRITE_INTERVAL", "1s")
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            if let Some(rest) = line.strip_prefix("listening on http://") {
                let _ = tx.send(
                    rest.split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .parse::<SocketAddr>()
                        .ok(),
                );
            }
        }
    });
    let mut password = None;
    for line in stdout.lines().map_while(Result::ok) {
        if let Some(p) = line.strip_prefix("password: ") {
            password = Some(p.to_owned());
            break;
        }
    }
    let addr = rx
        .recv_timeout(Duration::from_secs(60))
        .ok()
        .flatten()
        .expect("the quickstart's address");
    (Running(child), addr, password.expect("a `password:` line"))
}

/// A page on another origin that posts a form to `action` as soon as it loads.
fn attacker(action: String, fields: Vec<(String, String)>) -> (u16, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let inputs: String = fields
        .iter()
        .map(|(k, v)| format!(r#"<input type="hidden" name="{k}" value="{v}">"#))
        .collect();
    let page = format!(
        r#"<!DOCTYPE html><html><body><form id="f" method="post" action="{action}">{inputs}</form><script>document.getElementById("f").submit();</script></body></html>"#
    );
    // A thread per connection: a browser opens spare connections it may never use.
    let handle = std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let page = page.clone();
            std::thread::spawn(move || {
                let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                let mut buf = [0u8; 4096];
                if s.read(&mut buf).unwrap_or(0) == 0 {
                    return;
                }
                let res = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{page}",
                    page.len()
                );
                let _ = s.write_all(res.as_bytes());
            });
        }
    });
    (port, handle)
}

/// A new Chromium session with its own profile, and `extra` arguments.
fn session(
    driver: SocketAddr,
    chromium: &Path,
    profile: &Path,
    extra: &[&str],
    shots: &Path,
) -> Driver {
    let mut args = vec![
        "--headless=new".to_owned(),
        "--no-sandbox".into(),
        "--disable-gpu".into(),
        "--disable-dev-shm-usage".into(),
        "--window-size=1280,900".into(),
        "--no-first-run".into(),
        "--password-store=basic".into(),
        format!("--user-data-dir={}", profile.display()),
    ];
    args.extend(extra.iter().map(|a| (*a).to_owned()));
    let caps = json!({ "capabilities": { "alwaysMatch": {
        "browserName": "chrome",
        "goog:loggingPrefs": { "browser": "ALL" },
        "goog:chromeOptions": { "binary": chromium, "args": args },
    } } });
    let (status, text) = http(
        "POST",
        driver,
        "/session",
        &[("Content-Type", "application/json")],
        &caps.to_string(),
    );
    assert_eq!(status, 200, "a Chromium session: {text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    Driver {
        addr: driver,
        session: v["value"]["sessionId"].as_str().unwrap().to_owned(),
        shots: shots.to_owned(),
    }
}

fn whoami(addr: SocketAddr, token: &str) -> u16 {
    http(
        "GET",
        addr,
        "/whoami",
        &[("Authorization", &format!("Bearer {token}"))],
        "",
    )
    .0
}

#[test]
fn the_page_in_real_chromium() {
    let (Some(chromium), Some(chromedriver), Some(axe)) = (
        program("PAT_TEST_CHROMIUM", "chromium"),
        program("PAT_TEST_CHROMEDRIVER", "chromedriver"),
        axe_source(),
    ) else {
        return;
    };
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ui-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let (_app, addr, password) = quickstart();
    let port = free_port();
    let _driver_process = Running(
        Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for_port(port, "chromedriver");
    let driver_addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let profile = tempfile::tempdir().unwrap();
    let b = session(
        driver_addr,
        &chromium,
        &profile.path().join("light"),
        &[],
        &shots,
    );
    let site = format!("http://{addr}");
    let mut pages_checked = Vec::new();
    let mut check_page = |b: &Driver, name: &str| {
        let violations = b.accessibility(&axe);
        assert!(
            violations.is_empty(),
            "{name}: accessibility: {violations:#?}"
        );
        let errors: Vec<_> = b
            .console()
            .into_iter()
            .filter(|(l, _)| l == "SEVERE")
            .collect();
        assert!(errors.is_empty(), "{name}: console errors: {errors:#?}");
        pages_checked.push(name.to_owned());
    };

    // Log in.
    b.go(&format!("{site}/settings/tokens"));
    assert!(
        b.url().ends_with("/login"),
        "sent to the login: {}",
        b.url()
    );
    check_page(&b, "login");
    b.type_into("#password", &password);
    b.click_to("button[type=submit]");
    assert!(
        b.url().ends_with("/settings/tokens"),
        "{}: {}",
        b.url(),
        b.text()
    );
    assert!(b.text().contains("Signed in as demo"));

    // Create a token with a scope from the catalogue and a 7-day expiry.
    b.click_to("a.button.primary");
    assert!(b.url().ends_with("/settings/tokens/new"));
    check_page(&b, "create");
    b.type_into("#name", "browser test");
    b.click("input[name=scope][value='node:*']");
    b.click("#exp-7");
    b.screenshot("create.png");
    b.click_to("button[type=submit]");
    assert!(
        b.url().contains("/settings/tokens/shown/"),
        "{}: {}",
        b.url(),
        b.text()
    );
    let token = b.value("#token");
    assert!(token.starts_with("pat_"), "{token}");
    assert!(!b.url().contains(&token), "the token is in no URL");
    b.click("#copy");
    // The clipboard answers through a promise: wait for the status line (up to 5 s).
    let mut copy_status = json!("");
    for _ in 0..100 {
        copy_status = b.js("return document.getElementById('copy-status').textContent;");
        if !copy_status.as_str().unwrap_or_default().is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        !copy_status.as_str().unwrap_or_default().is_empty(),
        "the copy button answers"
    );
    b.screenshot("show-once.png");
    check_page(&b, "show-once");
    let shown_url = b.url();
    let id = token
        .rsplit_once('_')
        .unwrap()
        .0
        .rsplit_once('_')
        .unwrap()
        .1
        .to_owned();

    // Reload: not shown again. Nor by the back button.
    b.call("POST", "/refresh", json!({}));
    assert!(!b.text().contains(&token));
    assert!(b.text().contains("Already shown"), "{}", b.text());
    let _ = b.console(); // the 410 of the reload
    b.go(&format!("{site}/settings/tokens"));
    b.call("POST", "/back", json!({}));
    assert_eq!(b.url(), shown_url);
    assert!(
        !b.text().contains(&token),
        "the back button does not show it again"
    );
    let _ = b.console();

    // Use it; the list then shows its last use.
    assert_eq!(whoami(addr, &token), 200);
    let start = Instant::now();
    loop {
        b.go(&format!("{site}/settings/tokens"));
        let row = b.js(&format!(
            "const a = document.querySelector(\"a[href$='/{id}']\"); return a ? a.closest('tr').innerText : '';"
        ));
        let row = row.as_str().unwrap_or_default().to_owned();
        assert!(
            row.contains("browser test") && row.contains("node:*"),
            "{row}"
        );
        if !row.contains("never used") {
            assert!(row.contains("from 127.0.0.1"), "{row}");
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no last use shown: {row}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    b.screenshot("list.png");
    check_page(&b, "list");

    // The token's page; rotate without grace: the old secret is refused at once.
    b.click_to(&format!("a[href$='/{id}']"));
    check_page(&b, "detail");
    b.click_to("form[action$='/rotate'] button");
    let rotated = b.value("#token");
    assert_ne!(rotated, token);
    assert_eq!(whoami(addr, &token), 401, "the old secret after rotation");
    assert_eq!(whoami(addr, &rotated), 200);
    b.click_to(&format!("a.button[href$='/{id}']"));

    // Disable, enable.
    b.click_to("form[action$='/disable'] button");
    assert!(b.text().contains("The token is disabled"));
    assert_eq!(whoami(addr, &rotated), 401);
    b.click_to("form[action$='/enable'] button");
    assert_eq!(whoami(addr, &rotated), 200);

    // A forged form from another origin on the same site (127.0.0.1, another port: the
    // browser sends its SameSite=Strict cookies): refused with 403, nothing changed.
    let _ = b.console();
    let (evil, _server) = attacker(
        format!("{site}/settings/tokens/{id}/revoke"),
        vec![("csrf".into(), "0".repeat(32))],
    );
    b.go(&format!("http://127.0.0.1:{evil}/"));
    let start = Instant::now();
    while !b.url().starts_with(&site) {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the form was not sent"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(b.status(), 403, "{}", b.text());
    assert!(b.text().contains("Nothing was changed"));
    assert_eq!(
        whoami(addr, &rotated),
        200,
        "the forged revoke changed nothing"
    );
    // And from another site (localhost): no session cookie goes with it; still nothing.
    b.go(&format!("http://localhost:{evil}/"));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(whoami(addr, &rotated), 200);
    let _ = b.console();

    // Revoke, through its confirmation page.
    b.go(&format!("{site}/settings/tokens/{id}"));
    b.click_to("a.button.danger");
    check_page(&b, "revoke");
    b.click_to("button.danger");
    assert!(b.text().contains("The token was revoked"));
    assert_eq!(whoami(addr, &rotated), 401);
    check_page(&b, "list after revoke");

    // A phone's width: nothing wider than the screen, the table scrolls in its box.
    b.call(
        "POST",
        "/window/rect",
        json!({ "width": 390, "height": 844 }),
    );
    b.go(&format!("{site}/settings/tokens/new"));
    let overflow =
        b.js("return document.documentElement.scrollWidth - document.documentElement.clientWidth;");
    assert!(
        overflow.as_i64().unwrap_or(1) <= 0,
        "the form is wider than a phone: {overflow}"
    );
    b.screenshot("create-phone.png");
    drop(b);

    // Dark mode, for a browser that prefers it; and the keyboard alone, from the login
    // to a new token.
    let dark = session(
        driver_addr,
        &chromium,
        &profile.path().join("dark"),
        &["--force-dark-mode"],
        &shots,
    );
    dark.go(&format!("{site}/login"));
    let background = dark.js("return getComputedStyle(document.body).backgroundColor;");
    assert_eq!(background, json!("rgb(13, 17, 23)"), "the dark palette");
    let keys = |text: &str| {
        let actions: Vec<Value> = text
            .chars()
            .flat_map(|c| {
                [
                    json!({ "type": "keyDown", "value": c.to_string() }),
                    json!({ "type": "keyUp", "value": c.to_string() }),
                ]
            })
            .collect();
        dark.call(
            "POST",
            "/actions",
            json!({ "actions": [{ "type": "key", "id": "keyboard", "actions": actions }] }),
        );
    };
    const TAB: &str = "\u{E004}";
    const ENTER: &str = "\u{E007}";
    let focused =
        || dark.js("return document.activeElement.id || document.activeElement.textContent;");
    let wait = |what: &str, done: &dyn Fn() -> bool| {
        let start = Instant::now();
        while !done() {
            assert!(start.elapsed() < Duration::from_secs(10), "{what}");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    // The login form: the password field, then Enter.
    dark.js("document.getElementById('password').focus();");
    keys(&password);
    keys(ENTER);
    wait("no login by keyboard", &|| {
        dark.url().ends_with("/settings/tokens")
    });
    // From the top of the list, Tab reaches the brand link, then "Generate new token",
    // with a visible focus ring.
    dark.js("document.activeElement.blur();");
    keys(TAB);
    keys(TAB);
    assert_eq!(focused(), json!("Generate new token"));
    let outline = dark.js("return getComputedStyle(document.activeElement).outlineStyle;");
    assert_eq!(outline, json!("solid"), "focus is visible");
    keys(ENTER);
    wait("no create form by keyboard", &|| {
        dark.url().ends_with("/new")
    });
    // Name, Tab to "Full access", Space to tick it, Enter to send.
    dark.js("document.getElementById('name').focus();");
    keys("keyboard only");
    keys(TAB);
    assert_eq!(focused(), json!("full_access"));
    keys(" ");
    keys(ENTER);
    wait("no token by keyboard", &|| dark.url().contains("/shown/"));
    assert_eq!(whoami(addr, &dark.value("#token")), 200);
    dark.screenshot("show-once-dark.png");
    let errors: Vec<_> = dark
        .console()
        .into_iter()
        .filter(|(l, _)| l == "SEVERE")
        .collect();
    assert!(errors.is_empty(), "dark: console errors: {errors:#?}");
    eprintln!(
        "checked {pages_checked:?}, then dark mode and the keyboard; screenshots in {}",
        shots.display()
    );
}
