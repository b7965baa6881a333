//! v2 SetPassword: the code path's refusals in the order of SPEC §3.2, the attempt cap under
//! concurrency, single use, the policy refund, the current-password and admin paths, and what
//! a successful change does besides the hash (tokens revoked, notice queued, state).

use chrono::Duration;
use rekey_core::domain::{Channel, MessageKind, OutboxState, UserState};
use rekey_core::policy::password::is_common;
use rekey_testkit::DbKind;
use serde_json::json;

use crate::helpers::{
    assert_error, both_dbs, spawn_app, Auth, Resp, TestApp, NEW_PASSWORD, START_PASSWORD,
};

both_dbs!(
    wrong_and_expired_codes,
    five_wrong_tries_kill_the_code,
    concurrent_wrong_codes_cannot_pass_the_cap,
    concurrent_right_codes_are_used_once,
    policy_refusal_does_not_use_up_an_attempt,
    new_code_voids_the_old_and_unknown_users_look_like_no_code,
    current_password_path,
    admin_set_without_verification,
    code_reset_revokes_user_tokens_and_queues_a_notice,
    initial_user_becomes_active_after_a_code_reset,
);

const WRONG: &str = "ZZZZ2222";

/// A wrong code that cannot be the right one.
fn wrong_for(right: &str) -> &'static str {
    if right.eq_ignore_ascii_case(WRONG) {
        "YYYY3333"
    } else {
        WRONG
    }
}

async fn wrong_and_expired_codes(db: DbKind) {
    let app = spawn_app(db).await;
    let user = app.add_user(&app.t1, "wrong@acme.test").await;
    app.add_user(&app.t2, "wrong@globex.test").await;
    let code = app.return_code(&user).await;

    // Wrong, in any alphabet and up to 20 characters: "Code is invalid", one attempt each,
    // and nothing else changes.
    for (n, wrong) in [wrong_for(&code), "0O1IL0O1", "abc", "12345678901234567890"]
        .into_iter()
        .enumerate()
    {
        let before = app.snapshot().await;
        let resp = app
            .set_with_code(user.id.as_str(), wrong, NEW_PASSWORD)
            .await;
        assert_error(&resp, 400, 3, "CODE-woT0xc", Some("Code is invalid"));
        assert_eq!(app.attempts(&user).await, u32::try_from(n + 1).unwrap());
        assert_eq!(
            app.snapshot().await.without_attempts(),
            before.without_attempts(),
            "a wrong code changes only its attempt counter"
        );
    }
    // Over 20 characters is a format error and counts nothing.
    let resp = app
        .set_with_code(user.id.as_str(), "123456789012345678901", NEW_PASSWORD)
        .await;
    assert_error(&resp, 400, 3, "REKEY-CoLen", None);
    assert_eq!(app.attempts(&user).await, 4);

    // A locked user's code: FAILED_PRECONDITION, before any attempt is counted.
    app.set_state(&user, UserState::Locked).await;
    let snapshot = app.snapshot().await;
    let resp = app
        .set_with_code(user.id.as_str(), &code, NEW_PASSWORD)
        .await;
    assert_error(&resp, 400, 9, "REKEY-UsLck", None);
    assert_eq!(app.snapshot().await, snapshot);
    app.set_state(&user, UserState::Active).await;

    // Expired: advance past the hour. Not counted, nothing written, the right code included.
    let code = app.return_code(&user).await;
    app.advance(Duration::hours(1) + Duration::seconds(1));
    let snapshot = app.snapshot().await;
    for attempt in [code.as_str(), wrong_for(&code)] {
        let resp = app
            .set_with_code(user.id.as_str(), attempt, NEW_PASSWORD)
            .await;
        assert_error(&resp, 400, 9, "CODE-QvUQ4P", Some("Code is expired"));
    }
    assert_eq!(app.snapshot().await, snapshot);
    assert!(app.has_password(&user, START_PASSWORD).await);

    // 59 minutes on, a reset code still works.
    let code = app.return_code(&user).await;
    app.advance(Duration::minutes(59));
    app.set_with_code(user.id.as_str(), &code, NEW_PASSWORD)
        .await
        .ok();
}

