//! One conformance suite, instantiated unchanged for every store: memory, SQLite (a
//! temporary file), PostgreSQL (a fresh schema per test, dropped after) and Redis (a
//! random key prefix per test, deleted after). The servers come from
//! `PAT_TEST_POSTGRES_URL` and `PAT_TEST_REDIS_URL`; unset → skipped (and said so).
//!
//! Filters and order are checked against the reference semantics,
//! [`ListQuery::matches`] and [`ListQuery::compare`].

mod store_env;

use std::sync::Arc;
use std::time::Duration;

use std::net::IpAddr;
use time::macros::datetime;
use time::OffsetDateTime;

use tower_pat::store::{
    EventQuery, ListQuery, Order, SortField, StoreError, TokenStore, Touch, Update,
};
use tower_pat::SecretHash;
use tower_pat::{Event, EventKind, Expiry, Origin};
use tower_pat::{PreviousSecret, TokenRecord};
use tower_pat::{ScopeSet, TokenId};

const T0: OffsetDateTime = datetime!(2026-01-01 0:00 UTC);
const NODE: &str = "node:0b0f8d7e-3f44-4c4e-9d0e-0f6f0b8d2a11:rw";

fn secs(n: i64) -> time::Duration {
    time::Duration::seconds(n)
}

fn record(owner: &str, name: &str) -> TokenRecord {
    TokenRecord::new(
        TokenId::generate(),
        owner,
        name,
        ScopeSet::full_access(),
        Expiry::Never,
        SecretHash::of(&format!("secret-{owner}-{name}")),
        T0,
    )
}

/// 40 tokens with ties in every sort field, nulls, unicode, disabled and expired ones.
fn dataset() -> Vec<TokenRecord> {
    let owners = ["alice", "bob", "Carol", "dave"];
    let names = ["deploy", "Deploy", "laptop", "ÄRGER 100%", "ci_runner"];
    let scopes = ["repo:read repo:write", NODE, "", "repo:public_read *"];
    (0..40i64)
        .map(|i| {
            let created = T0 + secs(3600 * ((i * 7) % 13));
            let mut r = TokenRecord::new(
                TokenId::generate(),
                owners[(i % 4) as usize],
                names[(i % 5) as usize],
                scopes[(i % 4) as usize].parse().unwrap(),
                match i % 4 {
                    0 => Expiry::Never,
                    1 => Expiry::HardLimit {
                        expires_at: T0 + secs(86_400 * ((i % 6) - 2)),
                    },
                    2 => Expiry::AutoRefresh {
                        window: Duration::from_secs(3600),
                        not_after: None,
                    },
                    _ => Expiry::HardLimit {
                        expires_at: T0 + secs(86_400 * 365),
                    },
                },
                SecretHash::of(&format!("s{i}")),
                created,
            );
            if i % 4 == 2 {
                r.expires_at = Some(T0 + secs(3600 * (i % 9)));
            }
            r.last_used = (i % 3 != 0).then(|| T0 + secs(86_400 * ((i * 5) % 11)));
            r.active = i % 5 != 2;
            if r.last_used.is_some() && i % 2 == 1 {
                let ip: IpAddr = if i % 4 == 1 {
                    [192, 0, 2, (i % 3) as u8].into()
                } else {
                    "2001:db8::7".parse().unwrap()
                };
                r.last_used_from = Origin::new(Some(ip), Some("curl/8"));
                r.recent_clients = vec![ip, [198, 51, 100, 1].into()];
            }
            if i % 6 == 0 {
                r.previous_secret = Some(PreviousSecret {
                    hash: SecretHash::of("old"),
                    valid_until: T0 + secs(600),
                });
            }
            r
        })
        .collect()
}

async fn insert_all(store: &Arc<dyn TokenStore>, records: &[TokenRecord]) {
    for r in records {
        store.insert(r).await.unwrap();
    }
}

fn expected(records: &[TokenRecord], q: &ListQuery) -> Vec<TokenId> {
    let mut hits: Vec<&TokenRecord> = records.iter().filter(|r| q.matches(r)).collect();
    hits.sort_by(|a, b| q.compare(a, b));
    hits.into_iter().map(|r| r.id).collect()
}

fn ids(items: &[TokenRecord]) -> Vec<TokenId> {
    items.iter().map(|r| r.id).collect()
}

fn orders() -> Vec<Order> {
    let mut v = Vec::new();
    for field in [
        SortField::Created,
        SortField::LastUsed,
        SortField::Expires,
        SortField::Name,
    ] {
        for descending in [false, true] {
            v.push(Order { field, descending });
        }
    }
    v
}

