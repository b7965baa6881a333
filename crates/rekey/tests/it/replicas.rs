//! Issue 7: two `rekey serve` replicas on one PostgreSQL database, configured alike (the same
//! code-MAC and outbox keys, the same public URL, one SMTP sink), each on its own port. A code
//! issued by one is accepted by the other; a rate limit reached on one holds on the other; under
//! concurrent resets on both, with both outbox workers running, every outbox row reaches the
//! sink exactly once, counted by distinct `Message-ID`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use base64::Engine as _;
use rekey_core::ports::{Clock, SystemClock};
use rekey_testkit::smtp::SmtpSink;
use serde_json::json;
use sqlx::Connection as _;

use crate::harness::{post_json, Answer, DbKind, Install, Server};

/// `REKEY_LIMITS__CODE_TRIES_PER_IP_PER_MINUTE` for this test.
const CODE_TRIES: usize = 4;
const USERS: usize = 6;
const RESETS: usize = 60;
/// Every replica builds links and `Message-ID`s from this, as behind one load balancer.
const PUBLIC_URL: &str = "https://reset.example.test";
const NEW_PASSWORD: &str = "Replicated-Passphrase-42";

/// `k1:<base64 of 32 random bytes>`, a key ring of one key.
fn key_spec() -> String {
    let bytes: [u8; 32] = rand::random();
    format!(
        "k1:{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

fn client_from(ip: Ipv4Addr) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(IpAddr::V4(ip))
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

async fn set_password(client: &reqwest::Client, server: &Server, user: &str, code: &str) -> Answer {
    post_json(
        client,
        &format!("{}/v2/users/{user}/password", server.base),
        None,
        &json!({ "newPassword": { "password": NEW_PASSWORD }, "verificationCode": code }),
    )
    .await
}

/// Waits, if needed, until at least `room` seconds are left in the current minute of the
/// servers' clock (the wall clock): the per-minute limits count in fixed windows, and the next
/// steps must fall in one of them.
async fn wait_for_room_in_the_minute(room: u64) {
    let second = SystemClock.now().timestamp_millis() % 60_000;
    let left = 60_000 - u64::try_from(second).unwrap();
    if left < room * 1000 {
        tokio::time::sleep(Duration::from_millis(left + 200)).await;
    }
}

/// `<key@host>` → `key`.
fn idempotency_key(message_id: &str) -> String {
    let inner = message_id
        .trim()
        .trim_start_matches('<')
        .trim_end_matches('>');
    let (key, host) = inner
        .rsplit_once('@')
        .unwrap_or_else(|| panic!("Message-ID without a host: {message_id}"));
    assert_eq!(host, "reset.example.test", "{message_id}");
    key.to_owned()
}

/// Outbox message ids a replica's worker logged as sent (JSON log lines).
fn sent_in_log(log: &str) -> Vec<String> {
    log.lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|line| line["fields"]["message"] == "outbox message sent")
        .map(|line| {
            line["fields"]["message_id"]
                .as_str()
                .unwrap_or_else(|| panic!("no message_id in {line}"))
                .to_owned()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_codes_limits_and_the_outbox() {
    let sink = SmtpSink::start();
    let mut install = Install::new(DbKind::Postgres).await;
    for (key, value) in [
        ("REKEY_KEYS__CODE_HMAC", key_spec()),
        ("REKEY_KEYS__OUTBOX", key_spec()),
        ("REKEY_PUBLIC_URL", PUBLIC_URL.to_owned()),
        ("REKEY_SMTP__HOST", "127.0.0.1".to_owned()),
        ("REKEY_SMTP__PORT", sink.port.to_string()),
        ("REKEY_SMTP__TLS", "none".to_owned()),
        ("REKEY_SMTP__FROM", "rekey@example.test".to_owned()),
        ("REKEY_OUTBOX__POLL_MS", "50".to_owned()),
        ("REKEY_OUTBOX__BACKOFF_MS", "100".to_owned()),
        (
            "REKEY_LIMITS__CODE_TRIES_PER_IP_PER_MINUTE",
            CODE_TRIES.to_string(),
        ),
        ("REKEY_LIMITS__MESSAGES_PER_USER_PER_HOUR", "100".to_owned()),
        // The worker's "outbox message sent" lines are info; trace would only slow the load.
        ("RUST_LOG", "info".to_owned()),
        ("REKEY_LOG_FORMAT", "json".to_owned()),
    ] {
        install.set_env(key, value);
    }
    install.add_tenant("Example", "example");
    let users: Vec<String> = (0..USERS)
        .map(|n| {
            install.add_user(
                "example",
                &format!("user{n}@example.com"),
                &["--password", "Correct-Horse-Battery-9"],
            )
        })
        .collect();
    let admin = install.admin_token("example");
    let a = install.serve();
    let b = install.serve();
    assert_ne!(a.base, b.base);
    let local = client_from(Ipv4Addr::LOCALHOST);

    // (a) A code issued by A is accepted by B, once: a second use on A finds no code.
    let issued = post_json(
        &local,
        &format!("{}/v2/users/{}/password_reset", a.base, users[0]),
        Some(&admin),
        &json!({ "returnCode": {} }),
    )
    .await;
    assert_eq!(issued.status, 200, "{issued:?}");
    let code = issued.body["verificationCode"].as_str().unwrap().to_owned();
    let on_b = set_password(&local, &b, &users[0], &code).await;
    assert_eq!(on_b.status, 200, "the code from A works on B: {on_b:?}");
    let again_on_a = set_password(&local, &a, &users[0], &code).await;
    assert_eq!(again_on_a.status, 400, "{again_on_a:?}");
    assert_eq!(again_on_a.body["code"], 9, "{again_on_a:?}");
    assert_eq!(
        again_on_a.body["message"], "Code not found (COMMAND-2M9fs)",
        "{again_on_a:?}"
    );

    // (b) Code tries from one IP (127.0.0.2, untouched so far) exhausted on A are refused on
    // B, although B itself has not seen a single try from that address.
    wait_for_room_in_the_minute(10).await;
    let other = client_from(Ipv4Addr::new(127, 0, 0, 2));
    for n in 0..CODE_TRIES {
        let tried = set_password(&other, &a, &users[1], "WRONGCODE").await;
        assert_eq!(
            tried.status, 400,
            "try {n} on A is within the limit: {tried:?}"
        );
    }
    let refused_on_a = set_password(&other, &a, &users[1], "WRONGCODE").await;
    assert_eq!(refused_on_a.status, 429, "{refused_on_a:?}");
    let refused_on_b = set_password(&other, &b, &users[1], "WRONGCODE").await;
    assert_eq!(
        refused_on_b.status, 429,
        "the limit reached on A holds on B: {refused_on_b:?}"
    );
    assert_eq!(refused_on_b.body["code"], 8, "{refused_on_b:?}");
    let retry_after: u64 = refused_on_b
        .retry_after
        .as_deref()
        .expect("Retry-After on the 429")
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after), "Retry-After {retry_after}");
    // The counter is per address, not global: 127.0.0.1 (3 tries so far) still gets through.
    let local_on_b = set_password(&local, &b, &users[1], "WRONGCODE").await;
    assert_eq!(local_on_b.status, 400, "{local_on_b:?}");

    // (c) Concurrent sendLink resets, spread over both replicas and several users.
    let started = Instant::now();
    let mut calls = tokio::task::JoinSet::new();
    for n in 0..RESETS {
        let base = if n % 2 == 0 { &a.base } else { &b.base };
        let url = format!("{base}/v2/users/{}/password_reset", users[n % USERS]);
        let (client, admin) = (local.clone(), admin.clone());
        calls.spawn(async move {
            let body = json!({ "sendLink": { "notificationType": "NOTIFICATION_TYPE_Email" } });
            (n, post_json(&client, &url, Some(&admin), &body).await)
        });
    }
    while let Some(joined) = calls.join_next().await {
        let (n, answer) = joined.unwrap();
        assert_eq!(answer.status, 200, "reset {n}: {answer:?}");
    }
    let requests_took = started.elapsed();

    // Every outbox row (60 resets + the "password changed" notice of (a)) is delivered: wait
    // until each row is sent and its Message-ID has arrived, bounded.
    let mut db = sqlx::PgConnection::connect(install.db.url()).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let (rows, arrived) = loop {
        let rows: Vec<(String, String, String, i64)> =
            sqlx::query_as("SELECT id, idempotency_key, state, attempts FROM outbox")
                .fetch_all(&mut db)
                .await
                .unwrap();
        let arrived: BTreeSet<String> = sink
            .received()
            .iter()
            .map(|m| idempotency_key(&m.header("Message-ID")))
            .collect();
        let done = rows
            .iter()
            .all(|(_, key, state, _)| state == "sent" && arrived.contains(key));
        if done {
            break (rows, arrived);
        }
        assert!(
            Instant::now() < deadline,
            "not delivered within 30 s: {} of {} rows sent, {} Message-IDs at the sink",
            rows.iter().filter(|r| r.2 == "sent").count(),
            rows.len(),
            arrived.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let delivered_in = started.elapsed();
    assert_eq!(rows.len(), RESETS + 1, "one outbox row per message");
    let keys: BTreeSet<String> = rows.iter().map(|r| r.1.clone()).collect();
    assert_eq!(keys.len(), rows.len(), "idempotency keys are distinct");
    // A few more poll rounds of both workers: nothing may arrive a second time.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mails = sink.received();
    let mut per_id: BTreeMap<String, usize> = BTreeMap::new();
    for mail in &mails {
        *per_id
            .entry(idempotency_key(&mail.header("Message-ID")))
            .or_default() += 1;
    }
    let ids: BTreeSet<String> = per_id.keys().cloned().collect();
    assert_eq!(
        ids, keys,
        "the sink's Message-IDs are exactly the outbox rows'"
    );
    assert!(arrived.is_subset(&ids));
    let duplicated: Vec<_> = per_id.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        duplicated.is_empty(),
        "sent twice without a crash: {duplicated:?}"
    );
    assert_eq!(mails.len(), rows.len());
    let retried = rows.iter().filter(|r| r.3 != 1).count();

    let (ok_a, log_a) = a.stop();
    let (ok_b, log_b) = b.stop();
    assert!(ok_a, "{log_a}");
    assert!(ok_b, "{log_b}");
    let (sent_a, sent_b) = (sent_in_log(&log_a), sent_in_log(&log_b));
    let by_a: BTreeSet<&String> = sent_a.iter().collect();
    let by_b: BTreeSet<&String> = sent_b.iter().collect();
    assert_eq!(by_a.len(), sent_a.len(), "A sent a message twice");
    assert_eq!(by_b.len(), sent_b.len(), "B sent a message twice");
    assert!(
        by_a.is_disjoint(&by_b),
        "a message sent by both workers: {:?}",
        by_a.intersection(&by_b).collect::<Vec<_>>()
    );
    let row_ids: BTreeSet<&String> = rows.iter().map(|r| &r.0).collect();
    let logged: BTreeSet<&String> = by_a.union(&by_b).copied().collect();
    assert_eq!(
        logged, row_ids,
        "every row logged as sent by exactly one worker"
    );
    eprintln!(
        "replicas: {RESETS} resets answered in {requests_took:?}, all {} messages delivered \
         {delivered_in:?} after the first request; worker A sent {}, worker B sent {}; rows \
         with more than one attempt: {retried}; {} mails at the sink, {} distinct Message-IDs",
        rows.len(),
        sent_a.len(),
        sent_b.len(),
        mails.len(),
        ids.len(),
    );
}
