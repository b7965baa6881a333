//! Erasure (SPEC §12): deleting a user — ZITADEL's DeleteUser or the CLI's `set-state deleted`
//! — erases their personal data at once, in the deletion's transaction: nothing of their email,
//! phone, names or password hash is left in their row, the email index, their messages or the
//! audit trail, which keeps ids only; the address can be given to a new user.

use rekey_core::domain::{erased_email, Event, MessageKind, OutboxState, Transition, User};
use rekey_core::domain::{EmailAddress, UserState};
use rekey_core::ErrorKind;

use crate::support::{assert_err, principal, Fixture};

const EMAIL: &str = "Erin.Erased@acme.test";
const PHONE: &str = "+41791234567";

/// Every trace of `user`'s personal data that could be left: their row, their messages (body
/// and recipient), their events (payload and client address — but for the deletion's own
/// event, whose address is the admin's), and who holds their address in the email index.
async fn assert_erased(f: &Fixture, user: &User) {
    let row = f.user(user).await;
    assert_eq!(row.state, UserState::Deleted);
    assert_eq!(row.email, erased_email(&user.id));
    assert_eq!(row.phone, None);
    assert!(!row.email_verified && !row.phone_verified);
    assert_eq!(
        [
            &row.username,
            &row.first_name,
            &row.last_name,
            &row.display_name
        ],
        [""; 4]
    );
    assert_eq!(row.password_hash, None);
    assert!(
        f.store()
            .users_by_email(Some(&user.tenant_id), EMAIL)
            .await
            .unwrap()
            .is_empty(),
        "the address names nobody in the tenant"
    );

    let messages: Vec<_> = f
        .outbox()
        .await
        .into_iter()
        .filter(|m| m.user_id == user.id)
        .collect();
    assert!(!messages.is_empty());
    for m in &messages {
        assert!(m.body.is_empty(), "{}: body erased", m.id);
        assert_eq!(m.recipient, None, "{}: recipient erased", m.id);
        assert_ne!(m.state, OutboxState::Pending, "{}: never sent now", m.id);
    }

    let events: Vec<Event> = f.user_events(user).await;
    let (deletion, earlier) = events.split_last().unwrap();
    assert_eq!(deletion.payload["to"], "deleted");
    for e in &events {
        let text = e.payload.to_string().to_lowercase();
        for personal in [EMAIL, PHONE, "erin", "test user", "$argon2"] {
            assert!(
                !text.contains(&personal.to_lowercase()),
                "{} holds {personal:?}: {text}",
                e.kind
            );
        }
    }
    for e in earlier {
        assert_eq!(e.ip, None, "{}: client address erased", e.kind);
    }
}

#[tokio::test]
async fn delete_user_erases_personal_data_at_once() {
    let f = Fixture::new().await;
    let user = f
        .add_user_with(
            &f.t1,
            EMAIL,
            Some(PHONE),
            Some(crate::support::START_PASSWORD),
        )
        .await;
    let bystander = f.add_user(&f.t1, "stays@acme.test").await;
    // A sent message, a pending one, a code returned, an unauthenticated request from an
    // address, a user token.
    f.send_link(&f.admin1, &user.id).await.unwrap();
    let sent = f.messages(&user, MessageKind::PasswordReset).await[0]
        .id
        .clone();
    assert!(f
        .store()
        .mark_outbox_sent(&user.tenant_id, &sent, f.now())
        .await
        .unwrap());
    f.send_link(&f.admin1, &user.id).await.unwrap();
    f.no_auth("198.51.100.7", "acme.test", EMAIL).await.unwrap();
    f.return_code(&user).await;
    f.send_link(&f.admin1, &bystander.id).await.unwrap();
    let (secret, _) = f.user_token(&user).await;
    let before = f.user(&bystander).await;

    f.tick();
    f.rekey
        .transition_user(&f.admin1, &user.id, Transition::Delete)
        .await
        .unwrap();

    assert_erased(&f, &user).await;
    let deletion = f.user_events(&user).await.pop().unwrap();
    assert_eq!(deletion.kind, "user.removed");
    assert_eq!(
        deletion.actor,
        format!("token:{}", principal(&f.admin1).token_id)
    );
    assert!(f.rekey.authenticate(&secret).await.is_err());
    assert!(f.pending_code(&user).await.is_none());
    // Nobody else is touched.
    assert_eq!(f.user(&bystander).await, before);
    let theirs = f.messages(&bystander, MessageKind::PasswordReset).await;
    assert!(theirs
        .iter()
        .all(|m| !m.body.is_empty() && m.recipient.is_some()));

    // An erased message is never resent: its user is gone.
    let parked = f.messages(&user, MessageKind::PasswordReset).await;
    let parked = parked.last().unwrap();
    assert_eq!(parked.state, OutboxState::Failed);
    assert_err(
        f.rekey
            .retry_outbox_message("cli", parked.id.as_str())
            .await,
        ErrorKind::NotFound,
        "COMMAND-SAF4f",
    );

    // The address (any case) can be given to a new user of the tenant.
    let again = f.add_user(&f.t1, &EMAIL.to_uppercase()).await;
    let found = f
        .store()
        .users_by_email(Some(&f.t1.id), EMAIL)
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].id, again.id);
}

#[tokio::test]
async fn the_clis_set_state_deleted_erases_as_well() {
    let f = Fixture::new().await;
    let user = f
        .add_user_with(
            &f.t2,
            EMAIL,
            Some(PHONE),
            Some(crate::support::START_PASSWORD),
        )
        .await;
    f.send_link(&f.admin2, &user.id).await.unwrap();
    f.set_state(&user, UserState::Deleted).await;
    assert_erased(&f, &user).await;
    // The placeholder is no address: it can never be asked for, nor collide with one.
    assert!(EmailAddress::parse(erased_email(&user.id).as_str()).is_err());
}
