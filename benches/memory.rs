//! Bytes per cached token, with 1,000,000 tokens cached (resident set size growth of
//! the process while the cache fills, divided by the number of tokens).
//!
//! `cargo bench --bench memory` (prints `bytes per cached token: N`).
//!
//! `PAT_BENCH_MEMORY=moka cargo bench --bench memory` measures, the same way, a bare moka
//! cache configured as the Authenticator's (same key type, TTL, hasher), holding an
//! `Arc<u64>` per entry: the share of the figure that is moka's own. With
//! `PAT_BENCH_MOKA_TTL=0` that cache has no time-to-live (no write-order queue), which is
//! the least moka keeps per entry.

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

/// A bare moka cache as the Authenticator builds it, filled with `n` entries.
fn bare_moka(n: usize) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let ids: Vec<tower_pat::TokenId> = (0..n).map(|_| tower_pat::TokenId::generate()).collect();
    let mut builder = moka::future::Cache::builder().max_capacity(n as u64 + 1);
    if std::env::var("PAT_BENCH_MOKA_TTL").as_deref() != Ok("0") {
        builder = builder.time_to_live(std::time::Duration::from_secs(30));
    }
    let cache: moka::future::Cache<tower_pat::TokenId, Arc<u64>, foldhash::fast::RandomState> =
        builder.build_with_hasher(Default::default());
    let before = rss_bytes();
    rt.block_on(async {
        for (i, id) in ids.iter().enumerate() {
            cache.insert(*id, Arc::new(i as u64)).await;
        }
        cache.run_pending_tasks().await;
    });
    let after = rss_bytes();
    let held = cache.entry_count();
    println!("entries: {held}");
    println!("rss growth: {} bytes", after - before);
    println!(
        "bytes per bare moka entry: {}",
        (after - before) / held.max(1)
    );
}

fn main() {
    if std::env::var("PAT_BENCH_MEMORY").as_deref() == Ok("moka") {
        return bare_moka(1_000_000);
    }
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