/// The filters, one or several at a time, and whether each must match something.
fn filters() -> Vec<(&'static str, ListQuery, bool)> {
    let mut v = Vec::new();
    let mut add = |label: &'static str, f: &dyn Fn(&mut ListQuery), nonempty: bool| {
        let mut q = ListQuery::new().page(1, 1000);
        f(&mut q);
        v.push((label, q, nonempty));
    };
    add("none", &|_| {}, true);
    add("owner", &|q| q.owner = Some("alice".into()), true);
    add("owner is exact", &|q| q.owner = Some("carol".into()), false);
    add(
        "name ci",
        &|q| q.name_contains = Some("DEPLOY".into()),
        true,
    );
    add(
        "name unicode",
        &|q| q.name_contains = Some("ärg".into()),
        true,
    );
    add(
        "name % literal",
        &|q| q.name_contains = Some("0%".into()),
        true,
    );
    add(
        "name _ literal",
        &|q| q.name_contains = Some("i_r".into()),
        true,
    );
    add(
        "name no wildcard",
        &|q| q.name_contains = Some("d%y".into()),
        false,
    );
    add(
        "scope",
        &|q| q.has_scope = Some("repo:read".parse().unwrap()),
        true,
    );
    add(
        "scope _",
        &|q| q.has_scope = Some("repo:public_read".parse().unwrap()),
        true,
    );
    add(
        "scope *",
        &|q| q.has_scope = Some("*".parse().unwrap()),
        true,
    );
    add(
        "scope node",
        &|q| q.has_scope = Some(NODE.parse().unwrap()),
        true,
    );
    add(
        "scope exact",
        &|q| q.has_scope = Some("repo:rea".parse().unwrap()),
        false,
    );
    add(
        "expires before",
        &|q| q.expires_before = Some(T0 + secs(86_400)),
        true,
    );
    add(
        "expires after",
        &|q| q.expires_after = Some(T0 + secs(86_400)),
        true,
    );
    add(
        "last used before",
        &|q| q.last_used_before = Some(T0 + secs(86_400 * 5)),
        true,
    );
    add(
        "last used ip",
        &|q| q.last_used_ip = Some([192, 0, 2, 1].into()),
        true,
    );
    add(
        "last used ip v6",
        &|q| q.last_used_ip = Some("2001:db8::7".parse().unwrap()),
        true,
    );
    add(
        "last used ip, mapped form",
        &|q| q.last_used_ip = Some("::ffff:192.0.2.2".parse().unwrap()),
        true,
    );
    add(
        "last used ip none",
        &|q| q.last_used_ip = Some([203, 0, 113, 9].into()),
        false,
    );
    add("never used", &|q| q.never_used = Some(true), true);
    add("used", &|q| q.never_used = Some(false), true);
    add("active", &|q| q.active = Some(true), true);
    add("disabled", &|q| q.active = Some(false), true);
    add("search owner", &|q| q.search = Some("CAR".into()), true);
    add("search name", &|q| q.search = Some("lapt".into()), true);
    add(
        "combined",
        &|q| {
            q.owner = Some("bob".into());
            q.active = Some(true);
            q.never_used = Some(false);
        },
        true,
    );
    add(
        "search + scope",
        &|q| {
            q.search = Some("a".into());
            q.has_scope = Some("repo:write".parse().unwrap());
            q.expires_after = Some(T0);
        },
        true,
    );
    v
}

mod suite {
    use super::*;

    pub(crate) async fn crud(store: Arc<dyn TokenStore>) {
        let mut r = record("alice", "laptop");
        store.insert(&r).await.unwrap();
        assert_eq!(store.get(&r.id).await.unwrap(), Some(r.clone()));

        r.owner = "bob".into();
        r.name = "renamed".into();
        r.active = false;
        r.scopes = "repo:read".parse().unwrap();
        r.modified = T0 + secs(5);
        assert!(store.update(&r).await.unwrap().is_written());
        r.version += 1;
        assert_eq!(store.get(&r.id).await.unwrap(), Some(r.clone()));
        // Indexes follow the update.
        let alice = store.list(&ListQuery::new().owner("alice")).await.unwrap();
        assert_eq!(alice.total, 0);
        assert!(alice.items.is_empty());
        let bob = store.list(&ListQuery::new().owner("bob")).await.unwrap();
        assert_eq!(ids(&bob.items), vec![r.id]);

        assert_eq!(
            store.update(&record("x", "never inserted")).await.unwrap(),
            Update::NotFound
        );
        assert!(store.delete(&r.id).await.unwrap());
        assert!(!store.delete(&r.id).await.unwrap());
        assert_eq!(store.get(&r.id).await.unwrap(), None);
        let all = store.list(&ListQuery::new()).await.unwrap();
        assert_eq!((all.total, all.items.len()), (0, 0));
        let bob = store.list(&ListQuery::new().owner("bob")).await.unwrap();
        assert_eq!(bob.total, 0);
    }

