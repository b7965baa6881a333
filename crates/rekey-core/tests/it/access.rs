//! Who may act on whom (SPEC §2 and its table): tenant isolation — another tenant's user looks
//! exactly like a user that does not exist —, the v1 org rule (`x-zitadel-orgid`), and what
//! the `user` role may do. Every refusal writes nothing.

use rekey_core::domain::EmailAddress;
use rekey_core::domain::Transition;
use rekey_core::domain::UserId;
use rekey_core::domain::{Channel, MessageKind};
use rekey_core::flows::{Caller, Delivery, SetPassword, Verification};
use rekey_core::ErrorKind;
use secrecy::SecretString;

use crate::support::{assert_err, Fixture, NEW_PASSWORD, UNKNOWN_ID};

fn admin_set(user_id: &UserId) -> SetPassword {
    SetPassword {
        user_id: user_id.clone(),
        new_password: SecretString::from(NEW_PASSWORD.to_owned()),
        change_required: false,
        verification: Verification::Admin,
    }
}

fn email(s: &str) -> EmailAddress {
    EmailAddress::parse(s).unwrap()
}

#[tokio::test]
async fn another_tenants_user_looks_like_no_user_at_all() {
    let f = Fixture::new().await;
    let target = f.add_user(&f.t1, "target@acme.test").await;
    let unknown = UserId::parse(UNKNOWN_ID).unwrap();
    let before = f.snapshot().await;

    // v2: the stranger's answer equals the answer for an id that names nothing.
    for id in [&target.id, &unknown] {
        f.tick();
        let a = f
            .rekey
            .request_password_reset(&f.admin2, id, Delivery::ReturnCode)
            .await
            .unwrap_err();
        assert_eq!((a.kind, a.id), (ErrorKind::NotFound, "COMMAND-SAF4f"));
        let b = f.send_link(&f.admin2, id).await.unwrap_err();
        let c = f
            .rekey
            .set_password(&f.admin2, admin_set(id))
            .await
            .unwrap_err();
        let d = f.rekey.get_user(&f.admin2, id).await.unwrap_err();
        let e = f
            .rekey
            .transition_user(&f.admin2, id, Transition::Lock)
            .await
            .unwrap_err();
        assert!([&b, &c, &d, &e].iter().all(|err| **err == a));
    }
    // v1 without a header acts in the admin's own tenant: the user is not there.
    let v1 = f
        .rekey
        .send_reset_notification(&f.admin2, None, &target.id, Channel::Email)
        .await
        .unwrap_err();
    let v1_unknown = f
        .rekey
        .send_reset_notification(&f.admin2, None, &unknown, Channel::Email)
        .await
        .unwrap_err();
    assert_eq!(
        (v1.kind, v1.id),
        (ErrorKind::FailedPrecondition, "COMMAND-Hj9ds")
    );
    assert_eq!(v1, v1_unknown);
    // F5 admin reset by email: the admin's own tenant only.
    assert_err(
        f.rekey
            .admin_reset_by_email(&f.admin2, &email("target@acme.test"))
            .await,
        ErrorKind::NotFound,
        "REKEY-UsNF1",
    );
    assert_eq!(f.snapshot().await, before, "nothing written");

    // Its own admin and the system principal reach the user.
    f.send_link(&f.admin1, &target.id).await.unwrap();
    f.send_link(&f.system, &target.id).await.unwrap();
    f.rekey
        .admin_reset_by_email(&f.admin1, &email("TARGET@acme.test"))
        .await
        .unwrap();
    assert_eq!(
        f.messages(&target, MessageKind::PasswordReset).await.len(),
        3
    );
}

#[tokio::test]
async fn the_v1_org_in_context() {
    let f = Fixture::new().await;
    let user = f.add_user(&f.t1, "v1@acme.test").await;
    let pw = || SecretString::from(NEW_PASSWORD.to_owned());

    // A tenant admin may name only its own org.
    assert_err(
        f.rekey
            .send_reset_notification(&f.admin2, Some(f.t1.id.clone()), &user.id, Channel::Email)
            .await,
        ErrorKind::PermissionDenied,
        "AUTHZ-HKJD33",
    );
    assert_err(
        f.rekey
            .admin_set_password_in_org(&f.admin2, Some(f.t1.id.clone()), &user.id, pw(), false)
            .await,
        ErrorKind::PermissionDenied,
        "AUTHZ-HKJD33",
    );
    // The system principal must name one.
    assert_err(
        f.rekey
            .send_reset_notification(&f.system, None, &user.id, Channel::Email)
            .await,
        ErrorKind::InvalidArgument,
        "REKEY-OrgRq",
    );
    // The wrong org for the user: v1's "not found".
    assert_err(
        f.rekey
            .send_reset_notification(&f.system, Some(f.t2.id.clone()), &user.id, Channel::Email)
            .await,
        ErrorKind::FailedPrecondition,
        "COMMAND-Hj9ds",
    );
    assert!(f.outbox().await.is_empty());

    f.tick();
    f.rekey
        .send_reset_notification(&f.system, Some(f.t1.id.clone()), &user.id, Channel::Email)
        .await
        .unwrap();
    f.tick();
    f.rekey
        .send_reset_notification(&f.admin1, Some(f.t1.id.clone()), &user.id, Channel::Email)
        .await
        .unwrap();
    f.tick();
    f.rekey
        .admin_set_password_in_org(&f.admin1, None, &user.id, pw(), false)
        .await
        .unwrap();
    assert!(f.has_password(&user, NEW_PASSWORD).await);
}

