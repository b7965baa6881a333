//! `REKEY_LOG_FORMAT=json` through the binary: every stderr line is one JSON object — the
//! CLI's, a refused configuration's, a refused command line's and the server's from its first
//! start-up warning on; each answer's `x-request-id` names the request's log line; a trusted
//! proxy's incoming id is kept and a client's replaced; the worker's line for the message a
//! request queued carries that request's id; no secret in any line.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use rekey_testkit::smtp::SmtpSink;
use serde_json::{json, Value};

use crate::harness::{DbKind, Install, Server};

/// The test's trusted proxy: connections from this loopback address.
const PROXY: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const PROXY_ID: &str = "lb-7f3a.request-0001";
const CLIENT_ID: &str = "client-chosen-id";
const PASSWORD: &str = "Correct-Horse-Battery-9";

/// Each line of `stderr` as JSON; panics naming the first line that is not.
fn json_lines(what: &str, stderr: &str) -> Vec<Value> {
    stderr
        .lines()
        .map(|line| {
            serde_json::from_str::<Value>(line)
                .ok()
                .filter(Value::is_object)
                .unwrap_or_else(|| {
                    panic!("{what}: a stderr line is not a JSON object: {line:?}\n{stderr}")
                })
        })
        .collect()
}

fn message(line: &Value) -> &str {
    line["fields"]["message"].as_str().unwrap_or_default()
}

/// A client whose connections come from `from` (the proxy's address, or the plain loopback).
fn client_from(from: Ipv4Addr) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(IpAddr::V4(from))
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap()
}

