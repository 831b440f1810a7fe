//! Arbitrary text as a Basic credential, through `decode_basic`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tower_pat::credentials::decode_basic;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok((user, password)) = decode_basic(text) {
        assert!(!user.contains(':'));
        assert!(!user
            .chars()
            .chain(password.expose().chars())
            .any(char::is_control));
    }
});