    pub(crate) async fn unknown_ids(store: Arc<dyn TokenStore>) {
        let id = TokenId::generate();
        assert_eq!(store.get(&id).await.unwrap(), None);
        assert!(!store.delete(&id).await.unwrap());
        let t = Touch::new(T0, Some(T0));
        store.touch(&id, &t).await.unwrap();
        assert_eq!(store.get(&id).await.unwrap(), None);
        assert_eq!(store.list(&ListQuery::new()).await.unwrap().total, 0);
    }

    pub(crate) async fn insert_conflict(store: Arc<dyn TokenStore>) {
        let r = record("alice", "one");
        store.insert(&r).await.unwrap();
        let mut other = record("mallory", "two");
        other.id = r.id;
        match store.insert(&other).await {
            Err(StoreError::Conflict(id)) => assert_eq!(id, r.id),
            res => panic!("expected a conflict, got {res:?}"),
        }
        assert_eq!(store.get(&r.id).await.unwrap(), Some(r));
    }

    pub(crate) async fn round_trip(store: Arc<dyn TokenStore>) {
        let mut records = Vec::new();
        let expiries = [
            Expiry::Never,
            Expiry::HardLimit {
                expires_at: T0 + secs(86_400),
            },
            Expiry::AutoRefresh {
                window: Duration::from_secs(3600),
                not_after: Some(T0 + secs(86_400 * 30)),
            },
            Expiry::AutoRefresh {
                window: Duration::from_secs(60),
                not_after: None,
            },
        ];
        for (i, expiry) in expiries.into_iter().enumerate() {
            for prev in [false, true] {
                let mut r = TokenRecord::new(
                    TokenId::generate(),
                    "Zoë O'Brien; DROP TABLE pat_tokens;--",
                    format!("naïve name {i} \"quoted\" 🚀"),
                    format!("repo:read {NODE} sp:* * read").parse().unwrap(),
                    expiry,
                    SecretHash::of(&format!("{i}{prev}")),
                    T0 + secs(i as i64),
                );
                r.modified = T0 + secs(100);
                r.last_used = prev.then_some(T0 + secs(50));
                if prev {
                    r.created_from = Origin::new(
                        Some("2001:db8::1".parse().unwrap()),
                        Some("Zoë's \"agent\" 🚀; DROP TABLE"),
                    );
                    r.last_used_from = Origin::new(Some([192, 0, 2, 9].into()), None);
                    r.recent_clients = vec![[192, 0, 2, 9].into(), "2001:db8::1".parse().unwrap()];
                }
                r.active = !prev;
                r.previous_secret = prev.then(|| PreviousSecret {
                    hash: SecretHash::of("before rotation"),
                    valid_until: T0 + secs(3600),
                });
                records.push(r);
            }
        }
        let mut empty = record("", "");
        empty.expires_at = None;
        records.push(empty);
        insert_all(&store, &records).await;
        for r in &records {
            assert_eq!(store.get(&r.id).await.unwrap().as_ref(), Some(r));
        }
        let page = store.list(&ListQuery::new().page(1, 100)).await.unwrap();
        assert_eq!(page.total, records.len() as u64);
        for r in &records {
            assert!(page.items.contains(r), "listed record differs: {r:?}");
        }
    }

    pub(crate) async fn filters(store: Arc<dyn TokenStore>) {
        let data = dataset();
        insert_all(&store, &data).await;
        for (label, q, nonempty) in super::filters() {
            let want = expected(&data, &q);
            assert_eq!(!want.is_empty(), nonempty, "{label}: bad test data");
            if label != "none" {
                assert!(
                    want.len() < data.len(),
                    "{label}: filter selects everything"
                );
            }
            let page = store.list(&q).await.unwrap();
            assert_eq!(ids(&page.items), want, "{label}");
            assert_eq!(page.total, want.len() as u64, "{label}");
        }
    }

    pub(crate) async fn sorts(store: Arc<dyn TokenStore>) {
        let data = dataset();
        insert_all(&store, &data).await;
        for order in orders() {
            // No filter, an owner filter, and another filter take different paths in
            // some stores.
            for (label, mut q) in [
                ("all", ListQuery::new()),
                ("owner", ListQuery::new().owner("Carol")),
                ("filtered", {
                    let mut q = ListQuery::new();
                    q.active = Some(true);
                    q
                }),
            ] {
                q = q.page(1, 1000);
                q.order = order;
                let want = expected(&data, &q);
                assert!(want.len() > 5);
                let page = store.list(&q).await.unwrap();
                assert_eq!(ids(&page.items), want, "{order:?} {label}");
            }
        }
    }

