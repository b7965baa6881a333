//! v2 PasswordReset (seed 004): the happy path with `returnCode`, and every refusal — each
//! checked on the wire and on the rows (nothing written).

use chrono::DateTime;
use rekey_core::domain::UserState;
use rekey_testkit::DbKind;
use serde_json::json;

use crate::helpers::{assert_error, both_dbs, spawn_app, Auth, NEW_PASSWORD};

both_dbs!(
    seed_004_return_code_then_set_password,
    code_path_ignores_authorization_and_v2beta_is_the_same,
    decode_errors_come_first_and_write_nothing,
    users_out_of_reach_look_like_unknown_users,
    authentication_and_authorization,
    user_state_refusals,
    http_level_errors,
    protojson_null_is_the_default_value,
);

async fn seed_004_return_code_then_set_password(db: DbKind) {
    let app = spawn_app(db).await;
    let user = app.add_user(&app.t1, "ada@acme.test").await;
    let bystander = app.add_user(&app.t2, "ada@globex.test").await;
    let before = app.user(&user).await;
    let bystander_before = app.user(&bystander).await;
    let outbox_before = app.outbox().await.len();

    let resp = app
        .password_reset(
            user.id.as_str(),
            Auth::Bearer(&app.admin1),
            &json!({"returnCode": {}}),
        )
        .await;
    let body = resp.ok();
    let code = body["verificationCode"].as_str().expect("verificationCode");
    assert_eq!(code.len(), 8, "default code length");
    assert!(
        code.bytes()
            .all(|b| b"ABCDEFGHJKMNPQRSTUVWXYZ23456789".contains(&b)),
        "{code}"
    );
    let details = &body["details"];
    assert_eq!(
        details["sequence"],
        json!((before.sequence + 1).to_string()),
        "uint64 as a decimal string, incremented"
    );
    assert_eq!(details["resourceOwner"], json!(app.t1.id.as_str()));
    let change_date = details["changeDate"].as_str().expect("changeDate");
    assert!(change_date.ends_with('Z'), "{change_date}");
    assert_eq!(
        DateTime::parse_from_rfc3339(change_date).unwrap(),
        app.now(),
        "changeDate is the (injected) time of the change"
    );
    assert!(details.get("creationDate").is_none(), "{details}");
    assert_eq!(
        resp.headers["content-type"], "application/json",
        "protojson answer"
    );

    let after_reset = app.user(&user).await;
    assert_eq!(after_reset.sequence, before.sequence + 1);
    assert_eq!(after_reset.password_hash, before.password_hash);
    assert_eq!(
        app.outbox().await.len(),
        outbox_before,
        "returnCode sends nothing"
    );
    let events = app.user_events(&user).await;
    assert_eq!(events.last().unwrap().kind, "user.password.code.added");
    assert_eq!(events.last().unwrap().sequence, before.sequence + 1);
    assert!(app.pending_code(&user).await.is_some());

    // The code is the proof: no Authorization header, and case does not matter.
    let resp = app
        .set_with_code(user.id.as_str(), &code.to_lowercase(), NEW_PASSWORD)
        .await;
    let details = &resp.ok()["details"];
    assert_eq!(
        details["sequence"],
        json!((before.sequence + 2).to_string())
    );
    assert_eq!(details["resourceOwner"], json!(app.t1.id.as_str()));
    assert!(details["changeDate"].as_str().unwrap().ends_with('Z'));
    assert!(app.has_password(&user, NEW_PASSWORD).await);
    assert!(app.pending_code(&user).await.is_none(), "code consumed");

    // Single use.
    let snapshot = app.snapshot().await;
    let resp = app
        .set_with_code(user.id.as_str(), code, "yet another passphrase")
        .await;
    assert_error(&resp, 400, 9, "COMMAND-2M9fs", Some("Code not found"));
    assert_eq!(app.snapshot().await, snapshot, "a used code writes nothing");
    assert!(app.has_password(&user, NEW_PASSWORD).await);

    // The other tenant's user never moved.
    assert_eq!(app.user(&bystander).await, bystander_before);
}

