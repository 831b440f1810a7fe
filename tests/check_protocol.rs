//! The check protocol: `Authenticator::check` decides from memory or hands back a
//! `PendingCheck`; either way one check is one attempt for the failed-attempt limiter.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tower_pat::{
    AttemptLimiter, AuthError, Authenticator, Check, Credential, InvalidReason, MemoryStore,
    NewToken, TokenFormat,
};

fn auth() -> Authenticator {
    Authenticator::builder(Arc::new(MemoryStore::new()))
        .with_attempt_limiter(AttemptLimiter::new(3, Duration::from_secs(60)))
        .build()
}

const CLIENT: [u8; 4] = [192, 0, 2, 9];

#[tokio::test(flavor = "current_thread")]
async fn a_pending_check_counts_its_attempt_once() {
    let auth = auth();
    let client = Some(IpAddr::from(CLIENT));
    // Well-formed tokens of unknown ids: memory cannot decide, the store must.
    for i in 0..3 {
        let unknown = TokenFormat::default().mint().token;
        let check = auth.check(Credential::bearer(unknown.expose()).with_client(client));
        let Check::Pending(pending) = check else {
            panic!("attempt {i}: an unknown id is decided by the store");
        };
        assert!(matches!(
            pending.finish().await,
            Err(AuthError::Invalid(InvalidReason::Unknown))
        ));
    }
    // Three failures, counted once each: the fourth is refused at once.
    let unknown = TokenFormat::default().mint().token;
    let check = auth.check(Credential::bearer(unknown.expose()).with_client(client));
    assert!(matches!(
        check,
        Check::Decided(Err(AuthError::TooManyAttempts { .. }))
    ));
}

#[tokio::test(flavor = "current_thread")]
async fn a_pending_check_dropped_unfinished_counts_nothing() {
    let auth = auth();
    let client = Some(IpAddr::from(CLIENT));
    for _ in 0..10 {
        let unknown = TokenFormat::default().mint().token;
        drop(auth.check(Credential::bearer(unknown.expose()).with_client(client)));
    }
    let token = auth
        .create(NewToken::new("alice", "ci"))
        .await
        .unwrap()
        .token;
    let credential = Credential::basic("alice", token.expose()).with_client(client);
    let principal = auth.authenticate(credential).await.unwrap();
    assert_eq!(principal.owner(), "alice");
    // Cached now: the same credential is decided from memory.
    assert!(matches!(auth.check(credential), Check::Decided(Ok(_))));
    // The Basic username is part of the check, also when decided from memory.
    let wrong_user = Credential::basic("bob", token.expose()).with_client(client);
    assert!(matches!(
        auth.check(wrong_user),
        Check::Decided(Err(AuthError::Invalid(InvalidReason::WrongUser)))
    ));
}

#[test]
fn a_credential_debug_shows_no_token() {
    let debug = format!("{:?}", Credential::basic("alice", "pat_secretvalue"));
    assert!(!debug.contains("secretvalue"), "{debug}");
    assert!(debug.contains("alice"));
}