    pub(crate) async fn pagination(store: Arc<dyn TokenStore>) {
        let data = dataset();
        insert_all(&store, &data).await;
        for order in orders() {
            for owner in [None, Some("bob")] {
                let mut q = ListQuery::new();
                q.owner = owner.map(Into::into);
                q.order = order;
                let want = expected(&data, &q);
                let mut got = Vec::new();
                for page_no in 1.. {
                    let q = q.clone().page(page_no, 7);
                    let page = store.list(&q).await.unwrap();
                    assert_eq!(page.total, want.len() as u64);
                    if page.items.is_empty() {
                        break;
                    }
                    assert!(page.items.len() <= 7);
                    got.extend(ids(&page.items));
                }
                assert_eq!(got, want, "{order:?} owner={owner:?}");
            }
        }
        // Past the end: empty page, total still right.
        let page = store.list(&ListQuery::new().page(100, 7)).await.unwrap();
        assert!(page.items.is_empty());
        assert_eq!(page.total, data.len() as u64);
    }

    pub(crate) async fn touch(store: Arc<dyn TokenStore>) {
        let mut sliding = record("alice", "sliding");
        sliding.expiry = Expiry::AutoRefresh {
            window: Duration::from_secs(3600),
            not_after: None,
        };
        sliding.expires_at = Some(T0 + secs(3600));
        let mut hard = record("alice", "hard");
        hard.expiry = Expiry::HardLimit {
            expires_at: T0 + secs(7200),
        };
        hard.expires_at = Some(T0 + secs(7200));
        let never = record("alice", "never");
        insert_all(&store, &[sliding.clone(), hard.clone(), never.clone()]).await;

        let forward = Touch::new(T0 + secs(600), Some(T0 + secs(4200)));
        for r in [&sliding, &hard, &never] {
            store.touch(&r.id, &forward).await.unwrap();
        }
        let s = store.get(&sliding.id).await.unwrap().unwrap();
        assert_eq!(s.last_used, Some(T0 + secs(600)));
        assert_eq!(s.expires_at, Some(T0 + secs(4200)));
        // Only sliding tokens move their expiry.
        let h = store.get(&hard.id).await.unwrap().unwrap();
        assert_eq!(h.last_used, Some(T0 + secs(600)));
        assert_eq!(h.expires_at, Some(T0 + secs(7200)));
        let n = store.get(&never.id).await.unwrap().unwrap();
        assert_eq!(n.last_used, Some(T0 + secs(600)));
        assert_eq!(n.expires_at, None);

        // Never backwards.
        let back = Touch::new(T0 + secs(300), Some(T0 + secs(3900)));
        store.touch(&sliding.id, &back).await.unwrap();
        let s2 = store.get(&sliding.id).await.unwrap().unwrap();
        assert_eq!(s2, s);
        // The rest of the record is untouched.
        assert_eq!(
            TokenRecord {
                last_used: None,
                expires_at: sliding.expires_at,
                ..s2
            },
            sliding
        );
        // A touch without an expiry leaves it alone.
        store
            .touch(&sliding.id, &Touch::new(T0 + secs(900), None))
            .await
            .unwrap();
        let s3 = store.get(&sliding.id).await.unwrap().unwrap();
        assert_eq!(s3.last_used, Some(T0 + secs(900)));
        assert_eq!(s3.expires_at, Some(T0 + secs(4200)));
        // The listing order follows touches.
        let mut q = ListQuery::new();
        q.order = Order {
            field: SortField::LastUsed,
            descending: true,
        };
        let page = store.list(&q).await.unwrap();
        assert_eq!(page.items[0].id, sliding.id);
        let mut q = ListQuery::new();
        q.expires_after = Some(T0 + secs(4000));
        q.expires_before = Some(T0 + secs(5000));
        assert_eq!(ids(&store.list(&q).await.unwrap().items), vec![sliding.id]);
    }

