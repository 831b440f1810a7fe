//! Timing (dudect): is `Authenticator::authenticate` (cached) as fast for a secret that
//! differs from the right one in its first character as for one that differs in its
//! last? Both wrong secrets carry a valid checksum, so both reach the constant-time
//! comparison of SHA-256 hashes.
//!
//! Run with `cargo bench --bench timing`; `TIMING_SAMPLES` sets the samples per run
//! (default 400,000). The goal is `|max t| < 5`: no timing leak detected.

use std::sync::Arc;

use dudect_bencher::ctbench::{run_benches_console, BenchMetadata, BenchName, BenchOpts};
use dudect_bencher::rand::RngExt;
use dudect_bencher::{BenchRng, Class, CtRunner};
use tower_pat::{Authenticator, MemoryStore, NewToken};

const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const CHECKSUM_LEN: usize = 6;

/// `token` with the secret character at `pos` (from the secret's start) set to `to`, and
/// the checksum recomputed so the format check passes.
fn mismatch_at(token: &str, pos: usize, to: u8) -> String {
    let body = &token[..token.len() - CHECKSUM_LEN];
    let secret_start = body.rfind('_').expect("a token has an id separator") + 1;
    let mut bytes = body.as_bytes().to_vec();
    bytes[secret_start + pos] = to;
    let mut crc = crc32fast::hash(&bytes);
    let mut sum = [b'0'; CHECKSUM_LEN];
    for slot in sum.iter_mut().rev() {
        *slot = BASE62[(crc % 62) as usize];
        crc /= 62;
    }
    bytes.extend_from_slice(&sum);
    String::from_utf8(bytes).expect("ASCII")
}

/// Digit, upper or lower case: the parser's alphabet check branches on it.
fn class(b: u8) -> u8 {
    if b.is_ascii_digit() {
        0
    } else if b.is_ascii_uppercase() {
        1
    } else {
        2
    }
}

/// Characters in a token's secret part (`pat_<id>_<secret><checksum>`, DESIGN.md).
const SECRET_LEN: usize = 22;

/// Two wrong tokens, changed at `left_pos` and at the secret's last character, whose
/// bytes fall in the same character classes everywhere (checksums included). They then
/// differ only in *where* they stop matching the real secret, which is what a timing
/// attack on the comparison would exploit; the alphabet check's branches are alike.
/// `None` for some tokens (when the changed characters are digits, few candidates have
/// checksums of the same classes): the caller mints another.
fn pair(token: &str, left_pos: usize) -> Option<(String, String)> {
    let last = SECRET_LEN - 1;
    let classes = |t: &str| t.bytes().map(class).collect::<Vec<u8>>();
    for &a in BASE62 {
        for &b in BASE62 {
            let (l, r) = (mismatch_at(token, left_pos, a), mismatch_at(token, last, b));
            if l != token && r != token && l != r && classes(&l) == classes(&r) {
                return Some((l, r));
            }
        }
    }
    None
}

fn samples() -> usize {
    std::env::var("TIMING_SAMPLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(400_000)
}

fn early_vs_late_mismatch(runner: &mut CtRunner, rng: &mut BenchRng) {
    compare(runner, rng, 0);
}

/// The control (an A/A test): both classes send the same late-mismatch secret, from two
/// separate strings. A large |t| here is noise of the machine, not a leak.
fn control_same_secret(runner: &mut CtRunner, rng: &mut BenchRng) {
    let late = SECRET_LEN - 1;
    compare(runner, rng, late);
}

/// Left: the secret changed at `left_pos`; right: changed at its last character.
fn compare(runner: &mut CtRunner, rng: &mut BenchRng, left_pos: usize) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let auth = Authenticator::new(Arc::new(MemoryStore::new()));
    let (token, (early, late)) = (0..1000)
        .find_map(|_| {
            let created = rt
                .block_on(auth.create(NewToken::new("alice", "timing")))
                .expect("create");
            let token = created.token.expose().to_owned();
            pair(&token, left_pos).map(|p| (token, p))
        })
        .expect("a token with a pair of wrong tokens of the same character classes");
    let token = token.as_str();
    // Warm the cache: every timed call is a cache hit for the same id.
    rt.block_on(auth.authenticate(token))
        .expect("the real token passes");
    for t in [&early, &late] {
        assert!(rt.block_on(auth.authenticate(t)).is_err());
    }

    let n = samples();
    let classes: Vec<Class> = (0..n)
        .map(|_| {
            if rng.random::<bool>() {
                Class::Left
            } else {
                Class::Right
            }
        })
        .collect();
    // One buffer for both classes: the parser's CRC32 runs at a speed that depends on the
    // input's address alignment, which two separate strings would not share.
    let mut buf = String::with_capacity(token.len());
    for class in classes {
        buf.clear();
        buf.push_str(match class {
            Class::Left => &early,
            Class::Right => &late,
        });
        let input = buf.as_str();
        runner.run_one(class, || rt.block_on(auth.authenticate(input)).is_err());
    }
}

fn main() {
    // `cargo bench` passes `--bench`; dudect's own argument parser would refuse it.
    let benches = vec![
        BenchMetadata {
            name: BenchName("early_vs_late_mismatch"),
            seed: None,
            benchfn: early_vs_late_mismatch,
        },
        BenchMetadata {
            name: BenchName("control_same_secret"),
            seed: None,
            benchfn: control_same_secret,
        },
    ];
    run_benches_console(BenchOpts::default(), benches).expect("write to stdout");
}
