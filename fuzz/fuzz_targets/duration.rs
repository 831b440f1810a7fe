//! Arbitrary text as a duration (`20d`, `12h`, …), through `parse_duration`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tower_pat::parse_duration;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(d) = parse_duration(text) {
        assert!(d.as_secs() > 0 && d.as_secs() <= 100 * 366 * 86_400);
    }
});
