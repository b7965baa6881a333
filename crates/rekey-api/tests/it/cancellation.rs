//! Requests cancelled mid-write by their own deadline must never leave the database unusable:
//! after storms of concurrent Connect SetPassword calls with `Connect-Timeout-Ms: 1`, and single
//! calls cut at 1 to 90 ms (across the whole write), a normal write succeeds promptly every
//! time and `/readyz` stays 200. (Before the store began write transactions in a task of their
//! own, SQLite's one writer connection could be left inside a transaction nobody owned, and
//! every later write failed with 503.)

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rekey_core::domain::User;
use rekey_core::policy::{Config, Limits};
use rekey_testkit::DbKind;
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{both_dbs, spawn_app_with, TestApp, NEW_PASSWORD};

both_dbs!(connect_requests_cancelled_mid_write_leave_the_store_usable);

const SET_PASSWORD: &str = "/zitadel.user.v2.UserService/SetPassword";
const WAVES: usize = 4;
const PER_WAVE: usize = 48;
/// The one-at-a-time rounds use deadlines of 1, 4, 7, … up to this many milliseconds (a
/// whole SetPassword takes some 30–70 ms in a debug build, most of it hashing).
const SERIES_MS: u64 = 90;
/// A normal request after a cancelled one must answer within this.
const PROMPTLY: Duration = Duration::from_secs(5);

fn set_password_body(user: &User, code: &str) -> String {
    json!({
        "userId": user.id.to_string(),
        "newPassword": {"password": "a storm of cancelled passphrases"},
        "verificationCode": code,
    })
    .to_string()
}

/// Connect JSON SetPassword with `Connect-Timeout-Ms: deadline_ms`; the HTTP status.
fn set_password(
    app: &TestApp,
    body: &str,
    deadline_ms: u64,
) -> impl std::future::Future<Output = u16> + Send + 'static {
    let request = app
        .client
        .post(app.url(SET_PASSWORD))
        .header("content-type", "application/json")
        .header("connect-timeout-ms", deadline_ms.to_string())
        .body(body.to_owned());
    async move {
        tokio::time::timeout(Duration::from_secs(10), request.send())
            .await
            .expect("a short deadline is answered")
            .expect("request sent")
            .status()
            .as_u16()
    }
}

async fn ready(app: &TestApp) -> StatusCode {
    tokio::time::timeout(PROMPTLY, app.get("/readyz"))
        .await
        .expect("/readyz answers promptly")
        .status
}

async fn connect_requests_cancelled_mid_write_leave_the_store_usable(db: DbKind) {
    // Every cancelled request should reach the write path, not stop at the per-IP code-try
    // limit (which refuses by a read).
    let config = Config {
        limits: Limits {
            code_tries_per_ip_per_minute: 100_000,
            ..Limits::default()
        },
        ..Config::default()
    };
    let app = spawn_app_with(db, config).await;
    let user = app.add_user(&app.t1, "cancel@acme.test").await;
    let code = app.return_code(&user).await;
    assert_eq!(ready(&app).await, StatusCode::OK);

    let mut answers: BTreeMap<u16, usize> = BTreeMap::new();
    // Waves of concurrent requests cut off after 1 ms, most of them while waiting for the
    // writer or inside their first write.
    let body = set_password_body(&user, &code);
    for _ in 0..WAVES {
        let mut calls = tokio::task::JoinSet::new();
        for _ in 0..PER_WAVE {
            let request = set_password(&app, &body, 1);
            calls.spawn(request);
        }
        while let Some(status) = calls.join_next().await {
            *answers.entry(status.unwrap()).or_default() += 1;
        }
    }
    // Then one request at a time with a fresh code and a deadline 3 ms longer each round, so
    // the cut lands at every step of the writes (BEGIN, inside, COMMIT), and the next round's
    // code is a normal write that must go through each time.
    let mut series = Vec::new();
    for deadline_ms in (1..=SERIES_MS).step_by(3) {
        let code = tokio::time::timeout(PROMPTLY, app.return_code(&user))
            .await
            .unwrap_or_else(|_| panic!("a code promptly before the {deadline_ms}-ms cut"));
        let status = set_password(&app, &set_password_body(&user, &code), deadline_ms).await;
        *answers.entry(status).or_default() += 1;
        series.push(status);
    }
    // Cut off (504), or finished in time: the change itself (200), or the code already used
    // by one that finished (400). Never the database failing (503) or a bug (500).
    assert!(
        answers
            .keys()
            .all(|status| [200, 400, 504].contains(status)),
        "{answers:?}"
    );
    assert!(
        answers.get(&504).copied().unwrap_or(0) > 0,
        "the deadline cut some requests off: {answers:?}"
    );
    eprintln!(
        "{}: cancelled SetPassword: {answers:?}; one at a time, 1, 4, … {SERIES_MS} ms: {series:?}",
        db.name()
    );

    assert_eq!(ready(&app).await, StatusCode::OK, "/readyz after the storm");
    let started = Instant::now();
    let code = tokio::time::timeout(PROMPTLY, app.return_code(&user))
        .await
        .expect("a new code promptly");
    let set = tokio::time::timeout(
        PROMPTLY,
        app.set_with_code(user.id.as_str(), &code, NEW_PASSWORD),
    )
    .await
    .expect("SetPassword promptly");
    set.ok();
    let took = started.elapsed();
    assert!(took < PROMPTLY, "{took:?}");
    assert!(app.has_password(&user, NEW_PASSWORD).await);
    assert_eq!(ready(&app).await, StatusCode::OK, "/readyz at the end");
}