async fn five_wrong_tries_kill_the_code(db: DbKind) {
    let app = spawn_app(db).await;
    let user = app.add_user(&app.t1, "five@acme.test").await;
    let code = app.return_code(&user).await;
    for n in 1..=5 {
        let resp = app
            .set_with_code(user.id.as_str(), wrong_for(&code), NEW_PASSWORD)
            .await;
        assert_error(&resp, 400, 3, "CODE-woT0xc", None);
        assert_eq!(app.attempts(&user).await, n);
    }
    let snapshot = app.snapshot().await;
    let resp = app
        .set_with_code(user.id.as_str(), &code, NEW_PASSWORD)
        .await;
    assert_error(&resp, 400, 3, "CODE-woT0xc", Some("Code is invalid"));
    assert_eq!(app.snapshot().await, snapshot, "a dead code stays dead");
    assert!(app.has_password(&user, START_PASSWORD).await);

    // A new code starts a fresh count.
    let code = app.return_code(&user).await;
    assert_eq!(app.attempts(&user).await, 0);
    app.set_with_code(user.id.as_str(), &code, NEW_PASSWORD)
        .await
        .ok();
}

/// Fires `n` SetPassword requests at once.
async fn fire(app: &TestApp, user_id: &str, codes: Vec<String>) -> Vec<(u16, serde_json::Value)> {
    let url = app.url(&format!("/v2/users/{user_id}/password"));
    let mut set = tokio::task::JoinSet::new();
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(codes.len()));
    for (i, code) in codes.into_iter().enumerate() {
        let client = app.client.clone();
        let url = url.clone();
        let barrier = barrier.clone();
        set.spawn(async move {
            let body = json!({
                "newPassword": {"password": format!("concurrent passphrase {i}")},
                "verificationCode": code,
            });
            barrier.wait().await;
            let resp = client.post(url).json(&body).send().await.unwrap();
            let status = resp.status().as_u16();
            (status, resp.json::<serde_json::Value>().await.unwrap())
        });
    }
    set.join_all().await
}

async fn concurrent_wrong_codes_cannot_pass_the_cap(db: DbKind) {
    let app = spawn_app(db).await;
    let user = app.add_user(&app.t1, "race@acme.test").await;
    let code = app.return_code(&user).await;
    let results = fire(
        &app,
        user.id.as_str(),
        vec![wrong_for(&code).to_owned(); 10],
    )
    .await;
    for (status, body) in &results {
        assert_eq!(*status, 400, "{body}");
        assert_eq!(body["details"][0]["id"], "CODE-woT0xc", "{body}");
    }
    assert_eq!(
        app.attempts(&user).await,
        5,
        "the cap holds under concurrency"
    );
    let resp = app
        .set_with_code(user.id.as_str(), &code, NEW_PASSWORD)
        .await;
    assert_error(&resp, 400, 3, "CODE-woT0xc", None);
    assert!(app.has_password(&user, START_PASSWORD).await);
}

async fn concurrent_right_codes_are_used_once(db: DbKind) {
    let app = spawn_app(db).await;
    let user = app.add_user(&app.t1, "once@acme.test").await;
    let seq = app.user(&user).await.sequence;
    let code = app.return_code(&user).await;
    let results = fire(&app, user.id.as_str(), vec![code.clone(); 5]).await;
    let winners: Vec<_> = results.iter().filter(|(s, _)| *s == 200).collect();
    assert_eq!(winners.len(), 1, "exactly one use: {results:#?}");
    for (status, body) in results.iter().filter(|(s, _)| *s != 200) {
        assert_eq!(*status, 400, "{body}");
        assert_eq!(body["code"], 9, "{body}");
        assert_eq!(body["details"][0]["id"], "COMMAND-2M9fs", "{body}");
    }
    assert_eq!(
        app.user(&user).await.sequence,
        seq + 2,
        "one reset, one change"
    );
    assert_eq!(
        app.messages(&user, MessageKind::PasswordChanged)
            .await
            .len(),
        1
    );
    assert!(app.pending_code(&user).await.is_none());
}

async fn policy_refusal_does_not_use_up_an_attempt(db: DbKind) {
    let app = spawn_app(db).await;
    let user = app.add_user(&app.t1, "policy@acme.test").await;
    let code = app.return_code(&user).await;
    for _ in 0..4 {
        let resp = app
            .set_with_code(user.id.as_str(), wrong_for(&code), NEW_PASSWORD)
            .await;
        assert_error(&resp, 400, 3, "CODE-woT0xc", None);
    }
    assert_eq!(app.attempts(&user).await, 4);

    // Right code, refused password: named rule, attempt given back, nothing else written.
    let common = "PASSWORD1234";
    assert!(is_common(common), "fixture must be on the shipped list");
    assert!(
        common.chars().count() >= 12,
        "so only the blocklist refuses it"
    );
    for (password, id, text) in [
        (
            "short",
            "REKEY-PwLen",
            "Password is too short: at least 12 characters",
        ),
        (
            common,
            "REKEY-PwCom",
            "Password is too common: it appears in a list of frequently used passwords",
        ),
    ] {
        let snapshot = app.snapshot().await;
        let resp = app.set_with_code(user.id.as_str(), &code, password).await;
        assert_error(&resp, 400, 3, id, Some(text));
        assert_eq!(app.attempts(&user).await, 4, "no attempt used up");
        assert_eq!(app.snapshot().await, snapshot);
    }
    // The fifth attempt is still there for the holder of the code.
    app.set_with_code(user.id.as_str(), &code, NEW_PASSWORD)
        .await
        .ok();
    assert!(app.has_password(&user, NEW_PASSWORD).await);
}

