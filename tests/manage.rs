//! The management API as a library: expiry models and policy, rotation with grace,
//! rights, scope capping and cache invalidation.

use std::sync::Arc;
use std::time::Duration;

use time::macros::datetime;
use tower_pat::manage::{apply_filter, parse_order};
use tower_pat::manage::{
    Actor, CreateTokenRequest, ExpiryPolicy, ManageError, Manager, RotateRequest, TokenPatch,
};
use tower_pat::store::{ListQuery, SortField, StoreError};
use tower_pat::ManualClock;
use tower_pat::{Authenticator, MemoryStore, Scope};

fn setup() -> (Manager, Authenticator, ManualClock) {
    let clock = ManualClock::new(datetime!(2026-01-01 0:00 UTC));
    let auth = Authenticator::builder(Arc::new(MemoryStore::new()))
        .with_clock(clock.clone())
        .build();
    (Manager::new(auth.clone()), auth, clock)
}

const OP: &Actor = &Actor::Operator;

async fn actor(m: &Manager, auth: &Authenticator, owner: &str, scopes: &[&str]) -> Actor {
    let mut req = CreateTokenRequest::for_owner(owner);
    for s in scopes {
        req = req.scope(*s);
    }
    let t = m.create(OP, req).await.unwrap();
    Actor::from(auth.authenticate(t.token.expose()).await.unwrap())
}

#[tokio::test]
async fn expiry_models() {
    let (m, _, _) = setup();
    let m = m.with_policy(ExpiryPolicy::unrestricted());
    let t = m
        .create(OP, CreateTokenRequest::for_owner("a").expire("20d"))
        .await
        .unwrap();
    assert_eq!(t.view.expiry, "hard_limit");
    assert_eq!(t.view.expires_at, Some(datetime!(2026-01-21 0:00 UTC)));
    let mut req = CreateTokenRequest::for_owner("a");
    req.validity_seconds = Some(36_900);
    let t = m.create(OP, req).await.unwrap();
    assert_eq!(t.view.expires_at, Some(datetime!(2026-01-01 10:15 UTC)));
    let t = m
        .create(OP, CreateTokenRequest::for_owner("a").auto_refresh(3600))
        .await
        .unwrap();
    assert_eq!(t.view.expiry, "auto_refresh");
    assert_eq!(t.view.auto_refresh_seconds, Some(3600));
    assert_eq!(t.view.not_after, None);
    let t = m
        .create(
            OP,
            CreateTokenRequest::for_owner("a")
                .auto_refresh(3600)
                .expire("1d"),
        )
        .await
        .unwrap();
    assert_eq!(t.view.not_after, Some(datetime!(2026-01-02 0:00 UTC)));
    let t = m
        .create(OP, CreateTokenRequest::for_owner("a").never_expires())
        .await
        .unwrap();
    assert_eq!(t.view.expires_at, None);
    for bad in [
        CreateTokenRequest::for_owner("a").expire("0d"),
        CreateTokenRequest::for_owner("a")
            .expire("20d")
            .never_expires(),
        CreateTokenRequest::for_owner("a").auto_refresh(0),
        CreateTokenRequest::for_owner("a")
            .auto_refresh(60)
            .never_expires(),
        CreateTokenRequest {
            expires_at: Some("2020-01-01T00:00:00Z".into()),
            ..CreateTokenRequest::for_owner("a")
        },
        CreateTokenRequest {
            expires_at: Some("next week".into()),
            ..CreateTokenRequest::for_owner("a")
        },
    ] {
        let err = m.create(OP, bad.clone()).await.unwrap_err();
        assert!(
            matches!(
                err,
                ManageError::BadInput { .. } | ManageError::Policy { .. }
            ),
            "{bad:?}: {err}"
        );
    }
}

