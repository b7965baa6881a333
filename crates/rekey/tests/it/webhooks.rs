//! Event webhooks through the binary (SPEC §10, §12): a real HTTP receiver checks each
//! request's signature and body; a receiver that fails at first gets the events after retries
//! with backoff; one that always fails has its rows parked as failed after the last attempt.
//! A URL without a secret refuses to start.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rekey_core::ports::{Clock, SystemClock};
use serde_json::{json, Value};

use crate::harness::{get, post_json, DbKind, Install};

const SECRET: &str = "event-webhook-secret";
const PASSWORD: &str = "Correct-Horse-Battery-9";
const NEW_PASSWORD: &str = "Hooked-Passphrase-2026";
const EMAIL: &str = "hooked@example.com";
/// The flaky receiver fails this many requests (its first ones) with a 500.
const FLAKY_FAILURES: usize = 2;
const MAX_ATTEMPTS: usize = 4;

/// One request as the receiver saw it, and when.
#[derive(Clone, Debug)]
struct Hit {
    path: String,
    headers: http::HeaderMap,
    body: String,
    at: Instant,
}

type Hits = Arc<Mutex<Vec<Hit>>>;

/// A receiver on three paths: `/ok` accepts, `/flaky` fails its first [`FLAKY_FAILURES`]
/// requests with 500 and then accepts, `/down` always answers 503.
async fn receiver() -> (String, Hits) {
    use axum::extract::{Request, State};
    async fn record(State(hits): State<Hits>, request: Request) -> http::StatusCode {
        let (parts, body) = request.into_parts();
        let bytes = axum::body::to_bytes(body, 1 << 20).await.unwrap();
        let path = parts.uri.path().to_owned();
        let mut hits = hits.lock().unwrap();
        let before = hits.iter().filter(|h| h.path == path).count();
        hits.push(Hit {
            path: path.clone(),
            headers: parts.headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
            at: Instant::now(),
        });
        match path.as_str() {
            "/flaky" if before < FLAKY_FAILURES => http::StatusCode::INTERNAL_SERVER_ERROR,
            "/down" => http::StatusCode::SERVICE_UNAVAILABLE,
            _ => http::StatusCode::NO_CONTENT,
        }
    }
    let hits: Hits = Arc::default();
    let app = axum::Router::new()
        .fallback(record)
        .with_state(hits.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, hits)
}

