//! Issue 3 end to end, through the binary: each seed's curl line → the mail arrives at a real
//! SMTP server → the link in it sets the password → the "password changed" mail arrives; an
//! SMTP outage is retried; `kill -9` with undelivered messages loses none. Every message is
//! counted by its distinct `Message-ID`.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::Duration;

use rekey_testkit::free_port;
use rekey_testkit::smtp::{Received, SmtpSink};
use serde_json::{json, Value};

use crate::harness::{DbKind, Install, Server};

const PREFIX: &str = "/api/v1/api/production/us-east-1/namespaces/default";

/// Runs a seed's curl line; returns the JSON body it printed.
fn curl(args: &[&str]) -> Value {
    let out = Command::new("curl")
        .args(["--silent", "--show-error", "--fail-with-body"])
        .args(args)
        .output()
        .expect("curl is installed");
    let body = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "curl {args:?} failed: {body}");
    serde_json::from_str(&body).unwrap_or_else(|_| panic!("not JSON: {body}"))
}

fn message_id(mail: &Received) -> String {
    mail.header("Message-ID")
}

/// The reset link in a mail's text part, and its `userID` and `code` parameters.
fn link_in(mail: &Received) -> (String, String, String) {
    let text = mail.part("text/plain");
    let link = text
        .split_whitespace()
        .find(|w| w.starts_with("http") && w.contains("code="))
        .unwrap_or_else(|| panic!("no link in:\n{text}"))
        .trim_end_matches(['.', ')', '>'])
        .to_owned();
    let url = url::Url::parse(&link).expect("a URL");
    let param = |name: &str| {
        url.query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
            .unwrap_or_else(|| panic!("{name} missing in {link}"))
    };
    let (user, code) = (param("userID"), param("code"));
    (link, user, code)
}

