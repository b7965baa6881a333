//! Issuing reset codes (SPEC §3.1, §7, §8): what a code looks like and how long it lives, what
//! is queued for each delivery, onboarding versus reset, a new code voiding the old one, and
//! which user states may be reset.

use chrono::Duration;
use rekey_core::domain::reset_code::REKEY_ALPHABET;
use rekey_core::domain::{Channel, CodeKind, MessageKind, OutboxState, UserState};
use rekey_core::flows::Delivery;
use rekey_core::policy::url_template::UrlTemplate;
use rekey_core::ErrorKind;
use secrecy::ExposeSecret;

use crate::support::{assert_err, Fixture, NEW_PASSWORD};

#[tokio::test]
async fn return_code_issues_a_code_and_sends_nothing() {
    let f = Fixture::new().await;
    let user = f.add_user(&f.t1, "ret@acme.test").await;
    f.tick();
    let issued = f
        .rekey
        .request_password_reset(&f.admin1, &user.id, Delivery::ReturnCode)
        .await
        .unwrap();
    let code = issued.code.expect("the code").expose_secret().to_owned();
    assert_eq!(code.len(), 8, "default length");
    assert!(code.bytes().all(|b| REKEY_ALPHABET.contains(&b)), "{code}");
    assert!(issued.message_id.is_none());
    assert!(f.outbox().await.is_empty(), "return_code sends nothing");

    assert_eq!(issued.details.sequence, user.sequence + 1);
    assert_eq!(issued.details.resource_owner, f.t1.id);
    assert_eq!(issued.details.change_date, f.now());
    assert_eq!(issued.details.creation_date, None);

    let pending = f.pending_code(&user).await.expect("a pending code");
    assert_eq!(pending.kind, CodeKind::Reset);
    assert_eq!(pending.expires_at, f.now() + Duration::hours(1));
    assert_eq!(pending.attempts, 0);
    assert!(
        !pending
            .mac
            .windows(code.len())
            .any(|w| w == code.as_bytes()),
        "only a MAC of the code is stored"
    );
}

#[tokio::test]
async fn send_link_queues_a_sealed_message_with_the_default_link() {
    let f = Fixture::new().await;
    let user = f.add_user(&f.t1, "link@acme.test").await;
    let issued = f.send_link(&f.admin1, &user.id).await.unwrap();
    assert!(issued.code.is_none(), "a sent code is not returned");

    let messages = f.messages(&user, MessageKind::PasswordReset).await;
    assert_eq!(messages.len(), 1);
    let message = &messages[0];
    assert_eq!(issued.message_id.as_ref(), Some(&message.id));
    assert_eq!(message.channel, Channel::Email);
    assert_eq!(message.recipient.as_deref(), Some("link@acme.test"));
    assert_eq!(message.state, OutboxState::Pending);
    assert_eq!(message.tenant_id, f.t1.id);

    let payload = f.open(message);
    let code = payload.code.clone().expect("the code");
    assert!(
        !String::from_utf8_lossy(&message.body).contains(&code),
        "the body is sealed"
    );
    assert_eq!(
        payload.link.as_deref(),
        Some(
            format!(
                "http://127.0.0.1:8080/ui/password/reset?userID={}&code={code}&orgID={}",
                user.id, f.t1.id
            )
            .as_str()
        )
    );
    assert_eq!(payload.expires_at, Some(f.now() + Duration::hours(1)));
    assert_eq!(message.body_expires_at, payload.expires_at);

    // The sent code is the pending one.
    f.set_with_code(&user.id, &code, NEW_PASSWORD)
        .await
        .unwrap();
    assert!(f.has_password(&user, NEW_PASSWORD).await);
}

