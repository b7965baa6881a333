//! API tokens (SPEC §1, §2, §10): stored only as SHA-256, authenticated to their role, and a
//! user's own tokens revoked when their password changes or they are deleted — nobody else's.

use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, Utc};
use rekey_core::domain::{parse_lifetime, token_hash, ApiToken, TokenStatus};
use rekey_core::domain::{Role, UserState};
use rekey_core::flows::{SetPassword, TokenRevoked, Verification};
use rekey_core::ports::store::EventFilter;
use rekey_core::ErrorKind;
use secrecy::{ExposeSecret, SecretString};

use crate::support::{assert_err, principal, Fixture, NEW_PASSWORD};

#[tokio::test]
async fn a_token_authenticates_as_its_role_and_is_stored_as_a_hash() {
    let f = Fixture::new().await;
    let user = f.add_user(&f.t1, "tok@acme.test").await;
    let (secret, caller) = f.user_token(&user).await;
    let value = secret.expose_secret();
    assert!(value.starts_with("rk_"));
    assert!(value.len() >= 3 + 43, "at least 256 bits of randomness");
    assert_eq!(
        principal(&caller).role,
        Role::User {
            tenant_id: user.tenant_id.clone(),
            user_id: user.id.clone(),
        }
    );
    assert_eq!(
        principal(&f.admin1).role,
        Role::TenantAdmin(f.t1.id.clone())
    );
    assert_eq!(principal(&f.system).role, Role::System);

    let stored = f
        .store()
        .token_by_hash(&token_hash(value))
        .await
        .unwrap()
        .expect("found by its hash");
    assert_eq!(stored.id, principal(&caller).token_id);
    assert_eq!(stored.hash, token_hash(value));

    for unknown in ["", "rk_not-a-token", &value[..value.len() - 1]] {
        assert_err(
            f.rekey
                .authenticate(&SecretString::from(unknown.to_owned()))
                .await,
            ErrorKind::Unauthenticated,
            "AUTH-7fs1e",
        );
    }
}

#[tokio::test]
async fn a_password_change_revokes_only_the_users_own_tokens() {
    let f = Fixture::new().await;
    let user = f.add_user(&f.t1, "revoke@acme.test").await;
    let other = f.add_user(&f.t1, "keep@acme.test").await;
    let (mine, _) = f.user_token(&user).await;
    let (mine_too, _) = f.user_token(&user).await;
    let (theirs, _) = f.user_token(&other).await;
    let (admin, _) = f.token(Role::TenantAdmin(f.t1.id.clone())).await;

    let code = f.return_code(&user).await;
    f.set_with_code(&user.id, &code, NEW_PASSWORD)
        .await
        .unwrap();

    for gone in [&mine, &mine_too] {
        assert_err(
            f.rekey.authenticate(gone).await,
            ErrorKind::Unauthenticated,
            "AUTH-7fs1e",
        );
    }
    f.rekey.authenticate(&theirs).await.unwrap();
    f.rekey.authenticate(&admin).await.unwrap();

    // An admin set and a current-password change revoke as well.
    let (fresh, me) = f.user_token(&user).await;
    f.tick();
    f.rekey
        .set_password(
            &me,
            SetPassword {
                user_id: user.id.clone(),
                new_password: SecretString::from("a third good passphrase".to_owned()),
                change_required: false,
                verification: Verification::CurrentPassword(SecretString::from(
                    NEW_PASSWORD.to_owned(),
                )),
            },
        )
        .await
        .unwrap();
    assert!(f.rekey.authenticate(&fresh).await.is_err());
    let (fresh, _) = f.user_token(&user).await;
    f.tick();
    f.rekey
        .set_password(
            &f.admin1,
            SetPassword {
                user_id: user.id.clone(),
                new_password: SecretString::from(NEW_PASSWORD.to_owned()),
                change_required: false,
                verification: Verification::Admin,
            },
        )
        .await
        .unwrap();
    assert!(f.rekey.authenticate(&fresh).await.is_err());
    f.rekey.authenticate(&theirs).await.unwrap();
}

