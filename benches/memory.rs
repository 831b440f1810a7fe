//! Bytes per cached token, with 1,000,000 tokens cached (resident set size growth of
//! the process while the cache fills, divided by the number of tokens).
//!
//! `cargo bench --bench memory` (prints `bytes per cached token: N`).

use std::sync::Arc;

use tower_pat::store::TokenStore;
use tower_pat::{Authenticator, Expiry, MemoryStore, ScopeSet, TokenFormat, TokenRecord};

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn main() {
    let n: usize = std::env::var("PAT_BENCH_TOKENS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let store = Arc::new(MemoryStore::new());
    let format = TokenFormat::default();
    let now = time::OffsetDateTime::now_utc();
    let scopes: ScopeSet = "repo:read".parse().unwrap();
    let tokens: Vec<String> = rt.block_on(async {
        let mut v = Vec::with_capacity(n);
        for i in 0..n {
            let m = format.mint();
            let owner = format!("user{:07}", i % 100_000);
            let rec = TokenRecord::new(
                m.id,
                owner,
                "ci deploy",
                scopes.clone(),
                Expiry::Never,
                m.secret_hash,
                now,
            );
            store.insert(&rec).await.unwrap();
            v.push(m.token.expose().to_owned());
        }
        v
    });
    let auth = Authenticator::builder(store)
        .with_capacity(n as u64 + 1)
        .build();
    let before = rss_bytes();
    rt.block_on(async {
        for t in &tokens {
            auth.authenticate(t).await.unwrap();
        }
        auth.sync_cache().await;
    });
    let after = rss_bytes();
    let cached = auth.cached_tokens();
    println!("tokens cached: {cached}");
    println!("rss growth: {} bytes", after - before);
    println!(
        "bytes per cached token: {}",
        (after - before) / cached.max(1)
    );
}
