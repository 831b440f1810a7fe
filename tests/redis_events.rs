//! The Redis audit log's indexes by token and by owner (`<prefix>events:t:<id>`,
//! `<prefix>events:o:<owner>`): a listing by either reads only those entries, and finds
//! the entries written before the indexes existed in the main stream; the capacity and
//! the pruning remove entries from all of them.
//! Needs `PAT_TEST_REDIS_URL` (skipped without it).
#![cfg(feature = "redis")]

mod store_env;

use std::time::Duration;

use time::macros::datetime;
use time::OffsetDateTime;
use tower_pat::store::{EventQuery, TokenStore};
use tower_pat::{Event, TokenId};

const T0: OffsetDateTime = datetime!(2026-06-01 0:00 UTC);

fn event(minute: i64, token: TokenId, owner: &str) -> Event {
    serde_json::from_value(serde_json::json!({
        "at": (T0 + Duration::from_secs(60 * minute as u64))
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap(),
        "token_id": token.to_string(),
        "owner": owner,
        "type": "first_use",
        "actor": {"kind": "system"},
        "client": null,
        "user_agent": null,
    }))
    .unwrap()
}

async fn minutes(store: &dyn TokenStore, q: EventQuery) -> (u64, Vec<i64>) {
    let page = store.list_events(&q.page(1, 1000)).await.unwrap();
    let m = page
        .items
        .iter()
        .map(|e| (e.at - T0).whole_minutes())
        .collect();
    (page.total, m)
}

#[tokio::test]
async fn listing_by_token_uses_the_index_and_finds_older_entries_in_the_log() {
    let Some(url) = store_env::server_url("PAT_TEST_REDIS_URL") else {
        return;
    };
    let prefix = format!("{}:", store_env::unique("pat_test"));
    let store = store_env::redis_store(&url, &prefix).await;
    let (a, b) = (TokenId::generate(), TokenId::generate());
    // Entries as a version without the index wrote them: in the main stream only.
    let mut conn = store.connection();
    let owner = |t: TokenId| if t == a { "alice" } else { "bob" };
    for (m, t) in [(1, a), (2, b), (3, a)] {
        let e = event(m, t, owner(t));
        let _: String = redis::cmd("XADD")
            .arg(format!("{prefix}events"))
            .arg("*")
            .arg("at")
            .arg(e.at.unix_timestamp())
            .arg("token")
            .arg(t.to_string())
            .arg("owner")
            .arg(owner(t))
            .arg("type")
            .arg("first_use")
            .arg("e")
            .arg(serde_json::to_string(&e).unwrap())
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    // Then this version's appends.
    store
        .append_events(&[
            event(4, b, "bob"),
            event(5, a, "alice"),
            event(6, a, "alice"),
        ])
        .await
        .unwrap();
    let by_a = EventQuery::new().token(a);
    assert_eq!(minutes(&store, by_a.clone()).await, (4, vec![6, 5, 3, 1]));
    assert_eq!(
        minutes(&store, EventQuery::new().token(b)).await,
        (2, vec![4, 2])
    );
    assert_eq!(minutes(&store, EventQuery::new()).await.0, 6);
    // By owner, through the owner's index, the same way.
    let alice = EventQuery::new().owner("alice");
    assert_eq!(minutes(&store, alice.clone()).await, (4, vec![6, 5, 3, 1]));
    assert_eq!(
        minutes(&store, EventQuery::new().owner("bob")).await,
        (2, vec![4, 2])
    );
    assert_eq!(
        minutes(&store, EventQuery::new().owner("bob").token(a)).await,
        (0, vec![])
    );
    let page2 = store.list_events(&by_a.clone().page(2, 3)).await.unwrap();
    assert_eq!(page2.total, 4);
    assert_eq!(page2.items.len(), 1, "the last one, from before the index");
    // The index holds the new entries only, under the main stream's ids.
    let indexed: u64 = redis::cmd("XLEN")
        .arg(format!("{prefix}events:t:{a}"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(indexed, 2);
    // Pruning removes entries from the index too.
    assert_eq!(
        store
            .prune_events(T0 + Duration::from_secs(60 * 6))
            .await
            .unwrap(),
        5
    );
    assert_eq!(minutes(&store, by_a).await, (1, vec![6]));
    assert_eq!(minutes(&store, alice).await, (1, vec![6]));
    let indexed: u64 = redis::cmd("XLEN")
        .arg(format!("{prefix}events:t:{a}"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(indexed, 1);
    store_env::delete_prefix(&url, &prefix).await;
}

#[tokio::test]
async fn the_capacity_drops_the_oldest_from_the_log_and_the_index() {
    let Some(url) = store_env::server_url("PAT_TEST_REDIS_URL") else {
        return;
    };
    let prefix = format!("{}:", store_env::unique("pat_test"));
    let store = store_env::redis_store(&url, &prefix)
        .await
        .with_audit_capacity(5);
    let (a, b) = (TokenId::generate(), TokenId::generate());
    let events: Vec<Event> = (0..12)
        .map(|m| event(m, if m % 3 == 0 { b } else { a }, "alice"))
        .collect();
    store.append_events(&events[..4]).await.unwrap();
    for e in &events[4..] {
        store.append_events(std::slice::from_ref(e)).await.unwrap();
    }
    assert_eq!(
        minutes(&store, EventQuery::new()).await,
        (5, vec![11, 10, 9, 8, 7])
    );
    assert_eq!(
        minutes(&store, EventQuery::new().token(a)).await,
        (4, vec![11, 10, 8, 7])
    );
    assert_eq!(
        minutes(&store, EventQuery::new().token(b)).await,
        (1, vec![9])
    );
    let mut conn = store.connection();
    let left: u64 = redis::cmd("XLEN")
        .arg(format!("{prefix}events:t:{b}"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(left, 1, "b's older entries left the index with the log");
    let by_owner: u64 = redis::cmd("XLEN")
        .arg(format!("{prefix}events:o:alice"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(by_owner, 5);
    store_env::delete_prefix(&url, &prefix).await;
}
