//! v2 PasswordReset with `sendLink` or no medium: the sealed outbox row, the link inside it,
//! the SMS park for users without a phone, and the onboarding variant for `initial` users.

use chrono::Duration;
use rekey_core::domain::{Channel, MessageKind, OutboxState, UserState};
use rekey_testkit::DbKind;
use serde_json::json;

use crate::helpers::{assert_error, both_dbs, spawn_app, Auth, NEW_PASSWORD};

both_dbs!(
    send_link_queues_a_sealed_message_with_the_default_link,
    url_template_is_rendered,
    sms_goes_to_the_phone_or_is_parked_failed,
    initial_users_get_the_onboarding_message_with_72h_expiry,
    onboarding_messages_link_to_the_set_password_page,
);

fn contains(haystack: &[u8], needle: &str) -> bool {
    !needle.is_empty()
        && haystack
            .windows(needle.len())
            .any(|w| w == needle.as_bytes())
}

async fn send_link_queues_a_sealed_message_with_the_default_link(db: DbKind) {
    let app = spawn_app(db).await;
    let user = app.add_user(&app.t1, "Ada.Lovelace@acme.test").await;
    let other = app.add_user(&app.t2, "ada@globex.test").await;
    let seq = app.user(&user).await.sequence;

    // sendLink (email) and "no medium" behave alike: 200, no code in the answer.
    for (n, body) in [
        json!({"sendLink": {"notificationType": "NOTIFICATION_TYPE_Email"}}),
        json!({}),
        json!({"sendLink": {}}),
    ]
    .into_iter()
    .enumerate()
    {
        let before = app.outbox().await.len();
        let resp = app
            .password_reset(user.id.as_str(), Auth::Bearer(&app.admin1), &body)
            .await;
        let answer = resp.ok();
        assert!(answer.get("verificationCode").is_none(), "{answer}");
        let n = u64::try_from(n).unwrap();
        assert_eq!(
            answer["details"]["sequence"],
            json!((seq + 1 + n).to_string())
        );

        let outbox = app.outbox().await;
        assert_eq!(outbox.len(), before + 1, "exactly one row per request");
        let row = outbox.last().unwrap();
        assert_eq!(row.tenant_id, app.t1.id);
        assert_eq!(row.user_id, user.id);
        assert_eq!(row.channel, Channel::Email);
        assert_eq!(row.kind, MessageKind::PasswordReset);
        assert_eq!(row.state, OutboxState::Pending);
        assert_eq!(row.recipient.as_deref(), Some("Ada.Lovelace@acme.test"));
        assert_eq!(row.attempts, 0);
        assert!(row.last_error.is_none());

        // At rest the body shows nothing readable: not the link, the ids, or field names.
        for visible in [
            "/ui/password",
            "code",
            "link",
            user.id.as_str(),
            app.t1.id.as_str(),
        ] {
            assert!(!contains(&row.body, visible), "raw body shows {visible:?}");
        }
        let payload = app.open(row);
        let code = payload.code.clone().expect("code in the sealed payload");
        let link = payload.link.clone().expect("link in the sealed payload");
        let prefix = format!(
            "http://127.0.0.1:8080/ui/password/reset?userID={}&code=",
            user.id
        );
        assert!(link.starts_with(&prefix), "{link}");
        assert!(link.ends_with(&format!("&orgID={}", app.t1.id)), "{link}");
        assert!(link.contains(&format!("code={code}&")), "{link}");
        assert_eq!(payload.tenant_id, app.t1.id);
        assert_eq!(payload.user_id, user.id);
        assert_eq!(payload.expires_at, Some(app.now() + Duration::hours(1)));

        // Nor the code or the link themselves.
        for secret in [code.as_str(), link.as_str()] {
            assert!(!contains(&row.body, secret), "raw body shows {secret:?}");
        }
        assert!(row.body.len() > 24, "nonce and ciphertext");
    }

    // Fresh nonce per message: no two bodies share their first 24 bytes.
    let rows = app.messages(&user, MessageKind::PasswordReset).await;
    assert_eq!(rows.len(), 3);
    for (i, a) in rows.iter().enumerate() {
        for b in &rows[i + 1..] {
            assert_ne!(a.body[..24], b.body[..24], "nonce reused");
            assert_ne!(a.idempotency_key, b.idempotency_key);
        }
    }
    // Only the latest code is valid; it is accepted by SetPassword.
    let latest = app.sent_code(&user).await;
    let first = app.open(&rows[0]).code.unwrap();
    if first != latest {
        let resp = app
            .set_with_code(user.id.as_str(), &first, NEW_PASSWORD)
            .await;
        assert_error(&resp, 400, 3, "CODE-woT0xc", None);
    }
    app.set_with_code(user.id.as_str(), &latest, NEW_PASSWORD)
        .await
        .ok();
    assert!(app.has_password(&user, NEW_PASSWORD).await);
    // Nothing went to the other tenant's user.
    assert!(app
        .outbox()
        .await
        .iter()
        .all(|m| m.user_id != other.id && m.tenant_id == app.t1.id));
}

