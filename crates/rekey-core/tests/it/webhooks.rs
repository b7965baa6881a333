//! Webhook events (SPEC §10, §12): queued in the transaction of the change they report, one
//! outbox row per configured URL, never with a secret in the body.

use rekey_core::domain::{Channel, MessageKind, OutboxMessage, OutboxState, User};
use rekey_core::flows::{SetPassword, Verification};
use rekey_core::policy::Config;
use rekey_core::ErrorKind;
use secrecy::SecretString;
use serde_json::Value;

use crate::support::{assert_err, wrong_for, Fixture, NEW_PASSWORD, START_PASSWORD};

const URLS: [&str; 2] = [
    "https://idp.example/rekey-events",
    "http://127.0.0.1:9000/hook",
];

async fn fixture() -> Fixture {
    Fixture::with_config(Config {
        event_webhooks: URLS.iter().map(|u| (*u).to_owned()).collect(),
        ..Config::default()
    })
    .await
}

/// The webhook rows in the outbox, oldest first.
async fn event_rows(f: &Fixture) -> Vec<OutboxMessage> {
    f.outbox()
        .await
        .into_iter()
        .filter(|m| m.channel == Channel::Webhook)
        .collect()
}

/// The opened body of a webhook row, as the receiver gets it.
fn body(f: &Fixture, m: &OutboxMessage) -> (String, Value) {
    assert_eq!((m.channel, m.kind), (Channel::Webhook, MessageKind::Event));
    let plain = f
        .deps
        .sealer
        .open(&m.key_id, m.id.as_str().as_bytes(), &m.body)
        .expect("the row opens");
    let text = String::from_utf8(plain).unwrap();
    let json = serde_json::from_str(&text).unwrap();
    (text, json)
}

/// The last `URLS.len()` rows are one event to each URL (same event id, own row ids); its body.
fn one_event_per_url(f: &Fixture, rows: &[OutboxMessage], kind: &str, user: &User) -> Value {
    assert!(rows.len() >= URLS.len(), "{rows:?}");
    let last = &rows[rows.len() - URLS.len()..];
    let bodies: Vec<Value> = last.iter().map(|m| body(f, m).1).collect();
    let mut recipients: Vec<&str> = last.iter().filter_map(|m| m.recipient.as_deref()).collect();
    recipients.sort_unstable();
    let mut urls = URLS.to_vec();
    urls.sort_unstable();
    assert_eq!(recipients, urls, "one row to each URL");
    for m in last {
        assert_eq!(m.state, OutboxState::Pending);
        assert_eq!(m.body_expires_at, None);
        assert_eq!((&m.tenant_id, &m.user_id), (&user.tenant_id, &user.id));
    }
    assert_ne!(last[0].id, last[1].id, "a row per URL");
    assert_eq!(bodies[0], bodies[1], "the same event to every URL");
    let event = bodies[0].clone();
    assert_eq!(event["type"], kind);
    assert_eq!(event["tenant_id"], user.tenant_id.as_str());
    assert_eq!(event["user_id"], user.id.as_str());
    assert_eq!(
        event.as_object().unwrap().keys().collect::<Vec<_>>(),
        [
            "at",
            "id",
            "ip",
            "principal",
            "tenant_id",
            "type",
            "user_id"
        ]
    );
    event
}

/// No secret of the user in any event body: not the code, password, hash, email or link.
fn assert_no_secrets(f: &Fixture, rows: &[OutboxMessage], secrets: &[&str]) {
    for m in rows {
        let (text, _) = body(f, m);
        for secret in secrets {
            assert!(!secret.is_empty());
            assert!(
                !text.to_lowercase().contains(&secret.to_lowercase()),
                "{secret:?} in {text}"
            );
        }
        for word in ["\"code\":", "password\":", "link", "email", "hash", "token"] {
            assert!(!text.contains(word), "{word} in {text}");
        }
    }
}