async fn set_password(server: &Server, user: &str, code: &str, password: &str) -> u16 {
    reqwest::Client::new()
        .post(format!("{}/v2/users/{user}/password", server.base))
        .json(&json!({ "newPassword": { "password": password }, "verificationCode": code }))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Every seed curl line delivers a mail whose link resets the password, followed by the
/// "password changed" notice.
async fn seed_curl_lines_deliver_working_links(kind: DbKind) {
    let sink = SmtpSink::start();
    let mut install = Install::new(kind).await;
    install.with_smtp(sink.port);
    let tenant = install.add_tenant("Example", "example");
    let user = install.add_user(
        "example",
        "hello@example.com",
        &[
            "--first-name",
            "Hello",
            "--last-name",
            "World",
            "--password",
            "Correct-Horse-Battery-9",
        ],
    );
    let admin = install.admin_token("example");
    let system = install.stdout(&["token", "create", "--role", "system"]);
    let server = install.serve();
    let b = &server.base;
    let f5_auth = format!("Authorization: APIToken {admin}");
    let zitadel_auth = format!("Authorization: Bearer {admin}");
    let json_type = "Content-Type: application/json";

    let seeds: Vec<(&str, Vec<String>)> = vec![
        (
            "000",
            vec![
                "--request".into(),
                "POST".into(),
                "--url".into(),
                format!("{b}{PREFIX}/api/web/custom/namespaces/system/send_password_email"),
                "--header".into(),
                format!("Authorization: APIToken {system}"),
                "--header".into(),
                json_type.into(),
                "--data".into(),
                r#"{ "email": "hello@example.com", "namespace": "system" }"#.into(),
            ],
        ),
        (
            "001",
            vec![
                "--request".into(),
                "POST".into(),
                "--url".into(),
                format!("{b}{PREFIX}/no_auth/send_password_email"),
                "--header".into(),
                "Authorization: <Authorization>".into(),
                "--header".into(),
                json_type.into(),
                "--data".into(),
                r#"{ "cname": "example", "email": "hello@example.com" }"#.into(),
            ],
        ),
        (
            "002",
            vec![
                "--request".into(),
                "POST".into(),
                "--url".into(),
                format!("{b}{PREFIX}/api/web/custom/password/admin_reset"),
                "--header".into(),
                f5_auth.clone(),
                "--header".into(),
                json_type.into(),
                "--data".into(),
                r#"{ "email": "hello@example.com" }"#.into(),
            ],
        ),
        (
            "003",
            vec![
                "--request".into(),
                "POST".into(),
                "--url".into(),
                format!("{b}/management/v1/users/{user}/password/_reset"),
                "--header".into(),
                zitadel_auth.clone(),
                "--header".into(),
                format!("x-zitadel-orgid: {tenant}"),
                "--header".into(),
                json_type.into(),
                "--data".into(),
                r#"{ "type": "TYPE_EMAIL" }"#.into(),
            ],
        ),
        (
            "004",
            vec![
                "--request".into(),
                "POST".into(),
                "--url".into(),
                format!("{b}/v2/users/{user}/password_reset"),
                "--header".into(),
                zitadel_auth.clone(),
                "--header".into(),
                json_type.into(),
                "--data".into(),
                format!(
                    r#"{{ "sendLink": {{ "notificationType": "NOTIFICATION_TYPE_Email", "urlTemplate": "{b}/ui/password/reset?userID={{{{.UserID}}}}&code={{{{.Code}}}}&orgID={{{{.OrgID}}}}" }} }}"#
                ),
            ],
        ),
    ];

    let mut expected = 0;
    for (n, (seed, args)) in seeds.iter().enumerate() {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let answer = curl(&args);
        if ["000", "001", "002"].contains(seed) {
            assert_eq!(answer, json!({}), "seed {seed}");
        } else {
            assert_eq!(
                answer["details"]["resourceOwner"],
                tenant.as_str(),
                "seed {seed}"
            );
        }
        expected += 1;
        let mails = sink.wait_for(expected).await;
        assert_eq!(mails.len(), expected, "seed {seed}: reset mail");
        let reset = &mails[expected - 1];
        assert_eq!(reset.rcpt_tos, ["hello@example.com"]);
        assert!(reset.header("From").contains("Example Corp"));
        let (link, link_user, code) = link_in(reset);
        assert!(
            link.starts_with(&format!("{b}/ui/password/reset?")),
            "{link}"
        );
        assert_eq!(link_user, user);
        let html = reset.part("text/html");
        assert!(html.contains(&code), "the HTML part carries the code too");

        let status = set_password(
            &server,
            &user,
            &code,
            &format!("New-Passphrase-{n}-Seed{seed}"),
        )
        .await;
        assert_eq!(status, 200, "seed {seed}: the mailed code works");
        expected += 1;
        let mails = sink.wait_for(expected).await;
        assert_eq!(mails.len(), expected, "seed {seed}: password-changed mail");
        let changed = &mails[expected - 1];
        assert!(!changed.part("text/plain").contains(&code));
        assert!(
            changed
                .header("Subject")
                .to_lowercase()
                .contains("password"),
            "{}",
            changed.header("Subject")
        );
    }

    let mails = sink.received();
    let ids: BTreeSet<String> = mails.iter().map(message_id).collect();
    assert_eq!(
        ids.len(),
        mails.len(),
        "one distinct Message-ID per message"
    );
    let (ok, log) = server.stop();
    assert!(ok, "{log}");
    for mail in mails
        .iter()
        .filter(|m| m.part("text/plain").contains("code="))
    {
        let (link, _, code) = link_in(mail);
        assert!(!log.contains(&code), "a code reached the log");
        assert!(!log.contains(&link), "a reset link reached the log");
    }
}

/// SMTP down: the API still answers; the message goes out once SMTP is back, once.
async fn smtp_outage_is_retried(kind: DbKind) {
    let port = free_port();
    let mut install = Install::new(kind).await;
    install.with_smtp(port);
    install.add_tenant("Example", "example");
    install.add_user("example", "hello@example.com", &[]);
    let admin = install.admin_token("example");
    let server = install.serve();
    let answer = curl(&[
        "--request",
        "POST",
        "--url",
        &format!("{}/api/web/custom/password/admin_reset", server.base),
        "--header",
        &format!("Authorization: APIToken {admin}"),
        "--data",
        r#"{"email":"hello@example.com"}"#,
    ]);
    assert_eq!(answer, json!({}));
    tokio::time::sleep(Duration::from_millis(600)).await;
    let sink = SmtpSink::start_with(port, rekey_testkit::smtp::SinkTls::None, None);
    let mails = sink.wait_for(1).await;
    assert_eq!(mails.len(), 1, "delivered once SMTP is back");
    assert!(mails[0].part("text/plain").contains("code="));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mails = sink.received();
    let ids: BTreeSet<String> = mails.iter().map(message_id).collect();
    assert_eq!(ids.len(), 1, "no second distinct Message-ID");
    let listed: Value =
        serde_json::from_str(&install.stdout(&["--json", "outbox", "list"])).unwrap();
    let states: Vec<&str> = listed["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["sent"]);
    drop(server);
}

/// `kill -9` with undelivered messages: after the next start every one is delivered, and no
/// message ever has two distinct Message-IDs.
async fn kill_dash_9_loses_nothing(kind: DbKind) {
    let port = free_port();
    let mut install = Install::new(kind).await;
    install.with_smtp(port);
    install.add_tenant("Example", "example");
    let admin = install.admin_token("example");
    let emails = ["a@example.com", "b@example.com", "c@example.com"];
    for email in emails {
        install.add_user("example", email, &[]);
    }
    let server = install.serve();
    for email in emails {
        let answer = curl(&[
            "--request",
            "POST",
            "--url",
            &format!("{}/api/web/custom/password/admin_reset", server.base),
            "--header",
            &format!("Authorization: APIToken {admin}"),
            "--data",
            &format!(r#"{{"email":"{email}"}}"#),
        ]);
        assert_eq!(answer, json!({}));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.kill9();

    let sink = SmtpSink::start_with(port, rekey_testkit::smtp::SinkTls::None, None);
    let server = install.serve();
    let mails = sink.wait_for(3).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mails = if mails.len() >= 3 {
        sink.received()
    } else {
        mails
    };
    let mut ids_per_recipient: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for mail in &mails {
        ids_per_recipient
            .entry(mail.rcpt_tos.join(","))
            .or_default()
            .insert(message_id(mail));
    }
    assert_eq!(
        ids_per_recipient.keys().cloned().collect::<Vec<_>>(),
        emails.map(str::to_owned).to_vec(),
        "every message delivered after the restart"
    );
    for (to, ids) in &ids_per_recipient {
        assert_eq!(ids.len(), 1, "{to} got {} distinct Message-IDs", ids.len());
    }
    let (ok, log) = server.stop();
    assert!(ok, "{log}");
}

rekey_testkit::both_dbs!(seed_curl_lines_deliver_working_links);
rekey_testkit::both_dbs!(smtp_outage_is_retried);
rekey_testkit::both_dbs!(kill_dash_9_loses_nothing);

/// A local HTTP receiver standing in for an SMS gateway: records each request's path,
/// headers and body.
struct Receiver {
    base: String,
    seen: std::sync::Arc<std::sync::Mutex<Vec<(String, http::HeaderMap, String)>>>,
}

async fn receiver() -> Receiver {
    use axum::extract::{Request, State};
    type Seen = std::sync::Arc<std::sync::Mutex<Vec<(String, http::HeaderMap, String)>>>;
    async fn record(State(seen): State<Seen>, request: Request) -> &'static str {
        let (parts, body) = request.into_parts();
        let bytes = axum::body::to_bytes(body, 1 << 20).await.unwrap();
        seen.lock().unwrap().push((
            parts.uri.path().to_owned(),
            parts.headers,
            String::from_utf8_lossy(&bytes).into_owned(),
        ));
        "{}"
    }
    let seen: Seen = Default::default();
    let app = axum::Router::new()
        .fallback(record)
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Receiver { base, seen }
}

impl Receiver {
    async fn wait_for(&self, n: usize) -> Vec<(String, http::HeaderMap, String)> {
        for _ in 0..200 {
            if self.seen.lock().unwrap().len() >= n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.seen.lock().unwrap().clone()
    }
}

/// SMS through both providers: v1 `TYPE_SMS` to a signed webhook, v2 `NOTIFICATION_TYPE_SMS`
/// to Twilio's Messages API; the code in each SMS sets the password.
async fn sms_codes_reach_webhook_and_twilio(kind: DbKind) {
    for provider in ["webhook", "twilio"] {
        let gateway = receiver().await;
        let mut install = Install::new(kind).await;
        install.with_smtp(free_port());
        if provider == "webhook" {
            install.set_env("REKEY_SMS__WEBHOOK_URL", format!("{}/sms", gateway.base));
            install.set_env("REKEY_SMS__WEBHOOK_SECRET", "webhook-secret");
        } else {
            install.set_env("REKEY_SMS__TWILIO_BASE_URL", gateway.base.clone());
            install.set_env("REKEY_SMS__TWILIO_ACCOUNT_SID", "AC123");
            install.set_env("REKEY_SMS__TWILIO_AUTH_TOKEN", "twilio-token");
            install.set_env("REKEY_SMS__TWILIO_FROM", "+15005550006");
        }
        let tenant = install.add_tenant("Example", "example");
        let user = install.add_user(
            "example",
            "hello@example.com",
            &[
                "--phone",
                "+41791234567",
                "--password",
                "Correct-Horse-Battery-9",
            ],
        );
        let admin = install.admin_token("example");
        let server = install.serve();
        let (url, body) = if provider == "webhook" {
            (
                format!("{}/management/v1/users/{user}/password/_reset", server.base),
                r#"{"type":"TYPE_SMS"}"#.to_owned(),
            )
        } else {
            (
                format!("{}/v2/users/{user}/password_reset", server.base),
                r#"{"sendLink":{"notificationType":"NOTIFICATION_TYPE_SMS"}}"#.to_owned(),
            )
        };
        let answer = curl(&[
            "--request",
            "POST",
            "--url",
            &url,
            "--header",
            &format!("Authorization: Bearer {admin}"),
            "--header",
            &format!("x-zitadel-orgid: {tenant}"),
            "--data",
            &body,
        ]);
        assert_eq!(answer["details"]["resourceOwner"], tenant.as_str());
        let seen = gateway.wait_for(1).await;
        assert_eq!(seen.len(), 1, "{provider}: one SMS");
        let (path, headers, body) = &seen[0];
        let code = if provider == "webhook" {
            assert_eq!(path, "/sms");
            let signature = headers["x-rekey-signature"].to_str().unwrap();
            assert!(
                signature.starts_with("t=") && signature.contains(",v1="),
                "{signature}"
            );
            let payload: Value = serde_json::from_str(body).unwrap();
            assert_eq!(
                payload["contextInfo"]["recipientPhoneNumber"],
                "+41791234567"
            );
            assert_eq!(
                payload["contextInfo"]["eventType"],
                "user.human.password.code.added"
            );
            assert_eq!(payload["args"]["userID"], user.as_str());
            payload["args"]["code"].as_str().unwrap().to_owned()
        } else {
            assert_eq!(path, "/2010-04-01/Accounts/AC123/Messages.json");
            let form: BTreeMap<String, String> = url::form_urlencoded::parse(body.as_bytes())
                .into_owned()
                .collect();
            assert_eq!(form["To"], "+41791234567");
            assert_eq!(form["From"], "+15005550006");
            let auth = headers["authorization"].to_str().unwrap();
            assert!(auth.starts_with("Basic "), "{auth}");
            // The SMS text carries the code: the only run of 8 code characters in it.
            form["Body"]
                .split(|c: char| !c.is_ascii_alphanumeric())
                .find(|w| {
                    w.len() == 8
                        && w.chars()
                            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
                })
                .unwrap_or_else(|| panic!("no code in {:?}", form["Body"]))
                .to_owned()
        };
        let status = set_password(&server, &user, &code, "Texted-Passphrase-77").await;
        assert_eq!(status, 200, "{provider}: the texted code works");
        drop(server);
    }
}

rekey_testkit::both_dbs!(sms_codes_reach_webhook_and_twilio);