async fn code_path_ignores_authorization_and_v2beta_is_the_same(db: DbKind) {
    let app = spawn_app(db).await;
    let user = app.add_user(&app.t1, "grace@acme.test").await;
    let seq = app.user(&user).await.sequence;

    // A garbage token on the code path is ignored, not refused.
    let code = app.return_code(&user).await;
    let resp = app
        .post(
            &format!("/v2/users/{}/password", user.id),
            Auth::Bearer("nope"),
            &json!({"newPassword": {"password": NEW_PASSWORD}, "verificationCode": code}),
        )
        .await;
    resp.ok();
    assert!(app.has_password(&user, NEW_PASSWORD).await);

    // The v2beta paths (what @zitadel/node calls) behave identically, proto names accepted.
    let resp = app
        .post(
            &format!("/v2beta/users/{}/password_reset", user.id),
            Auth::Bearer(&app.admin1),
            &json!({"return_code": {}}),
        )
        .await;
    let body = resp.ok().clone();
    assert_eq!(body["details"]["sequence"], json!((seq + 3).to_string()));
    assert_eq!(body["details"]["resourceOwner"], json!(app.t1.id.as_str()));
    let code = body["verificationCode"].as_str().unwrap();
    let resp = app
        .post(
            &format!("/v2beta/users/{}/password", user.id),
            Auth::Bearer("nope"),
            &json!({
                "new_password": {"password": "the v2beta passphrase"},
                "verification_code": code,
                "userId": "ignored-the-path-wins",
            }),
        )
        .await;
    assert_eq!(
        resp.ok()["details"]["sequence"],
        json!((seq + 4).to_string())
    );
    assert!(app.has_password(&user, "the v2beta passphrase").await);
    let resp = app
        .post(
            &format!("/v2beta/users/{}/password", user.id),
            Auth::None,
            &json!({"newPassword": {"password": NEW_PASSWORD}, "verificationCode": code}),
        )
        .await;
    assert_error(&resp, 400, 9, "COMMAND-2M9fs", Some("Code not found"));
}

