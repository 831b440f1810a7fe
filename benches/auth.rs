//! Validation cost: the floor of the work, the cached paths, the negative paths and
//! uncached store reads. Run: `cargo bench --bench auth` (add `--all-features` and set
//! `PAT_TEST_POSTGRES_URL` for PostgreSQL). Each group prints its median per operation.

#![allow(missing_docs)] // criterion_group! makes an undocumented public function.

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderValue};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tower_pat::credentials::{parse_authorization, Credentials, ParseOptions};
use tower_pat::store::TokenStore;
use tower_pat::{Authenticator, MemoryStore, NewToken, ScopeSet, TokenFormat};

const N: usize = 100_000;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

struct Setup {
    rt: tokio::runtime::Runtime,
    auth: Authenticator,
    tokens: Vec<String>,
    headers: Vec<HeaderMap>,
    basic: Vec<HeaderMap>,
}

fn header(v: String) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(AUTHORIZATION, HeaderValue::try_from(v).unwrap());
    h
}

fn setup(store: Arc<dyn TokenStore>, n: usize, scopes: ScopeSet) -> Setup {
    use base64::Engine;
    let rt = rt();
    let auth = Authenticator::builder(store)
        .with_capacity(2 * N as u64)
        // Steady state: every token stays cached for the whole run (a real server reloads
        // each token once per TTL, 30 s by default, which is negligible per request).
        .with_cache_ttl(Duration::from_secs(3600))
        .build();
    let tokens: Vec<String> = rt.block_on(async {
        let mut v = Vec::with_capacity(n);
        for i in 0..n {
            let t = auth
                .create(
                    NewToken::new(format!("user{}", i % 1000), "bench").with_scopes(scopes.clone()),
                )
                .await
                .unwrap();
            v.push(t.token.expose().to_owned());
        }
        // Warm the cache: every token cached.
        for t in &v {
            auth.authenticate(t).await.unwrap();
        }
        v
    });
    let headers = tokens
        .iter()
        .map(|t| header(format!("Bearer {t}")))
        .collect();
    let basic = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let b =
                base64::engine::general_purpose::STANDARD.encode(format!("user{}:{t}", i % 1000));
            header(format!("Basic {b}"))
        })
        .collect();
    Setup {
        rt,
        auth,
        tokens,
        headers,
        basic,
    }
}

/// Prints the median criterion measured for `group/name`.
fn print_median(group: &str, name: &str) {
    let path = format!("target/criterion/{group}/{name}/new/estimates.json");
    if let Some(median) = std::fs::read_to_string(&path)
        .ok()
        .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
        .and_then(|v| v["median"]["point_estimate"].as_f64())
    {
        println!("median {group}/{name}: {median:.1} ns");
    }
}

fn timed<F: std::future::Future<Output = ()>>(
    rt: &tokio::runtime::Runtime,
    iters: u64,
    f: impl Fn(usize) -> F,
) -> Duration {
    rt.block_on(async {
        let start = Instant::now();
        for i in 0..iters as usize {
            f(i).await;
        }
        start.elapsed()
    })
}

fn cached(c: &mut Criterion) {
    let s = setup(Arc::new(MemoryStore::new()), N, ScopeSet::full_access());
    // The floor: SHA-256 of the secret, HashMap lookup of the digest, constant-time compare.
    let format = TokenFormat::default();
    let secrets: Vec<&str> = s
        .tokens
        .iter()
        .map(|t| &t[format.prefix().len() + 18..])
        .collect();
    let table: HashMap<[u8; 32], ([u8; 32], u64)> = secrets
        .iter()
        .enumerate()
        .map(|(i, sec)| {
            let d: [u8; 32] = Sha256::digest(sec.as_bytes()).into();
            (d, (d, i as u64))
        })
        .collect();
    let mut g = c.benchmark_group("validate");
    let floor = |i: usize| {
        let d: [u8; 32] = Sha256::digest(secrets[i].as_bytes()).into();
        let hit = table.get(&d).map(|(h, id)| (bool::from(h.ct_eq(&d)), *id));
        black_box(hit);
    };
    g.bench_function("floor", |b| {
        let mut i = 0usize;
        b.iter(|| {
            i = (i + 1) % N;
            floor(i)
        })
    });
    // Like for like with the floor: the Authenticator given the token string.
    let cached_bearer = |i: usize| {
        let (t, auth) = (&s.tokens[i % N], &s.auth);
        async move {
            black_box(auth.authenticate(t).await.unwrap());
        }
    };
    g.bench_function("cached_bearer", |b| {
        b.iter_custom(|iters| timed(&s.rt, iters, cached_bearer))
    });
    // The same from a request's header map: also parses `Authorization`.
    let opts = ParseOptions::default();
    g.bench_function("cached_bearer_header", |b| {
        b.iter_custom(|iters| {
            timed(&s.rt, iters, |i| {
                let h = &s.headers[i % N];
                let auth = &s.auth;
                async move {
                    let Ok(Some(Credentials::Bearer(t))) = parse_authorization(h, &opts) else {
                        panic!("bad header")
                    };
                    black_box(auth.authenticate(t).await.unwrap());
                }
            })
        })
    });
    g.bench_function("cached_basic", |b| {
        b.iter_custom(|iters| {
            timed(&s.rt, iters, |i| {
                let h = &s.basic[i % N];
                let auth = &s.auth;
                async move {
                    let Ok(Some(Credentials::Basic { username, password })) =
                        parse_authorization(h, &opts)
                    else {
                        panic!("bad header")
                    };
                    black_box(
                        auth.authenticate(tower_pat::Credential::basic(
                            &username,
                            password.expose(),
                        ))
                        .await
                        .unwrap(),
                    );
                }
            })
        })
    });
    // Negative paths.
    let mut bad = s.tokens[0].clone();
    bad.pop();
    bad.push(if s.tokens[0].ends_with('a') { 'b' } else { 'a' });
    g.bench_function("bad_checksum", |b| {
        b.iter_custom(|iters| {
            timed(&s.rt, iters, |_| async {
                black_box(s.auth.authenticate(&bad).await.unwrap_err());
            })
        })
    });
    let unknown = format.mint().token.expose().to_owned();
    let _ = s.rt.block_on(s.auth.authenticate(&unknown));
    g.bench_function("unknown_id_cached_negative", |b| {
        b.iter_custom(|iters| {
            timed(&s.rt, iters, |_| async {
                black_box(s.auth.authenticate(&unknown).await.unwrap_err());
            })
        })
    });
    g.finish();
    paired_ratio(&s.rt, floor, cached_bearer);
    for name in [
        "floor",
        "cached_bearer",
        "cached_bearer_header",
        "cached_basic",
        "bad_checksum",
        "unknown_id_cached_negative",
    ] {
        print_median("validate", name);
    }
}