#[tokio::test]
async fn a_given_url_template_is_rendered_and_escaped() {
    let f = Fixture::new().await;
    let user = f.add_user(&f.t1, "tmpl@acme.test").await;
    f.tick();
    let template =
        UrlTemplate::parse("https://app.example/r?u={{.UserID}}&c={{ .Code }}&o={{.OrgID}}")
            .unwrap();
    f.rekey
        .request_password_reset(
            &f.admin1,
            &user.id,
            Delivery::Send {
                channel: Channel::Email,
                url_template: Some(template),
            },
        )
        .await
        .unwrap();
    let code = f.sent_code(&user).await;
    let message = &f.messages(&user, MessageKind::PasswordReset).await[0];
    assert_eq!(
        f.open(message).link.as_deref(),
        Some(format!("https://app.example/r?u={}&c={code}&o={}", user.id, f.t1.id).as_str())
    );
}

#[tokio::test]
async fn an_initial_user_gets_the_onboarding_code_and_message() {
    let f = Fixture::new().await;
    let user = f.add_initial_user(&f.t1, "newbie@acme.test").await;
    assert_eq!(user.state, UserState::Initial);
    f.send_link(&f.admin1, &user.id).await.unwrap();

    let pending = f.pending_code(&user).await.unwrap();
    assert_eq!(pending.kind, CodeKind::Init);
    assert_eq!(pending.expires_at, f.now() + Duration::hours(72));
    assert!(f
        .messages(&user, MessageKind::PasswordReset)
        .await
        .is_empty());
    let messages = f.messages(&user, MessageKind::PasswordInit).await;
    assert_eq!(messages.len(), 1);
    let payload = f.open(&messages[0]);
    let link = payload.link.unwrap();
    assert!(
        link.starts_with("http://127.0.0.1:8080/ui/password/set?userID="),
        "{link}"
    );

    // The onboarding code sets the first password and activates the user.
    f.set_with_code(&user.id, &payload.code.unwrap(), NEW_PASSWORD)
        .await
        .unwrap();
    let stored = f.user(&user).await;
    assert_eq!(stored.state, UserState::Active);
    assert!(f.has_password(&user, NEW_PASSWORD).await);

    // From now on the user gets ordinary reset codes.
    f.return_code(&user).await;
    assert_eq!(f.pending_code(&user).await.unwrap().kind, CodeKind::Reset);
}

#[tokio::test]
async fn a_new_code_voids_the_older_one() {
    let f = Fixture::new().await;
    let user = f.add_user(&f.t1, "void@acme.test").await;
    let old = f.return_code(&user).await;
    let old_id = f.pending_code(&user).await.unwrap().id;
    let new = f.return_code(&user).await;
    assert_ne!(old, new);
    let pending = f.pending_code(&user).await.unwrap();
    assert_ne!(pending.id, old_id, "only the latest code is pending");

    // The old code is judged against the new one: wrong, and it costs the new code an attempt.
    let err = assert_err(
        f.set_with_code(&user.id, &old, NEW_PASSWORD).await,
        ErrorKind::InvalidArgument,
        "CODE-woT0xc",
    );
    assert_eq!(err.text, "Code is invalid");
    assert_eq!(f.attempts(&user).await, 1);

    f.set_with_code(&user.id, &new, NEW_PASSWORD).await.unwrap();
    assert_err(
        f.set_with_code(&user.id, &old, NEW_PASSWORD).await,
        ErrorKind::FailedPrecondition,
        "COMMAND-2M9fs",
    );
}

#[tokio::test]
async fn inactive_locked_and_deleted_users_cannot_be_reset() {
    let f = Fixture::new().await;
    let inactive = f.add_user(&f.t1, "inactive@acme.test").await;
    let locked = f.add_user(&f.t1, "locked@acme.test").await;
    let deleted = f.add_user(&f.t1, "deleted@acme.test").await;
    f.set_state(&inactive, UserState::Inactive).await;
    f.set_state(&locked, UserState::Locked).await;
    f.set_state(&deleted, UserState::Deleted).await;
    let before = f.snapshot().await;

    for (user, kind, id) in [
        (&inactive, ErrorKind::FailedPrecondition, "REKEY-UsIna"),
        (&locked, ErrorKind::FailedPrecondition, "REKEY-UsLck"),
        (&deleted, ErrorKind::NotFound, "COMMAND-SAF4f"),
    ] {
        for caller in [&f.admin1, &f.system] {
            f.tick();
            assert_err(
                f.rekey
                    .request_password_reset(caller, &user.id, Delivery::ReturnCode)
                    .await,
                kind,
                id,
            );
            assert_err(f.send_link(caller, &user.id).await, kind, id);
        }
    }
    assert_eq!(f.snapshot().await, before, "a refused reset writes nothing");

    // Back to active, the same user may be reset again.
    f.set_state(&locked, UserState::Active).await;
    f.send_link(&f.admin1, &locked.id).await.unwrap();
}

