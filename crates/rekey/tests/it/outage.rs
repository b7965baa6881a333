//! Issue 7: the database goes away under a running `rekey serve` and comes back. The server
//! reaches PostgreSQL through a TCP proxy the test cuts (every connection closed, new ones
//! refused) and restores. While cut, a request that needs the database answers 503 /
//! `UNAVAILABLE` (code 14) in about the pool's 2 s acquire bound, never a 504 at the request
//! deadline; `/readyz` answers 503 and `/healthz` 200. Once restored, the same process recovers
//! on its own.

use std::time::{Duration, Instant};

use rekey_testkit::proxy::Proxy;
use serde_json::json;

use crate::harness::{get, post_json, DbKind, Install};

/// The longest a 503 may take once the database is gone (the pool waits 2 s).
const UNAVAILABLE_WITHIN: Duration = Duration::from_secs(4);
/// The longest the service may take to recover once the database is back.
const RECOVERED_WITHIN: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_outage_answers_503_and_recovers_by_itself() {
    let mut install = Install::new(DbKind::Postgres).await;
    install.set_env("RUST_LOG", "info");
    // The CLI talks to the database directly; only the server goes through the proxy.
    install.stdout(&["tenant", "add", "--name", "Example", "--cname", "example"]);
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
    let mut url = url::Url::parse(install.db.url()).unwrap();
    let target = tokio::net::lookup_host(format!(
        "{}:{}",
        url.host_str().unwrap(),
        url.port().unwrap_or(5432)
    ))
    .await
    .unwrap()
    .next()
    .unwrap();
    let proxy = Proxy::start(target, Duration::ZERO).await;
    url.set_host(Some("127.0.0.1")).unwrap();
    url.set_port(Some(proxy.addr().port())).unwrap();
    install.set_env("REKEY_DATABASE_URL", url.to_string());
    let server = install.serve();

    let client = reqwest::Client::new();
    let reset_url = format!("{}/v2/users/{user}/password_reset", server.base);
    let return_code = json!({ "returnCode": {} });
    let reset = || post_json(&client, &reset_url, Some(&admin), &return_code);
    let ready_url = format!("{}/readyz", server.base);
    let health_url = format!("{}/healthz", server.base);

    let before = reset().await;
    assert_eq!(before.status, 200, "{before:?}");
    assert_eq!(get(&client, &ready_url).await.status, 200);

    proxy.cut();
    let lost = Instant::now();
    let down = reset().await;
    let to_503 = lost.elapsed();
    assert_eq!(down.status, 503, "UNAVAILABLE, not a deadline: {down:?}");
    assert_eq!(down.body["code"], 14, "{down:?}");
    assert!(down.took < UNAVAILABLE_WITHIN, "503 took {:?}", down.took);
    let not_ready = get(&client, &ready_url).await;
    assert_eq!(not_ready.status, 503, "{not_ready:?}");
    assert_eq!(not_ready.body["database"], "unavailable", "{not_ready:?}");
    assert!(
        not_ready.took < UNAVAILABLE_WITHIN,
        "/readyz took {:?}",
        not_ready.took
    );
    let health = get(&client, &health_url).await;
    assert_eq!(health.status, 200, "the process is up: {health:?}");
    assert!(health.took < Duration::from_secs(1), "{:?}", health.took);
    // Still down a moment later: each request fails on its own, bounded.
    let still_down = reset().await;
    assert_eq!(still_down.status, 503, "{still_down:?}");
    assert!(
        still_down.took < UNAVAILABLE_WITHIN,
        "{:?}",
        still_down.took
    );

    proxy.restore();
    let back = Instant::now();
    let (to_200, tries) = {
        let mut tries = 0;
        loop {
            tries += 1;
            let answer = reset().await;
            if answer.status == 200 {
                break (back.elapsed(), tries);
            }
            assert_eq!(answer.status, 503, "while recovering: {answer:?}");
            assert!(
                back.elapsed() < RECOVERED_WITHIN,
                "not recovered {RECOVERED_WITHIN:?} after the database came back: {answer:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let ready = get(&client, &ready_url).await;
    assert_eq!(ready.status, 200, "{ready:?}");
    assert_eq!(ready.body["database"], "ok", "{ready:?}");
    eprintln!(
        "outage: database cut → first 503 after {to_503:?} (/readyz 503 in {:?}); restored → \
         first 200 after {to_200:?} ({tries} tries)",
        not_ready.took
    );

    let (ok, log) = server.stop();
    assert!(ok, "{log}");
    drop(proxy);
}
