//! F5 Distributed Cloud routes (seeds 000, 001, 002 and the self-service twin): successes
//! queue the message, refusals answer in F5's JSON shape and status and write nothing, and
//! `no_auth` never tells whether the tenant or the email exists.

use std::time::{Duration, Instant};

use rekey_core::domain::{MessageKind, UserState};
use rekey_testkit::DbKind;
use serde_json::{json, Value};

use crate::helpers::{both_dbs, spawn_app, Auth, Resp};

both_dbs!(
    admin_reset_queues_a_reset_email,
    namespaced_send_password_email_needs_system,
    admin_routes_refuse_bad_input_and_strangers,
    system_principal_and_ambiguous_email,
    admin_reset_is_rate_limited_per_user,
    no_auth_is_enumeration_proof,
    no_auth_input_and_rate_limits,
    self_service_reset_emails_the_caller,
);

const PREFIX: &str = "/api/v1/api/production/us-east-1/namespaces/default";

/// An F5 error: status, numeric code, `details: []`, and a message naming the id.
fn assert_f5_error(resp: &Resp, status: u16, code: i64, id: &str) {
    assert_eq!(resp.status.as_u16(), status, "{resp:#?}");
    assert_eq!(resp.json["code"], code, "{resp:#?}");
    assert_eq!(resp.json["details"], json!([]), "{resp:#?}");
    let message = resp.json["message"].as_str().unwrap_or_default();
    assert!(message.ends_with(&format!("({id})")), "{message}");
}

async fn admin_reset_queues_a_reset_email(db: DbKind) {
    let app = spawn_app(db).await;
    let user = app.add_user(&app.t1, "hello@example.com").await;
    let resp = app
        .post(
            "/api/web/custom/password/admin_reset",
            Auth::ApiToken(&app.admin1),
            &json!({"email": "HELLO@example.com", "unknown": 1}),
        )
        .await;
    assert_eq!(resp.ok(), &json!({}));
    let messages = app.messages(&user, MessageKind::PasswordReset).await;
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].recipient.as_deref(), Some("hello@example.com"));
    let payload = app.open(&messages[0]);
    assert!(payload
        .link
        .unwrap()
        .starts_with("http://127.0.0.1:8080/ui/password/reset?userID="));

    // The seed pages' prefix is an alias.
    let resp = app
        .post(
            &format!("{PREFIX}/api/web/custom/password/admin_reset"),
            Auth::ApiToken(&app.admin1),
            &json!({"email": "hello@example.com"}),
        )
        .await;
    assert_eq!(resp.ok(), &json!({}));
    assert_eq!(
        app.messages(&user, MessageKind::PasswordReset).await.len(),
        2
    );

    // The mailed code works with SetPassword (the last one issued).
    let code = app.sent_code(&user).await;
    let done = app
        .set_with_code(user.id.as_str(), &code, "A-Brand-New-Secret-42")
        .await;
    assert_eq!(done.status, 200, "{done:#?}");
}

async fn namespaced_send_password_email_needs_system(db: DbKind) {
    let app = spawn_app(db).await;
    let user = app.add_user(&app.t1, "hello@example.com").await;
    let path = |ns: &str| format!("{PREFIX}/api/web/custom/namespaces/{ns}/send_password_email");
    let before = app.snapshot().await;
    // Seed 000 as published uses namespace "example": refused, as the page says it is always
    // "system".
    let resp = app
        .post(
            &path("example"),
            Auth::ApiToken(&app.admin1),
            &json!({"email": "hello@example.com", "namespace": "example"}),
        )
        .await;
    assert_f5_error(&resp, 400, 3, "REKEY-NsSys");
    let resp = app
        .post(
            &path("system"),
            Auth::ApiToken(&app.admin1),
            &json!({"email": "hello@example.com", "namespace": "other"}),
        )
        .await;
    assert_f5_error(&resp, 400, 3, "REKEY-NsAgr");
    assert_eq!(app.snapshot().await, before);

    let resp = app
        .post(
            &path("system"),
            Auth::ApiToken(&app.admin1),
            &json!({"email": "hello@example.com", "namespace": "system"}),
        )
        .await;
    assert_eq!(resp.ok(), &json!({}));
    let resp = app
        .post(
            "/api/web/custom/namespaces/system/send_password_email",
            Auth::Bearer(&app.admin1),
            &json!({"email": "hello@example.com"}),
        )
        .await;
    assert_eq!(resp.ok(), &json!({}));
    assert_eq!(
        app.messages(&user, MessageKind::PasswordReset).await.len(),
        2
    );
}

