//! The unauthenticated reset (F5 `no_auth/send_password_email`, the forgot page; SPEC §4,
//! §10): it never tells whether the tenant or the email exists. At the flow level every input
//! that passed validation gets the same `Ok(())`; only an account that may be reset gets a
//! message and an event, and nothing at all is written for the rest.

use rekey_core::domain::{MessageKind, OutboxState, UserState};

use crate::support::{Fixture, NEW_PASSWORD};

#[tokio::test]
async fn a_known_address_gets_a_reset_message() {
    let f = Fixture::new().await;
    let user = f.add_user(&f.t1, "known@acme.test").await;
    f.no_auth("192.0.2.1", "acme.test", "Known@Acme.Test")
        .await
        .unwrap();

    let messages = f.messages(&user, MessageKind::PasswordReset).await;
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].state, OutboxState::Pending);
    assert_eq!(messages[0].recipient.as_deref(), Some("known@acme.test"));
    let last = f.user_events(&user).await.pop().unwrap();
    assert_eq!(last.kind, "user.password.code.added");
    assert_eq!(last.actor, "anonymous");
    assert_eq!(last.ip.as_deref(), Some("192.0.2.1"));

    let code = f.sent_code(&user).await;
    f.set_with_code(&user.id, &code, NEW_PASSWORD)
        .await
        .unwrap();
}

#[tokio::test]
async fn an_onboarding_user_gets_the_set_your_password_message() {
    let f = Fixture::new().await;
    let user = f.add_initial_user(&f.t1, "newbie@acme.test").await;
    f.no_auth("192.0.2.1", "acme.test", "newbie@acme.test")
        .await
        .unwrap();
    assert_eq!(f.messages(&user, MessageKind::PasswordInit).await.len(), 1);
}

#[tokio::test]
async fn unknown_tenants_emails_and_unresettable_users_look_the_same_and_get_nothing() {
    let f = Fixture::new().await;
    let inactive = f.add_user(&f.t1, "inactive@acme.test").await;
    let locked = f.add_user(&f.t1, "locked@acme.test").await;
    let deleted = f.add_user(&f.t1, "deleted@acme.test").await;
    f.add_user(&f.t2, "elsewhere@globex.test").await;
    f.set_state(&inactive, UserState::Inactive).await;
    f.set_state(&locked, UserState::Locked).await;
    f.set_state(&deleted, UserState::Deleted).await;
    let before = f.snapshot().await;

    let known = f.add_user(&f.t1, "known@acme.test").await;
    let answer_for_known = f.no_auth("192.0.2.1", "acme.test", "known@acme.test").await;
    assert_eq!(
        f.messages(&known, MessageKind::PasswordReset).await.len(),
        1
    );

    let mut answers = Vec::new();
    for (cname, email) in [
        ("acme.test", "nobody@acme.test"),
        ("nowhere.test", "known@acme.test"),
        ("nowhere.test", "nobody@nowhere.test"),
        // A user of another tenant is unknown in this one.
        ("acme.test", "elsewhere@globex.test"),
        ("acme.test", "inactive@acme.test"),
        ("acme.test", "locked@acme.test"),
        ("acme.test", "deleted@acme.test"),
    ] {
        answers.push(f.no_auth("192.0.2.1", cname, email).await);
    }
    for answer in &answers {
        assert_eq!(answer, &answer_for_known, "the same answer for every input");
    }
    // Only the known user's code and message were written.
    let mut after = f.snapshot().await.without_user(&known);
    assert_eq!(
        after.events,
        before.events + 2,
        "user.added + code.added of `known`"
    );
    after.events = before.events;
    assert_eq!(after.outbox.len(), 1);
    after.outbox.clear();
    assert_eq!(after, before, "nothing written for the others");
}

#[tokio::test]
async fn a_user_over_their_message_limit_is_answered_as_if_sent() {
    let f = Fixture::new().await;
    let user = f.add_user(&f.t1, "busy@acme.test").await;
    for _ in 0..5 {
        f.send_link(&f.admin1, &user.id).await.unwrap();
    }
    let before = f.snapshot().await;
    // A 429 here would reveal the account: it answers Ok and sends nothing.
    f.no_auth("192.0.2.1", "acme.test", "busy@acme.test")
        .await
        .unwrap();
    assert_eq!(f.snapshot().await, before);
    assert_eq!(f.messages(&user, MessageKind::PasswordReset).await.len(), 5);
}
