//! The per-user message limit (SPEC §10): 5 messages per user per hour by default, counted in
//! the same transaction as the message; `returnCode` sends nothing and does not count.

use chrono::{Duration, Timelike};
use rekey_core::domain::MessageKind;
use rekey_testkit::DbKind;
use serde_json::json;

use crate::helpers::{assert_error, both_dbs, spawn_app, Auth, NEW_PASSWORD};

both_dbs!(messages_per_user_per_hour, code_tries_per_ip_per_minute);

async fn messages_per_user_per_hour(db: DbKind) {
    let app = spawn_app(db).await;
    let user = app.add_user(&app.t1, "bombed@acme.test").await;
    let neighbour = app.add_user(&app.t1, "neighbour@acme.test").await;
    let send = json!({"sendLink": {"notificationType": "NOTIFICATION_TYPE_Email"}});

    // returnCode requests before, between and after do not count.
    app.return_code(&user).await;
    for _ in 0..5 {
        app.password_reset(user.id.as_str(), Auth::Bearer(&app.admin1), &send)
            .await
            .ok();
        app.return_code(&user).await;
    }
    assert_eq!(
        app.messages(&user, MessageKind::PasswordReset).await.len(),
        5
    );

    // The sixth message within the hour: 429 with Retry-After, and nothing written.
    let snapshot = app.snapshot().await;
    for body in [send.clone(), json!({})] {
        let resp = app
            .password_reset(user.id.as_str(), Auth::Bearer(&app.admin1), &body)
            .await;
        assert_error(&resp, 429, 8, "REKEY-Rate1", None);
        let retry_after: i64 = resp.headers["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        let now = app.now();
        let to_next_hour = 3600 - i64::from(now.minute() * 60 + now.second());
        assert_eq!(retry_after, to_next_hour, "seconds until the window ends");
    }
    // v1 counts against the same limit.
    let resp = app
        .post(
            &format!("/management/v1/users/{}/password/_reset", user.id),
            Auth::Bearer(&app.admin1),
            &json!({}),
        )
        .await;
    assert_error(&resp, 429, 8, "REKEY-Rate1", None);
    assert_eq!(
        app.snapshot().await,
        snapshot,
        "a refused request writes nothing"
    );

    // returnCode still works while the user is limited; other users are not limited.
    app.return_code(&user).await;
    app.password_reset(neighbour.id.as_str(), Auth::Bearer(&app.admin1), &send)
        .await
        .ok();

    // An hour later the window is fresh.
    app.advance(Duration::hours(1));
    app.password_reset(user.id.as_str(), Auth::Bearer(&app.admin1), &send)
        .await
        .ok();
    assert_eq!(
        app.messages(&user, MessageKind::PasswordReset).await.len(),
        6
    );
}

async fn code_tries_per_ip_per_minute(db: DbKind) {
    let app = spawn_app(db).await;
    let user = app.add_user(&app.t1, "tries@acme.test").await;
    let code = app.return_code(&user).await;
    // 30 submissions a minute per client address (default), counted whatever the id names.
    for _ in 0..30 {
        let resp = app
            .set_with_code("69629023906488334", "ABCDEFGH", NEW_PASSWORD)
            .await;
        assert_error(&resp, 400, 9, "COMMAND-2M9fs", None);
    }
    let snapshot = app.snapshot().await;
    let resp = app
        .set_with_code(user.id.as_str(), &code, NEW_PASSWORD)
        .await;
    assert_error(&resp, 429, 8, "REKEY-Rate1", None);
    let retry_after: u32 = resp.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(retry_after, 60 - app.now().second());
    assert_eq!(
        app.snapshot().await,
        snapshot,
        "not even an attempt is counted"
    );
    assert_eq!(app.attempts(&user).await, 0);

    app.advance(Duration::seconds(60));
    app.set_with_code(user.id.as_str(), &code, NEW_PASSWORD)
        .await
        .ok();
}
