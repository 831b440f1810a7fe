//! Arbitrary bytes as a JSON Patch body, parsed and applied to a token view: all or nothing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tower_pat::manage::{apply_patch as apply, parse_patch as parse};
use tower_pat::manage::TokenView;
use tower_pat::SecretHash;
use tower_pat::{Expiry, TokenId, TokenRecord};

fuzz_target!(|data: &[u8]| {
    let Ok(patch) = parse(data) else {
        return;
    };
    let record = TokenRecord::new(
        TokenId::generate(),
        "alice",
        "ci",
        "repo:read".parse().unwrap(),
        Expiry::Never,
        SecretHash::of("s"),
        time::OffsetDateTime::UNIX_EPOCH,
    );
    let mut view = TokenView::from(&record);
    let before = view.clone();
    match apply(&patch, &mut view) {
        Ok(()) => {
            assert_eq!((&view.id, &view.owner), (&before.id, &before.owner));
            assert_eq!(view.created, before.created);
        }
        Err(_) => assert_eq!(view, before),
    }
});