#[tokio::test]
async fn sms_to_a_user_without_a_phone_is_parked_without_its_code() {
    let f = Fixture::new().await;
    let no_phone = f.add_user(&f.t1, "nophone@acme.test").await;
    let with_phone = f
        .add_user_with(
            &f.t1,
            "phone@acme.test",
            Some("+41791234567"),
            Some("correct horse battery staple"),
        )
        .await;
    for user in [&no_phone, &with_phone] {
        f.tick();
        f.rekey
            .request_password_reset(
                &f.admin1,
                &user.id,
                Delivery::Send {
                    channel: Channel::Sms,
                    url_template: None,
                },
            )
            .await
            .unwrap();
    }
    let parked = &f.messages(&no_phone, MessageKind::PasswordReset).await[0];
    assert_eq!(parked.channel, Channel::Sms);
    assert_eq!(parked.state, OutboxState::Failed);
    assert_eq!(parked.last_error.as_deref(), Some("no phone"));
    assert!(
        parked.body.is_empty(),
        "a message that cannot be sent keeps no code"
    );
    assert_eq!(parked.recipient, None);

    let queued = &f.messages(&with_phone, MessageKind::PasswordReset).await[0];
    assert_eq!(queued.state, OutboxState::Pending);
    assert_eq!(queued.recipient.as_deref(), Some("+41791234567"));
}

#[tokio::test]
async fn an_operator_id_that_is_no_valid_id_names_no_message() {
    // SPEC §1: an id that names nothing is "not found", never a format error — also when it
    // is empty or longer than any id can be.
    let f = Fixture::new().await;
    let user = f.add_user(&f.t1, "ops@acme.test").await;
    f.send_link(&f.admin1, &user.id).await.unwrap();
    let before = f.snapshot().await;
    for id in [String::new(), "9".repeat(201), "no-such-message".to_owned()] {
        assert_err(
            f.rekey.retry_outbox_message("test", &id).await,
            ErrorKind::NotFound,
            "REKEY-ObNF",
        );
        assert_eq!(f.rekey.outbox_message(&id).await.unwrap(), None);
    }
    assert_eq!(f.snapshot().await, before);
}

/// The caller's request id tags what its call queues — the reset mail, and the "password
/// changed" notice of the request that uses the code — so the worker's lines for each name
/// the request behind it; a message queued outside a request (the CLI) has none.
#[tokio::test]
async fn queued_messages_carry_the_request_id_of_their_call() {
    let f = Fixture::new().await;
    let user = f.add_user(&f.t1, "tagged@acme.test").await;
    let admin = rekey_core::flows::Caller {
        request_id: Some("req-reset".to_owned()),
        ..f.admin1.clone()
    };
    f.send_link(&admin, &user.id).await.unwrap();
    let reset = f.messages(&user, MessageKind::PasswordReset).await;
    assert_eq!(reset[0].request_id.as_deref(), Some("req-reset"));

    let code = f.sent_code(&user).await;
    let anonymous = rekey_core::flows::Caller {
        request_id: Some("req-code".to_owned()),
        ..Fixture::anonymous()
    };
    f.set_with_code_as(&anonymous, &user.id, &code, NEW_PASSWORD)
        .await
        .unwrap();
    let changed = f.messages(&user, MessageKind::PasswordChanged).await;
    assert_eq!(changed[0].request_id.as_deref(), Some("req-code"));

    let other = f.add_user(&f.t1, "untagged@acme.test").await;
    f.send_link(&f.admin1, &other.id).await.unwrap();
    let untagged = f.messages(&other, MessageKind::PasswordReset).await;
    assert_eq!(untagged[0].request_id, None);
}
