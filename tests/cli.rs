//! The `pat` CLI, run as a process against a SQLite file (and PostgreSQL when
//! `PAT_TEST_POSTGRES_URL` is set).
#![cfg(all(feature = "cli", feature = "sqlite"))]

use std::time::{Duration, Instant};

use assert_cmd::Command;
use tower_pat::store;
use tower_pat::Authenticator;

struct Db {
    _dir: tempfile::TempDir,
    url: String,
}

fn db() -> Db {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("pat.db").display());
    Db { _dir: dir, url }
}

fn pat(url: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_pat"));
    c.env("PAT_STORE_URL", url).env_remove("PAT_TOKEN_PREFIX");
    c
}

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

fn run(url: &str, args: &[&str]) -> Out {
    let o = pat(url).args(args).output().unwrap();
    Out {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

/// An error: the expected code, and one line on stderr holding `needle`.
fn fails(o: &Out, code: i32, needle: &str) {
    assert_eq!(o.code, code, "stdout: {} stderr: {}", o.stdout, o.stderr);
    assert!(o.stderr.contains(needle), "{needle:?} not in {}", o.stderr);
    if code != 2 {
        assert_eq!(o.stderr.trim_end().lines().count(), 1, "{}", o.stderr);
        assert!(o.stderr.starts_with("error: "));
    }
}

fn create_quiet(url: &str, args: &[&str]) -> String {
    let mut all = vec!["token", "create", "-q"];
    all.extend_from_slice(args);
    let o = run(url, &all);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert_eq!(o.stdout.lines().count(), 1, "{}", o.stdout);
    o.stdout.trim().to_owned()
}

async fn authenticator(url: &str) -> Authenticator {
    Authenticator::new(store::open(url).await.unwrap())
}

fn id_of(token: &str) -> String {
    token.split('_').nth(1).unwrap().to_owned()
}

#[tokio::test]
async fn create_quiet_token_is_accepted_by_an_authenticator_on_the_same_file() {
    let db = db();
    let token = create_quiet(
        &db.url,
        &["-u", "alice", "-n", "ci", "-s", "repo:read", "-e", "20d"],
    );
    assert!(token.starts_with("pat_"));
    let p = authenticator(&db.url)
        .await
        .authenticate(&token)
        .await
        .unwrap();
    assert_eq!(p.owner(), "alice");
    assert_eq!(p.scopes().to_string(), "repo:read");
    assert!(p.expires_at().is_some());
    // Basic with the owner's name works too (WebDAV/SFTP style).
    assert!(authenticator(&db.url)
        .await
        .authenticate(tower_pat::Credential::basic("alice", &token))
        .await
        .is_ok());
}

#[test]
fn create_prints_the_token_and_details() {
    let db = db();
    let o = run(
        &db.url,
        &[
            "token",
            "create",
            "--user",
            "bob",
            "--name",
            "laptop",
            "--auto",
            "3600",
            "--scope",
            "repo:write",
            "--scope",
            "read",
        ],
    );
    assert_eq!(o.code, 0, "{}", o.stderr);
    let first = o.stdout.lines().next().unwrap();
    assert!(first.starts_with("token: pat_"), "{}", o.stdout);
    for needle in [
        "id: ",
        "owner: bob",
        "name: laptop",
        "scopes: repo:write read",
        "auto-refresh every 3600 s",
        "cannot be shown again",
    ] {
        assert!(o.stdout.contains(needle), "{needle:?} not in {}", o.stdout);
    }
    let o = run(&db.url, &["token", "create", "-u", "bob", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert!(v["token"].as_str().unwrap().starts_with("pat_"));
    // The default policy: 30 days.
    assert_eq!(v["expiry"], "hard_limit");
    let expires = time::OffsetDateTime::parse(
        v["expires_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let days = (expires - time::OffsetDateTime::now_utc()).whole_hours();
    assert!((30 * 24 - 1..=30 * 24).contains(&days), "{v}");
    // "Never" only where the policy allows it.
    let o = run(&db.url, &["token", "create", "-u", "bob", "--never"]);
    assert_eq!(o.code, 1, "{}", o.stdout);
    assert!(o.stderr.contains("--allow-never"), "{}", o.stderr);
    let o = run(
        &db.url,
        &[
            "--allow-never",
            "token",
            "create",
            "-u",
            "bob",
            "--never",
            "--json",
        ],
    );
    assert_eq!(o.code, 0, "{}", o.stderr);
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(v["expiry"], "never");
    let o = run(&db.url, &["token", "create", "-u", "bob", "-e", "400d"]);
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("366 days"), "{}", o.stderr);
    let o = run(
        &db.url,
        &[
            "--max-lifetime",
            "500d",
            "token",
            "create",
            "-u",
            "bob",
            "-e",
            "400d",
        ],
    );
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(o.stdout.contains("expires: 20"), "{}", o.stdout);
}

#[test]
fn create_refuses_bad_input() {
    let db = db();
    fails(
        &run(&db.url, &["token", "create", "-u", "a", "-s", "Repo:Write"]),
        1,
        "Repo:Write",
    );
    fails(
        &run(&db.url, &["token", "create", "-u", "a", "-e", "20x"]),
        1,
        "20x",
    );
    fails(
        &run(&db.url, &["token", "create", "-u", "a", "-e", "0d"]),
        1,
        "duration",
    );
    fails(
        &run(&db.url, &["token", "create", "-u", "a", "-a", "0"]),
        1,
        "auto_refresh_seconds",
    );
    fails(&run(&db.url, &["token", "create", "-u", "a:b"]), 1, "owner");
    // Usage errors: clap's exit code 2.
    fails(
        &run(&db.url, &["token", "create", "-n", "no user"]),
        2,
        "--user",
    );
    fails(
        &run(&db.url, &["token", "create", "-u", "a", "-a", "soon"]),
        2,
        "soon",
    );
    fails(&run(&db.url, &["token", "frobnicate"]), 2, "frobnicate");
    fails(
        &run(
            &db.url,
            &["token", "create", "-u", "a", "-e", "1d", "--never"],
        ),
        2,
        "--never",
    );
    // Nothing was created.
    let o = run(&db.url, &["token", "list", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(v["count"], 0);
}

#[test]
fn list_as_table_and_json_with_filters_and_order() {
    let db = db();
    let a = create_quiet(
        &db.url,
        &["-u", "alice", "-n", "deploy prod", "-s", "repo:write"],
    );
    let b = create_quiet(&db.url, &["-u", "alice", "-n", "laptop", "-s", "repo:read"]);
    let c = create_quiet(&db.url, &["-u", "bob", "-n", "deploy staging"]);
    let o = run(&db.url, &["token", "list"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let lines: Vec<&str> = o.stdout.lines().collect();
    assert!(
        lines[0].starts_with("ID") && lines[0].contains("OWNER") && lines[0].contains("SCOPES"),
        "{}",
        o.stdout
    );
    assert_eq!(lines.len(), 5, "{}", o.stdout);
    assert!(lines[4].contains("3 of 3"));
    for t in [&a, &b, &c] {
        assert!(o.stdout.contains(&id_of(t)));
    }
    assert!(
        !o.stdout.contains(&a[22..]),
        "the secret must never be listed"
    );
    let o = run(&db.url, &["token", "list", "-u", "alice", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(v["count"], 2);
    let o = run(
        &db.url,
        &[
            "token",
            "list",
            "--filter",
            "name__icontains=DEPLOY",
            "--order-by",
            "-name",
            "--json",
        ],
    );
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    let names: Vec<&str> = v["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["deploy staging", "deploy prod"]);
    let o = run(
        &db.url,
        &[
            "token",
            "list",
            "--filter",
            "scope=repo:read",
            "--filter",
            "last_used__isnull=true",
            "--json",
        ],
    );
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(v["count"], 1);
    assert_eq!(v["results"][0]["id"], id_of(&b).as_str());
    fails(
        &run(&db.url, &["token", "list", "--filter", "colour__eq=red"]),
        1,
        "colour__eq",
    );
    fails(
        &run(&db.url, &["token", "list", "--filter", "name"]),
        2,
        "FIELD__OP=VALUE",
    );
    fails(
        &run(&db.url, &["token", "list", "--order-by", "size"]),
        1,
        "order",
    );
}

#[test]
fn show_revoke_and_unknown_ids() {
    let db = db();
    let t = create_quiet(&db.url, &["-u", "alice", "-n", "ci"]);
    let id = id_of(&t);
    let o = run(&db.url, &["token", "show", &id]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(o.stdout.contains("owner: alice") && o.stdout.contains("name: ci"));
    assert!(!o.stdout.contains(&t));
    let o = run(&db.url, &["token", "show", &id, "--json"]);
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(v["id"], id.as_str());
    assert!(v.get("secret_hash").is_none());
    fails(
        &run(&db.url, &["token", "show", "AAAAAAAAAAAAAAAA"]),
        1,
        "pat token list",
    );
    fails(
        &run(&db.url, &["token", "show", "../../etc"]),
        1,
        "no token",
    );
    let o = run(&db.url, &["token", "revoke", &id]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(o.stdout.contains(&format!("revoked {id}")));
    fails(&run(&db.url, &["token", "show", &id]), 1, "no token");
    fails(&run(&db.url, &["token", "revoke", &id]), 1, "no token");
    fails(&run(&db.url, &["token", "check", &t]), 1, "refused");
}

#[tokio::test]
async fn disable_and_enable() {
    let db = db();
    let t = create_quiet(&db.url, &["-u", "alice"]);
    let id = id_of(&t);
    let o = run(&db.url, &["token", "disable", &id]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(authenticator(&db.url).await.authenticate(&t).await.is_err());
    let o = run(&db.url, &["token", "show", &id]);
    assert!(o.stdout.contains("active: false"));
    let o = run(&db.url, &["token", "enable", &id]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(authenticator(&db.url).await.authenticate(&t).await.is_ok());
    fails(
        &run(&db.url, &["token", "disable", "AAAAAAAAAAAAAAAA"]),
        1,
        "no token",
    );
    fails(&run(&db.url, &["token", "enable", "nope"]), 1, "no token");
}

#[tokio::test]
async fn rotate() {
    let db = db();
    let old = create_quiet(&db.url, &["-u", "alice", "-s", "repo:read"]);
    let id = id_of(&old);
    let o = run(&db.url, &["token", "rotate", &id, "-q"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let new = o.stdout.trim().to_owned();
    assert_eq!(id_of(&new), id);
    let auth = authenticator(&db.url).await;
    assert!(auth.authenticate(&new).await.is_ok());
    assert!(auth.authenticate(&old).await.is_err());
    // With a grace period both work; with --new-id the id changes.
    let o = run(&db.url, &["token", "rotate", &id, "--grace", "1h"]);
    assert!(o.stdout.starts_with("token: pat_"), "{}", o.stdout);
    assert!(o.stdout.contains("previous secret valid until"));
    let newer = o
        .stdout
        .lines()
        .next()
        .unwrap()
        .trim_start_matches("token: ")
        .to_owned();
    let auth = authenticator(&db.url).await;
    assert!(auth.authenticate(&new).await.is_ok());
    assert!(auth.authenticate(&newer).await.is_ok());
    let o = run(&db.url, &["token", "rotate", &id, "--new-id"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(o.stdout.contains(&format!("replaces: {id}")));
    fails(&run(&db.url, &["token", "show", &id]), 1, "no token");
    fails(&run(&db.url, &["token", "rotate", &id]), 1, "no token");
    fails(
        &run(
            &db.url,
            &["token", "rotate", "AAAAAAAAAAAAAAAA", "--grace", "1h"],
        ),
        1,
        "no token",
    );
    let live = create_quiet(&db.url, &["-u", "alice"]);
    fails(
        &run(
            &db.url,
            &["token", "rotate", &id_of(&live), "--grace", "later"],
        ),
        1,
        "grace",
    );
}

#[test]
fn check_offline_and_with_the_store() {
    let db = db();
    let t = create_quiet(
        &db.url,
        &["-u", "carol", "-n", "ci", "-s", "repo:read", "-e", "2d"],
    );
    let o = run(&db.url, &["token", "check", &t]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    for needle in [
        "format: ok",
        "status: valid",
        "owner: carol",
        "scopes: repo:read",
        "expires: 20",
    ] {
        assert!(o.stdout.contains(needle), "{needle:?} not in {}", o.stdout);
    }
    // From stdin, so the token stays out of the process list.
    let o = pat(&db.url)
        .args(["token", "check", "-"])
        .write_stdin(format!("{t}\n"))
        .output()
        .unwrap();
    assert!(o.status.success());
    // Offline: format and checksum only, even with no store at all.
    let o = run(
        "sqlite:///nonexistent/dir/pat.db",
        &["token", "check", "--offline", &t],
    );
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(o.stdout.contains(&format!("id: {}", id_of(&t))));
    // A mistyped token fails the checksum without the store.
    let mut bad = t.clone().into_bytes();
    let i = bad.len() - 10;
    bad[i] = if bad[i] == b'a' { b'b' } else { b'a' };
    let bad = String::from_utf8(bad).unwrap();
    fails(
        &run(&db.url, &["token", "check", "--offline", &bad]),
        1,
        "checksum",
    );
    fails(
        &run(&db.url, &["token", "check", "pat_short"]),
        1,
        "not a valid token",
    );
    // Well formed but unknown.
    let unknown = tower_pat::TokenFormat::default().mint().token;
    fails(
        &run(&db.url, &["token", "check", unknown.expose()]),
        1,
        "refused",
    );
}

#[test]
fn store_problems_exit_3_and_bad_urls_exit_2() {
    let t = tower_pat::TokenFormat::default().mint().token;
    let gone = "sqlite:///nonexistent/dir/pat.db";
    fails(&run(gone, &["token", "list"]), 3, "PAT_STORE_URL");
    fails(&run(gone, &["token", "create", "-u", "a"]), 3, "store");
    fails(&run(gone, &["token", "check", t.expose()]), 3, "store");
    fails(&run("mysql://db/pat", &["token", "list"]), 2, "mysql");
    // --store wins over the environment.
    let db = db();
    let o = pat(gone)
        .args(["--store", &db.url, "token", "list"])
        .output()
        .unwrap();
    assert!(o.status.success());
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_on_postgres_reaches_a_running_authenticator_within_1s() {
    let Ok(url) = std::env::var("PAT_TEST_POSTGRES_URL") else {
        println!("skipped: PAT_TEST_POSTGRES_URL not set");
        return;
    };
    if url.trim().is_empty() {
        println!("skipped: PAT_TEST_POSTGRES_URL not set");
        return;
    }
    let token = create_quiet(&url, &["-u", "pg-cli-test", "-n", "revoke me"]);
    // A long cache TTL: only the change message can make the revocation visible in time.
    let auth = Authenticator::builder(store::open(&url).await.unwrap())
        .with_cache_ttl(Duration::from_secs(600))
        .build();
    tokio::spawn(auth.background());
    assert!(auth.authenticate(&token).await.is_ok());
    assert!(auth.authenticate(&token).await.is_ok());
    // The authenticator's LISTEN connection starts in its background task: give it time to be
    // listening before the revocation is sent (a message sent earlier is not delivered).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (url2, id) = (url.clone(), id_of(&token));
    let o = tokio::task::spawn_blocking(move || run(&url2, &["token", "revoke", &id]))
        .await
        .unwrap();
    assert_eq!(o.code, 0, "{}", o.stderr);
    let start = Instant::now();
    loop {
        if auth.authenticate(&token).await.is_err() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "revocation not seen within 1 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `--expiring-within 7d` lists exactly the tokens that end in the next 7 days (disabled
/// ones too), and the CLI's own changes reach the audit log that `token events` reads.
#[test]
fn expiring_within_lists_exactly_the_window_and_cli_changes_are_events() {
    let db = db();
    let mk = |args: &[&str]| id_of(&create_quiet(&db.url, args));
    let three_days = mk(&["-u", "alice", "-n", "a", "-e", "3d"]);
    let ten_days = mk(&["-u", "alice", "-n", "b", "-e", "10d"]);
    let an_hour = mk(&["-u", "bob", "-n", "c", "-e", "1h"]);
    let disabled = mk(&["-u", "bob", "-n", "d", "-e", "6d"]);
    let never = {
        let o = run(
            &db.url,
            &[
                "--allow-never",
                "token",
                "create",
                "-q",
                "-u",
                "bob",
                "--never",
            ],
        );
        assert_eq!(o.code, 0, "{}", o.stderr);
        id_of(o.stdout.trim())
    };
    assert_eq!(run(&db.url, &["token", "disable", &disabled]).code, 0);
    let listed = |within: &str| {
        let o = run(
            &db.url,
            &["token", "list", "--expiring-within", within, "--json"],
        );
        assert_eq!(o.code, 0, "{}", o.stderr);
        let doc: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
        let mut ids: Vec<String> = doc["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["id"].as_str().unwrap().to_owned())
            .collect();
        ids.sort();
        ids
    };
    let mut want = vec![three_days.clone(), an_hour.clone(), disabled.clone()];
    want.sort();
    assert_eq!(listed("7d"), want);
    assert_eq!(listed("2h"), vec![an_hour.clone()]);
    let mut all = vec![three_days, ten_days, an_hour, disabled.clone()];
    all.sort();
    assert_eq!(listed("11d"), all, "never-expiring tokens are never inside");
    assert!(!listed("400d").contains(&never));
    fails(
        &run(&db.url, &["token", "list", "--expiring-within", "soon"]),
        1,
        "expires_within",
    );
    // The CLI's create and disable are in the audit log, by the operator, newest first.
    let o = run(&db.url, &["token", "events", &disabled, "--json"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let doc: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    let events = doc["results"].as_array().unwrap();
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["disabled", "created"]);
    assert!(events.iter().all(|e| e["actor"]["kind"] == "operator"));
    let o = run(&db.url, &["token", "events", "--type", "disabled"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(
        o.stdout.contains(&disabled) && o.stdout.contains("1 of 1 events"),
        "{}",
        o.stdout
    );
    fails(
        &run(&db.url, &["token", "events", "--type", "exploded"]),
        1,
        "unknown event type",
    );
}

/// `pat serve` refuses bad input at start with one line and a non-zero exit: a malformed
/// rules file, an unknown method, a capture used twice (each naming its line), a bad
/// listen address, and a store that does not answer.
#[cfg(all(feature = "server", feature = "redis"))]
#[test]
fn serve_refuses_bad_input_at_start_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    };
    let malformed = file("malformed.toml", "[[rule]]\npath = \"/a\"\nscopes = [\n");
    let method = file(
        "method.toml",
        "[[rule]]\npath = \"/a\"\nmethods = [\"GET\", \"FETCH\"]\n",
    );
    let overlap = file("overlap.toml", "\n[[rule]]\npath = \"/n/{id}/{id}\"\n");
    let good = file("good.toml", "[[rule]]\npath = \"/a\"\n");
    for (args, code, needle) in [
        (vec!["serve", "--rules", &malformed], 2, "line 4"),
        (
            vec!["serve", "--rules", &method],
            2,
            "line 3: unknown method \"FETCH\"",
        ),
        (
            vec!["serve", "--check-rules", &overlap],
            2,
            "line 3: path \"/n/{id}/{id}\": capture {id} appears twice",
        ),
        (
            vec!["serve", "--rules", "/nonexistent/rules.toml"],
            2,
            "cannot read the rules file",
        ),
        (
            vec!["serve", "--rules", &good, "--listen", "localhost"],
            2,
            "bad --listen",
        ),
        (
            vec!["serve", "--rules", &good, "--store", "redis://127.0.0.1:1"],
            3,
            "cannot use the token store redis://127.0.0.1:1",
        ),
    ] {
        let o = run("sqlite://unused.db", &args);
        fails(&o, code, needle);
        assert_eq!(o.stderr.trim_end().lines().count(), 1, "{}", o.stderr);
        assert!(o.stderr.starts_with("error: "), "{}", o.stderr);
    }
    let o = run("sqlite://unused.db", &["serve", "--check-rules", &good]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(
        o.stdout.contains("/a") && o.stdout.ends_with("otherwise: deny\n"),
        "{}",
        o.stdout
    );
    let help = run("sqlite://unused.db", &["serve", "--help"]);
    for flag in [
        "--store",
        "--listen",
        "--rules",
        "--proxy-secret-file",
        "--check-rules",
        "PAT_RULES",
        "X-Pat-Owner",
    ] {
        assert!(help.stdout.contains(flag), "{flag} not in --help");
    }
}