async fn new_code_voids_the_old_and_unknown_users_look_like_no_code(db: DbKind) {
    let app = spawn_app(db).await;
    let user = app.add_user(&app.t1, "void@acme.test").await;
    let never = app.add_user(&app.t2, "never@globex.test").await;
    let old = app.return_code(&user).await;
    let new = app.return_code(&user).await;
    assert_ne!(old, new);
    let snapshot = app.snapshot().await;
    let resp = app
        .set_with_code(user.id.as_str(), &old, NEW_PASSWORD)
        .await;
    // The old code is not the pending one: it is judged against the new code.
    assert_error(&resp, 400, 3, "CODE-woT0xc", None);
    assert_eq!(
        app.snapshot().await.without_attempts(),
        snapshot.without_attempts()
    );

    // No pending code, an unknown id, a deleted user: the same answer, byte for byte.
    let no_code = app
        .set_with_code(never.id.as_str(), &new, NEW_PASSWORD)
        .await;
    assert_error(&no_code, 400, 9, "COMMAND-2M9fs", Some("Code not found"));
    let unknown = app
        .set_with_code("69629023906488334", &new, NEW_PASSWORD)
        .await;
    assert_eq!(unknown.status, no_code.status);
    assert_eq!(unknown.text, no_code.text);

    app.set_with_code(user.id.as_str(), &new, NEW_PASSWORD)
        .await
        .ok();
    let resp = app
        .set_with_code(user.id.as_str(), &old, NEW_PASSWORD)
        .await;
    assert_eq!(resp.text, no_code.text, "after use nothing is pending");

    let gone = app.add_user(&app.t1, "gone@acme.test").await;
    let code = app.return_code(&gone).await;
    app.set_state(&gone, UserState::Deleted).await;
    let resp = app
        .set_with_code(gone.id.as_str(), &code, NEW_PASSWORD)
        .await;
    assert_eq!(resp.text, no_code.text, "deleted user");
}

async fn current_password_path(db: DbKind) {
    let app = spawn_app(db).await;
    let user = app.add_user(&app.t1, "current@acme.test").await;
    let other = app.add_user(&app.t2, "current@globex.test").await;
    let token = app.user_token(&user).await;
    let path = format!("/v2/users/{}/password", user.id);
    let body = |current: &str, new: &str| json!({"newPassword": {"password": new}, "currentPassword": current});
    let snapshot = app.snapshot().await;

    let resp = app
        .post(&path, Auth::None, &body(START_PASSWORD, NEW_PASSWORD))
        .await;
    assert_error(&resp, 401, 16, "AUTH-7fs1e", None);
    let resp = app
        .post(
            &path,
            Auth::Bearer(&token),
            &body("not the password at all", NEW_PASSWORD),
        )
        .await;
    assert_error(&resp, 400, 3, "COMMAND-3M0fs", Some("Password is invalid"));
    let resp = app
        .post(
            &path,
            Auth::Bearer(&token),
            &body(START_PASSWORD, START_PASSWORD),
        )
        .await;
    assert_error(&resp, 400, 9, "COMMAND-3M0fsd", None);
    // Another tenant's admin does not see the user at all.
    let resp = app
        .post(
            &path,
            Auth::Bearer(&app.admin2),
            &body(START_PASSWORD, NEW_PASSWORD),
        )
        .await;
    assert_error(&resp, 404, 5, "COMMAND-SAF4f", None);
    assert_eq!(app.snapshot().await, snapshot, "nothing written");

    let resp = app
        .post(
            &path,
            Auth::Bearer(&token),
            &body(START_PASSWORD, NEW_PASSWORD),
        )
        .await;
    resp.ok();
    assert!(app.has_password(&user, NEW_PASSWORD).await);
    assert!(app.has_password(&other, START_PASSWORD).await);
    // An admin may use the path as well.
    let resp = app
        .post(
            &path,
            Auth::Bearer(&app.admin1),
            &body(NEW_PASSWORD, "admin chose this one"),
        )
        .await;
    resp.ok();
    assert!(app.has_password(&user, "admin chose this one").await);
}