#[tokio::test]
async fn what_the_user_role_may_do() {
    let f = Fixture::new().await;
    let me = f.add_user(&f.t1, "me@acme.test").await;
    let neighbour = f.add_user(&f.t1, "neighbour@acme.test").await;
    let (_, caller) = f.user_token(&me).await;
    let before = f.snapshot().await;

    // Not its own code, not an admin set, not v1, not F5's admin routes.
    f.tick();
    assert_err(
        f.rekey
            .request_password_reset(&caller, &me.id, Delivery::ReturnCode)
            .await,
        ErrorKind::PermissionDenied,
        "AUTHZ-HKJD33",
    );
    assert_err(
        f.rekey.set_password(&caller, admin_set(&me.id)).await,
        ErrorKind::PermissionDenied,
        "AUTHZ-HKJD33",
    );
    assert_err(
        f.rekey
            .send_reset_notification(&caller, None, &me.id, Channel::Email)
            .await,
        ErrorKind::PermissionDenied,
        "AUTHZ-HKJD33",
    );
    assert_err(
        f.rekey
            .admin_reset_by_email(&caller, &email("me@acme.test"))
            .await,
        ErrorKind::PermissionDenied,
        "AUTHZ-HKJD33",
    );
    // Another user, even in the same tenant, does not exist for it.
    assert_err(
        f.send_link(&caller, &neighbour.id).await,
        ErrorKind::NotFound,
        "COMMAND-SAF4f",
    );
    assert_eq!(f.snapshot().await, before);

    // A link to itself, by v2 and by F5's self-service route.
    f.send_link(&caller, &me.id).await.unwrap();
    f.tick();
    f.rekey.self_service_reset(&caller).await.unwrap();
    assert_eq!(f.messages(&me, MessageKind::PasswordReset).await.len(), 2);
    // The self-service route is the user's own: an admin has no "self" to reset.
    assert_err(
        f.rekey.self_service_reset(&f.admin1).await,
        ErrorKind::PermissionDenied,
        "AUTHZ-HKJD33",
    );
}

#[tokio::test]
async fn the_system_principal_and_an_ambiguous_email() {
    let f = Fixture::new().await;
    let one = f.add_user(&f.t1, "twice@example.test").await;
    let two = f.add_user(&f.t2, "twice@example.test").await;
    let before = f.snapshot().await;
    let err = assert_err(
        f.rekey
            .admin_reset_by_email(&f.system, &email("twice@example.test"))
            .await,
        ErrorKind::Aborted,
        "REKEY-EmAmb",
    );
    assert_eq!(err.kind.http_status(), 409);
    assert_eq!(f.snapshot().await, before);

    // Each tenant's admin resolves the email in its own tenant.
    f.rekey
        .admin_reset_by_email(&f.admin2, &email("twice@example.test"))
        .await
        .unwrap();
    assert!(f
        .messages(&one, MessageKind::PasswordReset)
        .await
        .is_empty());
    assert_eq!(f.messages(&two, MessageKind::PasswordReset).await.len(), 1);
}

