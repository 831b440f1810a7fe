//! A flood of well-formed tokens with unknown ids keeps the cache within its capacity and
//! reads the store at most once per distinct id.

mod common;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use common::TestStore;
use tower_pat::{AuthError, Authenticator, InvalidReason, TokenFormat};

#[tokio::test]
async fn junk_flood_is_bounded() {
    let store = Arc::new(TestStore::default());
    let auth = Authenticator::builder(store.clone())
        .with_negative_capacity(5_000)
        .with_capacity(1_000)
        .with_attempt_limiter(tower_pat::AttemptLimiter::disabled())
        .build();
    let format = TokenFormat::default();
    let ids = 200_000u64;
    let mut recent = Vec::new();
    for i in 0..ids {
        let token = format.mint().token.expose().to_owned();
        // Each id asked twice in a row: the second answer comes from the negative entry.
        for _ in 0..2 {
            let r = auth.authenticate(&token).await;
            assert!(
                matches!(r, Err(AuthError::Invalid(InvalidReason::Unknown))),
                "{r:?}"
            );
        }
        if i >= ids - 1_000 {
            recent.push(token);
        }
    }
    assert_eq!(
        store.gets.load(Ordering::SeqCst) as u64,
        ids,
        "one store read per distinct id"
    );
    // The most recent ids are still remembered: no new reads.
    for token in &recent {
        let _ = auth.authenticate(token).await;
    }
    assert_eq!(store.gets.load(Ordering::SeqCst) as u64, ids);
    auth.sync_cache().await;
    assert!(
        auth.cached_unknown_ids() <= 5_000,
        "{}",
        auth.cached_unknown_ids()
    );
    assert_eq!(auth.cached_tokens(), 0);
}