/// A v2 password reset by email link, sending `x-request-id: incoming`; the id answered.
async fn reset_by_email(
    client: &reqwest::Client,
    server: &Server,
    token: &str,
    user: &str,
    incoming: &str,
) -> String {
    let response = client
        .post(format!("{}/v2/users/{user}/password_reset", server.base))
        .bearer_auth(token)
        .header("x-request-id", incoming)
        .json(&json!({ "sendLink": { "notificationType": "NOTIFICATION_TYPE_Email" } }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response
        .headers()
        .get("x-request-id")
        .expect("every answer names its request")
        .to_str()
        .unwrap()
        .to_owned()
}

/// The server's lines so far, once `ready` holds for them (the worker logs after sending).
async fn wait_for_log(server: &Server, ready: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let lines = json_lines("server", &server.stderr());
        if ready(&lines) {
            return lines;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the log never got there:\n{}",
            server.stderr()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn json_logs_follow_a_request_to_its_message(kind: DbKind) {
    let sink = SmtpSink::start();
    let mut install = Install::new(kind).await;
    for (key, value) in [
        ("REKEY_LOG_FORMAT", "json".to_owned()),
        ("REKEY_TRUSTED_PROXIES", format!("{PROXY}/32")),
        ("REKEY_SMTP__HOST", "127.0.0.1".to_owned()),
        ("REKEY_SMTP__PORT", sink.port.to_string()),
        ("REKEY_SMTP__TLS", "none".to_owned()),
        ("REKEY_SMTP__FROM", "rekey@example.test".to_owned()),
        ("REKEY_OUTBOX__POLL_MS", "50".to_owned()),
    ] {
        install.set_env(key, value);
    }

    // The CLI logs in JSON too (migrations, generated keys, …).
    let mut cli_stderr = String::new();
    let mut cli = |args: &[&str]| {
        let out = install.run(args);
        cli_stderr.push_str(&String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    cli(&["tenant", "add", "--name", "Example", "--cname", "example"]);
    let users: Vec<String> = ["ada@example.com", "bob@example.com"]
        .iter()
        .map(|email| {
            cli(&[
                "user",
                "add",
                "--tenant",
                "example",
                "--email",
                email,
                "--password",
                PASSWORD,
            ])
        })
        .collect();
    let token = cli(&[
        "token",
        "create",
        "--role",
        "tenant-admin",
        "--tenant",
        "example",
    ]);
    let cli_lines = json_lines("cli", &cli_stderr);
    assert!(
        !cli_lines.is_empty(),
        "the CLI logged nothing at trace level"
    );

    // A refused configuration and a refused command line: one JSON error line each.
    for (args, env, needle) in [
        (
            vec!["tenant", "show", "example"],
            Some(("REKEY_PUBLIC_URL", "ftp://nope")),
            "public_url",
        ),
        (vec!["no-such-command"], None, "no-such-command"),
    ] {
        let mut command = install.command();
        if let Some((key, value)) = env {
            command.env(key, value);
        }
        let out = command.args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let lines = json_lines("refused", &stderr);
        assert!(
            lines.iter().any(|l| l["level"] == "ERROR"
                && l["fields"]["error"]
                    .as_str()
                    .is_some_and(|e| e.contains(needle))),
            "{args:?}: {stderr}"
        );
    }

    let server = install.serve();
    let proxied = reset_by_email(&client_from(PROXY), &server, &token, &users[0], PROXY_ID).await;
    assert_eq!(proxied, PROXY_ID, "a trusted proxy's request id is kept");
    let direct = reset_by_email(
        &client_from(Ipv4Addr::LOCALHOST),
        &server,
        &token,
        &users[1],
        CLIENT_ID,
    )
    .await;
    assert_ne!(direct, CLIENT_ID, "a client cannot choose its request id");
    assert!(
        direct.len() == 16 && direct.bytes().all(|b| b.is_ascii_hexdigit()),
        "{direct}"
    );
    // Even a refused request is answered with an id.
    let refused = client_from(Ipv4Addr::LOCALHOST)
        .get(format!("{}/v2/users/{}", server.base, users[0]))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    assert!(refused.headers().contains_key("x-request-id"));

    let mails = sink.wait_for(2).await;
    let ids = [proxied.as_str(), direct.as_str()];
    let lines = wait_for_log(&server, |lines| {
        lines
            .iter()
            .filter(|l| message(l) == "outbox message sent")
            .count()
            >= 2
    })
    .await;

    // Start-up warnings are JSON lines like the rest (no SMS channel here).
    assert!(
        lines
            .iter()
            .any(|l| l["level"] == "WARN" && message(l).contains("SMS messages stay queued")),
        "no start-up warning:\n{}",
        server.stderr()
    );
    for id in ids {
        // The request's own line, and the worker's line for the message it queued.
        let request = lines
            .iter()
            .find(|l| message(l) == "request" && l["fields"]["request_id"] == id)
            .unwrap_or_else(|| panic!("no request line for {id}:\n{}", server.stderr()));
        assert!(request["fields"]["path"]
            .as_str()
            .unwrap()
            .ends_with("/password_reset"));
        assert_eq!(request["span"]["request_id"], id, "the request's span");
        let sent = lines
            .iter()
            .filter(|l| message(l) == "outbox message sent" && l["fields"]["request_id"] == id)
            .count();
        assert_eq!(sent, 1, "one worker line carries {id}");
    }
    assert!(
        !lines.iter().any(|l| l.to_string().contains(CLIENT_ID)),
        "the client's own id is not logged as a request id"
    );

    let (ok, stderr) = server.stop();
    assert!(ok, "{stderr}");
    let all = json_lines("server", &stderr);
    // No secret anywhere: the codes and links sent, the token, the password.
    let secrets: Vec<String> = mails
        .iter()
        .map(|mail| {
            let text = mail.part("text/plain");
            text.split_whitespace()
                .find(|w| w.contains("code="))
                .unwrap_or_else(|| panic!("no link in {text}"))
                .split("code=")
                .nth(1)
                .unwrap()
                .split('&')
                .next()
                .unwrap()
                .to_owned()
        })
        .chain([token.clone(), PASSWORD.to_owned()])
        .collect();
    for line in all.iter().chain(&cli_lines) {
        let text = line.to_string();
        for secret in &secrets {
            assert!(!text.contains(secret.as_str()), "a secret in {text}");
        }
    }
}

rekey_testkit::both_dbs!(json_logs_follow_a_request_to_its_message);