#[tokio::test]
async fn deleting_a_user_revokes_their_tokens_and_codes() {
    let f = Fixture::new().await;
    let user = f.add_user(&f.t1, "bye@acme.test").await;
    let (secret, _) = f.user_token(&user).await;
    f.return_code(&user).await;
    f.set_state(&user, UserState::Deleted).await;
    assert_err(
        f.rekey.authenticate(&secret).await,
        ErrorKind::Unauthenticated,
        "AUTH-7fs1e",
    );
    assert!(f.pending_code(&user).await.is_none());
}

#[tokio::test]
async fn a_deleted_users_principal_reaches_nothing() {
    // A face authenticates on every request, so a revoked token never gets this far; the
    // flows still refuse a principal resolved just before its user was deleted.
    let f = Fixture::new().await;
    let user = f.add_user(&f.t1, "stale@acme.test").await;
    let (secret, caller) = f.user_token(&user).await;
    f.set_state(&user, UserState::Deleted).await;
    assert!(f.rekey.authenticate(&secret).await.is_err());
    assert_err(
        f.send_link(&caller, &user.id).await,
        ErrorKind::NotFound,
        "COMMAND-SAF4f",
    );
    assert_err(
        f.rekey.self_service_reset(&caller).await,
        ErrorKind::Unauthenticated,
        "AUTH-7fs1e",
    );
}

/// The stored token behind `secret` (revoked or not).
async fn stored(f: &Fixture, secret: &SecretString) -> ApiToken {
    let hash = token_hash(secret.expose_secret());
    f.store()
        .tokens(None)
        .await
        .unwrap()
        .into_iter()
        .find(|t| t.hash == hash)
        .expect("the token is stored")
}

/// Waits (briefly, in real time) for the last-use write that `authenticate` leaves to a task
/// of its own, until the stored last use is `want`.
async fn last_use_becomes(f: &Fixture, secret: &SecretString, want: Option<DateTime<Utc>>) {
    for _ in 0..200 {
        if stored(f, secret).await.last_used_at == want {
            return;
        }
        tokio::time::sleep(StdDuration::from_millis(5)).await;
    }
    assert_eq!(stored(f, secret).await.last_used_at, want);
}

#[tokio::test]
async fn an_expired_token_is_unknown() {
    let f = Fixture::new().await;
    f.tick();
    let lifetime = parse_lifetime("1h").unwrap();
    let issued = f
        .rekey
        .create_token_expiring(Role::TenantAdmin(f.t1.id.clone()), Some(lifetime))
        .await
        .unwrap();
    assert_eq!(issued.token.expires_at, Some(f.now() + Duration::hours(1)));
    f.rekey.authenticate(&issued.secret).await.unwrap();
    f.advance(Duration::hours(1) - Duration::milliseconds(1));
    f.rekey.authenticate(&issued.secret).await.unwrap();
    f.tick();
    // Exactly like a revoked or unknown token: the same kind and id.
    assert_err(
        f.rekey.authenticate(&issued.secret).await,
        ErrorKind::Unauthenticated,
        "AUTH-7fs1e",
    );
    let listed = f.rekey.list_tokens(Some(&f.t1.id)).await.unwrap();
    let token = listed
        .tokens
        .iter()
        .find(|t| t.id == issued.token.id)
        .unwrap();
    assert_eq!(token.status(listed.at), TokenStatus::Expired);

    // A lifetime must be positive and bounded.
    for bad in [
        Duration::zero(),
        Duration::seconds(-5),
        Duration::days(36_501),
    ] {
        assert_err(
            f.rekey
                .create_token_expiring(Role::System, Some(bad))
                .await
                .map(|issued| issued.token.id),
            ErrorKind::InvalidArgument,
            "REKEY-TkLif",
        );
    }
}

