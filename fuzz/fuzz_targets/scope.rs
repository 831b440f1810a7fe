//! Arbitrary text as a scope and as a scope list; what parses must print back the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tower_pat::{Scope, ScopeHierarchy, ScopeSet};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(scope) = text.parse::<Scope>() {
        assert_eq!(scope.to_string(), text);
        assert!(scope.implies(&scope, &ScopeHierarchy::default()));
    }
    if let Ok(set) = text.parse::<ScopeSet>() {
        let again: ScopeSet = set.to_string().parse().expect("a printed set parses");
        assert_eq!(again, set);
    }
});
