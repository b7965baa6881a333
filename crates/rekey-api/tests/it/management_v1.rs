//! Management v1 (seed 003): SendHumanResetPasswordNotification, SetHumanPassword and
//! SetHumanInitialPassword, with the org context of `x-zitadel-orgid`.

use chrono::DateTime;
use rekey_core::domain::{Channel, MessageKind, OutboxState, UserState};
use rekey_testkit::DbKind;
use serde_json::json;

use crate::helpers::{assert_error, both_dbs, spawn_app, Auth, NEW_PASSWORD};

both_dbs!(
    reset_notification_answers_v1_details,
    reset_notification_org_context,
    set_human_password_and_initial_password,
);

fn reset_path(id: &str) -> String {
    format!("/management/v1/users/{id}/password/_reset")
}

async fn reset_notification_answers_v1_details(db: DbKind) {
    let app = spawn_app(db).await;
    let user = app
        .add_user_with(
            &app.t1,
            "v1@acme.test",
            Some("+41791234567"),
            Some(crate::helpers::START_PASSWORD),
        )
        .await;
    let seq = app.user(&user).await.sequence;

    let resp = app
        .post(
            &reset_path(user.id.as_str()),
            Auth::Bearer(&app.admin1),
            &json!({}),
        )
        .await;
    let details = resp.ok()["details"].clone();
    assert_eq!(details["sequence"], json!((seq + 1).to_string()));
    assert_eq!(details["resourceOwner"], json!(app.t1.id.as_str()));
    let change_date = details["changeDate"].as_str().unwrap();
    assert!(change_date.ends_with('Z'));
    assert_eq!(
        DateTime::parse_from_rfc3339(change_date).unwrap(),
        app.now()
    );
    assert!(details.get("creationDate").is_none(), "{details}");
    assert_eq!(
        resp.json.as_object().unwrap().len(),
        1,
        "only details: {}",
        resp.text
    );
    let row = app
        .messages(&user, MessageKind::PasswordReset)
        .await
        .pop()
        .unwrap();
    assert_eq!(row.channel, Channel::Email);
    assert_eq!(row.state, OutboxState::Pending);
    let payload = app.open(&row);
    assert!(payload.link.unwrap().starts_with(&format!(
        "http://127.0.0.1:8080/ui/password/reset?userID={}&code=",
        user.id
    )));

    // SMS by name and by number.
    for body in [json!({"type": "TYPE_SMS"}), json!({"type": 1})] {
        let resp = app
            .post(
                &reset_path(user.id.as_str()),
                Auth::Bearer(&app.admin1),
                &body,
            )
            .await;
        resp.ok();
        let row = app
            .messages(&user, MessageKind::PasswordReset)
            .await
            .pop()
            .unwrap();
        assert_eq!(row.channel, Channel::Sms);
        assert_eq!(row.recipient.as_deref(), Some("+41791234567"));
    }
    // The code it sent sets the password.
    let code = app.sent_code(&user).await;
    app.set_with_code(user.id.as_str(), &code, NEW_PASSWORD)
        .await
        .ok();

    // An initial user is allowed and gets the onboarding message.
    let newbie = app.add_initial_user(&app.t1, "newbie@acme.test").await;
    app.post(
        &reset_path(newbie.id.as_str()),
        Auth::Bearer(&app.admin1),
        &json!({}),
    )
    .await
    .ok();
    assert_eq!(
        app.messages(&newbie, MessageKind::PasswordInit).await.len(),
        1
    );
}

