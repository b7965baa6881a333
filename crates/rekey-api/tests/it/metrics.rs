//! `GET /metrics`: the scrape passes `promtool check metrics`, and its counters move as the
//! test drives requests — PasswordReset over REST and gRPC, a 404, rate-limited requests (one
//! refused with 429, one unauthenticated one answered as if sent), a password hash — while the
//! outbox gauges follow the queued messages. Nothing in it names a tenant, a user or a token.

use chrono::Duration;
use rekey_core::policy::Config;
use rekey_proto::zitadel::user::v2 as user_v2;
use rekey_testkit::DbKind;
use serde_json::json;
use tonic::transport::Endpoint;

use crate::helpers::{both_dbs, spawn_app_with, Auth, TestApp, NEW_PASSWORD};

both_dbs!(counters_move_with_the_requests_and_the_scrape_passes_promtool);

/// The scraped text, after checking the response's form.
async fn scrape(app: &TestApp) -> String {
    let resp = app.get("/metrics").await;
    assert_eq!(resp.status, 200, "{}", resp.text);
    assert_eq!(
        resp.headers["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    resp.text
}

/// The value of one series, written as it is exposed (`name{a="b",…}`); 0 when absent.
#[track_caller]
fn value(text: &str, series: &str) -> f64 {
    let prefix = format!("{series} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .map_or(0.0, |v| v.parse().expect("a number"))
}

fn requests(face: &str, operation: &str, code: &str) -> String {
    format!("rekey_requests_total{{face=\"{face}\",operation=\"{operation}\",code=\"{code}\"}}")
}

async fn counters_move_with_the_requests_and_the_scrape_passes_promtool(db: DbKind) {
    let mut config = Config::default();
    config.limits.messages_per_user_per_hour = 1;
    let app = spawn_app_with(db, config).await;
    let user = app.add_user(&app.t1, "metrics@acme.test").await;

    let before = scrape(&app).await;
    rekey_testkit::promtool::check_metrics(&before);
    for limit in [
        "messages_per_user_per_hour",
        "unauth_per_cname_email_per_hour",
        "unauth_per_ip_per_minute",
        "code_tries_per_ip_per_minute",
    ] {
        let series = format!("rekey_rate_limit_refusals_total{{limit=\"{limit}\"}}");
        assert!(before.contains(&format!("{series} 0\n")), "{series}");
    }
    assert_eq!(
        value(&before, "rekey_outbox_messages{state=\"pending\"}"),
        0.0
    );
    assert!(before.contains("rekey_hash_pool_threads 2\n"), "{before}");

    // REST: one email sent (the user's one message this hour), then the second refused.
    let send = json!({"sendLink": {"notificationType": "NOTIFICATION_TYPE_Email"}});
    let auth = Auth::Bearer(&app.admin1);
    app.password_reset(user.id.as_str(), auth, &send).await.ok();
    let resp = app.password_reset(user.id.as_str(), auth, &send).await;
    assert_eq!(resp.status, 429);
    // The unauthenticated request for the same user is over the same limit: answered as if
    // sent, and counted all the same.
    let resp = app
        .post(
            "/no_auth/send_password_email",
            Auth::None,
            &json!({"cname": "acme.test", "email": "metrics@acme.test"}),
        )
        .await;
    assert_eq!((resp.status.as_u16(), resp.json.clone()), (200, json!({})));

    // gRPC: a code returned, and an unknown user.
    let channel = Endpoint::from_shared(app.base.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = user_v2::user_service_client::UserServiceClient::new(channel);
    let grpc_reset = |user_id: &str| {
        let mut request = tonic::Request::new(user_v2::PasswordResetRequest {
            user_id: user_id.to_owned(),
            medium: Some(user_v2::password_reset_request::Medium::ReturnCode(
                user_v2::ReturnPasswordResetCode {},
            )),
        });
        let bearer = format!("Bearer {}", app.admin1);
        request
            .metadata_mut()
            .insert("authorization", bearer.parse().unwrap());
        request
    };
    let code = client
        .password_reset(grpc_reset(user.id.as_str()))
        .await
        .unwrap()
        .into_inner()
        .verification_code
        .unwrap();
    let status = client
        .password_reset(grpc_reset("404404"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound);

    // A hash (the new password), which also queues the "password changed" email.
    let resp = app
        .set_with_code(user.id.as_str(), &code, NEW_PASSWORD)
        .await;
    assert_eq!(resp.status, 200, "{}", resp.text);
    // No route.
    assert_eq!(app.get("/v2/nothing/here").await.status, 404);

    app.advance(Duration::seconds(90));
    let after = scrape(&app).await;
    rekey_testkit::promtool::check_metrics(&after);
    for (series, want) in [
        (requests("rest", "PasswordReset", "200"), 1.0),
        (requests("rest", "PasswordReset", "429"), 1.0),
        (
            requests("f5", "POST /no_auth/send_password_email", "200"),
            1.0,
        ),
        (requests("grpc", "PasswordReset", "OK"), 1.0),
        (requests("grpc", "PasswordReset", "NOT_FOUND"), 1.0),
        (requests("rest", "SetPassword", "200"), 1.0),
        (requests("rest", "unknown", "404"), 1.0),
        (requests("ops", "GET /metrics", "200"), 1.0),
        (
            "rekey_request_duration_seconds_count{face=\"rest\",operation=\"PasswordReset\"}"
                .to_owned(),
            2.0,
        ),
        (
            "rekey_request_duration_seconds_bucket{face=\"grpc\",operation=\"PasswordReset\",le=\"+Inf\"}"
                .to_owned(),
            2.0,
        ),
        (
            "rekey_rate_limit_refusals_total{limit=\"messages_per_user_per_hour\"}".to_owned(),
            2.0,
        ),
        (
            "rekey_rate_limit_refusals_total{limit=\"unauth_per_ip_per_minute\"}".to_owned(),
            0.0,
        ),
        // The reset link, then "password changed"; nothing delivers here.
        ("rekey_outbox_messages{state=\"pending\"}".to_owned(), 2.0),
        ("rekey_outbox_messages{state=\"failed\"}".to_owned(), 0.0),
        ("rekey_hash_pool_busy".to_owned(), 0.0),
        ("rekey_hash_pool_queued".to_owned(), 0.0),
        ("rekey_hash_pool_refused_total".to_owned(), 0.0),
    ] {
        assert_eq!(value(&after, &series), want, "{series}\n{after}");
    }
    // The oldest pending message was queued before the clock moved 90 s on.
    let age = value(&after, "rekey_outbox_oldest_pending_age_seconds");
    assert!((90.0..100.0).contains(&age), "{age}");
    assert!(value(&after, "rekey_db_pool_max_connections") >= 1.0);
    // The no_auth request waited for its padded deadline: in the 0.25–0.5 s bucket or later.
    let padded = "rekey_request_duration_seconds_bucket{face=\"f5\",operation=\"POST /no_auth/send_password_email\",le=\"0.25\"}";
    assert_eq!(value(&after, padded), 0.0, "{after}");

    // Nothing that names a tenant, a user, an address or a token.
    for secret in [
        user.id.as_str(),
        app.t1.id.as_str(),
        "acme.test",
        "metrics@acme.test",
        &app.admin1,
        &code,
    ] {
        assert!(!after.contains(secret), "{secret} in the metrics");
    }
}