#[tokio::test]
async fn a_password_change_by_code_queues_one_event_per_url_in_its_transaction() {
    let f = fixture().await;
    let user = f.add_user(&f.t1, "events@acme.test").await;
    let code = f.return_code(&user).await;
    let requested = event_rows(&f).await;
    assert_eq!(requested.len(), 2, "reset_requested, to each URL");
    let event = one_event_per_url(&f, &requested, "user.password.reset_requested", &user);
    assert_eq!(event["principal"], "tenant_admin");
    assert_eq!(event["ip"], "192.0.2.10");

    // A refused password changes nothing, so no event either.
    f.set_with_code(&user.id, &code, "short").await.unwrap_err();
    assert_eq!(event_rows(&f).await.len(), 2);

    f.set_with_code_as(
        &Fixture::anonymous_from("198.51.100.7"),
        &user.id,
        &code,
        NEW_PASSWORD,
    )
    .await
    .unwrap();
    let rows = event_rows(&f).await;
    assert_eq!(rows.len(), 4);
    let changed = one_event_per_url(&f, &rows, "user.password.changed", &user);
    assert_eq!(changed["principal"], "code");
    assert_eq!(changed["ip"], "198.51.100.7");
    assert_ne!(changed["id"], event["id"], "each event has its own id");
    // `at` is the change's own time: the user's change date, as RFC 3339.
    let at = chrono::DateTime::parse_from_rfc3339(changed["at"].as_str().unwrap()).unwrap();
    assert_eq!(at, f.user(&user).await.change_date);

    let hash = f.user(&user).await.password_hash.unwrap();
    assert_no_secrets(
        &f,
        &rows,
        &[
            &code,
            NEW_PASSWORD,
            START_PASSWORD,
            &hash,
            user.email.as_str(),
        ],
    );
}

#[tokio::test]
async fn every_password_change_path_queues_its_event_with_its_principal() {
    let f = fixture().await;
    let user = f.add_user(&f.t1, "paths@acme.test").await;

    // By the user, with the current password.
    let (_, me) = f.user_token(&user).await;
    f.rekey
        .set_password(
            &me,
            SetPassword {
                user_id: user.id.clone(),
                new_password: SecretString::from(NEW_PASSWORD.to_owned()),
                change_required: false,
                verification: Verification::CurrentPassword(SecretString::from(
                    START_PASSWORD.to_owned(),
                )),
            },
        )
        .await
        .unwrap();
    let rows = event_rows(&f).await;
    assert_eq!(rows.len(), 2);
    let by_user = one_event_per_url(&f, &rows, "user.password.changed", &user);
    assert_eq!(by_user["principal"], "user");

    // By an admin (v2), and by the system (v1 SetHumanPassword).
    f.tick();
    f.rekey
        .set_password(
            &f.admin1,
            SetPassword {
                user_id: user.id.clone(),
                new_password: SecretString::from("an admin's new passphrase".to_owned()),
                change_required: true,
                verification: Verification::Admin,
            },
        )
        .await
        .unwrap();
    let rows = event_rows(&f).await;
    assert_eq!(rows.len(), 4);
    let by_admin = one_event_per_url(&f, &rows, "user.password.changed", &user);
    assert_eq!(by_admin["principal"], "tenant_admin");

    f.tick();
    f.rekey
        .admin_set_password_in_org(
            &f.system,
            Some(f.t1.id.clone()),
            &user.id,
            SecretString::from("the system's passphrase".to_owned()),
            false,
        )
        .await
        .unwrap();
    let rows = event_rows(&f).await;
    assert_eq!(rows.len(), 6);
    let by_system = one_event_per_url(&f, &rows, "user.password.changed", &user);
    assert_eq!(by_system["principal"], "system");

    // The first password of an onboarding user (v1 SetHumanInitialPassword).
    let newbie = f.add_initial_user(&f.t1, "newbie@acme.test").await;
    f.tick();
    f.rekey
        .admin_set_password_in_org(
            &f.admin1,
            None,
            &newbie.id,
            SecretString::from("a first passphrase here".to_owned()),
            false,
        )
        .await
        .unwrap();
    let rows = event_rows(&f).await;
    assert_eq!(rows.len(), 8);
    one_event_per_url(&f, &rows, "user.password.changed", &newbie);

    assert_no_secrets(
        &f,
        &rows,
        &[
            NEW_PASSWORD,
            START_PASSWORD,
            "an admin's new passphrase",
            "the system's passphrase",
            "a first passphrase here",
            user.email.as_str(),
            newbie.email.as_str(),
        ],
    );
}