async fn reset_notification_org_context(db: DbKind) {
    let app = spawn_app(db).await;
    let user = app.add_user(&app.t1, "ctx@acme.test").await;
    let foreign = app.add_user(&app.t2, "ctx@globex.test").await;
    let deleted = app.add_user(&app.t1, "deleted@acme.test").await;
    app.set_state(&deleted, UserState::Deleted).await;
    let token = app.user_token(&user).await;
    let t1 = app.t1.id.to_string();
    let t2 = app.t2.id.to_string();
    let org = |id: &str| vec![("x-zitadel-orgid".to_owned(), id.to_owned())];
    let post = |id: &str, auth: String, headers: Vec<(String, String)>| {
        let path = reset_path(id);
        let app = &app;
        async move {
            let headers: Vec<(&str, &str)> = headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            app.post_raw(&path, Auth::Bearer(&auth), &headers, b"{}".to_vec())
                .await
        }
    };
    let snapshot = app.snapshot().await;

    // system needs an org.
    let resp = post(user.id.as_str(), app.system.clone(), vec![]).await;
    assert_error(&resp, 400, 3, "REKEY-OrgRq", None);
    // A tenant admin may name only its own org.
    let resp = post(user.id.as_str(), app.admin1.clone(), org(&t2)).await;
    assert_error(&resp, 403, 7, "AUTHZ-HKJD33", Some("No permission"));
    // A user not in the org in context: FAILED_PRECONDITION, like an unknown id, byte for byte.
    let not_in_org = post(foreign.id.as_str(), app.admin1.clone(), vec![]).await;
    assert_error(
        &not_in_org,
        400,
        9,
        "COMMAND-Hj9ds",
        Some("User could not be found"),
    );
    for (what, resp) in [
        (
            "unknown id",
            post("69629023906488334", app.admin1.clone(), vec![]).await,
        ),
        (
            "deleted",
            post(deleted.id.as_str(), app.admin1.clone(), vec![]).await,
        ),
        (
            "system, other org",
            post(user.id.as_str(), app.system.clone(), org(&t2)).await,
        ),
        (
            "admin2 on t1 user",
            post(user.id.as_str(), app.admin2.clone(), vec![]).await,
        ),
    ] {
        assert_eq!(resp.status, not_in_org.status, "{what}");
        assert_eq!(resp.text, not_in_org.text, "{what}");
    }
    // The user themself may not use v1 (even on themself).
    let resp = post(user.id.as_str(), token.clone(), vec![]).await;
    assert_error(&resp, 403, 7, "AUTHZ-HKJD33", None);
    let resp = post(user.id.as_str(), token.clone(), org(&t1)).await;
    assert_error(&resp, 403, 7, "AUTHZ-HKJD33", None);
    // No token at all.
    let resp = app
        .post(&reset_path(user.id.as_str()), Auth::None, &json!({}))
        .await;
    assert_error(&resp, 401, 16, "AUTH-7fs1e", None);
    assert_eq!(app.snapshot().await, snapshot, "nothing written");

    // Allowed: system with the org, the admin with its own org named, the admin without it.
    let resp = post(user.id.as_str(), app.system.clone(), org(&t1)).await;
    assert_eq!(resp.ok()["details"]["resourceOwner"], json!(t1));
    post(user.id.as_str(), app.admin1.clone(), org(&t1))
        .await
        .ok();
    post(foreign.id.as_str(), app.admin2.clone(), vec![])
        .await
        .ok();
    let resp = post(foreign.id.as_str(), app.system.clone(), org(&t2)).await;
    assert_eq!(resp.ok()["details"]["resourceOwner"], json!(t2));
    assert_eq!(
        app.messages(&user, MessageKind::PasswordReset).await.len(),
        2
    );
    assert_eq!(
        app.messages(&foreign, MessageKind::PasswordReset)
            .await
            .len(),
        2
    );
}

