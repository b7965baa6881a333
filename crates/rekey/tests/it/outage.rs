//! Issue 7: the database goes away under a running `rekey serve` and comes back. The server
//! reaches PostgreSQL through a TCP proxy the test cuts (every connection closed, new ones
//! refused) or silences (a partition: connections stay open, nothing answers, nothing resets),
//! then restores. Meanwhile a request that needs the database answers 503 / `UNAVAILABLE`
//! (code 14) within the pool's 2 s acquire bound, never a 504 at the request deadline;
//! `/readyz` answers 503 and `/healthz` 200. Once restored, the same process recovers on its
//! own.

use std::time::{Duration, Instant};

use rekey_testkit::proxy::Proxy;
use serde_json::json;

use crate::harness::{get, post_json, DbKind, Install, Server};

/// The longest a 503 may take once the database is gone (the pool waits 2 s).
const UNAVAILABLE_WITHIN: Duration = Duration::from_secs(4);
/// The longest the service may take to recover once the database is back.
const RECOVERED_WITHIN: Duration = Duration::from_secs(10);

/// How the database goes away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outage {
    /// Every connection closed, new ones refused.
    Cut,
    /// A partition: connections stay open, nothing is answered, nothing is reset.
    Silence,
}

/// One installation whose server reaches PostgreSQL through a proxy delaying each chunk by
/// `delay`; a tenant admin and a user made with the CLI, which talks to the database directly.
struct BehindProxy {
    // Dropped in this order: the server, then the proxy, then the database.
    server: Server,
    proxy: Proxy,
    _install: Install,
    user: String,
    admin: String,
}

async fn behind_proxy(delay: Duration) -> BehindProxy {
    let mut install = Install::new(DbKind::Postgres).await;
    install.set_env("RUST_LOG", "info");
    install.add_tenant("Example", "example");
    let user = install.add_user("example", "hello@example.com", &[]);
    let admin = install.admin_token("example");
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
    let proxy = Proxy::start(target, delay).await;
    url.set_host(Some("127.0.0.1")).unwrap();
    url.set_port(Some(proxy.addr().port())).unwrap();
    install.set_env("REKEY_DATABASE_URL", url.to_string());
    let server = install.serve();
    BehindProxy {
        server,
        proxy,
        _install: install,
        user,
        admin,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_cut_answers_503_and_recovers_by_itself() {
    outage_and_recovery(Outage::Cut).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_silence_answers_503_and_recovers_by_itself() {
    outage_and_recovery(Outage::Silence).await;
}

async fn outage_and_recovery(outage: Outage) {
    let BehindProxy {
        server,
        proxy,
        _install,
        user,
        admin,
    } = behind_proxy(Duration::ZERO).await;
    let client = reqwest::Client::new();
    let reset_url = format!("{}/v2/users/{user}/password_reset", server.base);
    let return_code = json!({ "returnCode": {} });
    let reset = || post_json(&client, &reset_url, Some(&admin), &return_code);
    let ready_url = format!("{}/readyz", server.base);
    let health_url = format!("{}/healthz", server.base);

    let before = reset().await;
    assert_eq!(before.status, 200, "{before:?}");
    assert_eq!(get(&client, &ready_url).await.status, 200);

    match outage {
        Outage::Cut => proxy.cut(),
        Outage::Silence => proxy.stall(),
    }
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
        "outage ({outage:?}): database gone → first 503 after {to_503:?} (/readyz 503 in {:?}); restored → \
         first 200 after {to_200:?} ({tries} tries)",
        not_ready.took
    );

    let (ok, log) = server.stop();
    assert!(ok, "{log}");
}

/// A partition that begins while requests are inside a database round trip: each must still
/// answer 503 before the request deadline. A query already on the wire waits for a reply the
/// server's `statement_timeout` cannot send; only the store's client-side bound on each
/// operation ends it (without it these requests answered 504 at the 10 s deadline).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_silence_during_queries_answers_503_before_the_deadline() {
    // 20 ms per chunk: a returnCode reset takes about a second, a dozen round trips.
    let setup = behind_proxy(Duration::from_millis(20)).await;
    let client = reqwest::Client::new();
    let url = format!(
        "{}/v2/users/{}/password_reset",
        setup.server.base, setup.user
    );
    let body = json!({ "returnCode": {} });
    let warm = post_json(&client, &url, Some(&setup.admin), &body).await;
    assert_eq!(warm.status, 200, "{warm:?}");
    // Requests started 100 ms apart; the partition begins while most are mid-way.
    let mut calls = tokio::task::JoinSet::new();
    for n in 0..8u64 {
        let (client, url, admin, body) = (
            client.clone(),
            url.clone(),
            setup.admin.clone(),
            body.clone(),
        );
        calls.spawn(async move {
            tokio::time::sleep(Duration::from_millis(100 * n)).await;
            post_json(&client, &url, Some(&admin), &body).await
        });
    }
    tokio::time::sleep(Duration::from_millis(900)).await;
    setup.proxy.stall();
    let mut answers = Vec::new();
    while let Some(answer) = calls.join_next().await {
        answers.push(answer.unwrap());
    }
    setup.proxy.restore();
    let summary: Vec<(u16, Duration)> = answers.iter().map(|a| (a.status, a.took)).collect();
    assert!(
        answers.iter().all(|a| a.status == 200 || a.status == 503),
        "in flight at the partition: {summary:?}"
    );
    assert!(
        answers.iter().all(|a| a.took < Duration::from_secs(9)),
        "{summary:?}"
    );
    eprintln!("outage (Silence during queries): {summary:?}");
    // And the same process recovers.
    let deadline = Instant::now() + RECOVERED_WITHIN;
    loop {
        let answer = post_json(&client, &url, Some(&setup.admin), &body).await;
        if answer.status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "not recovered: {answer:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