/// Waits until `done` holds for the hits (at most 30 s); returns them.
async fn wait_until(hits: &Hits, done: impl Fn(&[Hit]) -> bool) -> Vec<Hit> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let seen = hits.lock().unwrap().clone();
        if done(&seen) || Instant::now() > deadline {
            return seen;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Checks one request as a receiver must: JSON, the event id header matching the body, and
/// a signature over `t.body` with the shared secret, made within 300 s of now. The body.
fn verified(hit: &Hit) -> Value {
    assert_eq!(hit.headers["content-type"], "application/json");
    let signature = hit.headers["x-rekey-signature"].to_str().unwrap();
    let now = SystemClock.now().timestamp();
    assert!(
        rekey_notify::signature::verify(
            SECRET.as_bytes(),
            signature,
            hit.body.as_bytes(),
            now,
            300
        ),
        "bad signature {signature} over {}",
        hit.body
    );
    assert!(!rekey_notify::signature::verify(
        b"another secret",
        signature,
        hit.body.as_bytes(),
        now,
        300
    ));
    // Independently of Rekey's own code: openssl over the same "t.body".
    let (t, v1) = signature.split_once(',').unwrap();
    let (t, v1) = (
        t.strip_prefix("t=").unwrap(),
        v1.strip_prefix("v1=").unwrap(),
    );
    if let Ok(out) = std::process::Command::new("openssl")
        .args(["dgst", "-sha256", "-hmac", SECRET, "-r"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(format!("{t}.{}", hit.body).as_bytes())?;
            child.wait_with_output()
        })
    {
        let digest = String::from_utf8(out.stdout).unwrap();
        assert_eq!(digest.split_whitespace().next(), Some(v1), "openssl agrees");
    }
    let body: Value = serde_json::from_str(&hit.body).unwrap();
    assert_eq!(
        hit.headers["x-rekey-event-id"],
        body["id"].as_str().unwrap()
    );
    assert_eq!(
        body.as_object().unwrap().keys().collect::<Vec<_>>(),
        [
            "at",
            "id",
            "ip",
            "principal",
            "tenant_id",
            "type",
            "user_id"
        ]
    );
    assert!(chrono::DateTime::parse_from_rfc3339(body["at"].as_str().unwrap()).is_ok());
    body
}

async fn events_reach_their_receivers_signed_retried_and_parked(kind: DbKind) {
    let (base, hits) = receiver().await;
    let mut install = Install::new(kind).await;
    for (k, v) in [
        (
            "REKEY_EVENTS__WEBHOOK_URL",
            format!("{base}/ok, {base}/flaky,{base}/down"),
        ),
        ("REKEY_EVENTS__WEBHOOK_SECRET", SECRET.to_owned()),
        ("REKEY_OUTBOX__POLL_MS", "50".to_owned()),
        ("REKEY_OUTBOX__BACKOFF_MS", "200".to_owned()),
        ("REKEY_OUTBOX__MAX_ATTEMPTS", MAX_ATTEMPTS.to_string()),
        ("REKEY_OUTBOX__LEASE_MS", "3000".to_owned()),
    ] {
        install.set_env(k, v);
    }
    let tenant = install.stdout(&["tenant", "add", "--name", "Example", "--cname", "example"]);
    let user = install.stdout(&[
        "user",
        "add",
        "--tenant",
        "example",
        "--email",
        EMAIL,
        "--password",
        PASSWORD,
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

    let ready = get(&client, &format!("{}/readyz", server.base)).await;
    assert_eq!(ready.status, 200);
    assert!(
        ready.body.to_string().contains("configured: 3 urls"),
        "{}",
        ready.body
    );
    assert!(!ready.body.to_string().contains(&base), "no URL in /readyz");

    // A code returned to the admin, then used: two events.
    let answer = post_json(
        &client,
        &format!("{}/v2/users/{user}/password_reset", server.base),
        Some(&admin),
        &json!({ "returnCode": {} }),
    )
    .await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    let code = answer.body["verificationCode"].as_str().unwrap().to_owned();
    let answer = post_json(
        &client,
        &format!("{}/v2/users/{user}/password", server.base),
        None,
        &json!({ "newPassword": { "password": NEW_PASSWORD }, "verificationCode": code }),
    )
    .await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);

    let count = |seen: &[Hit], path: &str| seen.iter().filter(|h| h.path == path).count();
    let seen = wait_until(&hits, |seen| {
        count(seen, "/ok") >= 2
            && count(seen, "/flaky") >= 2 + FLAKY_FAILURES
            && count(seen, "/down") >= 2 * MAX_ATTEMPTS
    })
    .await;
    assert_eq!(count(&seen, "/ok"), 2, "each event once: {seen:#?}");
    assert_eq!(count(&seen, "/flaky"), 2 + FLAKY_FAILURES);

    // Every request verifies; each receiver got the same two events, in order of the change.
    let mut by_path: BTreeMap<&str, Vec<Value>> = BTreeMap::new();
    for hit in &seen {
        let body = verified(hit);
        for secret in [code.as_str(), NEW_PASSWORD, PASSWORD, EMAIL] {
            assert!(!hit.body.contains(secret), "{secret} in {}", hit.body);
        }
        by_path.entry(hit.path.as_str()).or_default().push(body);
    }
    let ok = &by_path["/ok"];
    assert_eq!(ok[0]["type"], "user.password.reset_requested");
    assert_eq!(ok[0]["principal"], "tenant_admin");
    assert_eq!(ok[1]["type"], "user.password.changed");
    assert_eq!(ok[1]["principal"], "code");
    for event in ok {
        assert_eq!(event["tenant_id"], tenant.as_str());
        assert_eq!(event["user_id"], user.as_str());
        assert_eq!(event["ip"], "127.0.0.1");
    }
    let ids = |events: &[Value]| {
        let mut ids: Vec<String> = events
            .iter()
            .map(|e| e["id"].as_str().unwrap().to_owned())
            .collect();
        ids.sort();
        ids.dedup();
        ids
    };
    assert_eq!(ids(&by_path["/flaky"]), ids(ok), "the same events, retried");
    assert_eq!(ids(&by_path["/down"]), ids(ok));

    // The receiver that always fails: each event tried MAX_ATTEMPTS times, waiting longer
    // before each retry (backoff 200 ms, doubled, ±20%), then parked.
    for id in ids(ok) {
        let times: Vec<Instant> = seen
            .iter()
            .filter(|h| h.path == "/down" && h.body.contains(&id))
            .map(|h| h.at)
            .collect();
        assert_eq!(times.len(), MAX_ATTEMPTS, "{id}");
        let gaps: Vec<Duration> = times.windows(2).map(|w| w[1] - w[0]).collect();
        for (i, gap) in gaps.iter().enumerate() {
            let nominal = 200.0 * f64::from(1u32 << i);
            assert!(
                gap.as_secs_f64() * 1000.0 >= nominal * 0.8 - 5.0,
                "retry {i} after {gap:?}: {gaps:?}"
            );
        }
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        count(&hits.lock().unwrap(), "/down"),
        2 * MAX_ATTEMPTS,
        "no attempt after the last"
    );
    let failed: Value =
        serde_json::from_str(&install.stdout(&["--json", "outbox", "list", "--failed"])).unwrap();
    let failed = failed["messages"].as_array().unwrap();
    assert_eq!(failed.len(), 2, "{failed:#?}");
    for m in failed {
        assert_eq!(
            (&m["channel"], &m["kind"]),
            (&json!("webhook"), &json!("event"))
        );
        assert_eq!(m["attempts"], MAX_ATTEMPTS);
        let error = m["lastError"].as_str().unwrap();
        assert_eq!(
            error,
            format!("gave up after {MAX_ATTEMPTS} attempts: event webhook: HTTP 503")
        );
        assert!(!error.contains(SECRET));
    }
    let all: Value = serde_json::from_str(&install.stdout(&["--json", "outbox", "list"])).unwrap();
    let sent = all["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["channel"] == "webhook" && m["state"] == "sent")
        .count();
    assert_eq!(sent, 4, "/ok and /flaky got both events");

    let (stopped, log) = server.stop();
    assert!(stopped, "{log}");
    assert!(!log.contains(SECRET), "the secret is never logged");
}

/// A webhook URL whose events no receiver could verify is a configuration error.
async fn a_url_without_a_secret_refuses_to_start(kind: DbKind) {
    let mut install = Install::new(kind).await;
    install.set_env("REKEY_EVENTS__WEBHOOK_URL", "http://127.0.0.1:9/hook");
    let out = install
        .command()
        .arg("serve")
        .env("REKEY_LISTEN", "127.0.0.1:0")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("events.webhook_secret") && stderr.contains("REKEY_EVENTS__WEBHOOK_SECRET"),
        "{stderr}"
    );
}

rekey_testkit::both_dbs!(events_reach_their_receivers_signed_retried_and_parked);
rekey_testkit::both_dbs!(a_url_without_a_secret_refuses_to_start);