    pub(crate) async fn concurrent_touches(store: Arc<dyn TokenStore>) {
        let mut r = record("alice", "busy");
        r.expiry = Expiry::AutoRefresh {
            window: Duration::from_secs(3600),
            not_after: None,
        };
        r.expires_at = Some(T0 + secs(3600));
        store.insert(&r).await.unwrap();
        let mut tasks = Vec::new();
        // Shuffled order, so the last write is rarely the largest.
        for i in (0..50i64).map(|i| (i * 17) % 50) {
            let (store, id) = (store.clone(), r.id);
            tasks.push(tokio::spawn(async move {
                let t = Touch::new(T0 + secs(i), Some(T0 + secs(3600 + i)));
                store.touch(&id, &t).await
            }));
        }
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        let got = store.get(&r.id).await.unwrap().unwrap();
        assert_eq!(got.last_used, Some(T0 + secs(49)));
        assert_eq!(got.expires_at, Some(T0 + secs(3649)));
    }

    pub(crate) async fn disabled_and_expired(store: Arc<dyn TokenStore>) {
        let now = T0 + secs(86_400);
        let live = record("alice", "live");
        let mut disabled = record("alice", "disabled");
        disabled.active = false;
        let mut expired = record("alice", "expired");
        expired.expiry = Expiry::HardLimit {
            expires_at: T0 + secs(60),
        };
        expired.expires_at = Some(T0 + secs(60));
        let mut both = expired.clone();
        both.id = TokenId::generate();
        both.name = "both".into();
        both.active = false;
        let all = [
            live.clone(),
            disabled.clone(),
            expired.clone(),
            both.clone(),
        ];
        insert_all(&store, &all).await;

        let page = store.list(&ListQuery::new()).await.unwrap();
        assert_eq!(page.total, 4, "disabled and expired tokens are listed");
        let mut q = ListQuery::new();
        q.active = Some(false);
        let mut got = ids(&store.list(&q).await.unwrap().items);
        got.sort();
        let mut want = vec![disabled.id, both.id];
        want.sort();
        assert_eq!(got, want);
        let mut q = ListQuery::new();
        q.expires_before = Some(now);
        let mut got = ids(&store.list(&q).await.unwrap().items);
        got.sort();
        let mut want = vec![expired.id, both.id];
        want.sort();
        assert_eq!(got, want);
        let mut q = ListQuery::new();
        q.expires_after = Some(now);
        q.active = Some(true);
        assert_eq!(ids(&store.list(&q).await.unwrap().items), vec![live.id]);
        let d = store.get(&disabled.id).await.unwrap().unwrap();
        assert!(!d.active);
        let e = store.get(&expired.id).await.unwrap().unwrap();
        assert!(e.is_expired(now));
    }