#[tokio::test]
async fn last_use_is_recorded_at_most_once_a_minute() {
    let f = Fixture::new().await;
    f.tick();
    let issued = f.rekey.create_token(Role::System).await.unwrap();
    assert_eq!(stored(&f, &issued.secret).await.last_used_at, None);

    let first = f.now();
    f.rekey.authenticate(&issued.secret).await.unwrap();
    last_use_becomes(&f, &issued.secret, Some(first)).await;

    // Within the minute: no write, however many requests.
    for _ in 0..5 {
        f.advance(Duration::seconds(12));
        f.rekey.authenticate(&issued.secret).await.unwrap();
    }
    tokio::time::sleep(StdDuration::from_millis(50)).await;
    assert_eq!(stored(&f, &issued.secret).await.last_used_at, Some(first));

    // Past it: the next request records its time.
    f.tick();
    let later = f.now();
    f.rekey.authenticate(&issued.secret).await.unwrap();
    last_use_becomes(&f, &issued.secret, Some(later)).await;

    // A request with an unknown token records nothing anywhere.
    f.advance(Duration::minutes(5));
    let _ = f
        .rekey
        .authenticate(&SecretString::from("rk_unknown".to_owned()))
        .await;
    tokio::time::sleep(StdDuration::from_millis(20)).await;
    assert_eq!(stored(&f, &issued.secret).await.last_used_at, Some(later));
}

#[tokio::test]
async fn tokens_are_listed_all_or_by_tenant() {
    let f = Fixture::new().await;
    let user = f.add_user(&f.t2, "list@globex.test").await;
    let (_, caller) = f.user_token(&user).await;
    let all = f.rekey.list_tokens(None).await.unwrap();
    // The fixture's system and two admins, then the user's token, oldest first.
    let roles: Vec<&str> = all.tokens.iter().map(|t| t.role.name()).collect();
    assert_eq!(roles, ["system", "tenant_admin", "tenant_admin", "user"]);
    let t2: Vec<_> = f
        .rekey
        .list_tokens(Some(&f.t2.id))
        .await
        .unwrap()
        .tokens
        .into_iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(
        t2,
        [
            principal(&f.admin2).token_id.clone(),
            principal(&caller).token_id.clone()
        ]
    );
}

#[tokio::test]
async fn a_revoked_token_is_unknown_and_the_revocation_is_audited() {
    let f = Fixture::new().await;
    f.tick();
    let issued = f
        .rekey
        .create_token(Role::TenantAdmin(f.t1.id.clone()))
        .await
        .unwrap();
    f.rekey.authenticate(&issued.secret).await.unwrap();
    let id = issued.token.id.to_string();

    f.tick();
    let revoked = f.rekey.revoke_token("cli", &id).await.unwrap();
    let TokenRevoked::Now(token) = revoked else {
        panic!("revoked now: {revoked:?}");
    };
    assert_eq!(token.revoked_at, Some(f.now()));
    assert_err(
        f.rekey.authenticate(&issued.secret).await,
        ErrorKind::Unauthenticated,
        "AUTH-7fs1e",
    );
    let events = f
        .store()
        .events(&EventFilter {
            aggregate_id: Some(id.clone()),
            ..EventFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(events.len(), 1);
    let event = &events[0];
    assert_eq!(
        (
            event.kind.as_str(),
            event.actor.as_str(),
            &event.tenant_id,
            event.at
        ),
        ("token.revoked", "cli", &f.t1.id, f.now())
    );
    assert_eq!(event.payload, serde_json::json!({ "role": "tenant_admin" }));

    // Again: nothing changes, no second event.
    f.tick();
    assert!(matches!(
        f.rekey.revoke_token("cli", &id).await.unwrap(),
        TokenRevoked::Already(_)
    ));
    assert_eq!(
        f.events()
            .await
            .iter()
            .filter(|e| e.aggregate_id == id)
            .count(),
        1
    );

    // An id that names no token, or is no id at all: not found.
    for unknown in ["69629023906488334", "", &"9".repeat(300)] {
        assert_err(
            f.rekey.revoke_token("cli", unknown).await,
            ErrorKind::NotFound,
            "REKEY-TkNF",
        );
    }
}
