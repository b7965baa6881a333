//! API tokens (SPEC §1, §2, §10): stored only as SHA-256, authenticated to their role, and a
//! user's own tokens revoked when their password changes or they are deleted — nobody else's.

use rekey_core::domain::token_hash;
use rekey_core::domain::{Role, UserState};
use rekey_core::flows::{SetPassword, Verification};
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