#[tokio::test]
async fn expiry_policy() {
    let (m, _, _) = setup();
    let m = m.with_policy(ExpiryPolicy::new().with_max_lifetime(Duration::from_secs(30 * 86_400)));
    // No expiry given: the maximum applies.
    let t = m
        .create(OP, CreateTokenRequest::for_owner("a"))
        .await
        .unwrap();
    assert_eq!(t.view.expires_at, Some(datetime!(2026-01-31 0:00 UTC)));
    // Longer than the maximum, or never: refused, naming the field.
    let err = m
        .create(OP, CreateTokenRequest::for_owner("a").expire("31d"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ManageError::Policy { field, .. } if field == "expire"),
        "{err}"
    );
    assert!(m
        .create(OP, CreateTokenRequest::for_owner("a").never_expires())
        .await
        .is_err());
    // Sliding tokens get the maximum as their absolute end.
    let t = m
        .create(OP, CreateTokenRequest::for_owner("a").auto_refresh(60))
        .await
        .unwrap();
    assert_eq!(t.view.not_after, Some(datetime!(2026-01-31 0:00 UTC)));
    // Patching past the maximum (counted from creation) is refused too.
    let id = t.view.id.to_string();
    let err = m
        .patch(
            OP,
            &id,
            TokenPatch::new().expires_at(Some(datetime!(2026-03-01 0:00 UTC))),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, ManageError::Policy { .. }));
    assert!(m
        .patch(OP, &id, TokenPatch::new().expires_at(None))
        .await
        .is_err());

    // The default policy: 30 days when no expiry is given, at most 366, never "never".
    let (m, _, _) = setup();
    let t = m
        .create(OP, CreateTokenRequest::for_owner("a"))
        .await
        .unwrap();
    assert_eq!(t.view.expires_at, Some(datetime!(2026-01-31 0:00 UTC)));
    let err = m
        .create(OP, CreateTokenRequest::for_owner("a").never_expires())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ManageError::Policy { field, .. } if field == "never_expires"),
        "{err}"
    );
    assert!(m
        .create(OP, CreateTokenRequest::for_owner("a").expire("366d"))
        .await
        .is_ok());
    let err = m
        .create(OP, CreateTokenRequest::for_owner("a").expire("367d"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("2027-01-02T00:00:00Z"), "{err}");
    let t = m
        .create(OP, CreateTokenRequest::for_owner("a").auto_refresh(60))
        .await
        .unwrap();
    assert_eq!(t.view.not_after, Some(datetime!(2027-01-02 0:00 UTC)));
    // "Never" only where the policy allows it explicitly.
    let m = m.with_policy(ExpiryPolicy::new().allow_never());
    let t = m
        .create(OP, CreateTokenRequest::for_owner("a").never_expires())
        .await
        .unwrap();
    assert_eq!(t.view.expires_at, None);
    let t = m
        .create(OP, CreateTokenRequest::for_owner("a"))
        .await
        .unwrap();
    assert_eq!(t.view.expires_at, Some(datetime!(2026-01-31 0:00 UTC)));
    let m =
        m.with_policy(ExpiryPolicy::new().with_default_lifetime(Some(Duration::from_secs(3600))));
    let t = m
        .create(OP, CreateTokenRequest::for_owner("a"))
        .await
        .unwrap();
    assert_eq!(t.view.expires_at, Some(datetime!(2026-01-01 1:00 UTC)));
    // Without a default and without "never", an expiry is required.
    let m = m.with_policy(
        ExpiryPolicy::new()
            .with_default_lifetime(None)
            .without_max_lifetime(),
    );
    assert!(m
        .create(OP, CreateTokenRequest::for_owner("a"))
        .await
        .is_err());
}