async fn admin_routes_refuse_bad_input_and_strangers(db: DbKind) {
    let app = spawn_app(db).await;
    let user = app.add_user(&app.t1, "hello@example.com").await;
    let other = app.add_user(&app.t2, "other@example.com").await;
    let own_token = app.user_token(&user).await;
    let path = "/api/web/custom/password/admin_reset";
    let before = app.snapshot().await;

    let long = format!("{}@example.com", "a".repeat(1020));
    for (body, id) in [
        (json!({}), "REKEY-EmReq"),
        (json!({"email": ""}), "REKEY-EmReq"),
        (json!({"email": "not-an-email"}), "REKEY-Email"),
        (json!({"email": long}), "REKEY-EmLen"),
    ] {
        let resp = app.post(path, Auth::ApiToken(&app.admin1), &body).await;
        assert_f5_error(&resp, 400, 3, id);
    }
    let resp = app
        .post_raw(path, Auth::ApiToken(&app.admin1), &[], "{not json")
        .await;
    assert_f5_error(&resp, 400, 3, "REKEY-Json1");
    assert!(!resp.text.contains("not json"));

    let body = json!({"email": "hello@example.com"});
    let resp = app.post(path, Auth::None, &body).await;
    assert_f5_error(&resp, 401, 16, "AUTH-7fs1e");
    let resp = app.post(path, Auth::ApiToken("rk_unknown"), &body).await;
    assert_f5_error(&resp, 401, 16, "AUTH-7fs1e");
    let resp = app.post(path, Auth::ApiToken(&own_token), &body).await;
    assert_f5_error(&resp, 403, 7, "AUTHZ-HKJD33");
    let resp = app
        .post(
            path,
            Auth::ApiToken(&app.admin1),
            &json!({"email": "nobody@example.com"}),
        )
        .await;
    assert_f5_error(&resp, 404, 5, "REKEY-UsNF1");
    // Another tenant's user is unknown to this admin.
    let resp = app
        .post(
            path,
            Auth::ApiToken(&app.admin1),
            &json!({"email": other.email.as_str()}),
        )
        .await;
    assert_f5_error(&resp, 404, 5, "REKEY-UsNF1");
    assert_eq!(app.snapshot().await, before);

    app.set_state(&user, UserState::Inactive).await;
    let before = app.snapshot().await;
    let resp = app.post(path, Auth::ApiToken(&app.admin1), &body).await;
    assert_f5_error(&resp, 409, 10, "REKEY-UsIna");
    app.set_state(&user, UserState::Locked).await;
    let resp = app.post(path, Auth::ApiToken(&app.admin1), &body).await;
    assert_f5_error(&resp, 409, 10, "REKEY-UsLck");
    let after = app.snapshot().await;
    assert_eq!(after.events, before.events + 1, "only the lock itself");
    assert_eq!(after.outbox, before.outbox);

    // Unknown F5 routes answer in F5's shape.
    let resp = app
        .post(
            "/api/web/custom/password/nope",
            Auth::ApiToken(&app.admin1),
            &body,
        )
        .await;
    assert_f5_error(&resp, 404, 5, "REKEY-Route");
}

async fn system_principal_and_ambiguous_email(db: DbKind) {
    let app = spawn_app(db).await;
    let unique = app.add_user(&app.t2, "unique@example.com").await;
    app.add_user(&app.t1, "twice@example.com").await;
    app.add_user(&app.t2, "twice@example.com").await;
    let path = "/api/web/custom/password/admin_reset";
    let resp = app
        .post(
            path,
            Auth::ApiToken(&app.system),
            &json!({"email": "unique@example.com"}),
        )
        .await;
    assert_eq!(resp.ok(), &json!({}));
    assert_eq!(
        app.messages(&unique, MessageKind::PasswordReset)
            .await
            .len(),
        1
    );

    let before = app.snapshot().await;
    let resp = app
        .post(
            path,
            Auth::ApiToken(&app.system),
            &json!({"email": "TWICE@example.com"}),
        )
        .await;
    assert_f5_error(&resp, 409, 10, "REKEY-EmAmb");
    assert_eq!(app.snapshot().await, before);
}