async fn decode_errors_come_first_and_write_nothing(db: DbKind) {
    let app = spawn_app(db).await;
    let user = app.add_user(&app.t1, "alan@acme.test").await;
    let _pending = app.return_code(&user).await;
    let path = format!("/v2/users/{}/password_reset", user.id);
    let snapshot = app.snapshot().await;

    // Malformed JSON: 400 even without a token (decode before authenticate).
    for auth in [Auth::Bearer(&app.admin1), Auth::None] {
        let resp = app
            .post_raw(&path, auth, &[], r#"{"returnCode": {"#.as_bytes().to_vec())
            .await;
        assert_error(&resp, 400, 3, "REKEY-Json1", None);
    }
    // Two members of one oneof (seed 004's example body).
    let resp = app
        .post(
            &path,
            Auth::Bearer(&app.admin1),
            &json!({"sendLink": {"notificationType": "NOTIFICATION_TYPE_Email"}, "returnCode": {}}),
        )
        .await;
    assert_error(&resp, 400, 3, "REKEY-Oneof", None);
    // URL templates: a syntax error, and a field that is not UserID/Code/OrgID.
    let resp = app
        .post(
            &path,
            Auth::Bearer(&app.admin1),
            &json!({"sendLink": {"urlTemplate": "https://app.test/r?u={{.UserID"}}),
        )
        .await;
    assert_error(
        &resp,
        400,
        3,
        "DOMAIN-oGh5e",
        Some("URL Template is invalid"),
    );
    let resp = app
        .post(
            &path,
            Auth::Bearer(&app.admin1),
            &json!({"sendLink": {"urlTemplate": "https://app.test/r?p={{.Password}}"}}),
        )
        .await;
    assert_error(
        &resp,
        400,
        3,
        "DOMAIN-ieYa7",
        Some("URL Template is invalid"),
    );
    // An unknown enum number.
    let resp = app
        .post(
            &path,
            Auth::Bearer(&app.admin1),
            &json!({"sendLink": {"notificationType": 7}}),
        )
        .await;
    assert_eq!(resp.status.as_u16(), 400, "{resp:#?}");
    assert_eq!(resp.json["code"], 3);

    assert_eq!(
        app.snapshot().await,
        snapshot,
        "refused requests write nothing"
    );
}

async fn users_out_of_reach_look_like_unknown_users(db: DbKind) {
    let app = spawn_app(db).await;
    let mine = app.add_user(&app.t1, "mine@acme.test").await;
    let colleague = app.add_user(&app.t1, "colleague@acme.test").await;
    let foreign = app.add_user(&app.t2, "foreign@globex.test").await;
    let deleted = app.add_user(&app.t1, "gone@acme.test").await;
    app.set_state(&deleted, UserState::Deleted).await;
    let mine_token = app.user_token(&mine).await;
    let snapshot = app.snapshot().await;

    let unknown = app
        .password_reset(
            "69629023906488334",
            Auth::Bearer(&app.admin1),
            &json!({"returnCode": {}}),
        )
        .await;
    assert_error(
        &unknown,
        404,
        5,
        "COMMAND-SAF4f",
        Some("User could not be found"),
    );

    let cases = [
        (
            "another tenant's user, tenant admin",
            foreign.id.as_str(),
            app.admin1.as_str(),
            json!({"returnCode": {}}),
        ),
        (
            "another tenant's user, sendLink",
            foreign.id.as_str(),
            app.admin1.as_str(),
            json!({"sendLink": {}}),
        ),
        (
            "reverse direction",
            mine.id.as_str(),
            app.admin2.as_str(),
            json!({"returnCode": {}}),
        ),
        (
            "user role on a colleague",
            colleague.id.as_str(),
            mine_token.as_str(),
            json!({"sendLink": {}}),
        ),
        (
            "user role on a colleague, returnCode",
            colleague.id.as_str(),
            mine_token.as_str(),
            json!({"returnCode": {}}),
        ),
        (
            "deleted user",
            deleted.id.as_str(),
            app.admin1.as_str(),
            json!({"returnCode": {}}),
        ),
        (
            "deleted user, system",
            deleted.id.as_str(),
            app.system.as_str(),
            json!({}),
        ),
    ];
    for (what, id, token, body) in cases {
        let resp = app.password_reset(id, Auth::Bearer(token), &body).await;
        assert_eq!(resp.status, unknown.status, "{what}: {resp:#?}");
        assert_eq!(
            resp.text, unknown.text,
            "{what}: body must be byte-identical"
        );
    }
    assert_eq!(app.snapshot().await, snapshot, "nothing written");

    // The system principal reaches every tenant.
    let resp = app
        .password_reset(
            foreign.id.as_str(),
            Auth::Bearer(&app.system),
            &json!({"returnCode": {}}),
        )
        .await;
    assert_eq!(
        resp.ok()["details"]["resourceOwner"],
        json!(app.t2.id.as_str())
    );
}

async fn authentication_and_authorization(db: DbKind) {
    let app = spawn_app(db).await;
    let user = app.add_user(&app.t1, "self@acme.test").await;
    let token = app.user_token(&user).await;
    let path = format!("/v2/users/{}/password_reset", user.id);
    let snapshot = app.snapshot().await;

    let resp = app
        .post(&path, Auth::None, &json!({"returnCode": {}}))
        .await;
    assert_error(&resp, 401, 16, "AUTH-7fs1e", None);
    let resp = app
        .post(&path, Auth::Bearer("nope"), &json!({"returnCode": {}}))
        .await;
    assert_error(&resp, 401, 16, "AUTH-7fs1e", None);
    let resp = app
        .post_raw(
            &path,
            Auth::None,
            &[("authorization", &format!("Basic {}", app.admin1))],
            b"{}".to_vec(),
        )
        .await;
    assert_error(&resp, 401, 16, "AUTH-7fs1e", None);
    // A user may not fetch their own code.
    let resp = app
        .post(&path, Auth::Bearer(&token), &json!({"returnCode": {}}))
        .await;
    assert_error(&resp, 403, 7, "AUTHZ-HKJD33", Some("No permission"));
    assert_eq!(app.snapshot().await, snapshot, "nothing written");

    // …but may have a link sent to themself.
    let resp = app
        .post(&path, Auth::Bearer(&token), &json!({"sendLink": {}}))
        .await;
    assert!(resp.ok().get("verificationCode").is_none());
    // F5's `APIToken` scheme is accepted as well.
    let resp = app
        .post(
            &path,
            Auth::ApiToken(&app.admin1),
            &json!({"returnCode": {}}),
        )
        .await;
    assert!(resp.ok()["verificationCode"].is_string());
}

async fn user_state_refusals(db: DbKind) {
    let app = spawn_app(db).await;
    let inactive = app.add_user(&app.t1, "inactive@acme.test").await;
    let locked = app.add_user(&app.t1, "locked@acme.test").await;
    app.set_state(&inactive, UserState::Inactive).await;
    app.set_state(&locked, UserState::Locked).await;
    let snapshot = app.snapshot().await;
    for (user, id) in [(&inactive, "REKEY-UsIna"), (&locked, "REKEY-UsLck")] {
        for body in [
            json!({"returnCode": {}}),
            json!({"sendLink": {}}),
            json!({}),
        ] {
            let resp = app
                .password_reset(user.id.as_str(), Auth::Bearer(&app.admin1), &body)
                .await;
            assert_error(&resp, 400, 9, id, None);
        }
    }
    assert_eq!(app.snapshot().await, snapshot, "nothing written");
}

async fn http_level_errors(db: DbKind) {
    let app = spawn_app(db).await;
    let user = app.add_user(&app.t1, "big@acme.test").await;
    let path = format!("/v2/users/{}/password_reset", user.id);
    let snapshot = app.snapshot().await;

    // A body over 64 KiB: 413, whatever it holds.
    let padding = "x".repeat(64 * 1024);
    let body = serde_json::to_vec(&json!({"returnCode": {}, "padding": padding})).unwrap();
    assert!(body.len() > 64 * 1024);
    let resp = app
        .post_raw(&path, Auth::Bearer(&app.admin1), &[], body)
        .await;
    assert_eq!(resp.status.as_u16(), 413, "{resp:#?}");
    assert_eq!(resp.json["code"], 3);
    // Just under the limit is fine (unknown fields are ignored).
    let padding = "x".repeat(60 * 1024);
    let resp = app
        .post(
            &path,
            Auth::Bearer(&app.admin1),
            &json!({"returnCode": {}, "padding": padding}),
        )
        .await;
    resp.ok();
    let snapshot_after_ok = app.snapshot().await;
    assert_ne!(snapshot_after_ok, snapshot);

    let resp = app
        .post(
            "/v2/users/x/no_such_thing",
            Auth::Bearer(&app.admin1),
            &json!({}),
        )
        .await;
    assert_eq!(resp.status.as_u16(), 404, "{resp:#?}");
    assert_eq!(resp.json["code"], 5);
    let resp = app.get(&path).await;
    assert_eq!(resp.status.as_u16(), 405, "{resp:#?}");
    assert!(resp.json["code"].is_number(), "{resp:#?}");
    assert_eq!(app.snapshot().await, snapshot_after_ok, "nothing written");
}

/// Proto3 JSON: "null is an accepted value for all field types and treated as the default
/// value of the corresponding field type" — generated clients send it for unset fields.
async fn protojson_null_is_the_default_value(db: DbKind) {
    let app = spawn_app(db).await;
    let user = app.add_user(&app.t1, "null@acme.test").await;
    // Message-typed fields already accept null.
    let resp = app
        .password_reset(
            user.id.as_str(),
            Auth::Bearer(&app.admin1),
            &json!({"sendLink": {"urlTemplate": null}, "returnCode": null}),
        )
        .await;
    resp.ok();
    // Scalars must too: an enum, a bool.
    let resp = app
        .password_reset(
            user.id.as_str(),
            Auth::Bearer(&app.admin1),
            &json!({"sendLink": {"notificationType": null}}),
        )
        .await;
    resp.ok();
    let code = app.return_code(&user).await;
    let resp = app
        .post(
            &format!("/v2/users/{}/password", user.id),
            Auth::None,
            &json!({
                "newPassword": {"password": NEW_PASSWORD, "changeRequired": null},
                "verificationCode": code,
            }),
        )
        .await;
    resp.ok();
    let resp = app
        .post(
            &format!("/management/v1/users/{}/password/_reset", user.id),
            Auth::Bearer(&app.admin1),
            &json!({"type": null}),
        )
        .await;
    resp.ok();
}
