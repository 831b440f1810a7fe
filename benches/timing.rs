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

/// `token` with the secret character at `pos` (from the secret's start) changed, and the
/// checksum recomputed so the format check passes.
fn mismatch_at(token: &str, pos: usize) -> String {
    let body = &token[..token.len() - CHECKSUM_LEN];
    let secret_start = body.rfind('_').expect("a token has an id separator") + 1;
    let mut bytes = body.as_bytes().to_vec();
    let i = secret_start + pos;
    bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
    let mut crc = crc32fast::hash(&bytes);
    let mut sum = [b'0'; CHECKSUM_LEN];
    for slot in sum.iter_mut().rev() {
        *slot = BASE62[(crc % 62) as usize];
        crc /= 62;
    }
    bytes.extend_from_slice(&sum);
    String::from_utf8(bytes).expect("ASCII")
}

fn samples() -> usize {
    std::env::var("TIMING_SAMPLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(400_000)
}

fn early_vs_late_mismatch(runner: &mut CtRunner, rng: &mut BenchRng) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let auth = Authenticator::new(Arc::new(MemoryStore::new()));
    let token = rt
        .block_on(auth.create(NewToken::new("alice", "timing")))
        .expect("create")
        .token;
    let token = token.expose();
    let secret_len = tower_pat::token::SECRET_LEN;
    let early = mismatch_at(token, 0);
    let late = mismatch_at(token, secret_len - 1);
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
    for class in classes {
        let input = match class {
            Class::Left => early.as_str(),
            Class::Right => late.as_str(),
        };
        runner.run_one(class, || rt.block_on(auth.authenticate(input)).is_err());
    }
}

fn main() {
    // `cargo bench` passes `--bench`; dudect's own argument parser would refuse it.
    let benches = vec![BenchMetadata {
        name: BenchName("early_vs_late_mismatch"),
        seed: None,
        benchfn: early_vs_late_mismatch,
    }];
    run_benches_console(BenchOpts::default(), benches).expect("write to stdout");
}