async fn admin_reset_is_rate_limited_per_user(db: DbKind) {
    let app = spawn_app(db).await;
    let user = app.add_user(&app.t1, "hello@example.com").await;
    let path = "/api/web/custom/password/admin_reset";
    let body = json!({"email": "hello@example.com"});
    for _ in 0..5 {
        app.post(path, Auth::ApiToken(&app.admin1), &body)
            .await
            .ok();
    }
    let before = app.snapshot().await;
    let resp = app.post(path, Auth::ApiToken(&app.admin1), &body).await;
    assert_f5_error(&resp, 429, 8, "REKEY-Rate1");
    assert!(resp.headers.get("retry-after").is_some());
    assert_eq!(app.snapshot().await, before);
    assert_eq!(
        app.messages(&user, MessageKind::PasswordReset).await.len(),
        5
    );
}

async fn no_auth(app: &crate::helpers::TestApp, auth: Auth<'_>, body: &Value) -> (Resp, Duration) {
    let started = Instant::now();
    let resp = app.post("/no_auth/send_password_email", auth, body).await;
    (resp, started.elapsed())
}

async fn no_auth_is_enumeration_proof(db: DbKind) {
    let app = spawn_app(db).await;
    let user = app.add_user(&app.t1, "hello@example.com").await;
    let initial = app.add_initial_user(&app.t1, "new@example.com").await;
    let inactive = app.add_user(&app.t1, "gone@example.com").await;
    app.set_state(&inactive, UserState::Inactive).await;

    let mut answers = Vec::new();
    for (cname, email) in [
        ("acme.test", "hello@example.com"),
        ("acme.test", "nobody@example.com"),
        ("no-such-tenant", "hello@example.com"),
        ("globex.test", "hello@example.com"),
        ("acme.test", "gone@example.com"),
        ("acme.test", "new@example.com"),
    ] {
        // Any Authorization header is ignored.
        let (resp, took) = no_auth(
            &app,
            Auth::Bearer("garbage"),
            &json!({"cname": cname, "email": email}),
        )
        .await;
        assert!(
            took >= Duration::from_millis(400),
            "{cname} {email}: {took:?}"
        );
        answers.push((resp.status.as_u16(), resp.text.clone()));
    }
    assert!(
        answers.iter().all(|a| *a == (200, "{}".to_owned())),
        "{answers:?}"
    );
    assert_eq!(
        app.messages(&user, MessageKind::PasswordReset).await.len(),
        1
    );
    assert_eq!(
        app.messages(&initial, MessageKind::PasswordInit)
            .await
            .len(),
        1
    );
    assert!(app
        .messages(&inactive, MessageKind::PasswordReset)
        .await
        .is_empty());
    assert_eq!(
        app.outbox().await.len(),
        2,
        "only the existing, active accounts got a message"
    );

    // Seed 001's prefix works too.
    let resp = app
        .post(
            &format!("{PREFIX}/no_auth/send_password_email"),
            Auth::None,
            &json!({"cname": "acme.test", "email": "hello@example.com"}),
        )
        .await;
    assert_eq!(resp.ok(), &json!({}));

    // Past the account's own message limit, no_auth still answers 200 and sends nothing.
    for _ in 0..3 {
        app.post(
            "/api/web/custom/password/admin_reset",
            Auth::ApiToken(&app.admin1),
            &json!({"email": "hello@example.com"}),
        )
        .await
        .ok();
    }
    let before = app.messages(&user, MessageKind::PasswordReset).await.len();
    assert_eq!(before, 5);
    let (resp, took) = no_auth(
        &app,
        Auth::None,
        &json!({"cname": "acme.test", "email": "hello@example.com"}),
    )
    .await;
    assert_eq!((resp.status.as_u16(), resp.text.as_str()), (200, "{}"));
    assert!(took >= Duration::from_millis(400));
    assert_eq!(
        app.messages(&user, MessageKind::PasswordReset).await.len(),
        5
    );
}