#[tokio::test]
async fn rotation_grace_ends() {
    let (m, auth, clock) = setup();
    let t = m
        .create(OP, CreateTokenRequest::for_owner("a"))
        .await
        .unwrap();
    let id = t.view.id.to_string();
    let r = m
        .rotate(
            OP,
            &id,
            RotateRequest {
                grace: Some("10m".into()),
                new_id: false,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(r.view.id, t.view.id);
    assert_eq!(
        r.view.previous_secret_valid_until,
        Some(datetime!(2026-01-01 0:10 UTC))
    );
    assert!(auth.authenticate(t.token.expose()).await.is_ok());
    assert!(auth.authenticate(r.token.expose()).await.is_ok());
    clock.advance(Duration::from_secs(601));
    assert!(
        auth.authenticate(t.token.expose()).await.is_err(),
        "old secret after grace"
    );
    assert!(auth.authenticate(r.token.expose()).await.is_ok());

    // A new id with grace: the old token expires when the grace ends.
    let n = m
        .rotate(
            OP,
            &id,
            RotateRequest {
                grace: Some("1h".into()),
                new_id: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(n.replaces, Some(t.view.id));
    assert!(auth.authenticate(r.token.expose()).await.is_ok());
    assert!(auth.authenticate(n.token.expose()).await.is_ok());
    let old = m.get(OP, &id).await.unwrap();
    assert_eq!(old.expiry, "hard_limit");
    clock.advance(Duration::from_secs(3601));
    assert!(auth.authenticate(r.token.expose()).await.is_err());
    assert!(auth.authenticate(n.token.expose()).await.is_ok());
}

#[tokio::test]
async fn rights_and_capping() {
    let (m, auth, _) = setup();
    let alice = actor(&m, &auth, "alice", &["repo:read", "pat:write"]).await;
    let bob = actor(&m, &auth, "bob", &["repo:write", "pat:write"]).await;
    let root = actor(&m, &auth, "root", &["pat:admin", "*"]).await;
    assert!(!m.is_admin(&alice));
    assert!(m.is_admin(&root));
    assert!(m.is_admin(OP));
    // A full-access token is not an admin token.
    let full = actor(&m, &auth, "carol", &[]).await;
    assert!(!m.is_admin(&full));

    let err = m
        .create(&alice, CreateTokenRequest::default().scope("repo:write"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ManageError::Forbidden { scope: Some(s), .. } if s == "repo:write"),
        "{err}"
    );
    let own = m
        .create(&alice, CreateTokenRequest::default().scope("repo:read"))
        .await
        .unwrap();
    assert_eq!(own.view.owner, "alice");
    let id = own.view.id.to_string();
    // Bob cannot see, change, rotate or delete alice's token: it does not exist for him.
    assert!(matches!(
        m.get(&bob, &id).await,
        Err(ManageError::NotFound { .. })
    ));
    assert!(matches!(
        m.patch(&bob, &id, TokenPatch::new().active(false)).await,
        Err(ManageError::NotFound { .. })
    ));
    assert!(matches!(
        m.rotate(&bob, &id, RotateRequest::default()).await,
        Err(ManageError::NotFound { .. })
    ));
    assert!(matches!(
        m.delete(&bob, &id).await,
        Err(ManageError::NotFound { .. })
    ));
    assert_eq!(m.list(&bob, ListQuery::new()).await.unwrap().total, 1);
    assert!(matches!(
        m.list(&bob, ListQuery::new().owner("alice")).await,
        Err(ManageError::InsufficientScope { scope }) if scope == "pat:admin"
    ));
    // Alice cannot raise her own token.
    let err = m
        .patch(&alice, &id, TokenPatch::new().scopes("*".parse().unwrap()))
        .await
        .unwrap_err();
    assert!(matches!(err, ManageError::Forbidden { .. }));
    // The admin can do all of it.
    assert!(m.get(&root, &id).await.is_ok());
    assert_eq!(m.list(&root, ListQuery::new()).await.unwrap().total, 5);
    m.patch(
        &root,
        &id,
        TokenPatch::new().scopes("repo:admin".parse().unwrap()),
    )
    .await
    .unwrap();
    m.delete(&root, &id).await.unwrap();
    assert!(matches!(
        m.get(&root, &id).await,
        Err(ManageError::NotFound { .. })
    ));
    // The operator must name the owner.
    assert!(matches!(
        m.create(OP, CreateTokenRequest::default()).await,
        Err(ManageError::BadInput { .. })
    ));
    assert!(m
        .create(OP, CreateTokenRequest::for_owner("a:b"))
        .await
        .is_err());
    assert!(m
        .create(OP, CreateTokenRequest::for_owner("a").name("x\u{7}"))
        .await
        .is_err());
}

#[tokio::test]
async fn admin_scope_is_configurable() {
    let (m, auth, _) = setup();
    let m = m.with_admin_scope("tokens:manage".parse::<Scope>().unwrap());
    let mgr = actor(&m, &auth, "ops", &["tokens:manage"]).await;
    let old_admin = actor(&m, &auth, "root", &["pat:admin"]).await;
    assert!(m.is_admin(&mgr));
    assert!(!m.is_admin(&old_admin));
}

#[tokio::test]
async fn changes_invalidate_the_cache() {
    let (m, auth, _) = setup();
    let t = m
        .create(OP, CreateTokenRequest::for_owner("a").scope("repo:read"))
        .await
        .unwrap();
    let id = t.view.id.to_string();
    // Cached now.
    let p = auth.authenticate(t.token.expose()).await.unwrap();
    assert_eq!(p.scopes().to_string(), "repo:read");
    m.patch(
        OP,
        &id,
        TokenPatch::new()
            .scopes("repo:write".parse().unwrap())
            .name("n"),
    )
    .await
    .unwrap();
    let p = auth.authenticate(t.token.expose()).await.unwrap();
    assert_eq!(p.scopes().to_string(), "repo:write");
    assert_eq!(p.token_name(), "n");
    m.patch(OP, &id, TokenPatch::new().active(false))
        .await
        .unwrap();
    assert!(auth.authenticate(t.token.expose()).await.is_err());
}

#[test]
fn filters_and_order() {
    let mut q = ListQuery::new();
    apply_filter(&mut q, "last_used__lte", "2026-01-01T00:00:00Z").unwrap();
    assert_eq!(q.last_used_before, Some(datetime!(2026-01-01 0:00:01 UTC)));
    apply_filter(&mut q, "active", "false").unwrap();
    assert_eq!(q.active, Some(false));
    let err = apply_filter(&mut q, "owner__in", "a").unwrap_err();
    assert!(matches!(&err, ManageError::BadInput { field, .. } if field == "owner__in"));
    assert!(apply_filter(&mut q, "active", "maybe").is_err());
    let o = parse_order("-last_used").unwrap();
    assert!(o.descending);
    assert_eq!(o.field, SortField::LastUsed);
    assert!(parse_order("--name").is_err());
}

#[test]
fn store_errors_map_to_conflict_and_unavailable() {
    let id = tower_pat::TokenId::generate();
    assert_eq!(
        ManageError::from(StoreError::Conflict(id)).code(),
        "conflict"
    );
    assert_eq!(
        ManageError::from(StoreError::Timeout(Duration::from_secs(1))).code(),
        "temporarily_unavailable"
    );
}

#[test]
fn issued_token_debug_is_redacted() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (m, _, _) = setup();
    let t = rt
        .block_on(m.create(OP, CreateTokenRequest::for_owner("a")))
        .unwrap();
    let secret = &t.token.expose()[21..];
    assert!(!format!("{t:?}").contains(secret));
    // Serializing (the one time the API shows it) does include it.
    assert!(serde_json::to_string(&t)
        .unwrap()
        .contains(t.token.expose()));
}
