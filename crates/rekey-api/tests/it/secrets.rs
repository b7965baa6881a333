//! Secrets never leave through error bodies or the audit trail.

use rekey_core::domain::MessageKind;
use rekey_testkit::DbKind;
use serde_json::json;

use crate::helpers::{both_dbs, spawn_app, Auth};

both_dbs!(
    decode_errors_do_not_echo_secrets,
    audit_trail_holds_no_secrets
);

const SECRET: &str = "hunter2secret";

async fn decode_errors_do_not_echo_secrets(db: DbKind) {
    let app = spawn_app(db).await;
    let user = app.add_user(&app.t1, "leak@acme.test").await;
    let set = format!("/v2/users/{}/password", user.id);
    let reset = format!("/v2/users/{}/password_reset", user.id);
    let v1 = format!("/management/v1/users/{}/password", user.id);
    let snapshot = app.snapshot().await;
    let cases = [
        (
            &set,
            format!(r#"{{"newPassword":{{"password":["{SECRET}"]}}}}"#),
        ),
        (
            &set,
            format!(r#"{{"newPassword":{{"password":{{"{SECRET}":1}}}}}}"#),
        ),
        (
            &set,
            format!(r#"{{"newPassword":{{"password":"x","changeRequired":"{SECRET}"}}}}"#),
        ),
        (&set, format!(r#"{{"newPassword":"{SECRET}"}}"#)),
        (&set, format!(r#"{{"verificationCode":["{SECRET}"]}}"#)),
        (
            &set,
            format!(r#"{{"verificationCode":"ABC","currentPassword":"{SECRET}"}}"#),
        ),
        (
            &set,
            format!(r#"{{"newPassword":{{"password":"{SECRET}"}}"#),
        ),
        (
            &set,
            format!(r#"{{"newPassword":{{"password":"{SECRET}}}}}"#),
        ),
        (
            &set,
            format!(r#"{{"newPassword":{{"password":"{SECRET}"}}, "{SECRET}": }}"#),
        ),
        (
            &reset,
            format!(r#"{{"sendLink":{{"notificationType":"{SECRET}"}}}}"#),
        ),
        (
            &reset,
            format!(r#"{{"sendLink":{{"urlTemplate":["{SECRET}"]}}}}"#),
        ),
        (
            &reset,
            format!(r#"{{"sendLink":{{"urlTemplate":"{{{{.{SECRET}}}}}"}}}}"#),
        ),
        (&v1, format!(r#"{{"password":["{SECRET}"]}}"#)),
        (
            &v1,
            format!(r#"{{"password":"x","noChangeRequired":"{SECRET}"}}"#),
        ),
    ];
    for (path, body) in cases {
        for auth in [Auth::None, Auth::Bearer(&app.admin1)] {
            let resp = app
                .post_raw(path, auth, &[], body.clone().into_bytes())
                .await;
            assert_eq!(resp.status.as_u16(), 400, "{body}: {resp:#?}");
            assert_eq!(resp.json["code"], 3, "{body}: {resp:#?}");
            assert!(
                !resp.text.contains(SECRET) && !resp.text.contains("hunter2"),
                "{body} echoed: {}",
                resp.text
            );
        }
    }
    assert_eq!(app.snapshot().await, snapshot);
}

async fn audit_trail_holds_no_secrets(db: DbKind) {
    let app = spawn_app(db).await;
    let user = app.add_user(&app.t1, "audit@acme.test").await;
    let code = app.return_code(&user).await;
    // Refused by the policy (too short): its text must not land anywhere either.
    let refused = "hunter2";
    let resp = app.set_with_code(user.id.as_str(), &code, refused).await;
    assert_eq!(resp.status.as_u16(), 400);
    assert!(!resp.text.contains(refused));
    let password = "audited new passphrase";
    app.set_with_code(user.id.as_str(), &code, password)
        .await
        .ok();
    app.password_reset(user.id.as_str(), Auth::Bearer(&app.admin1), &json!({}))
        .await
        .ok();
    let sent = app.sent_code(&user).await;
    let token = app.user_token(&user).await;
    app.post(
        &format!("/v2/users/{}/password", user.id),
        Auth::Bearer(&token),
        &json!({"newPassword": {"password": "third passphrase here"}, "currentPassword": password}),
    )
    .await
    .ok();

    let events = app.events().await;
    assert!(events.len() >= 5);
    let dump = serde_json::to_string(
        &events
            .iter()
            .map(|e| json!([e.kind, e.actor, e.ip, e.payload]))
            .collect::<Vec<_>>(),
    )
    .unwrap();
    for secret in [
        code.as_str(),
        sent.as_str(),
        password,
        refused,
        "third passphrase here",
        token.as_str(),
        app.admin1.as_str(),
    ] {
        assert!(!dump.contains(secret), "event log holds {secret:?}: {dump}");
    }
    // The notice of the change carries neither code nor link.
    for notice in app.messages(&user, MessageKind::PasswordChanged).await {
        let payload = app.open(&notice);
        assert!(payload.code.is_none() && payload.link.is_none());
    }
}
