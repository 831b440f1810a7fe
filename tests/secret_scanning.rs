//! The token pattern for secret scanners (README "Secret scanning"): it matches every
//! minted token, in text too, and refuses near misses; the README's regex and gitleaks
//! rule are that pattern.

use regex::Regex;
use tower_pat::TokenFormat;

fn readme() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap()
}

#[test]
fn the_pattern_matches_every_minted_token_and_only_it() {
    for format in [
        TokenFormat::default(),
        TokenFormat::with_prefix("acme").unwrap(),
    ] {
        let re = Regex::new(&format.scanner_pattern()).unwrap();
        for _ in 0..1000 {
            let token = format.mint().token.expose().to_owned();
            assert!(re.is_match(&token), "{}", format.prefix());
            let text = format!("export TOKEN={token}; curl -H 'Authorization: Bearer {token}'");
            let found: Vec<_> = re.find_iter(&text).map(|m| m.as_str()).collect();
            assert_eq!(found, [token.as_str(), token.as_str()]);
        }
    }
}

#[test]
fn the_pattern_refuses_near_misses() {
    let format = TokenFormat::default();
    let re = Regex::new(&format.scanner_pattern()).unwrap();
    let token = format.mint().token.expose().to_owned();
    let (head, tail) = token.split_at(4 + 16 + 1);
    let near_misses = [
        token[..token.len() - 1].to_owned(),            // one short
        format!("{token}a"),                            // one long
        format!("x{token}"),                            // glued to a word before
        token.replacen("pat_", "pot_", 1),              // another prefix
        token.replacen("pat_", "pat", 1),               // no `_` after the prefix
        format!("{}{}", &head[..head.len() - 1], tail), // no `_` after the id
        format!("{head}{}-{}", &tail[..5], &tail[6..]), // not base62
        token.replacen("pat_", "PAT_", 1),              // the prefix is lower case
    ];
    for miss in &near_misses {
        assert!(!re.is_match(miss), "matched a near miss: {miss}");
    }
    // A token of another prefix is not this format's.
    let acme = TokenFormat::with_prefix("acme").unwrap().mint().token;
    assert!(!re.is_match(acme.expose()));
}

#[test]
fn the_readme_shows_this_pattern_and_gitleaks_rule() {
    let pattern = TokenFormat::default().scanner_pattern();
    let readme = readme();
    let section = readme
        .split("## Secret scanning")
        .nth(1)
        .expect("README has a Secret scanning section");
    assert!(
        section.contains(&format!("\n{pattern}\n")),
        "the README's regex is not {pattern}"
    );
    assert!(
        section.contains(&format!("regex = '''{pattern}'''")),
        "the gitleaks rule's regex is not {pattern}"
    );
}
