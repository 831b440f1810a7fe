//! `examples/bench_server.rs`: every mode serves a valid credential and refuses a wrong
//! one, both with `Router::layer` and with `--outer`, so the load test compares layers
//! that do their work (the `floor-*` yardsticks included) and not ones that wave
//! everything through.
#![cfg(feature = "axum")]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};

use base64::Engine;

mod common;
use common::example_binary;

struct Server {
    child: Child,
    addr: String,
    tokens: Vec<String>,
    basics: Vec<String>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(mode: &str, outer: bool) -> Server {
    let mut cmd = Command::new(example_binary("bench_server"));
    cmd.args(["--listen", "127.0.0.1:0", "--mode", mode, "--tokens", "20"]);
    if outer {
        cmd.arg("--outer");
    }
    let mut child = cmd.stdout(Stdio::piped()).spawn().unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let mut server = Server {
        child,
        addr: String::new(),
        tokens: Vec::new(),
        basics: Vec::new(),
    };
    for line in stdout.lines() {
        let line = line.unwrap();
        if let Some(t) = line.strip_prefix("token: ") {
            server.tokens.push(t.to_owned());
        } else if let Some(b) = line.strip_prefix("basic: ") {
            server.basics.push(b.to_owned());
        } else if let Some(a) = line.strip_prefix("listening: ") {
            server.addr = a.to_owned();
            break;
        }
    }
    assert!(!server.addr.is_empty(), "{mode}: no `listening:` line");
    assert!(!server.tokens.is_empty(), "{mode}: no `token:` line");
    server
}

/// The status code of `GET /` with `authorization`, if any.
fn status(addr: &str, authorization: Option<&str>) -> u16 {
    let mut s = TcpStream::connect(addr).unwrap();
    let auth = authorization
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "GET / HTTP/1.1\r\nHost: bench\r\n{auth}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).unwrap();
    response
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {response:?}"))
}

/// `token` with its last character changed (a different, wrong token).
fn altered(token: &str) -> String {
    let mut t = token.to_owned();
    let last = t.pop().unwrap();
    t.push(if last == 'A' { 'B' } else { 'A' });
    t
}

fn basic(user: &str, password: &str) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {encoded}")
}

#[test]
fn bearer_modes_accept_their_tokens_and_refuse_others() {
    for mode in [
        "tower-http-bearer",
        "floor-bearer",
        "pat-bearer",
        "pat-uncached",
    ] {
        for outer in [false, true] {
            let s = start(mode, outer);
            let token = &s.tokens[0];
            let case = format!("{mode} outer={outer}");
            assert_eq!(
                status(&s.addr, Some(&format!("Bearer {token}"))),
                200,
                "{case}"
            );
            let wrong = format!("Bearer {}", altered(token));
            assert_eq!(status(&s.addr, Some(&wrong)), 401, "{case}: wrong token");
            assert_eq!(status(&s.addr, None), 401, "{case}: no header");
        }
    }
}

#[test]
fn basic_modes_check_the_password_and_the_user() {
    for mode in ["floor-basic", "pat-basic"] {
        for outer in [false, true] {
            let s = start(mode, outer);
            let case = format!("{mode} outer={outer}");
            assert_eq!(s.tokens.len(), s.basics.len(), "{case}");
            assert_eq!(
                status(&s.addr, Some(&format!("Basic {}", s.basics[0]))),
                200,
                "{case}"
            );
            let (t0, t1) = (&s.tokens[0], &s.tokens[1]);
            assert_eq!(status(&s.addr, Some(&basic("user0", t0))), 200, "{case}");
            // Another user's name with user0's token, and user0 with a wrong token.
            assert_eq!(status(&s.addr, Some(&basic("user1", t0))), 401, "{case}");
            assert_eq!(status(&s.addr, Some(&basic("user1", t1))), 200, "{case}");
            let wrong = basic("user0", &altered(t0));
            assert_eq!(status(&s.addr, Some(&wrong)), 401, "{case}: wrong token");
            assert_eq!(status(&s.addr, None), 401, "{case}: no header");
        }
    }
}

#[test]
fn bare_checks_nothing() {
    let s = start("bare", false);
    assert_eq!(status(&s.addr, None), 200);
    let wrong = format!("Bearer {}", altered(&s.tokens[0]));
    assert_eq!(status(&s.addr, Some(&wrong)), 200);
}