async fn url_template_is_rendered(db: DbKind) {
    let app = spawn_app(db).await;
    let user = app.add_user(&app.t1, "tpl@acme.test").await;
    let resp = app
        .password_reset(
            user.id.as_str(),
            Auth::Bearer(&app.admin1),
            &json!({"sendLink": {
                "notificationType": "NOTIFICATION_TYPE_Email",
                "urlTemplate": "https://app.test/r?u={{.UserID}}&c={{.Code}}"
            }}),
        )
        .await;
    resp.ok();
    let row = app
        .messages(&user, MessageKind::PasswordReset)
        .await
        .pop()
        .unwrap();
    let payload = app.open(&row);
    let code = payload.code.unwrap();
    assert_eq!(
        payload.link.unwrap(),
        format!("https://app.test/r?u={}&c={code}", user.id)
    );
    assert!(!contains(&row.body, &code));

    // Spaces, trim markers and OrgID.
    let resp = app
        .password_reset(
            user.id.as_str(),
            Auth::Bearer(&app.admin1),
            &json!({"url_template_is_ignored_here": 1, "sendLink": {
                "urlTemplate": "https://app.test/{{ .OrgID }}/x?c={{- .Code -}}"
            }}),
        )
        .await;
    resp.ok();
    let payload = app.open(
        &app.messages(&user, MessageKind::PasswordReset)
            .await
            .pop()
            .unwrap(),
    );
    assert_eq!(
        payload.link.unwrap(),
        format!(
            "https://app.test/{}/x?c={}",
            app.t1.id,
            payload.code.unwrap()
        )
    );
}

async fn sms_goes_to_the_phone_or_is_parked_failed(db: DbKind) {
    let app = spawn_app(db).await;
    let no_phone = app.add_user(&app.t1, "nophone@acme.test").await;
    let with_phone = app
        .add_user_with(
            &app.t1,
            "phone@acme.test",
            Some("+41791234567"),
            Some(crate::helpers::START_PASSWORD),
        )
        .await;

    let resp = app
        .password_reset(
            no_phone.id.as_str(),
            Auth::Bearer(&app.admin1),
            &json!({"sendLink": {"notificationType": "NOTIFICATION_TYPE_SMS"}}),
        )
        .await;
    assert!(resp.ok().get("verificationCode").is_none());
    let row = app
        .messages(&no_phone, MessageKind::PasswordReset)
        .await
        .pop()
        .expect("a parked row");
    assert_eq!(row.channel, Channel::Sms);
    assert_eq!(row.state, OutboxState::Failed);
    assert_eq!(row.last_error.as_deref(), Some("no phone"));
    assert_eq!(row.recipient, None);
    assert!(app
        .store()
        .outbox_messages(Some(OutboxState::Failed), 0)
        .await
        .unwrap()
        .iter()
        .any(|m| m.id == row.id));

    // By number as well as by name.
    let resp = app
        .password_reset(
            with_phone.id.as_str(),
            Auth::Bearer(&app.admin1),
            &json!({"sendLink": {"notificationType": 2}}),
        )
        .await;
    resp.ok();
    let row = app
        .messages(&with_phone, MessageKind::PasswordReset)
        .await
        .pop()
        .unwrap();
    assert_eq!(row.channel, Channel::Sms);
    assert_eq!(row.state, OutboxState::Pending);
    assert_eq!(row.recipient.as_deref(), Some("+41791234567"));
    let code = app.open(&row).code.unwrap();
    assert!(!contains(&row.body, &code));
    app.set_with_code(with_phone.id.as_str(), &code, NEW_PASSWORD)
        .await
        .ok();
}

