//! Parked messages and the admin retry (SPEC §8, §11): a message that can never be sent keeps
//! no body; a failed message loses its body once its code expired; a retry resends a message
//! that is still good and re-issues a fresh code for one that is not — never a dead code.

use chrono::Duration;
use rekey_core::domain::{Channel, MessageId, MessageKind, OutboxState};
use rekey_core::flows::Retried;
use rekey_testkit::DbKind;
use serde_json::json;

use crate::helpers::{both_dbs, spawn_app, Auth, TestApp};

both_dbs!(
    a_message_without_an_address_is_parked_without_its_body,
    a_still_good_message_is_requeued_as_it_is,
    an_expired_message_is_reissued_with_a_fresh_code,
    retry_refuses_what_is_not_a_failed_message,
);

/// Queues an email reset for `user` and parks it as failed, as the worker does after its
/// last attempt. Returns the message id.
async fn parked_reset(app: &TestApp, user: &rekey_core::domain::User) -> MessageId {
    app.password_reset(
        user.id.as_str(),
        Auth::Bearer(&app.admin1),
        &json!({"sendLink": {}}),
    )
    .await
    .ok();
    let message = app
        .messages(user, MessageKind::PasswordReset)
        .await
        .pop()
        .expect("a queued message");
    assert!(app
        .store()
        .park_outbox_failed(&message.tenant_id, &message.id, "gave up after 8 attempts")
        .await
        .unwrap());
    message.id
}

async fn a_message_without_an_address_is_parked_without_its_body(db: DbKind) {
    let app = spawn_app(db).await;
    let user = app.add_user(&app.t1, "nophone@acme.test").await;
    app.password_reset(
        user.id.as_str(),
        Auth::Bearer(&app.admin1),
        &json!({"sendLink": {"notificationType": "NOTIFICATION_TYPE_SMS"}}),
    )
    .await
    .ok();
    let row = app
        .messages(&user, MessageKind::PasswordReset)
        .await
        .pop()
        .unwrap();
    assert_eq!(row.state, OutboxState::Failed);
    assert_eq!(row.channel, Channel::Sms);
    assert!(
        row.body.is_empty(),
        "a message that cannot be sent keeps no code"
    );
    assert_eq!(row.body_expires_at, None);

    let before = app.snapshot().await;
    let err = app
        .rekey
        .retry_outbox_message("test", row.id.as_str())
        .await
        .unwrap_err();
    assert_eq!(err.id, "REKEY-ObAdr");
    assert_eq!(err.kind.http_status(), 400);
    assert_eq!(
        app.snapshot().await,
        before,
        "a refused retry changes nothing"
    );
}

async fn a_still_good_message_is_requeued_as_it_is(db: DbKind) {
    let app = spawn_app(db).await;
    let user = app.add_user(&app.t1, "ada@acme.test").await;
    let id = parked_reset(&app, &user).await;
    let parked = app.store().outbox_message(&id).await.unwrap().unwrap();
    let expires = parked
        .body_expires_at
        .expect("a reset body carries its code's expiry");
    assert!(expires > app.now());

    // The worker's housekeeping leaves a body whose code is still good.
    assert_eq!(
        app.store()
            .erase_expired_failed_bodies(app.now())
            .await
            .unwrap(),
        0
    );
    let retried = app
        .rekey
        .retry_outbox_message("test", id.as_str())
        .await
        .unwrap();
    assert_eq!(retried, Retried::Requeued { id: id.clone() });
    // The CLI's retry is audited as the operations route's is (one flow).
    let events = app.events().await;
    let event = events
        .iter()
        .find(|e| e.kind == "outbox.message.retried")
        .expect("the requeue's event");
    assert_eq!(
        (event.actor.as_str(), event.aggregate_id.as_str()),
        ("test", app.t1.id.as_str())
    );
    assert_eq!(event.payload["message_id"], id.as_str());
    let row = app.store().outbox_message(&id).await.unwrap().unwrap();
    assert_eq!(row.state, OutboxState::Pending);
    assert_eq!(row.body, parked.body);
    assert_eq!(
        app.messages(&user, MessageKind::PasswordReset).await.len(),
        1
    );
}

async fn an_expired_message_is_reissued_with_a_fresh_code(db: DbKind) {
    let app = spawn_app(db).await;
    let user = app.add_user(&app.t1, "ada@acme.test").await;
    let id = parked_reset(&app, &user).await;
    let old_code = app.open(&app.store().outbox_message(&id).await.unwrap().unwrap());
    let old_code = old_code.code.unwrap();

    // Past the code's hour: housekeeping erases the body.
    app.advance(Duration::minutes(61));
    assert_eq!(
        app.store()
            .erase_expired_failed_bodies(app.now())
            .await
            .unwrap(),
        1
    );
    let erased = app.store().outbox_message(&id).await.unwrap().unwrap();
    assert!(erased.body.is_empty());

    let events_before = app.user_events(&user).await.len();
    let Retried::Reissued { id: new_id } = app
        .rekey
        .retry_outbox_message("test", id.as_str())
        .await
        .unwrap()
    else {
        panic!("an erased message must be re-issued, not requeued");
    };
    assert_ne!(new_id, id);
    let new = app.store().outbox_message(&new_id).await.unwrap().unwrap();
    assert_eq!(new.state, OutboxState::Pending);
    assert_ne!(
        new.idempotency_key, erased.idempotency_key,
        "a new Message-ID"
    );
    let new_code = app.open(&new).code.unwrap();
    assert_ne!(new_code, old_code);
    // The old message stays parked; the re-issue is an audited code issue like any reset.
    let old = app.store().outbox_message(&id).await.unwrap().unwrap();
    assert_eq!(old.state, OutboxState::Failed);
    let events = app.user_events(&user).await;
    assert_eq!(events.len(), events_before + 1);
    assert_eq!(events.last().unwrap().kind, "user.password.code.added");
    // The fresh code works.
    let resp = app
        .set_with_code(user.id.as_str(), &new_code, crate::helpers::NEW_PASSWORD)
        .await;
    assert_eq!(resp.status, 200, "{resp:?}");
}

async fn retry_refuses_what_is_not_a_failed_message(db: DbKind) {
    let app = spawn_app(db).await;
    let user = app.add_user(&app.t1, "ada@acme.test").await;
    app.password_reset(
        user.id.as_str(),
        Auth::Bearer(&app.admin1),
        &json!({"sendLink": {}}),
    )
    .await
    .ok();
    let pending = app
        .messages(&user, MessageKind::PasswordReset)
        .await
        .pop()
        .unwrap();
    let before = app.snapshot().await;
    for id in [pending.id.as_str(), "no-such-message"] {
        let err = app
            .rekey
            .retry_outbox_message("test", id)
            .await
            .unwrap_err();
        assert_eq!(err.id, "REKEY-ObNF", "{id}");
        assert_eq!(err.kind.http_status(), 404);
    }
    assert_eq!(app.snapshot().await, before);
}
