//! Arbitrary text as a token, through `TokenFormat::parse` (default and custom prefix).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tower_pat::TokenFormat;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for format in [
        TokenFormat::default(),
        TokenFormat::with_prefix("acme9").unwrap(),
    ] {
        if let Ok(parsed) = format.parse(text) {
            assert_eq!(text.len(), format.token_len());
            assert!(text.contains(parsed.id.as_str()));
            let _ = parsed.secret_hash();
        }
    }
    let _ = TokenFormat::with_prefix(text);
    let _ = text.parse::<tower_pat::TokenId>();
});