#[tokio::test]
async fn a_sent_reset_queues_reset_requested_next_to_its_message() {
    let f = fixture().await;
    let user = f.add_user(&f.t1, "link@acme.test").await;
    let issued = f.send_link(&f.admin1, &user.id).await.unwrap();
    let code = f.sent_code(&user).await;
    let rows = event_rows(&f).await;
    assert_eq!(rows.len(), 2);
    one_event_per_url(&f, &rows, "user.password.reset_requested", &user);
    // The email message is still the one the flow reports.
    let mail = f.messages(&user, MessageKind::PasswordReset).await;
    assert_eq!(Some(&mail[0].id), issued.message_id.as_ref());
    let link = f.open(&mail[0]).link.unwrap();
    assert_no_secrets(&f, &rows, &[&code, &link, user.email.as_str()]);
}

#[tokio::test]
async fn no_auth_queues_reset_requested_for_an_account_and_nothing_for_an_unknown_one() {
    let f = fixture().await;
    let user = f.add_user(&f.t1, "known@acme.test").await;
    let before = f.snapshot().await;
    f.no_auth("192.0.2.1", "acme.test", "nobody@acme.test")
        .await
        .unwrap();
    f.no_auth("192.0.2.1", "unknown.test", "known@acme.test")
        .await
        .unwrap();
    assert!(event_rows(&f).await.is_empty(), "nothing for no account");
    assert_eq!(f.snapshot().await.outbox, before.outbox);

    f.no_auth("192.0.2.1", "acme.test", "known@acme.test")
        .await
        .unwrap();
    let rows = event_rows(&f).await;
    assert_eq!(rows.len(), 2);
    let event = one_event_per_url(&f, &rows, "user.password.reset_requested", &user);
    assert_eq!(event["principal"], "anonymous");
    assert_eq!(event["ip"], "192.0.2.1");
    let code = f.sent_code(&user).await;
    assert_no_secrets(&f, &rows, &[&code, user.email.as_str()]);
}

#[tokio::test]
async fn the_wrong_try_that_kills_a_code_queues_code_locked_with_it() {
    let f = fixture().await;
    let user = f.add_user(&f.t1, "locked@acme.test").await;
    let code = f.return_code(&user).await;
    let wrong = wrong_for(&code);
    for _ in 0..4 {
        assert_err(
            f.set_with_code(&user.id, &wrong, NEW_PASSWORD).await,
            ErrorKind::InvalidArgument,
            "CODE-woT0xc",
        );
    }
    assert_eq!(event_rows(&f).await.len(), 2, "only reset_requested so far");
    let events_before = f.user_events(&user).await.len();
    let sequence = f.user(&user).await.sequence;

    // The fifth wrong try kills the code, and queues the event with its counted attempt.
    f.set_with_code_as(
        &Fixture::anonymous_from("203.0.113.9"),
        &user.id,
        &wrong,
        NEW_PASSWORD,
    )
    .await
    .unwrap_err();
    assert_eq!(f.attempts(&user).await, 5);
    let rows = event_rows(&f).await;
    assert_eq!(rows.len(), 4);
    let locked = one_event_per_url(&f, &rows, "user.code.locked", &user);
    assert_eq!(locked["principal"], "code");
    assert_eq!(locked["ip"], "203.0.113.9");
    // Still no audit event and no sequence change for a wrong code (SPEC §7).
    assert_eq!(f.user_events(&user).await.len(), events_before);
    assert_eq!(f.user(&user).await.sequence, sequence);

    // Later tries, the right code included, queue nothing more.
    f.set_with_code(&user.id, &wrong, NEW_PASSWORD)
        .await
        .unwrap_err();
    f.set_with_code(&user.id, &code, NEW_PASSWORD)
        .await
        .unwrap_err();
    assert_eq!(event_rows(&f).await.len(), 4);
    assert_no_secrets(
        &f,
        &rows,
        &[&code, &wrong, NEW_PASSWORD, user.email.as_str()],
    );
}