async fn initial_users_get_the_onboarding_message_with_72h_expiry(db: DbKind) {
    let app = spawn_app(db).await;
    let early = app.add_initial_user(&app.t1, "early@acme.test").await;
    let late = app.add_initial_user(&app.t1, "late@acme.test").await;
    assert_eq!(app.user(&early).await.state, UserState::Initial);
    assert!(app.user(&early).await.password_hash.is_none());

    for user in [&early, &late] {
        app.password_reset(user.id.as_str(), Auth::Bearer(&app.admin1), &json!({}))
            .await
            .ok();
        let rows = app.outbox().await;
        let row = rows.iter().rfind(|m| m.user_id == user.id).unwrap();
        assert_eq!(row.kind, MessageKind::PasswordInit);
        assert_eq!(row.channel, Channel::Email);
        assert_eq!(
            app.open(row).expires_at,
            Some(app.now() + Duration::hours(72))
        );
        assert!(app
            .messages(user, MessageKind::PasswordReset)
            .await
            .is_empty());
    }
    let early_code = app.sent_code(&early).await;
    let late_code = app.sent_code(&late).await;

    // 71 hours on, an onboarding code still works (a reset code would be long dead).
    app.advance(Duration::hours(71));
    let resp = app
        .set_with_code(early.id.as_str(), &early_code, NEW_PASSWORD)
        .await;
    resp.ok();
    let now_early = app.user(&early).await;
    assert_eq!(now_early.state, UserState::Active, "initial → active");
    assert!(app.has_password(&early, NEW_PASSWORD).await);

    // Past 72 hours it is expired, and the expired try changes nothing.
    app.advance(Duration::hours(1) + Duration::seconds(1));
    let snapshot = app.snapshot().await;
    let resp = app
        .set_with_code(late.id.as_str(), &late_code, NEW_PASSWORD)
        .await;
    assert_error(&resp, 400, 9, "CODE-QvUQ4P", Some("Code is expired"));
    assert_eq!(app.snapshot().await, snapshot);
    assert_eq!(app.user(&late).await.state, UserState::Initial);
}

/// SPEC §8: an onboarding message's default link is the "set your password" page; a tenant's
/// own link template applies to both kinds.
async fn onboarding_messages_link_to_the_set_password_page(db: DbKind) {
    let app = spawn_app(db).await;
    let newbie = app.add_initial_user(&app.t1, "newbie@acme.test").await;
    let known = app.add_user(&app.t1, "known@acme.test").await;
    let link_of = |kind| {
        let app = &app;
        move |user: rekey_core::domain::User| async move {
            app.password_reset(user.id.as_str(), Auth::Bearer(&app.admin1), &json!({}))
                .await
                .ok();
            let row = app.messages(&user, kind).await.pop().unwrap();
            app.open(&row).link.unwrap()
        }
    };
    let link = link_of(MessageKind::PasswordInit)(newbie.clone()).await;
    let expected = format!(
        "http://127.0.0.1:8080/ui/password/set?userID={}&code=",
        newbie.id
    );
    assert!(link.starts_with(&expected), "{link}");
    let link = link_of(MessageKind::PasswordReset)(known.clone()).await;
    assert!(
        link.starts_with("http://127.0.0.1:8080/ui/password/reset?"),
        "{link}"
    );

    let mut settings = app.t1.settings.clone();
    settings.link_template =
        Some("https://login.acme.test/reset?u={{.UserID}}&c={{.Code}}".to_owned());
    app.rekey
        .set_tenant_settings("test", &app.t1.id, settings)
        .await
        .unwrap();
    let newer = app.add_initial_user(&app.t1, "newer@acme.test").await;
    let link = link_of(MessageKind::PasswordInit)(newer.clone()).await;
    assert!(
        link.starts_with(&format!("https://login.acme.test/reset?u={}&c=", newer.id)),
        "{link}"
    );
}
