//! Key rotation without downtime (issue 10, SPEC §7, §8, §12), through the binary: `rekey keys
//! rotate` against the data directory of a running server, which then signs and seals with the
//! new keys while a code and an outbox message made before the rotation still work; `keys
//! list` shows ids and ages, never a key; a configured ring is not rotated but answered with
//! the ring to configure.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use base64::Engine as _;
use rekey_testkit::free_port;
use rekey_testkit::smtp::{Received, SinkTls, SmtpSink};
use serde_json::{json, Value};

use crate::harness::{post_json, DbKind, Install};

const PASSWORD: &str = "Correct-Horse-Battery-9";

/// The key material of a ring file or value: every base64 part after an `id:`.
fn materials(ring_text: &str) -> Vec<String> {
    ring_text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .flat_map(|l| l.split(','))
        .filter_map(|entry| entry.split_once(':').map(|(_, m)| m.trim().to_owned()))
        .filter(|m| !m.is_empty())
        .collect()
}

async fn db(install: &Install) -> sqlx::SqlitePool {
    sqlx::SqlitePool::connect(install.db.url()).await.unwrap()
}

/// The key id of the user's newest code, and of the newest outbox message to them.
async fn code_key(pool: &sqlx::SqlitePool, user: &str) -> String {
    sqlx::query_scalar(
        "SELECT key_id FROM reset_codes WHERE user_id = ? ORDER BY created_at DESC, rowid DESC",
    )
    .bind(user)
    .fetch_one(pool)
    .await
    .unwrap()
}

async fn message_key(pool: &sqlx::SqlitePool, user: &str) -> (String, String, i64) {
    sqlx::query_as(
        "SELECT key_id, state, attempts FROM outbox \
         WHERE user_id = ? AND kind = 'password_reset' ORDER BY created_at DESC, rowid DESC",
    )
    .bind(user)
    .fetch_one(pool)
    .await
    .unwrap()
}

fn code_in(mail: &Received) -> String {
    let text = mail.part("text/plain");
    let link = text
        .split_whitespace()
        .find(|w| w.starts_with("http") && w.contains("code="))
        .unwrap_or_else(|| panic!("no link in:\n{text}"))
        .trim_end_matches(['.', ')', '>']);
    url::Url::parse(link)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .unwrap()
}