#[tokio::test]
async fn no_principal_is_unauthenticated_everywhere_but_the_code_path() {
    let f = Fixture::new().await;
    let user = f.add_user(&f.t1, "anon@acme.test").await;
    let anon = Caller::default();
    let (kind, id) = (ErrorKind::Unauthenticated, "AUTH-7fs1e");
    f.tick();
    assert_err(
        f.rekey
            .request_password_reset(&anon, &user.id, Delivery::ReturnCode)
            .await,
        kind,
        id,
    );
    assert_err(f.send_link(&anon, &user.id).await, kind, id);
    assert_err(
        f.rekey
            .send_reset_notification(&anon, Some(f.t1.id.clone()), &user.id, Channel::Email)
            .await,
        kind,
        id,
    );
    assert_err(
        f.rekey.set_password(&anon, admin_set(&user.id)).await,
        kind,
        id,
    );
    assert_err(
        f.rekey
            .admin_reset_by_email(&anon, &email("anon@acme.test"))
            .await,
        kind,
        id,
    );
    assert_err(f.rekey.self_service_reset(&anon).await, kind, id);
    assert!(f.outbox().await.is_empty());

    // The code is the proof: no principal needed.
    let code = f.return_code(&user).await;
    f.set_with_code(&user.id, &code, NEW_PASSWORD)
        .await
        .unwrap();
}

/// The faces' reset path checks the token in the read that finds the user: its answers are
/// the answers of `authenticate` followed by `request_password_reset`, for every kind of
/// token (system, own and other tenant's admin, the user, another user, unknown, revoked,
/// expired) and every kind of target (own tenant, other tenant, locked, unknown).
#[tokio::test]
async fn a_reset_by_token_answers_as_authenticate_then_reset() {
    use rekey_core::domain::Role;

    let f = Fixture::new().await;
    let ada = f.add_user(&f.t1, "ada@acme.test").await;
    let bob = f.add_user(&f.t1, "bob@acme.test").await;
    let eve = f.add_user(&f.t2, "eve@acme.test").await;
    let locked = f.add_user(&f.t1, "locked@acme.test").await;
    f.rekey
        .transition_user(&f.admin1, &locked.id, Transition::Lock)
        .await
        .unwrap();
    let unknown = UserId::parse(UNKNOWN_ID).unwrap();

    let (system, _) = f.token(Role::System).await;
    let (admin1, _) = f.token(Role::TenantAdmin(f.t1.id.clone())).await;
    let (admin2, _) = f.token(Role::TenantAdmin(f.t2.id.clone())).await;
    let (as_ada, _) = f.user_token(&ada).await;
    let revoked = f.rekey.create_token(Role::System).await.unwrap();
    f.rekey
        .revoke_token("test", revoked.token.id.as_str())
        .await
        .unwrap();
    let expiring = f
        .rekey
        .create_token_expiring(Role::System, Some(chrono::Duration::minutes(5)))
        .await
        .unwrap();
    f.advance(chrono::Duration::minutes(10));
    let nobody = SecretString::from("rk_not-a-token".to_owned());

    let secrets = [
        ("system", &system),
        ("admin of t1", &admin1),
        ("admin of t2", &admin2),
        ("ada herself", &as_ada),
        ("revoked", &revoked.secret),
        ("expired", &expiring.secret),
        ("unknown", &nobody),
    ];
    let targets = [
        ("ada", &ada.id),
        ("bob", &bob.id),
        ("eve", &eve.id),
        ("locked", &locked.id),
        ("unknown", &unknown),
    ];
    let mut successes = 0;
    for (who, secret) in secrets {
        for (whom, id) in targets {
            // A link to ada too, by ada's token only (the per-user message limit is 3 an hour).
            let link = Delivery::Send {
                channel: Channel::Email,
                url_template: None,
            };
            let deliveries = if who == "ada herself" {
                vec![Delivery::ReturnCode, link]
            } else {
                vec![Delivery::ReturnCode]
            };
            for delivery in deliveries {
                f.tick();
                let old = match f.rekey.authenticate(secret).await {
                    Ok(principal) => {
                        let caller = Caller {
                            principal: Some(principal),
                            ..Fixture::anonymous()
                        };
                        f.rekey
                            .request_password_reset(&caller, id, delivery.clone())
                            .await
                    }
                    Err(err) => Err(err),
                };
                f.tick();
                let new = f
                    .rekey
                    .request_password_reset_with_token(
                        secret,
                        Fixture::anonymous(),
                        id,
                        delivery.clone(),
                    )
                    .await;
                let case = format!("{who} → {whom}, {delivery:?}");
                match (old, new) {
                    (Ok(old), Ok(new)) => {
                        assert_eq!(old.code.is_some(), new.code.is_some(), "{case}");
                        assert_eq!(new.details.sequence, old.details.sequence + 1, "{case}");
                        successes += 1;
                    }
                    (Err(old), Err(new)) => {
                        assert_eq!((old.kind, old.id), (new.kind, new.id), "{case}");
                    }
                    (old, new) => panic!("{case}: {old:?} / {new:?}"),
                }
            }
        }
    }
    // system: ada, bob, eve; admin of t1: ada, bob; admin of t2: eve; ada: herself by link.
    assert_eq!(successes, 3 + 2 + 1 + 1);
}
