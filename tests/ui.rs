//! The self-service page over HTTP, without a browser: every form, every refusal, the
//! CSRF defences and the headers. (`tests/ui_browser.rs` drives it in real Chromium.)
#![cfg(feature = "ui")]

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::Router;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;
use tower_pat::manage::{Actor, CreateTokenRequest, Manager};
use tower_pat::store::ListQuery;
use tower_pat::ui::{TokenPage, User};
use tower_pat::{Authenticator, ManualClock, MemoryStore, Scope, TokenStore};

const BASE: &str = "/settings/tokens";

/// A form field, and a form.
type Field<'a> = (&'a str, &'a str);
type Fields<'a> = Vec<Field<'a>>;

struct Setup {
    app: Router,
    auth: Authenticator,
    manager: Manager,
    store: Arc<MemoryStore>,
    clock: ManualClock,
}

/// The signed-in user is the `x-user` header (the host's login, here), an admin with
/// `x-admin: 1`.
fn identify(req: &http::request::Parts) -> std::future::Ready<Option<User>> {
    let name = req
        .headers
        .get("x-user")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let admin = req.headers.contains_key("x-admin");
    std::future::ready(name.map(|n| User::new(n).with_admin(admin)))
}

type Identity = fn(&http::request::Parts) -> std::future::Ready<Option<User>>;

/// The page at `/settings/tokens`.
fn setup() -> Setup {
    setup_with(|page| page)
}