fn scopes(c: &mut Criterion) {
    let fifty: ScopeSet = (0..50)
        .map(|i| format!("res{i}:write"))
        .collect::<Vec<_>>()
        .join(" ")
        .parse()
        .unwrap();
    let s = setup(Arc::new(MemoryStore::new()), N, fifty);
    let needed: tower_pat::Scope = "res49:write".parse().unwrap();
    let mut g = c.benchmark_group("validate");
    g.bench_function("cached_bearer_50_scopes_checked", |b| {
        b.iter_custom(|iters| {
            timed(&s.rt, iters, |i| {
                let (t, auth, needed) = (&s.tokens[i % N], &s.auth, &needed);
                async move {
                    let p = auth.authenticate(t).await.unwrap();
                    assert!(p.allows(needed));
                    black_box(p);
                }
            })
        })
    });
    g.finish();
    print_median("validate", "cached_bearer_50_scopes_checked");
}

fn uncached(c: &mut Criterion) {
    let mut stores: Vec<(&str, Arc<dyn TokenStore>)> =
        vec![("memory", Arc::new(MemoryStore::new()))];
    let dir = std::env::temp_dir().join(format!("tower-pat-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let rt = rt();
    #[cfg(feature = "sqlite")]
    {
        let url = format!("sqlite://{}", dir.join("bench.db").display());
        stores.push((
            "sqlite_file",
            rt.block_on(tower_pat::store::open(&url)).unwrap(),
        ));
    }
    #[cfg(feature = "postgres")]
    if let Ok(url) = std::env::var("PAT_TEST_POSTGRES_URL") {
        stores.push((
            "postgres",
            rt.block_on(tower_pat::store::open(&url)).unwrap(),
        ));
    }
    let mut g = c.benchmark_group("uncached_lookup");
    let mut names = Vec::new();
    let mut percentiles = Vec::new();
    for (name, store) in stores {
        let n = 10_000;
        let auth = Authenticator::new(store.clone());
        let ids: Vec<_> = rt.block_on(async {
            let mut ids = Vec::new();
            for _ in 0..n {
                ids.push(
                    auth.create(NewToken::new("bench", "uncached"))
                        .await
                        .unwrap()
                        .record
                        .id,
                );
            }
            ids
        });
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                timed(&rt, iters, |i| {
                    let (store, id) = (&store, &ids[i % n]);
                    async move {
                        black_box(store.get(id).await.unwrap().unwrap());
                    }
                })
            })
        });
        names.push(name);
        percentiles.push((name, per_call_latency(&rt, &store, &ids)));
    }
    g.finish();
    for name in names {
        print_median("uncached_lookup", name);
    }
    for (name, (p50, p99)) in percentiles {
        println!("uncached_lookup/{name}: p50 {p50:.1} µs, p99 {p99:.1} µs (each call timed)");
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// Whether `SqliteStore::get`'s point reads on the calling thread (rusqlite) still pay
/// for themselves: the same uncached reads of one file, through `get` and through sqlx's
/// pool (the same `SELECT` on `store.pool()`, decoded into the row's columns but not into
/// a `TokenRecord`, which `get` also does), in one run.
#[cfg(feature = "sqlite")]
fn sqlite_point_read(c: &mut Criterion) {
    type Columns = (
        String,
        String,
        String,
        String,
        String,
        Option<i64>,
        bool,
        i64,
        i64,
        Option<i64>,
        String,
        Option<String>,
        Option<i64>,
        i64,
    );
    const GET: &str = "SELECT id, owner, name, scopes, expiry, expires_at, active, created, \
        modified, last_used, secret_hash, previous_hash, previous_valid_until, version \
        FROM pat_tokens WHERE id = ?1";
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let url = format!("sqlite://{}", dir.path().join("bench.db").display());
    let store = Arc::new(
        rt.block_on(tower_pat::store::SqliteStore::connect(&url))
            .unwrap(),
    );
    let n = 10_000;
    let auth = Authenticator::new(store.clone());
    let ids: Vec<_> = rt.block_on(async {
        let mut ids = Vec::new();
        for _ in 0..n {
            let created = auth.create(NewToken::new("bench", "uncached")).await;
            ids.push(created.unwrap().record.id);
        }
        ids
    });
    let mut g = c.benchmark_group("sqlite_point_read");
    g.bench_function("get_direct", |b| {
        b.iter_custom(|iters| {
            timed(&rt, iters, |i| {
                let (store, id) = (&store, &ids[i % n]);
                async move {
                    black_box(store.get(id).await.unwrap().unwrap());
                }
            })
        })
    });
    g.bench_function("sqlx_pool", |b| {
        b.iter_custom(|iters| {
            timed(&rt, iters, |i| {
                let (store, id) = (&store, &ids[i % n]);
                async move {
                    let row: Columns = sqlx::query_as(GET)
                        .bind(id.as_str())
                        .fetch_one(store.pool())
                        .await
                        .unwrap();
                    black_box(row);
                }
            })
        })
    });
    g.finish();
    print_median("sqlite_point_read", "get_direct");
    print_median("sqlite_point_read", "sqlx_pool");
}

#[cfg(not(feature = "sqlite"))]
fn sqlite_point_read(_: &mut Criterion) {}

/// `cached_bearer` ÷ `floor` measured in alternating batches (floor, cached, cached,
/// floor, …), each batch over the next 2,000 of the 100,000 tokens (the two half the
/// tokens apart): the median of the per-batch ratios, which the drift of a noisy machine
/// moves far less than two criterion medians taken seconds apart.
fn paired_ratio<F: std::future::Future<Output = ()>>(
    rt: &tokio::runtime::Runtime,
    floor: impl Fn(usize),
    cached_bearer: impl Fn(usize) -> F,
) {
    const BATCH: usize = 2_000;
    const ROUNDS: usize = 301;
    // Half the tokens apart, so that neither batch warms the other's tokens.
    let (mut fi, mut ci) = (0usize, N / 2);
    let mut time_floor = || {
        let start = Instant::now();
        for _ in 0..BATCH {
            fi = (fi + 1) % N;
            floor(fi);
        }
        start.elapsed().as_secs_f64()
    };
    let mut time_cached = || {
        let from = ci;
        ci = (ci + BATCH) % N;
        timed(rt, BATCH as u64, |i| cached_bearer(from + i)).as_secs_f64()
    };
    let (mut ratios, mut floors, mut cacheds) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let (f, c) = if round % 2 == 0 {
            let f = time_floor();
            (f, time_cached())
        } else {
            let c = time_cached();
            (time_floor(), c)
        };
        ratios.push(c / f);
        floors.push(f * 1e9 / BATCH as f64);
        cacheds.push(c * 1e9 / BATCH as f64);
    }
    let at = |v: &mut Vec<f64>, q: f64| {
        v.sort_by(f64::total_cmp);
        quantile(v, q)
    };
    println!(
        "paired cached_bearer/floor: median {:.2} (quartiles {:.2}–{:.2}, {ROUNDS} alternating batches of {BATCH}; per call: floor {:.1} ns, cached_bearer {:.1} ns)",
        at(&mut ratios, 0.5),
        at(&mut ratios, 0.25),
        at(&mut ratios, 0.75),
        at(&mut floors, 0.5),
        at(&mut cacheds, 0.5),
    );
}

/// The `q` quantile (0 to 1) of sorted, non-empty `v`.
fn quantile(v: &[f64], q: f64) -> f64 {
    v[((v.len() - 1) as f64 * q) as usize]
}

/// p50 and p99 in µs of single `store.get` calls, each timed on its own (criterion's
/// median is of batch means, not of calls).
fn per_call_latency(
    rt: &tokio::runtime::Runtime,
    store: &Arc<dyn TokenStore>,
    ids: &[tower_pat::TokenId],
) -> (f64, f64) {
    let mut times: Vec<f64> = rt.block_on(async {
        let mut v = Vec::with_capacity(ids.len());
        for id in ids {
            let start = Instant::now();
            black_box(store.get(id).await.unwrap().unwrap());
            v.push(start.elapsed().as_secs_f64() * 1e6);
        }
        v
    });
    times.sort_by(f64::total_cmp);
    let at = |q: f64| quantile(&times, q);
    (at(0.50), at(0.99))
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(Duration::from_secs(4)).warm_up_time(Duration::from_secs(1));
    targets = cached, scopes, uncached, sqlite_point_read
}
criterion_main!(benches);