    /// Of two updates made from the same read, exactly one is written; the other
    /// changes nothing (an acknowledged disable is never undone by a stale rename).
    pub(crate) async fn compare_and_swap(store: Arc<dyn TokenStore>) {
        let r = record("alice", "laptop");
        store.insert(&r).await.unwrap();
        let read = store.get(&r.id).await.unwrap().unwrap();
        assert_eq!(read.version, 1);
        let mut disable = read.clone();
        disable.active = false;
        let mut rename = read.clone();
        rename.name = "renamed".into();
        assert_eq!(store.update(&disable).await.unwrap(), Update::Written);
        assert_eq!(store.update(&rename).await.unwrap(), Update::Stale);
        let now = store.get(&r.id).await.unwrap().unwrap();
        assert!(!now.active, "the stale rename did not write active back");
        assert_eq!(now.name, "laptop");
        assert_eq!(now.version, 2);
        // From the fresh read it goes through.
        let mut rename = now.clone();
        rename.name = "renamed".into();
        assert_eq!(store.update(&rename).await.unwrap(), Update::Written);
        let now = store.get(&r.id).await.unwrap().unwrap();
        assert_eq!(
            (now.name.as_str(), now.active, now.version),
            ("renamed", false, 3)
        );

        // Many writers from one read, at once: exactly one wins.
        let read = now;
        let writers = (0..16).map(|i| {
            let store = store.clone();
            let mut w = read.clone();
            w.name = format!("writer {i}");
            tokio::spawn(async move { store.update(&w).await.unwrap() })
        });
        let mut written = 0;
        for w in writers {
            match w.await.unwrap() {
                Update::Written => written += 1,
                Update::Stale => {}
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(written, 1);
        assert_eq!(store.get(&r.id).await.unwrap().unwrap().version, 4);
    }

    /// An update from a read made before a use keeps what the use wrote.
    pub(crate) async fn update_keeps_touches(store: Arc<dyn TokenStore>) {
        let mut r = record("alice", "sliding");
        r.expiry = Expiry::AutoRefresh {
            window: Duration::from_secs(600),
            not_after: None,
        };
        r.expires_at = Some(T0 + secs(600));
        store.insert(&r).await.unwrap();
        let read = store.get(&r.id).await.unwrap().unwrap();
        let touch = Touch::new(T0 + secs(100), Some(T0 + secs(700)));
        store.touch(&r.id, &touch).await.unwrap();
        let mut rename = read;
        rename.name = "renamed".into();
        assert_eq!(store.update(&rename).await.unwrap(), Update::Written);
        let now = store.get(&r.id).await.unwrap().unwrap();
        assert_eq!(now.name, "renamed");
        assert_eq!(now.last_used, Some(T0 + secs(100)));
        assert_eq!(now.expires_at, Some(T0 + secs(700)));
        // A new expiry model is written as given.
        let mut hard = now.clone();
        hard.expiry = Expiry::HardLimit {
            expires_at: T0 + secs(300),
        };
        hard.expires_at = Some(T0 + secs(300));
        assert_eq!(store.update(&hard).await.unwrap(), Update::Written);
        let now = store.get(&r.id).await.unwrap().unwrap();
        assert_eq!(now.expires_at, Some(T0 + secs(300)));
    }

    /// A rotation to a new id is one step: both changes or neither.
    pub(crate) async fn atomic_replace(store: Arc<dyn TokenStore>) {
        let old = record("alice", "old");
        store.insert(&old).await.unwrap();
        let old = store.get(&old.id).await.unwrap().unwrap();
        // Deleting the old one.
        let new = record("alice", "new");
        assert_eq!(
            store.replace(&old, true, &new).await.unwrap(),
            Update::Written
        );
        assert!(store.get(&old.id).await.unwrap().is_none());
        assert_eq!(store.get(&new.id).await.unwrap().unwrap().name, "new");
        // Keeping the old one, changed (a grace period).
        let new = store.get(&new.id).await.unwrap().unwrap();
        let mut graced = new.clone();
        graced.expiry = Expiry::HardLimit {
            expires_at: T0 + secs(3600),
        };
        graced.expires_at = Some(T0 + secs(3600));
        let newer = record("alice", "newer");
        assert_eq!(
            store.replace(&graced, false, &newer).await.unwrap(),
            Update::Written
        );
        let kept = store.get(&new.id).await.unwrap().unwrap();
        assert_eq!((kept.expires_at, kept.version), (Some(T0 + secs(3600)), 2));
        assert!(store.get(&newer.id).await.unwrap().is_some());
        // A stale old record: nothing happens, the new one is not inserted.
        let third = record("alice", "third");
        assert_eq!(
            store.replace(&new, true, &third).await.unwrap(),
            Update::Stale
        );
        assert!(store.get(&new.id).await.unwrap().is_some());
        assert!(store.get(&third.id).await.unwrap().is_none());
        // The new id taken: a conflict, and the old one is untouched.
        assert!(matches!(
            store.replace(&kept, true, &newer).await,
            Err(StoreError::Conflict(_))
        ));
        assert_eq!(store.get(&kept.id).await.unwrap().unwrap(), kept);
        // No old record: nothing is inserted.
        let ghost = record("alice", "ghost");
        let fourth = record("alice", "fourth");
        assert_eq!(
            store.replace(&ghost, true, &fourth).await.unwrap(),
            Update::NotFound
        );
        assert!(store.get(&fourth.id).await.unwrap().is_none());
        // Two rotations from one read: exactly one happens.
        let (a, b) = (record("alice", "a"), record("alice", "b"));
        let (ra, rb) = tokio::join!(
            store.replace(&kept, true, &a),
            store.replace(&kept, true, &b)
        );
        let outcomes = [ra.unwrap(), rb.unwrap()];
        assert_eq!(
            outcomes.iter().filter(|o| o.is_written()).count(),
            1,
            "{outcomes:?}"
        );
        let got_a = store.get(&a.id).await.unwrap().is_some();
        let got_b = store.get(&b.id).await.unwrap().is_some();
        assert!(got_a ^ got_b, "exactly one replacement exists");
    }

    /// Where a use came from goes with a `last_used` that moves forward, never with one
    /// that does not; an update made from an older read keeps it.
    pub(crate) async fn touch_origin(store: Arc<dyn TokenStore>) {
        let r = record("alice", "laptop");
        store.insert(&r).await.unwrap();
        let a: IpAddr = [192, 0, 2, 1].into();
        let b: IpAddr = "2001:db8::2".parse().unwrap();
        let first = Touch::new(T0 + secs(100), None)
            .with_origin(Origin::new(Some(a), Some("first/1")), vec![a]);
        store.touch(&r.id, &first).await.unwrap();
        let got = store.get(&r.id).await.unwrap().unwrap();
        assert_eq!(got.last_used_from, Origin::new(Some(a), Some("first/1")));
        assert_eq!(got.recent_clients, vec![a]);
        // An older use from elsewhere changes nothing.
        let late = Touch::new(T0 + secs(50), None)
            .with_origin(Origin::new(Some(b), Some("late/1")), vec![b, a]);
        store.touch(&r.id, &late).await.unwrap();
        let got = store.get(&r.id).await.unwrap().unwrap();
        assert_eq!(got.last_used_from.client, Some(a));
        assert_eq!(got.recent_clients, vec![a]);
        // A newer one without an origin keeps the stored origin.
        store
            .touch(&r.id, &Touch::new(T0 + secs(150), None))
            .await
            .unwrap();
        let got = store.get(&r.id).await.unwrap().unwrap();
        assert_eq!(got.last_used, Some(T0 + secs(150)));
        assert_eq!(got.last_used_from.client, Some(a));
        // A newer one with an origin (no user agent) replaces it whole.
        let next =
            Touch::new(T0 + secs(200), None).with_origin(Origin::new(Some(b), None), vec![b, a]);
        store.touch(&r.id, &next).await.unwrap();
        let got = store.get(&r.id).await.unwrap().unwrap();
        assert_eq!(got.last_used_from, Origin::new(Some(b), None));
        assert_eq!(got.recent_clients, vec![b, a]);
        let by_ip = |ip: IpAddr| {
            let mut q = ListQuery::new();
            q.last_used_ip = Some(ip);
            q
        };
        assert_eq!(ids(&store.list(&by_ip(b)).await.unwrap().items), vec![r.id]);
        assert!(store.list(&by_ip(a)).await.unwrap().items.is_empty());
        // An update made from the record read before the last touch keeps the touch's
        // origin, as it keeps its `last_used`.
        let mut stale = r.clone();
        stale.name = "renamed".into();
        assert!(store.update(&stale).await.unwrap().is_written());
        let got = store.get(&r.id).await.unwrap().unwrap();
        assert_eq!(got.name, "renamed");
        assert_eq!(got.last_used, Some(T0 + secs(200)));
        assert_eq!(got.last_used_from, Origin::new(Some(b), None));
        assert_eq!(got.recent_clients, vec![b, a]);
    }

    fn event(i: i64, token: TokenId, owner: &str, kind: EventKind) -> Event {
        serde_json::from_value(serde_json::json!({
            "at": (T0 + secs(60 * i)).format(&time::format_description::well_known::Rfc3339).unwrap(),
            "token_id": token.to_string(),
            "owner": owner,
            "type": "created",
            "actor": if i % 2 == 0 {
                serde_json::json!({"kind": "operator"})
            } else {
                serde_json::json!({"kind": "token", "id": token.to_string(), "owner": owner})
            },
            "client": if i % 3 == 0 { serde_json::json!("2001:db8::5") } else { serde_json::json!(null) },
            "user_agent": if i % 3 == 0 { serde_json::json!("Zoë/1 🚀") } else { serde_json::json!(null) },
        }))
        .map(|mut e: Event| {
            e.kind = kind;
            e
        })
        .unwrap()
    }

    /// The audit log: appended in order, listed newest first with the filters of
    /// [`EventQuery::matches`], paged, pruned by time.
    pub(crate) async fn audit_log(store: Arc<dyn TokenStore>) {
        let tokens = [
            TokenId::generate(),
            TokenId::generate(),
            TokenId::generate(),
        ];
        let owners = ["alice", "bob", "alice"];
        let kinds = [
            EventKind::Created,
            EventKind::Changed {
                fields: vec!["name".into(), "scopes".into()],
            },
            EventKind::Rotated {
                new_id: Some(tokens[1]),
            },
            EventKind::Disabled,
            EventKind::ExpiringSoon {
                lead: Duration::from_secs(7 * 86_400),
            },
            EventKind::FirstUse,
            EventKind::Deleted,
        ];
        let events: Vec<Event> = (0..30)
            .map(|i| {
                let t = (i % 3) as usize;
                event(i, tokens[t], owners[t], kinds[(i % 7) as usize].clone())
            })
            .collect();
        // In two appends, the second of several events at once.
        store.append_events(&events[..1]).await.unwrap();
        store.append_events(&events[1..]).await.unwrap();
        let newest_first: Vec<Event> = events.iter().rev().cloned().collect();
        let all = store
            .list_events(&EventQuery::new().page(1, 1000))
            .await
            .unwrap();
        assert_eq!(all.total, 30);
        assert_eq!(
            all.items, newest_first,
            "every field read back, newest first"
        );
        let mut queries: Vec<(&str, EventQuery)> = vec![
            ("token", EventQuery::new().token(tokens[1])),
            ("owner", EventQuery::new().owner("alice")),
            ("unknown owner", EventQuery::new().owner("carol")),
        ];
        let mut q = EventQuery::new();
        q.kind = Some("expiring_soon".into());
        queries.push(("type", q));
        let mut q = EventQuery::new().token(tokens[1]);
        q.kind = Some("changed".into());
        queries.push(("token, type", q));
        let mut q = EventQuery::new().token(tokens[2]).owner("alice");
        q.since = Some(T0 + secs(60 * 5));
        q.until = Some(T0 + secs(60 * 26));
        queries.push(("token, owner, since, until", q));
        queries.push((
            "token of another owner",
            EventQuery::new().token(tokens[1]).owner("alice"),
        ));
        let mut q = EventQuery::new().owner("alice");
        q.since = Some(T0 + secs(60 * 10));
        q.until = Some(T0 + secs(60 * 20));
        queries.push(("owner, since, until", q));
        for (label, q) in queries {
            let want: Vec<&Event> = newest_first.iter().filter(|e| q.matches(e)).collect();
            for (page, size) in [(1, 1000), (1, 4), (2, 4), (3, 4)] {
                let got = store
                    .list_events(&q.clone().page(page, size))
                    .await
                    .unwrap();
                assert_eq!(got.total, want.len() as u64, "{label}");
                let slice: Vec<&Event> = want
                    .iter()
                    .skip(((page - 1) * size) as usize)
                    .take(size as usize)
                    .copied()
                    .collect();
                assert_eq!(
                    got.items.iter().collect::<Vec<_>>(),
                    slice,
                    "{label} page {page}"
                );
            }
        }
        // Pruning drops what is older than the cut, and only that.
        let deleted = store.prune_events(T0 + secs(60 * 12)).await.unwrap();
        assert_eq!(deleted, 12);
        let left = store
            .list_events(&EventQuery::new().page(1, 1000))
            .await
            .unwrap();
        assert_eq!(left.items, newest_first[..18].to_vec());
    }

    /// A reminder is claimed once, by one of many claimants racing; another lead time or
    /// another expiry is another reminder.
    pub(crate) async fn reminder_claims(store: Arc<dyn TokenStore>) {
        let id = TokenId::generate();
        let end = T0 + secs(86_400 * 10);
        let racing = (0..8).map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.claim_reminder(&id, 86_400, end).await.unwrap() })
        });
        let won = futures_util::future::join_all(racing)
            .await
            .into_iter()
            .filter(|r| *r.as_ref().unwrap())
            .count();
        assert_eq!(won, 1, "exactly one claimant wins");
        assert!(!store.claim_reminder(&id, 86_400, end).await.unwrap());
        assert!(store.claim_reminder(&id, 7 * 86_400, end).await.unwrap());
        assert!(store.claim_reminder(&id, 0, end).await.unwrap());
        assert!(store
            .claim_reminder(&id, 86_400, end + secs(3600))
            .await
            .unwrap());
        assert!(store
            .claim_reminder(&TokenId::generate(), 86_400, end)
            .await
            .unwrap());
    }

    pub(crate) async fn ids_unique(store: Arc<dyn TokenStore>) {
        let records: Vec<TokenRecord> = (0..200)
            .map(|i| record(&format!("user{}", i % 10), "bulk"))
            .collect();
        let mut distinct: Vec<TokenId> = ids(&records);
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), 200);
        insert_all(&store, &records).await;
        let page = store.list(&ListQuery::new().page(1, 1000)).await.unwrap();
        assert_eq!(page.total, 200);
        let mut listed = ids(&page.items);
        listed.sort();
        assert_eq!(listed, distinct);
    }
}

macro_rules! conformance {
    ($store:ident, $setup:path) => {
        mod $store {
            use super::*;
            conformance!(@each $setup; crud, unknown_ids, insert_conflict, round_trip, filters,
                sorts, pagination, touch, concurrent_touches, disabled_and_expired, ids_unique,
                compare_and_swap, update_keeps_touches, atomic_replace, touch_origin, audit_log,
                reminder_claims);
        }
    };
    (@each $setup:path; $($test:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() {
                store_env::run($setup, suite::$test).await;
            }
        )*
    };
}

conformance!(memory, store_env::memory);
#[cfg(feature = "sqlite")]
conformance!(sqlite, store_env::sqlite);
#[cfg(feature = "postgres")]
conformance!(postgres, store_env::postgres);
#[cfg(feature = "redis")]
conformance!(redis, store_env::redis);