#[tokio::test]
async fn a_right_code_on_the_last_try_is_no_lock() {
    let f = fixture().await;
    let user = f.add_user(&f.t1, "last@acme.test").await;
    let code = f.return_code(&user).await;
    for _ in 0..4 {
        f.set_with_code(&user.id, &wrong_for(&code), NEW_PASSWORD)
            .await
            .unwrap_err();
    }
    f.set_with_code(&user.id, &code, NEW_PASSWORD)
        .await
        .unwrap();
    let rows = event_rows(&f).await;
    let kinds: Vec<Value> = rows.iter().map(|m| body(&f, m).1["type"].clone()).collect();
    assert_eq!(
        kinds,
        [
            "user.password.reset_requested",
            "user.password.reset_requested",
            "user.password.changed",
            "user.password.changed"
        ]
    );
}

#[tokio::test]
async fn without_a_webhook_no_event_is_queued() {
    let f = Fixture::new().await;
    let user = f.add_user(&f.t1, "quiet@acme.test").await;
    let code = f.return_code(&user).await;
    f.set_with_code(&user.id, &code, NEW_PASSWORD)
        .await
        .unwrap();
    assert!(event_rows(&f).await.is_empty());
}

#[tokio::test]
async fn of_two_racing_uses_of_one_code_only_the_winner_queues_an_event() {
    let f = fixture().await;
    let user = f.add_user(&f.t1, "race@acme.test").await;
    let code = f.return_code(&user).await;
    let (a, b) = tokio::join!(
        f.set_with_code(&user.id, &code, NEW_PASSWORD),
        f.set_with_code(&user.id, &code, "another new passphrase"),
    );
    assert_eq!(u8::from(a.is_ok()) + u8::from(b.is_ok()), 1, "{a:?} {b:?}");
    let rows = event_rows(&f).await;
    assert_eq!(rows.len(), 4, "reset_requested and one password.changed");
    one_event_per_url(&f, &rows, "user.password.changed", &user);
}

/// Event rows name the request behind them, as the messages of the same call do, so the
/// worker's delivery lines for a webhook carry the request id too.
#[tokio::test]
async fn event_rows_carry_the_request_id_of_their_call() {
    let f = fixture().await;
    let user = f.add_user(&f.t1, "tagged@acme.test").await;
    let admin = rekey_core::flows::Caller {
        request_id: Some("req-reset".to_owned()),
        ..f.admin1.clone()
    };
    f.send_link(&admin, &user.id).await.unwrap();
    let requested = event_rows(&f).await;
    assert_eq!(requested.len(), URLS.len());
    assert!(requested
        .iter()
        .all(|m| m.request_id.as_deref() == Some("req-reset")));

    let code = f.sent_code(&user).await;
    let holder = rekey_core::flows::Caller {
        request_id: Some("req-code".to_owned()),
        ..Fixture::anonymous()
    };
    // A wrong try that uses up the code's last attempt queues `user.code.locked`.
    for _ in 0..5 {
        let _ = f
            .set_with_code_as(&holder, &user.id, &wrong_for(&code), NEW_PASSWORD)
            .await;
    }
    let rows = event_rows(&f).await;
    let locked = &rows[URLS.len()..];
    assert_eq!(locked.len(), URLS.len(), "{rows:?}");
    assert!(locked
        .iter()
        .all(|m| m.request_id.as_deref() == Some("req-code")));

    let other = f.add_user(&f.t1, "changed@acme.test").await;
    let code = f.return_code(&other).await;
    f.set_with_code_as(&holder, &other.id, &code, NEW_PASSWORD)
        .await
        .unwrap();
    let rows = event_rows(&f).await;
    let changed = &rows[rows.len() - URLS.len()..];
    assert!(changed
        .iter()
        .all(|m| m.request_id.as_deref() == Some("req-code")));
}