/// Rotates both rings while the server runs: new codes and new messages carry the new key
/// ids once the server has re-read the files, and a code issued and a message sealed before
/// the rotation still set the password and still deliver (to a real SMTP server).
async fn rotation_while_serving() {
    let smtp_port = free_port();
    let mut install = Install::new(DbKind::Sqlite).await;
    install.with_smtp(smtp_port);
    for (k, v) in [
        ("REKEY_OUTBOX__BACKOFF_MS", "20"),
        ("REKEY_OUTBOX__MAX_ATTEMPTS", "40"),
        ("REKEY_LIMITS__MESSAGES_PER_USER_PER_HOUR", "100"),
        ("REKEY_KEYS__RELOAD_MS", "200"),
    ] {
        install.set_env(k, v);
    }
    install.add_tenant("Example", "example");
    let user = |email: &str| install.add_user("example", email, &["--password", PASSWORD]);
    // One user per purpose: a new code for a user voids that user's pending one.
    let (early_code, early_mail, probe, late_mail) = (
        user("early-code@example.com"),
        user("early-mail@example.com"),
        user("probe@example.com"),
        user("late-mail@example.com"),
    );
    let system = install.stdout(&["token", "create", "--role", "system"]);
    let server = install.serve();
    let client = reqwest::Client::new();
    let reset = |user: &str, body: Value| {
        let url = format!("{}/v2/users/{user}/password_reset", server.base);
        let (client, system) = (&client, &system);
        async move {
            let answer = post_json(client, &url, Some(system), &body).await;
            assert_eq!(answer.status, 200, "{:?}", answer.body);
            answer.body
        }
    };
    let set_password = |user: &str, code: &str, password: &str| {
        let url = format!("{}/v2/users/{user}/password", server.base);
        let body = json!({ "newPassword": { "password": password }, "verificationCode": code });
        let client = &client;
        async move { post_json(client, &url, None, &body).await.status }
    };
    let pool = db(&install).await;

    // Before the rotation: a returned code, and a mail the worker cannot send yet (no SMTP
    // server listens), sealed under the first outbox key.
    let answer = reset(&early_code, json!({ "returnCode": {} })).await;
    let old_code = answer["verificationCode"].as_str().unwrap().to_owned();
    assert_eq!(code_key(&pool, &early_code).await, "k1");
    reset(&early_mail, json!({ "sendLink": {} })).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (key, state, attempts) = message_key(&pool, &early_mail).await;
        assert_eq!((key.as_str(), state.as_str()), ("k1", "pending"));
        if attempts > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the worker never tried the message"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let rotated = install.stdout(&["keys", "rotate", "code-hmac"]);
    assert_eq!(rotated, "k2");
    let rotated: Value =
        serde_json::from_str(&install.stdout(&["--json", "keys", "rotate", "outbox"])).unwrap();
    assert_eq!(rotated["ring"], "outbox");
    assert_eq!(rotated["id"], "k2");

    // The running server takes the new keys up by itself. The two files are re-read on the
    // same schedule but were written one after the other, so a reload may fall between them:
    // wait until both a new code and a new message use k2 (a sent link makes one of each).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        reset(&probe, json!({ "sendLink": {} })).await;
        let code = code_key(&pool, &probe).await;
        let (message, _, _) = message_key(&pool, &probe).await;
        if (code.as_str(), message.as_str()) == ("k2", "k2") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "new codes or messages still under k1 ({code}, {message}):\n{}",
            server.stderr()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    reset(&late_mail, json!({ "sendLink": {} })).await;
    assert_eq!(message_key(&pool, &late_mail).await.0, "k2");

    // Now SMTP comes up: the message sealed under k1 is delivered, and so is the one sealed
    // under k2.
    let sink = SmtpSink::start_with(smtp_port, SinkTls::None, None);
    let deadline = Instant::now() + Duration::from_secs(40);
    let mails = loop {
        let mails = sink.received();
        let to: BTreeSet<String> = mails.iter().map(|m| m.rcpt_tos.join(",")).collect();
        if to.contains("early-mail@example.com") && to.contains("late-mail@example.com") {
            break mails;
        }
        assert!(
            Instant::now() < deadline,
            "not delivered; got mail for {to:?}:\n{}",
            server.stderr()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mail_to = |email: &str| {
        mails
            .iter()
            .find(|m| m.rcpt_tos == [email])
            .unwrap_or_else(|| panic!("no mail to {email}"))
    };
    let (early_row, late_row) = (
        message_key(&pool, &early_mail).await,
        message_key(&pool, &late_mail).await,
    );
    assert_eq!((early_row.0.as_str(), early_row.1.as_str()), ("k1", "sent"));
    assert_eq!((late_row.0.as_str(), late_row.1.as_str()), ("k2", "sent"));

    // The codes made before the rotation (signed with code key k1) still set the password:
    // the returned one and the one in the mail sealed before the rotation.
    assert_eq!(
        set_password(&early_code, &old_code, "Rotated-Keys-Still-Verify-1").await,
        200
    );
    let mailed = code_in(mail_to("early-mail@example.com"));
    assert_eq!(
        set_password(&early_mail, &mailed, "Rotated-Keys-Still-Verify-2").await,
        200
    );
    let mailed = code_in(mail_to("late-mail@example.com"));
    assert_eq!(
        set_password(&late_mail, &mailed, "Rotated-Keys-Still-Verify-3").await,
        200
    );

    // `keys list`: ids and ages, never the keys.
    let files: String = ["code_hmac.keys", "outbox.keys"]
        .iter()
        .map(|f| std::fs::read_to_string(install.data_path().join(f)).unwrap())
        .collect();
    let secrets = materials(&files);
    assert_eq!(secrets.len(), 4, "two keys in each ring");
    let listed = install.stdout(&["keys", "list"]);
    let json_listed = install.stdout(&["--json", "keys", "list"]);
    for secret in &secrets {
        assert!(!listed.contains(secret.as_str()), "key material listed");
        assert!(
            !json_listed.contains(secret.as_str()),
            "key material listed"
        );
    }
    let lines: Vec<Vec<&str>> = listed.lines().map(|l| l.split('\t').collect()).collect();
    let rows: Vec<(&str, &str, &str)> = lines.iter().map(|l| (l[0], l[1], l[3])).collect();
    assert_eq!(
        rows,
        [
            ("code-hmac", "k2", "signs"),
            ("code-hmac", "k1", "verifies"),
            ("outbox", "k2", "encrypts"),
            ("outbox", "k1", "decrypts"),
        ],
        "{listed}"
    );
    assert!(lines
        .iter()
        .all(|l| l[2].starts_with("age=") && l[2] != "age=unknown" && l[4] == "file"));
    let json_listed: Value = serde_json::from_str(&json_listed).unwrap();
    for ring in json_listed["rings"].as_array().unwrap() {
        let keys = ring["keys"].as_array().unwrap();
        assert_eq!(keys[0]["id"], "k2");
        assert_eq!(keys[0]["current"], true);
        assert_eq!(keys[1]["id"], "k1");
        assert!(keys
            .iter()
            .all(|k| k["age_seconds"].as_i64().unwrap() < 600));
    }

    let (ok, log) = server.stop();
    assert!(ok, "{log}");
    assert!(log.contains("key ring reloaded"), "{log}");
    for secret in &secrets {
        assert!(!log.contains(secret.as_str()), "key material in the log");
    }
    pool.close().await;
}

/// A random ring value `id:base64,…` for configuration.
fn configured_ring(ids: &[&str]) -> String {
    ids.iter()
        .map(|id| {
            let key: [u8; 32] = rand::random();
            format!(
                "{id}:{}",
                base64::engine::general_purpose::STANDARD.encode(key)
            )
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// A configured ring is not rewritten: `rotate` exits non-zero, prints the ring to configure
/// (a new id first, then the configured entries unchanged) and says what to do; that value
/// is a ring the server accepts.
async fn configured_rings_are_answered_not_rotated() {
    let mut install = Install::new(DbKind::Sqlite).await;
    let configured = configured_ring(&["prod-2026", "k4"]);
    install.set_env("REKEY_KEYS__CODE_HMAC", configured.clone());

    let out = install
        .command()
        .args(["keys", "rotate", "code-hmac"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "a configured ring must not rotate");
    let value = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("REKEY_KEYS__CODE_HMAC"), "{stderr}");
    assert!(stderr.contains("nothing was changed"), "{stderr}");
    let (new_entry, rest) = value.split_once(',').unwrap();
    assert_eq!(rest, configured, "the configured entries follow, unchanged");
    assert!(new_entry.starts_with("k5:"), "{new_entry}");
    assert!(
        !stderr.contains(&new_entry[3..]),
        "key material only on stdout"
    );
    assert!(
        !install.data_path().join("code_hmac.keys").exists(),
        "nothing written"
    );

    // With --json the same value, and the new id.
    let out = install
        .command()
        .args(["--json", "keys", "rotate", "code-hmac"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answer["id"], "k5");
    assert!(answer["value"]
        .as_str()
        .unwrap()
        .ends_with(&format!(",{configured}")));

    // The printed ring parses: configured, it lists as k5 (signing), prod-2026, k4.
    install.set_env("REKEY_KEYS__CODE_HMAC", value.clone());
    let listed: Value = serde_json::from_str(&install.stdout(&["--json", "keys", "list"])).unwrap();
    let code_ring = &listed["rings"][0];
    assert_eq!(code_ring["ring"], "code-hmac");
    assert_eq!(code_ring["source"], "configuration");
    let ids: Vec<&str> = code_ring["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["k5", "prod-2026", "k4"]);
    assert!(code_ring["keys"][0]["age_seconds"].is_null(), "age unknown");
    for secret in materials(&value) {
        assert!(!listed.to_string().contains(&secret));
    }
    // The outbox ring is not configured and no server has generated it yet.
    assert_eq!(listed["rings"][1]["source"], "file");
    assert_eq!(listed["rings"][1]["keys"], json!([]));
    let out = install
        .command()
        .args(["keys", "rotate", "outbox"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no key ring"));

    // And a server configured with it signs new codes with the new key.
    install.add_tenant("Example", "example");
    let user = install.add_user("example", "hello@example.com", &[]);
    let system = install.stdout(&["token", "create", "--role", "system"]);
    let server = install.serve();
    let answer = post_json(
        &reqwest::Client::new(),
        &format!("{}/v2/users/{user}/password_reset", server.base),
        Some(&system),
        &json!({ "returnCode": {} }),
    )
    .await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    let pool = db(&install).await;
    assert_eq!(code_key(&pool, &user).await, "k5");
    pool.close().await;
    let (ok, log) = server.stop();
    assert!(ok, "{log}");
}

#[tokio::test]
async fn keys_rotation_while_serving_sqlite() {
    rotation_while_serving().await;
}

#[tokio::test]
async fn keys_configured_rings_are_answered_not_rotated() {
    configured_rings_are_answered_not_rotated().await;
}