async fn admin_set_without_verification(db: DbKind) {
    let app = spawn_app(db).await;
    let user = app.add_user(&app.t1, "adminset@acme.test").await;
    let token = app.user_token(&user).await;
    let path = format!("/v2/users/{}/password", user.id);
    let body = json!({"newPassword": {"password": NEW_PASSWORD, "changeRequired": true}});
    let snapshot = app.snapshot().await;

    let resp = app.post(&path, Auth::Bearer(&token), &body).await;
    assert_error(&resp, 403, 7, "AUTHZ-HKJD33", Some("No permission"));
    let resp = app.post(&path, Auth::Bearer(&app.admin2), &body).await;
    assert_error(&resp, 404, 5, "COMMAND-SAF4f", None);
    let resp = app.post(&path, Auth::None, &body).await;
    assert_error(&resp, 401, 16, "AUTH-7fs1e", None);
    assert_eq!(app.snapshot().await, snapshot, "nothing written");

    let resp = app.post(&path, Auth::Bearer(&app.admin1), &body).await;
    let seq = app.user(&user).await.sequence;
    assert_eq!(resp.ok()["details"]["sequence"], json!(seq.to_string()));
    let stored = app.user(&user).await;
    assert!(stored.password_change_required, "changeRequired stored");
    assert!(app.has_password(&user, NEW_PASSWORD).await);
    // No history rule: the same password again is fine on the admin path.
    let resp = app
        .post(
            &path,
            Auth::Bearer(&app.system),
            &json!({"newPassword": {"password": NEW_PASSWORD}}),
        )
        .await;
    resp.ok();
    assert!(!app.user(&user).await.password_change_required);
}

async fn code_reset_revokes_user_tokens_and_queues_a_notice(db: DbKind) {
    let app = spawn_app(db).await;
    let user = app.add_user(&app.t1, "revoke@acme.test").await;
    let other = app.add_user(&app.t2, "keep@globex.test").await;
    let token = app.user_token(&user).await;
    let other_token = app.user_token(&other).await;
    self_reset(&app, user.id.as_str(), &token).await.ok();

    let code = app.return_code(&user).await;
    app.set_with_code(user.id.as_str(), &code, NEW_PASSWORD)
        .await
        .ok();

    let resp = self_reset(&app, user.id.as_str(), &token).await;
    assert_error(&resp, 401, 16, "AUTH-7fs1e", None);
    self_reset(&app, other.id.as_str(), &other_token).await.ok();
    app.password_reset(user.id.as_str(), Auth::Bearer(&app.admin1), &json!({}))
        .await
        .ok();

    let notices = app.messages(&user, MessageKind::PasswordChanged).await;
    assert_eq!(notices.len(), 1);
    let notice = &notices[0];
    assert_eq!(notice.channel, Channel::Email);
    assert_eq!(notice.state, OutboxState::Pending);
    assert_eq!(notice.recipient.as_deref(), Some("revoke@acme.test"));
    let payload = app.open(notice);
    assert!(payload.code.is_none() && payload.link.is_none());
    assert!(app
        .messages(&other, MessageKind::PasswordChanged)
        .await
        .is_empty());
    let last = app
        .user_events(&user)
        .await
        .into_iter()
        .rfind(|e| e.kind == "user.password.changed")
        .unwrap();
    assert_eq!(last.actor, "anonymous");
    assert_eq!(last.ip.as_deref(), Some("127.0.0.1"));
}

/// A user's own sendLink request.
async fn self_reset(app: &TestApp, id: &str, token: &str) -> Resp {
    app.password_reset(id, Auth::Bearer(token), &json!({"sendLink": {}}))
        .await
}

async fn initial_user_becomes_active_after_a_code_reset(db: DbKind) {
    let app = spawn_app(db).await;
    let user = app.add_initial_user(&app.t1, "newbie@acme.test").await;
    let code = app.return_code(&user).await;
    assert_eq!(app.user(&user).await.state, UserState::Initial);
    assert_eq!(
        app.pending_code(&user).await.unwrap().expires_at,
        app.now() + Duration::hours(72)
    );
    app.post(
        &format!("/v2/users/{}/password", user.id),
        Auth::None,
        &json!({
            "newPassword": {"password": NEW_PASSWORD, "changeRequired": true},
            "verificationCode": code,
        }),
    )
    .await
    .ok();
    let stored = app.user(&user).await;
    assert_eq!(stored.state, UserState::Active);
    assert!(stored.password_change_required, "changeRequired stored");
    assert!(app.has_password(&user, NEW_PASSWORD).await);
}