async fn no_auth_input_and_rate_limits(db: DbKind) {
    let app = spawn_app(db).await;
    app.add_user(&app.t1, "hello@example.com").await;
    let before = app.snapshot().await;
    for (body, id) in [
        (json!({"email": "hello@example.com"}), "REKEY-CnReq"),
        (json!({"cname": "acme.test"}), "REKEY-EmReq"),
        (
            json!({"cname": "acme.test", "email": "nope"}),
            "REKEY-Email",
        ),
        (
            json!({"cname": "x".repeat(1025), "email": "hello@example.com"}),
            "REKEY-CnLen",
        ),
    ] {
        let (resp, _) = no_auth(&app, Auth::None, &body).await;
        assert_f5_error(&resp, 400, 3, id);
    }
    assert_eq!(app.snapshot().await, before);

    // Per cname+email: 5 an hour, keyed by the input whether or not it exists.
    for email in ["hello@example.com", "nobody@example.com"] {
        for _ in 0..5 {
            let (resp, _) = no_auth(
                &app,
                Auth::None,
                &json!({"cname": "acme.test", "email": email}),
            )
            .await;
            assert_eq!(resp.status, 200);
        }
        let (resp, took) = no_auth(
            &app,
            Auth::None,
            &json!({"cname": "ACME.test", "email": email.to_uppercase()}),
        )
        .await;
        assert_f5_error(&resp, 429, 8, "REKEY-Rate1");
        assert!(resp.headers.get("retry-after").is_some());
        assert!(took >= Duration::from_millis(400), "the 429 is padded too");
    }
}

async fn self_service_reset_emails_the_caller(db: DbKind) {
    let app = spawn_app(db).await;
    let user = app.add_user(&app.t1, "hello@example.com").await;
    let token = app.user_token(&user).await;
    let path = "/api/web/custom/password/reset";
    let resp = app.post(path, Auth::ApiToken(&token), &json!({})).await;
    assert_eq!(resp.ok(), &json!({}));
    assert_eq!(
        app.messages(&user, MessageKind::PasswordReset).await.len(),
        1
    );
    let resp = app
        .post(path, Auth::ApiToken(&app.admin1), &json!({}))
        .await;
    assert_f5_error(&resp, 403, 7, "AUTHZ-HKJD33");
    let resp = app.post(path, Auth::None, &json!({})).await;
    assert_f5_error(&resp, 401, 16, "AUTH-7fs1e");
}

/// With a slow database (every chunk to and from PostgreSQL delayed), an existing account's
/// reset needs more round trips than an unknown one's. The answer must still leave at the
/// padded deadline for both — the existing account's write finishes after the answer — and
/// the message must still be queued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_auth_answers_at_the_deadline_even_when_the_database_is_slow() {
    let app = crate::helpers::spawn_app_behind_slow_network(Duration::from_millis(10)).await;
    let deadline = Duration::from_millis(400); // ServeSettings::default()
    let mut users = Vec::new();
    for i in 0..4 {
        users.push(app.add_user(&app.t1, &format!("slow{i}@example.com")).await);
    }
    // Warm the pool so that connecting through the proxy is not what is measured.
    let _ = no_auth(
        &app,
        Auth::None,
        &json!({"cname": "acme.test", "email": "warm@example.com"}),
    )
    .await;
    let mut existing = Vec::new();
    let mut unknown = Vec::new();
    for i in 0..4 {
        let (resp, took) = no_auth(
            &app,
            Auth::None,
            &json!({"cname": "acme.test", "email": format!("slow{i}@example.com")}),
        )
        .await;
        assert_eq!(resp.status, 200, "{resp:?}");
        existing.push(took);
        let (resp, took) = no_auth(
            &app,
            Auth::None,
            &json!({"cname": "acme.test", "email": format!("nobody{i}@example.com")}),
        )
        .await;
        assert_eq!(resp.status, 200, "{resp:?}");
        unknown.push(took);
    }
    existing.sort();
    unknown.sort();
    let (e, u) = (existing[1], unknown[1]);
    let gap = e.abs_diff(u);
    assert!(
        gap < Duration::from_millis(60),
        "existing {existing:?} vs unknown {unknown:?}"
    );
    assert!(e < deadline + Duration::from_millis(100), "{existing:?}");
    assert!(e >= deadline && u >= deadline, "{existing:?} {unknown:?}");
    // The work went on after the answer: every existing account got its message.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for user in &users {
        assert_eq!(
            app.messages(user, MessageKind::PasswordReset).await.len(),
            1
        );
    }
}