/// The page at `/settings/tokens`, with `options`.
fn setup_with(options: impl FnOnce(TokenPage<Identity>) -> TokenPage<Identity>) -> Setup {
    let store = Arc::new(MemoryStore::new());
    let clock = ManualClock::starting_now();
    let auth = Authenticator::builder(store.clone())
        .with_clock(clock.clone())
        .build();
    // Delivers the audit log's events to the store, as a host's server does.
    tokio::spawn(auth.background());
    let manager = Manager::new(auth.clone());
    let page = TokenPage::new(manager.clone(), identify as Identity)
        .with_scope("repo:read".parse::<Scope>().unwrap(), "Read repositories")
        .with_scope("repo:write".parse::<Scope>().unwrap(), "Push <b>code</b>");
    Setup {
        app: Router::new().nest(BASE, options(page).router()),
        auth,
        manager,
        store,
        clock,
    }
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Reply {
    fn location(&self) -> &str {
        self.headers
            .get("location")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    /// The form token on this page.
    fn csrf(&self) -> String {
        let re = regex::Regex::new(r#"name="csrf" value="([0-9a-f]+)""#).unwrap();
        re.captures(&self.body).expect("a form token")[1].to_owned()
    }

    /// The token on a show-once page.
    fn token(&self) -> Option<String> {
        let re = regex::Regex::new(r#"id="token" type="text" readonly value="([^"]+)""#).unwrap();
        re.captures(&self.body).map(|c| c[1].to_owned())
    }
}

/// One browser: its `pat_ui` cookie, and who the host says is signed in.
struct Browser<'a> {
    app: &'a Router,
    user: String,
    admin: bool,
    cookie: Option<String>,
}

impl<'a> Browser<'a> {
    fn new(s: &'a Setup, user: &str) -> Self {
        Self {
            app: &s.app,
            user: user.into(),
            admin: false,
            cookie: None,
        }
    }

    async fn send(&mut self, req: http::request::Builder, body: Body) -> Reply {
        let mut req = req.header("x-user", &self.user).header("host", "app.test");
        if self.admin {
            req = req.header("x-admin", "1");
        }
        if let Some(c) = &self.cookie {
            req = req.header("cookie", format!("pat_ui={c}"));
        }
        let res = self
            .app
            .clone()
            .oneshot(req.body(body).unwrap())
            .await
            .unwrap();
        let (parts, body) = res.into_parts();
        for c in parts.headers.get_all("set-cookie") {
            let c = c.to_str().unwrap();
            if let Some(v) = c.strip_prefix("pat_ui=") {
                self.cookie = Some(v.split(';').next().unwrap().to_owned());
            }
        }
        Reply {
            status: parts.status,
            headers: parts.headers,
            body: String::from_utf8(body.collect().await.unwrap().to_bytes().to_vec()).unwrap(),
        }
    }

    async fn get(&mut self, path: &str) -> Reply {
        self.send(Request::get(format!("{BASE}{path}")), Body::empty())
            .await
    }

    /// A form post as a browser sends it from the page itself.
    async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Reply {
        self.post_with(
            path,
            form,
            &[
                ("sec-fetch-site", "same-origin"),
                ("origin", "http://app.test"),
            ],
        )
        .await
    }

    async fn post_with(
        &mut self,
        path: &str,
        form: &[(&str, &str)],
        headers: &[(&str, &str)],
    ) -> Reply {
        let body: String = form
            .iter()
            .map(|(k, v)| format!("{k}={}", encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let mut req = Request::post(format!("{BASE}{path}"))
            .header("content-type", "application/x-www-form-urlencoded");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        self.send(req, Body::from(body)).await
    }

    /// Creates a token through the form; returns (token id, token).
    async fn create(&mut self, name: &str, scope: &str) -> (String, String) {
        let csrf = self.get("/new").await.csrf();
        let r = self
            .post(
                "/new",
                &[
                    ("csrf", &csrf),
                    ("name", name),
                    ("scope", scope),
                    ("expiry", "7"),
                ],
            )
            .await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
        let shown = self.get(r.location().strip_prefix(BASE).unwrap()).await;
        assert_eq!(shown.status, StatusCode::OK);
        let token = shown.token().expect("the token, once");
        let id = token
            .rsplit_once('_')
            .unwrap()
            .0
            .rsplit_once('_')
            .unwrap()
            .1
            .to_owned();
        (id, token)
    }
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            b' ' => "+".into(),
            b => format!("%{b:02X}"),
        })
        .collect()
}

async fn count(store: &MemoryStore) -> u64 {
    store.list(&ListQuery::new()).await.unwrap().total
}

#[tokio::test]
async fn nobody_signed_in_is_401_and_a_token_is_no_login() {
    let s = setup();
    let issued = s
        .manager
        .create(
            &Actor::Operator,
            CreateTokenRequest::for_owner("alice")
                .name("x")
                .expire("1d"),
        )
        .await
        .unwrap();
    for (path, auth) in [
        ("", None),
        ("/new", None),
        ("", Some(issued.token.expose())),
    ] {
        let mut req = Request::get(format!("{BASE}{path}"));
        if let Some(t) = auth {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let res = s
            .app
            .clone()
            .oneshot(req.body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{path}");
        let body = res.into_body().collect().await.unwrap().to_bytes();
        assert!(!String::from_utf8_lossy(&body).contains("alice"));
    }
}

#[tokio::test]
async fn every_page_has_the_security_headers_and_the_cookie_is_http_only_and_same_site() {
    let s = setup();
    let mut b = Browser::new(&s, "alice");
    let (id, _) = b.create("ci", "repo:read").await;
    b.cookie = None;
    let first = b.get("").await;
    let cookie = first
        .headers
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    for attr in ["HttpOnly", "SameSite=Lax", "Path=/settings/tokens"] {
        assert!(cookie.contains(attr), "{cookie}");
    }
    for path in [
        "",
        "/new",
        &format!("/{id}"),
        &format!("/{id}/revoke"),
        "/shown/00",
    ] {
        let r = b.get(path).await;
        let h = |n: &str| {
            r.headers
                .get(n)
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default()
        };
        let csp = h("content-security-policy");
        for directive in [
            "default-src 'none'",
            "script-src 'self'",
            "frame-ancestors 'none'",
            "form-action 'self'",
        ] {
            assert!(csp.contains(directive), "{path}: {csp}");
        }
        assert!(!csp.contains("unsafe-inline"), "{path}");
        assert_eq!(h("x-frame-options"), "DENY", "{path}");
        assert_eq!(h("referrer-policy"), "no-referrer", "{path}");
        assert_eq!(h("cache-control"), "no-store", "{path}");
        assert_eq!(h("x-content-type-options"), "nosniff", "{path}");
        // No inline script: every <script> has a src.
        assert!(!r.body.contains("<script>"), "{path}");
    }
    let css = b.get("/assets/style.css").await;
    assert_eq!(css.status, StatusCode::OK);
    assert!(css.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/css"));
    assert!(css.body.contains("prefers-color-scheme: dark"));
    assert_eq!(b.get("/assets/page.js").await.status, StatusCode::OK);
}

#[tokio::test]
async fn create_shows_the_token_once_and_it_works_with_its_scope() {
    let s = setup();
    let mut b = Browser::new(&s, "alice");
    let csrf = b.get("/new").await.csrf();
    let r = b
        .post(
            "/new",
            &[
                ("csrf", &csrf),
                ("name", "deploy"),
                ("scope", "repo:write"),
                ("expiry", "7"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let slot = r.location().strip_prefix(BASE).unwrap().to_owned();
    assert!(slot.starts_with("/shown/"));
    let shown = b.get(&slot).await;
    assert_eq!(shown.status, StatusCode::OK);
    assert_eq!(shown.headers["cache-control"], "no-store");
    let token = shown.token().unwrap();
    assert!(shown.body.contains("will not be shown again"));
    // Neither the redirect nor the page's links carry it.
    assert!(!r.location().contains(&token));
    let p = s.auth.authenticate(token.as_str()).await.unwrap();
    assert_eq!(p.owner(), "alice");
    assert!(p
        .missing(&"repo:write".parse::<tower_pat::ScopeSet>().unwrap())
        .is_none());
    assert!(p
        .missing(&"repo:admin".parse::<tower_pat::ScopeSet>().unwrap())
        .is_some());
    let end = p.expires_at().unwrap();
    let days = (end - s.auth.clock().now()).whole_days();
    assert!((6..=7).contains(&days), "{days}");
    // A reload, or the back button, finds it gone.
    let again = b.get(&slot).await;
    assert_eq!(again.status, StatusCode::GONE);
    assert!(!again.body.contains(&token));
    assert!(again.body.contains("already shown"));
    // The list shows it, its scope and its state.
    let list = b.get("").await;
    assert!(list.body.contains("deploy") && list.body.contains("repo:write"));
    assert!(list.body.contains("expires soon"), "7 days is soon");
    assert!(!list.body.contains(&token));
}

#[tokio::test]
async fn a_show_once_page_is_only_for_the_browser_and_user_that_made_it() {
    let s = setup();
    let mut alice = Browser::new(&s, "alice");
    let csrf = alice.get("/new").await.csrf();
    let r = alice
        .post(
            "/new",
            &[
                ("csrf", &csrf),
                ("name", "x"),
                ("full_access", "1"),
                ("expiry", "30"),
            ],
        )
        .await;
    let slot = r.location().strip_prefix(BASE).unwrap().to_owned();
    // Another browser of the same user, and the same browser for another user.
    let mut other_browser = Browser::new(&s, "alice");
    let r2 = other_browser.get(&slot).await;
    assert!(r2.token().is_none());
    let mut mallory = Browser::new(&s, "mallory");
    mallory.cookie = alice.cookie.clone();
    assert!(mallory.get(&slot).await.token().is_none());
    // Still there for alice's browser: those looks did not spend it.
    assert!(alice.get(&slot).await.token().is_some());
}

#[tokio::test]
async fn forged_posts_are_403_and_change_nothing() {
    let s = setup();
    let mut b = Browser::new(&s, "alice");
    let (id, token) = b.create("ci", "repo:read").await;
    let csrf = b.get(&format!("/{id}")).await.csrf();
    let before = count(&s.store).await;
    let form = [
        ("csrf", csrf.as_str()),
        ("name", "evil"),
        ("full_access", "1"),
        ("expiry", "7"),
    ];
    // No form token; a wrong one; a cross-site and a same-site (other origin) request
    // with the right one; a foreign Origin; an opaque Origin.
    let cases: Vec<(Fields, Fields)> = vec![
        (
            vec![("name", "evil"), ("full_access", "1"), ("expiry", "7")],
            vec![],
        ),
        (
            vec![
                ("csrf", "00"),
                ("name", "evil"),
                ("full_access", "1"),
                ("expiry", "7"),
            ],
            vec![],
        ),
        (form.to_vec(), vec![("sec-fetch-site", "cross-site")]),
        (form.to_vec(), vec![("sec-fetch-site", "same-site")]),
        (form.to_vec(), vec![("origin", "http://evil.test")]),
        (form.to_vec(), vec![("origin", "null")]),
    ];
    for (i, (fields, headers)) in cases.iter().enumerate() {
        let r = b.post_with("/new", fields, headers).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "case {i}");
        for action in ["revoke", "disable", "rotate"] {
            let r = b
                .post_with(&format!("/{id}/{action}"), fields, headers)
                .await;
            assert_eq!(r.status, StatusCode::FORBIDDEN, "case {i} {action}");
        }
    }
    // A browser without the cookie (a forged form from a page that never saw ours).
    let mut fresh = Browser::new(&s, "alice");
    let r = fresh
        .post(&format!("/{id}/revoke"), &[("csrf", &csrf)])
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // Another user's form token in alice's browser.
    let mut bob = Browser::new(&s, "bob");
    bob.cookie = b.cookie.clone();
    let bobs = bob.get("/new").await.csrf();
    assert_ne!(bobs, csrf);
    let r = b.post(&format!("/{id}/revoke"), &[("csrf", &bobs)]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(count(&s.store).await, before);
    s.auth
        .authenticate(token.as_str())
        .await
        .expect("still works");
}

#[tokio::test]
async fn form_errors_are_shown_next_to_their_fields_and_nothing_is_made() {
    let s = setup();
    let mut b = Browser::new(&s, "alice");
    let csrf = b.get("/new").await.csrf();
    let cases: [(&[Field], &str, &str); 7] = [
        (
            &[("name", ""), ("full_access", "1"), ("expiry", "7")],
            "name-error",
            "Give the token a name",
        ),
        (
            &[("name", "x"), ("expiry", "7")],
            "scopes-error",
            "Choose at least one scope",
        ),
        (
            &[
                ("name", "x"),
                ("full_access", "1"),
                ("scope", "repo:read"),
                ("expiry", "7"),
            ],
            "scopes-error",
            "not both",
        ),
        (
            &[
                ("name", "x"),
                ("extra_scopes", "node:nope"),
                ("expiry", "7"),
            ],
            "scopes-error",
            "node scopes look like",
        ),
        (
            &[("name", "x"), ("scope", "admin:all"), ("expiry", "7")],
            "scopes-error",
            "not one of the scopes offered",
        ),
        (
            &[
                ("name", "x"),
                ("full_access", "1"),
                ("expiry", "date"),
                ("date", "2001-01-01"),
            ],
            "expiry-error",
            "in the past",
        ),
        (
            &[
                ("name", "x"),
                ("full_access", "1"),
                ("expiry", "date"),
                ("date", "2999-01-01"),
            ],
            "expiry-error",
            "maximum lifetime of 366 days",
        ),
    ];
    for (fields, field, words) in cases {
        let mut form = vec![("csrf", csrf.as_str())];
        form.extend_from_slice(fields);
        let r = b.post("/new", &form).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{field}: {}", r.body);
        let at = r
            .body
            .find(&format!("id=\"{field}\""))
            .unwrap_or_else(|| panic!("{field} in {}", r.body));
        assert!(
            r.body[at..].split("</p>").next().unwrap().contains(words),
            "{words}: {}",
            &r.body[at..]
        );
    }
    // "Never" is not offered, and refused when sent, under the default policy.
    let r = b.get("/new").await;
    assert!(!r.body.contains("value=\"never\""));
    // The date picker offers only days the policy allows: from today to 365 days on.
    let today = s.auth.clock().now().date();
    let last = today + time::Duration::days(365);
    assert!(
        r.body.contains(&format!("min=\"{today}\" max=\"{last}\"")),
        "{}",
        r.body
    );
    let r = b
        .post(
            "/new",
            &[
                ("csrf", &csrf),
                ("name", "x"),
                ("full_access", "1"),
                ("expiry", "never"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("does not allow tokens that never expire"));
    // What was typed comes back, escaped.
    let r = b
        .post(
            "/new",
            &[
                ("csrf", &csrf),
                ("name", "<img src=x onerror=alert(1)>"),
                ("expiry", "7"),
            ],
        )
        .await;
    assert!(
        r.body
            .contains("value=\"&lt;img src=x onerror=alert(1)&gt;\""),
        "{}",
        r.body
    );
    assert!(!r.body.contains("<img src=x"));
    assert_eq!(count(&s.store).await, 0);
}

#[tokio::test]
async fn every_value_is_escaped() {
    let s = setup();
    let mut b = Browser::new(&s, "alice");
    let evil = "<script>alert('x')</script>\"&";
    let (id, _) = b.create(evil, "repo:read").await;
    for path in ["".to_owned(), format!("/{id}"), format!("/{id}/revoke")] {
        let r = b.get(&path).await;
        assert!(!r.body.contains("<script>alert"), "{path}");
        assert!(
            r.body
                .contains("&lt;script&gt;alert('x')&lt;/script&gt;&quot;&amp;"),
            "{path}"
        );
    }
    // The catalogue's descriptions too.
    assert!(b
        .get("/new")
        .await
        .body
        .contains("Push &lt;b&gt;code&lt;/b&gt;"));
}

#[tokio::test]
async fn disable_enable_rotate_and_revoke() {
    let s = setup();
    let mut b = Browser::new(&s, "alice");
    let (id, token) = b.create("ci", "repo:read").await;
    let csrf = b.get(&format!("/{id}")).await.csrf();

    let r = b.post(&format!("/{id}/disable"), &[("csrf", &csrf)]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.location(), format!("{BASE}/{id}?done=disabled"));
    assert!(s.auth.authenticate(token.as_str()).await.is_err());
    let page = b.get(&format!("/{id}?done=disabled")).await;
    assert!(page.body.contains("The token is disabled"));
    assert!(page.body.contains(&format!("{BASE}/{id}/enable")));
    b.post(&format!("/{id}/enable"), &[("csrf", &csrf)]).await;
    s.auth
        .authenticate(token.as_str())
        .await
        .expect("enabled again");

    // Rotation with a grace period: the new token works, the old one until the grace ends.
    let r = b
        .post(
            &format!("/{id}/rotate"),
            &[("csrf", &csrf), ("grace", "1h")],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let shown = b.get(r.location().strip_prefix(BASE).unwrap()).await;
    let new = shown.token().unwrap();
    assert_ne!(new, token);
    assert!(shown.body.contains("The old secret keeps working until"));
    s.auth.authenticate(new.as_str()).await.unwrap();
    s.auth
        .authenticate(token.as_str())
        .await
        .expect("within the grace");
    s.clock.advance(Duration::from_secs(3601));
    s.auth.invalidate_all();
    assert!(
        s.auth.authenticate(token.as_str()).await.is_err(),
        "after the grace"
    );
    // Without grace the old secret stops at once.
    let r = b
        .post(&format!("/{id}/rotate"), &[("csrf", &csrf), ("grace", "0")])
        .await;
    let newer = b
        .get(r.location().strip_prefix(BASE).unwrap())
        .await
        .token()
        .unwrap();
    assert!(s.auth.authenticate(new.as_str()).await.is_err());
    s.auth.authenticate(newer.as_str()).await.unwrap();

    // The history names what happened, and who did it (events are written behind).
    let mut page = b.get(&format!("/{id}")).await;
    for _ in 0..100 {
        if page.body.matches("Rotated").count() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        page = b.get(&format!("/{id}")).await;
    }
    for words in ["Created", "Disabled", "Enabled", "Rotated", "user alice"] {
        assert!(page.body.contains(words), "{words}");
    }

    // Revoke: a confirmation page, then the token is gone.
    let confirm = b.get(&format!("/{id}/revoke")).await;
    assert_eq!(confirm.status, StatusCode::OK);
    assert!(confirm.body.contains("cannot be undone"));
    assert!(
        s.auth.authenticate(newer.as_str()).await.is_ok(),
        "the confirmation page changes nothing"
    );
    let r = b
        .post(&format!("/{id}/revoke"), &[("csrf", &confirm.csrf())])
        .await;
    assert_eq!(r.location(), format!("{BASE}?done=revoked"));
    assert!(s.auth.authenticate(newer.as_str()).await.is_err());
    assert_eq!(b.get(&format!("/{id}")).await.status, StatusCode::NOT_FOUND);
    assert!(b
        .get("?done=revoked")
        .await
        .body
        .contains("The token was revoked"));
}

#[tokio::test]
async fn users_see_and_touch_only_their_own_tokens_admins_everyones() {
    let s = setup();
    let mut alice = Browser::new(&s, "alice");
    let (id, token) = alice.create("alice's", "repo:read").await;
    let mut bob = Browser::new(&s, "bob");
    let (_bob_id, _) = bob.create("bob's", "repo:read").await;
    assert!(!bob.get("").await.body.contains("alice's"));
    assert!(
        !bob.get("?owner=alice").await.body.contains("alice's"),
        "a non-admin's owner filter is ignored"
    );
    assert_eq!(
        bob.get(&format!("/{id}")).await.status,
        StatusCode::NOT_FOUND
    );
    let csrf = bob.get("/new").await.csrf();
    for action in ["disable", "revoke", "rotate"] {
        let r = bob
            .post(&format!("/{id}/{action}"), &[("csrf", &csrf)])
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{action}");
    }
    s.auth
        .authenticate(token.as_str())
        .await
        .expect("untouched");
    // A non-admin cannot make a token for someone else, nor grant the admin scope.
    let r = bob
        .post(
            "/new",
            &[
                ("csrf", &csrf),
                ("name", "x"),
                ("owner", "alice"),
                ("full_access", "1"),
                ("expiry", "7"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let shown = bob
        .get(r.location().strip_prefix(BASE).unwrap())
        .await
        .token()
        .unwrap();
    assert_eq!(
        s.auth.authenticate(shown.as_str()).await.unwrap().owner(),
        "bob"
    );
    let r = bob
        .post(
            "/new",
            &[
                ("csrf", &csrf),
                ("name", "x"),
                ("extra_scopes", "pat:admin"),
                ("expiry", "7"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(
        r.body.contains("Only an admin may grant pat:admin"),
        "{}",
        r.body
    );

    let mut root = Browser::new(&s, "root");
    root.admin = true;
    let all = root.get("").await;
    assert!(all.body.contains("alice's") && all.body.contains("bob's"));
    assert!(all.body.contains("id=\"owner\""), "an owner filter");
    let only = root.get("?owner=alice").await;
    assert!(only.body.contains("alice's") && !only.body.contains("bob's"));
    let csrf = root.get("/new").await.csrf();
    let r = root
        .post(&format!("/{id}/disable"), &[("csrf", &csrf)])
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert!(s.auth.authenticate(token.as_str()).await.is_err());
    let r = root
        .post(
            "/new",
            &[
                ("csrf", &csrf),
                ("name", "for carol"),
                ("owner", "carol"),
                ("full_access", "1"),
                ("expiry", "7"),
            ],
        )
        .await;
    let t = root
        .get(r.location().strip_prefix(BASE).unwrap())
        .await
        .token()
        .unwrap();
    assert_eq!(
        s.auth.authenticate(t.as_str()).await.unwrap().owner(),
        "carol"
    );
}

#[tokio::test]
async fn odd_input_gets_a_page_not_a_panic() {
    let s = setup();
    let mut b = Browser::new(&s, "alice");
    for path in [
        "/nope",
        "/%00",
        "/pat_x_y",
        "/../../etc",
        "/shown/",
        "/shown/zz",
        &"a".repeat(5000),
    ] {
        let r = b.get(path).await;
        assert!(r.status.is_client_error(), "{path}: {}", r.status);
    }
    let csrf = b.get("/new").await.csrf();
    let huge = "x".repeat(20_000);
    let r = b.post("/new", &[("csrf", &csrf), ("name", &huge)]).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    let r = b
        .post(
            "/new",
            &[
                ("csrf", &csrf),
                ("name", "x"),
                ("full_access", "1"),
                ("expiry", "date"),
                ("date", "32/13/2020"),
            ],
        )
        .await;
    assert!(r.body.contains("YYYY-MM-DD"));
    let r = b
        .post(
            "/new",
            &[
                ("csrf", &csrf),
                ("name", "x"),
                ("full_access", "1"),
                ("expiry", "auto"),
                ("window", "-1"),
            ],
        )
        .await;
    assert!(r.body.contains("auto-refresh windows offered"));
    let r = b
        .post(
            "/new",
            &[
                ("csrf", &csrf),
                ("name", "x"),
                ("full_access", "1"),
                ("expiry", "auto"),
                ("window", "86400"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "an auto-refresh token");
    let r = b
        .post("/pat_x/rotate", &[("csrf", &csrf), ("grace", "forever")])
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(count(&s.store).await, 1);
}

#[tokio::test]
async fn one_user_making_many_tokens_does_not_push_out_anothers_waiting_one() {
    let s = setup();
    let mut alice = Browser::new(&s, "alice");
    let csrf = alice.get("/new").await.csrf();
    let form = [
        ("csrf", csrf.as_str()),
        ("name", "x"),
        ("full_access", "1"),
        ("expiry", "7"),
    ];
    let waiting = alice
        .post("/new", &form)
        .await
        .location()
        .strip_prefix(BASE)
        .unwrap()
        .to_owned();
    let mut mallory = Browser::new(&s, "mallory");
    let csrf = mallory.get("/new").await.csrf();
    let form = [
        ("csrf", csrf.as_str()),
        ("name", "x"),
        ("full_access", "1"),
        ("expiry", "7"),
    ];
    let mut slots = Vec::new();
    for _ in 0..1100 {
        slots.push(
            mallory
                .post("/new", &form)
                .await
                .location()
                .strip_prefix(BASE)
                .unwrap()
                .to_owned(),
        );
    }
    assert!(
        alice.get(&waiting).await.token().is_some(),
        "alice's token still waits"
    );
    // Mallory's own: only the newest 8 still wait.
    assert!(mallory.get(&slots[0]).await.token().is_none());
    assert!(mallory.get(&slots[1099]).await.token().is_some());
    assert!(mallory.get(&slots[1092]).await.token().is_some());
    assert!(mallory.get(&slots[1091]).await.token().is_none());
}

#[tokio::test]
async fn rotation_takes_only_the_grace_periods_offered() {
    let s = setup();
    let mut b = Browser::new(&s, "alice");
    let (id, token) = b.create("ci", "repo:read").await;
    let csrf = b.get(&format!("/{id}")).await.csrf();
    for grace in ["999999999999w", "2h", "-1", "1h "] {
        let r = b
            .post(
                &format!("/{id}/rotate"),
                &[("csrf", &csrf), ("grace", grace)],
            )
            .await;
        if grace == "1h " {
            assert_eq!(r.status, StatusCode::SEE_OTHER, "{grace:?} is 1h, trimmed");
            continue;
        }
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{grace}");
        assert!(r.body.contains("grace periods offered"));
        s.auth
            .authenticate(token.as_str())
            .await
            .expect("not rotated");
    }
}

#[tokio::test]
async fn a_user_name_that_cannot_own_tokens_is_said_at_the_top_of_the_form() {
    let s = setup();
    let mut b = Browser::new(&s, "corp:alice");
    let csrf = b.get("/new").await.csrf();
    let r = b
        .post(
            "/new",
            &[
                ("csrf", &csrf),
                ("name", "x"),
                ("full_access", "1"),
                ("expiry", "7"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(
        r.body.contains("Your user name cannot own tokens here"),
        "{}",
        r.body
    );
    assert_eq!(count(&s.store).await, 0);
}

#[tokio::test]
async fn the_browsers_own_same_origin_word_is_enough_and_a_page_past_the_end_says_so() {
    let s = setup();
    let mut b = Browser::new(&s, "alice");
    let csrf = b.get("/new").await.csrf();
    // Over HTTP/2 there is no Host header, and a proxy may rewrite it: a same-origin
    // form from the browser still counts.
    let form = [
        ("csrf", csrf.as_str()),
        ("name", "x"),
        ("full_access", "1"),
        ("expiry", "7"),
    ];
    let r = b
        .post_with(
            "/new",
            &form,
            &[
                ("sec-fetch-site", "same-origin"),
                ("origin", "https://public.example"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let r = b.get("?page=7").await;
    assert!(r.body.contains("Nothing on this page"), "{}", r.body);
}

#[tokio::test]
async fn the_client_address_comes_from_where_the_host_says() {
    for (source, want) in [
        (None, None),
        (
            Some(tower_pat::ClientAddress::x_forwarded_for(1)),
            Some("203.0.113.7"),
        ),
    ] {
        let s = setup_with(|page| match source {
            Some(c) => page.with_client_address(c),
            None => page,
        });
        let mut b = Browser::new(&s, "alice");
        let csrf = b.get("/new").await.csrf();
        let r = b
            .post_with(
                "/new",
                &[
                    ("csrf", &csrf),
                    ("name", "x"),
                    ("full_access", "1"),
                    ("expiry", "7"),
                ],
                &[
                    ("x-forwarded-for", "203.0.113.7"),
                    ("user-agent", "probe/1"),
                ],
            )
            .await;
        assert_eq!(r.status, StatusCode::SEE_OTHER);
        let page = s.store.list(&ListQuery::new()).await.unwrap();
        let view = tower_pat::manage::TokenView::from(&page.items[0]);
        assert_eq!(view.created_ip.map(|ip| ip.to_string()).as_deref(), want);
        assert_eq!(view.created_user_agent.as_deref(), Some("probe/1"));
    }
}
