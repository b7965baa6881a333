//! `REKEY_METRICS_LISTEN`: `/metrics` on a listener of its own (and 404 on the main one), with
//! the outbox worker's deliveries wired in, checked by `promtool check metrics`; both listeners
//! stop at SIGTERM.

use std::time::{Duration, Instant};

use rekey_testkit::free_port;
use rekey_testkit::smtp::SmtpSink;
use serde_json::json;

use crate::harness::{get, post_json, DbKind, Install};

rekey_testkit::both_dbs!(metrics_on_a_listener_of_their_own);

async fn text(client: &reqwest::Client, url: &str) -> (u16, String) {
    let response = client.get(url).send().await.expect("scraped");
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

fn value(text: &str, series: &str) -> Option<f64> {
    let prefix = format!("{series} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .map(|v| v.parse().expect("a number"))
}

async fn metrics_on_a_listener_of_their_own(kind: DbKind) {
    let sink = SmtpSink::start();
    let mut install = Install::new(kind).await;
    for (k, v) in [
        ("REKEY_SMTP__HOST", "127.0.0.1".to_owned()),
        ("REKEY_SMTP__PORT", sink.port.to_string()),
        ("REKEY_SMTP__TLS", "none".to_owned()),
        ("REKEY_SMTP__FROM", "rekey@example.test".to_owned()),
        ("REKEY_OUTBOX__POLL_MS", "50".to_owned()),
    ] {
        install.set_env(k, v);
    }
    let metrics_port = free_port();
    install.set_env("REKEY_METRICS_LISTEN", format!("127.0.0.1:{metrics_port}"));
    install.run(&["tenant", "add", "--name", "Example", "--cname", "example"]);
    let user = install.stdout(&[
        "user",
        "add",
        "--tenant",
        "example",
        "--email",
        "hello@example.com",
    ]);
    let admin = install.stdout(&[
        "token",
        "create",
        "--role",
        "tenant-admin",
        "--tenant",
        "example",
    ]);
    let server = install.serve();
    let client = reqwest::Client::new();
    let scrape_url = format!("http://127.0.0.1:{metrics_port}/metrics");

    assert_eq!(
        get(&client, &format!("{}/metrics", server.base))
            .await
            .status,
        404
    );
    let sent = post_json(
        &client,
        &format!("{}/v2/users/{user}/password_reset", server.base),
        Some(&admin),
        &json!({"sendLink": {"notificationType": "NOTIFICATION_TYPE_Email"}}),
    )
    .await;
    assert_eq!(sent.status, 200, "{:?}", sent.body);

    // The worker delivers the mail and counts it once the outcome is recorded.
    let delivered = "rekey_deliveries_total{channel=\"email\",outcome=\"sent\"}";
    let deadline = Instant::now() + Duration::from_secs(20);
    let scraped = loop {
        let (status, body) = text(&client, &scrape_url).await;
        assert_eq!(status, 200, "{body}");
        if value(&body, delivered) == Some(1.0) || Instant::now() > deadline {
            break body;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(sink.received().len(), 1);
    rekey_testkit::promtool::check_metrics(&scraped);
    for (series, want) in [
        (delivered, 1.0),
        (
            "rekey_deliveries_total{channel=\"email\",outcome=\"retry\"}",
            0.0,
        ),
        (
            "rekey_deliveries_total{channel=\"sms\",outcome=\"parked\"}",
            0.0,
        ),
        (
            "rekey_requests_total{face=\"rest\",operation=\"PasswordReset\",code=\"200\"}",
            1.0,
        ),
        (
            "rekey_requests_total{face=\"ops\",operation=\"GET /metrics\",code=\"404\"}",
            1.0,
        ),
        ("rekey_outbox_messages{state=\"pending\"}", 0.0),
    ] {
        assert_eq!(value(&scraped, series), Some(want), "{series}\n{scraped}");
    }
    // Scrapes on their own listener are not requests of the service.
    assert_eq!(
        value(
            &scraped,
            "rekey_requests_total{face=\"ops\",operation=\"GET /metrics\",code=\"200\"}"
        ),
        None
    );
    // The metrics listener serves nothing else.
    let (status, _) = text(&client, &format!("http://127.0.0.1:{metrics_port}/healthz")).await;
    assert_eq!(status, 404);

    let (clean, log) = server.stop();
    assert!(clean, "{log}");
    assert!(log.contains("metrics on a listener of their own"), "{log}");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", metrics_port)).is_err(),
        "the metrics listener closed"
    );
}

/// `/metrics` on a listener other clients reach can tell an unauthenticated reset for an
/// account from one for nobody (README, Metrics): serving it there is warned about at start,
/// and not when the metrics have a listener of their own.
#[tokio::test]
async fn metrics_on_a_public_listener_are_warned_about() {
    let warning = "/metrics is served on the public listener";
    let install = Install::new(DbKind::Sqlite).await;
    let public = install.serve_at("0.0.0.0", free_port());
    let (ok, log) = public.stop();
    assert!(ok, "{log}");
    assert!(log.contains(warning), "{log}");

    let mut install = Install::new(DbKind::Sqlite).await;
    install.set_env("REKEY_METRICS_LISTEN", format!("127.0.0.1:{}", free_port()));
    let separate = install.serve_at("0.0.0.0", free_port());
    let (ok, log) = separate.stop();
    assert!(ok, "{log}");
    assert!(!log.contains(warning), "{log}");
    assert!(log.contains("rekey is serving"), "{log}");
}