async fn set_human_password_and_initial_password(db: DbKind) {
    let app = spawn_app(db).await;
    let user = app.add_user(&app.t1, "seth@acme.test").await;
    let newbie = app.add_initial_user(&app.t1, "init@acme.test").await;
    let foreign = app.add_user(&app.t2, "seth@globex.test").await;
    let set_path = format!("/management/v1/users/{}/password", user.id);
    let init_path = format!("/management/v1/users/{}/password/_initialize", newbie.id);
    let token = app.user_token(&user).await;
    let snapshot = app.snapshot().await;

    // Refusals first: too long (72 is the v1 cap), user role, other org, no token.
    let long = "x".repeat(73);
    let resp = app
        .post(
            &set_path,
            Auth::Bearer(&app.admin1),
            &json!({"password": long}),
        )
        .await;
    assert_error(&resp, 400, 3, "REKEY-PwLn3", None);
    let resp = app
        .post(
            &init_path,
            Auth::Bearer(&app.admin1),
            &json!({"password": long}),
        )
        .await;
    assert_error(&resp, 400, 3, "REKEY-PwLn3", None);
    let resp = app
        .post(
            &set_path,
            Auth::Bearer(&token),
            &json!({"password": NEW_PASSWORD}),
        )
        .await;
    assert_error(&resp, 403, 7, "AUTHZ-HKJD33", None);
    let resp = app
        .post(
            &format!("/management/v1/users/{}/password", foreign.id),
            Auth::Bearer(&app.admin1),
            &json!({"password": NEW_PASSWORD}),
        )
        .await;
    assert_error(&resp, 400, 9, "COMMAND-Hj9ds", None);
    let resp = app
        .post(&set_path, Auth::None, &json!({"password": NEW_PASSWORD}))
        .await;
    assert_error(&resp, 401, 16, "AUTH-7fs1e", None);
    let resp = app
        .post(
            &set_path,
            Auth::Bearer(&app.admin1),
            &json!({"password": "short"}),
        )
        .await;
    assert_error(&resp, 400, 3, "REKEY-PwLen", None);
    assert_eq!(app.snapshot().await, snapshot, "nothing written");

    // SetHumanPassword, noChangeRequired: the password then verifies on the v2 current path.
    let resp = app
        .post(
            &set_path,
            Auth::Bearer(&app.admin1),
            &json!({"password": NEW_PASSWORD, "noChangeRequired": true}),
        )
        .await;
    let details = &resp.ok()["details"];
    assert_eq!(details["resourceOwner"], json!(app.t1.id.as_str()));
    assert!(details["changeDate"].as_str().unwrap().ends_with('Z'));
    assert!(details.get("creationDate").is_none());
    assert!(!app.user(&user).await.password_change_required);
    // Any password change revokes the user's own tokens (SPEC §10).
    let resp = app
        .post(
            &set_path,
            Auth::Bearer(&token),
            &json!({"password": NEW_PASSWORD}),
        )
        .await;
    assert_error(&resp, 401, 16, "AUTH-7fs1e", None);
    let token = app.user_token(&user).await;
    let v2 = format!("/v2/users/{}/password", user.id);
    app.post(
        &v2,
        Auth::Bearer(&token),
        &json!({"newPassword": {"password": "chosen by the user"}, "currentPassword": NEW_PASSWORD}),
    )
    .await
    .ok();
    // Without noChangeRequired the user must change it; exactly 72 characters is allowed.
    let seventy_two = "y".repeat(72);
    app.post(
        &set_path,
        Auth::Bearer(&app.admin1),
        &json!({"password": seventy_two}),
    )
    .await
    .ok();
    assert!(app.user(&user).await.password_change_required);
    assert!(app.has_password(&user, &seventy_two).await);

    // SetHumanInitialPassword: an initial user becomes active with that password.
    let resp = app
        .post(
            &init_path,
            Auth::Bearer(&app.admin1),
            &json!({"password": NEW_PASSWORD}),
        )
        .await;
    resp.ok();
    let stored = app.user(&newbie).await;
    assert_eq!(stored.state, UserState::Active);
    assert!(!stored.password_change_required);
    let newbie_token = app.user_token(&newbie).await;
    app.post(
        &format!("/v2/users/{}/password", newbie.id),
        Auth::Bearer(&newbie_token),
        &json!({"newPassword": {"password": "newbie picked this"}, "currentPassword": NEW_PASSWORD}),
    )
    .await
    .ok();
    assert!(app.has_password(&newbie, "newbie picked this").await);
    assert!(
        app.has_password(&foreign, crate::helpers::START_PASSWORD)
            .await
    );
}
