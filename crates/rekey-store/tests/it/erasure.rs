//! Erasure (SPEC §12): deleting a user erases their personal data in the deletion's own
//! transaction — users row, global email index, their email and SMS messages, the client
//! addresses in their events — leaving ids only; the address can then be used again.

use rekey_core::domain::{erased_email, OutboxState, Role, UserState};
use rekey_core::ports::store::UserChange;

use crate::harness::{event, message, seed, t, tid, token, uid, user, Fixture};

rekey_testkit::both_dbs!(
    run = crate::harness::run;
    deleting_erases_personal_data_and_frees_the_address,
);

fn deletion(tenant: &str, user: &str, at: i64) -> UserChange {
    let mut change = UserChange::new(tid(tenant), uid(user), t(at), event("user.removed"));
    change.set_state = Some(UserState::Deleted);
    change.void_pending_codes = true;
    change.revoke_user_tokens = true;
    change.erase_personal_data = true;
    change
}

async fn deleting_erases_personal_data_and_frees_the_address(fx: Fixture) {
    seed(&fx).await;
    // u1 (t1, ada@example.com) has messages in every state; u2 (t1) and u3 (t2, also
    // ada@example.com) are bystanders.
    let mut pending = message("t1", "u1", "m-pending", OutboxState::Pending);
    pending.recipient = Some("+41790000000".to_owned());
    pending.channel = rekey_core::domain::Channel::Sms;
    let mut failed = message("t1", "u1", "m-failed", OutboxState::Failed);
    failed.last_error = Some("550 <ada@example.com>: no such mailbox".to_owned());
    let sent = message("t1", "u1", "m-sent", OutboxState::Sent);
    let mut change = UserChange::new(tid("t1"), uid("u1"), t(10), event("user.code.added"));
    change.outbox = vec![pending, failed, sent];
    fx.store.change_user(&change).await.unwrap();
    let mut change = UserChange::new(tid("t1"), uid("u2"), t(10), event("user.code.added"));
    change.outbox = vec![message("t1", "u2", "m-bystander", OutboxState::Pending)];
    fx.store.change_user(&change).await.unwrap();
    let tk = token(
        "tk-u1",
        1,
        Role::User {
            tenant_id: tid("t1"),
            user_id: uid("u1"),
        },
    );
    fx.store.insert_token(&tk).await.unwrap();

    fx.store
        .change_user(&deletion("t1", "u1", 20))
        .await
        .unwrap();

    let erased = fx
        .store
        .user(&tid("t1"), &uid("u1"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(erased.state, UserState::Deleted);
    assert_eq!(erased.email, erased_email(&uid("u1")));
    assert!(!erased.email_verified);
    assert_eq!(erased.phone, None);
    assert_eq!(
        (
            erased.username.as_str(),
            erased.first_name.as_str(),
            erased.last_name.as_str(),
            erased.display_name.as_str()
        ),
        ("", "", "", "")
    );
    assert_eq!(erased.password_hash, None);
    assert_eq!(
        erased.sequence, 3,
        "the deletion is an event like any change"
    );
    let personal = "(email LIKE '%ada%' OR email_lower LIKE '%ada%' OR phone IS NOT NULL \
         OR username <> '' OR username_lower <> '' OR first_name <> '' OR last_name <> '' \
         OR display_name <> '' OR password_hash IS NOT NULL)";
    assert_eq!(
        fx.scalar(&format!(
            "SELECT COUNT(*) FROM users WHERE tenant_id = 't1' AND id = 'u1' AND {personal}"
        ))
        .await,
        0
    );
    assert_eq!(
        fx.scalar("SELECT COUNT(*) FROM email_index WHERE tenant_id = 't1' AND user_id = 'u1'")
            .await,
        0
    );
    assert_eq!(fx.store.token_by_hash(&tk.hash).await.unwrap(), None);

    // Messages: no body, no recipient, no error text naming the address; the pending one is
    // parked so it is never sent.
    assert_eq!(
        fx.scalar(
            "SELECT COUNT(*) FROM outbox WHERE tenant_id = 't1' AND user_id = 'u1' \
             AND (recipient IS NOT NULL OR length(body) > 0 OR last_error LIKE '%ada%' \
             OR body_expires_at IS NOT NULL OR state = 'pending')"
        )
        .await,
        0
    );
    let state = |id: &'static str| {
        let store = fx.store.clone();
        async move {
            let m = store
                .outbox_message(&crate::harness::mid(id))
                .await
                .unwrap()
                .unwrap();
            (m.state, m.last_error)
        }
    };
    let erased_error = Some("user deleted: personal data erased".to_owned());
    assert_eq!(
        state("m-pending").await,
        (OutboxState::Failed, erased_error.clone())
    );
    assert_eq!(state("m-failed").await, (OutboxState::Failed, erased_error));
    assert_eq!(state("m-sent").await, (OutboxState::Sent, None));
    let bystander = fx
        .store
        .outbox_message(&crate::harness::mid("m-bystander"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(bystander.state, OutboxState::Pending);
    assert!(bystander.recipient.is_some() && !bystander.body.is_empty());

    // Events: ids only. The client addresses of the user's earlier events are gone; the
    // deletion's own event keeps its caller's (an admin's) address.
    assert_eq!(
        fx.scalar(
            "SELECT COUNT(*) FROM events WHERE tenant_id = 't1' AND aggregate_id = 'u1' \
             AND (ip IS NOT NULL AND kind <> 'user.removed' OR payload LIKE '%ada%' \
             OR payload LIKE '%Lovelace%' OR payload LIKE '%+4179%')"
        )
        .await,
        0
    );
    assert_eq!(
        fx.text("SELECT ip FROM events WHERE tenant_id = 't1' AND aggregate_id = 'u1' AND kind = 'user.removed'")
            .await
            .as_deref(),
        Some("192.0.2.7")
    );
    assert_eq!(
        fx.scalar("SELECT COUNT(*) FROM events WHERE ip IS NULL AND aggregate_id <> 'u1'")
            .await,
        0,
        "nobody else's events are touched"
    );

    // The address is free in t1 again; u3 in t2 kept it all along.
    fx.store
        .insert_user(&user("t1", "u9", "Ada@Example.com"), &event("user.added"))
        .await
        .unwrap();
    let holders: Vec<String> = fx
        .store
        .users_by_email(None, "ada@example.com")
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.id.to_string())
        .collect();
    assert_eq!(holders, ["u9", "u3"]);

    // A second deletion in the same tenant: placeholders never collide.
    fx.store
        .change_user(&deletion("t1", "u2", 30))
        .await
        .unwrap();
    assert_eq!(
        fx.scalar("SELECT COUNT(*) FROM users WHERE tenant_id = 't1' AND state = 'deleted'")
            .await,
        2
    );
    // A deleted user stays deleted: a second deletion is refused and writes nothing.
    let before = fx.snapshot().await;
    assert!(fx
        .store
        .change_user(&deletion("t1", "u1", 40))
        .await
        .is_err());
    assert_eq!(fx.snapshot().await, before);
}
