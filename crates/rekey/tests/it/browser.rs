//! The hosted pages (SPEC §9) and CORS (SPEC §5) in Debian's headless Chromium, end to end on
//! SQLite: the real server sends real reset mails to a real SMTP sink, the browser opens the
//! links from those mails and fills the forms, and this test then checks what changed.
//!
//! `tests/browser/pages.mjs` (playwright-core + axe-core, installed by
//! `tests/browser/install.sh`, which `scripts/test.sh` runs) walks every scenario in one
//! browser, checks what the person sees, runs axe-core on each page state and keeps a desktop
//! and a 375 px phone screenshot of each in `target/browser-artifacts/`. Here: the world it
//! needs (tenant, users, mails, an expired code), its summary, and the effects — the new
//! password works and the old one fails after a success, nothing changed after a failure, and
//! the forgot page mailed the known address only.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rekey_testkit::smtp::{Received, SmtpSink};
use serde_json::{json, Value};

use crate::harness::{free_port, post_json, DbKind, Install, Server};

const OLD_PASSWORD: &str = "Old-Horse-Battery-Staple-1";
const NEW_PASSWORD: &str = "Brand-New-Passphrase-2026";
const LOGIN_URL: &str = "https://login.acme.example/";
const CODE_TRIES_PER_IP: u32 = 8;
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(240);

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/browser")
}

fn artifacts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/browser-artifacts")
}

/// Users by scenario: the ones reset through a mail link have an old password (but the
/// onboarding one); `forgot` is the known address of the forgot page.
const MAILED: &[(&str, &str)] = &[
    ("success_en", "en"),
    ("success_de", "de"),
    ("success_nojs", "en"),
    ("wrong_code", "en"),
    ("wrong_code_de", "de"),
    ("used_up", "en"),
    ("expired", "en"),
    ("policy", "en"),
    ("policy_de", "de"),
    ("policy_nojs", "en"),
    ("mismatch", "en"),
    ("mismatch_de", "de"),
    ("rate_limited", "en"),
];

fn email(scenario: &str) -> String {
    format!("{}@acme.example", scenario.replace('_', "-"))
}

struct World {
    install: Install,
    server: Server,
    sink: SmtpSink,
    users: BTreeMap<String, String>,
    admin: String,
    client: reqwest::Client,
    cors: (u16, u16),
}

impl World {
    async fn new() -> Self {
        let sink = SmtpSink::start();
        let mut install = Install::new(DbKind::Sqlite).await;
        let cors = (free_port(), free_port());
        for (key, value) in [
            ("REKEY_SMTP__HOST", "127.0.0.1".to_owned()),
            ("REKEY_SMTP__PORT", sink.port.to_string()),
            ("REKEY_SMTP__TLS", "none".to_owned()),
            ("REKEY_SMTP__FROM", "rekey@acme.example".to_owned()),
            ("REKEY_OUTBOX__POLL_MS", "50".to_owned()),
            // The browser's contexts each claim their own address through X-Forwarded-For,
            // so each scenario has its own per-IP limits.
            ("REKEY_TRUSTED_PROXIES", "127.0.0.1/32".to_owned()),
            (
                "REKEY_LIMITS__CODE_TRIES_PER_IP_PER_MINUTE",
                CODE_TRIES_PER_IP.to_string(),
            ),
            (
                "REKEY_CORS__ALLOWED_ORIGINS",
                format!("http://127.0.0.1:{}", cors.0),
            ),
        ] {
            install.set_env(key, value);
        }
        install.add_tenant("Acme Widgets", "acme");
        install.run(&[
            "tenant",
            "set",
            "acme",
            &format!("ui.login_url={LOGIN_URL}"),
        ]);
        let mut users = BTreeMap::new();
        for (scenario, language) in MAILED
            .iter()
            .copied()
            .chain([("cors", "en"), ("forgot", "en")])
        {
            let id = install.add_user(
                "acme",
                &email(scenario),
                &["--language", language, "--password", OLD_PASSWORD],
            );
            users.insert(scenario.to_owned(), id);
        }
        let onboarding = install.add_user("acme", &email("onboarding"), &[]);
        users.insert("onboarding".to_owned(), onboarding);
        let admin = install.admin_token("acme");
        let server = install.serve();
        World {
            install,
            server,
            sink,
            users,
            admin,
            client: reqwest::Client::new(),
            cors,
        }
    }

    fn user(&self, scenario: &str) -> &str {
        &self.users[scenario]
    }

    /// Asks for a reset link by mail (v2 PasswordReset, sendLink) for each scenario's user and
    /// returns the link from each mail, by scenario.
    async fn mailed_links(&self, scenarios: &[&str]) -> BTreeMap<String, String> {
        for scenario in scenarios {
            let answer = post_json(
                &self.client,
                &format!(
                    "{}/v2/users/{}/password_reset",
                    self.server.base,
                    self.user(scenario)
                ),
                Some(&self.admin),
                &json!({ "sendLink": {} }),
            )
            .await;
            assert_eq!(answer.status, 200, "{scenario}: {:?}", answer.body);
        }
        let mails = self.sink.wait_for(scenarios.len()).await;
        scenarios
            .iter()
            .map(|scenario| {
                let mail = mail_to(&mails, &email(scenario));
                (scenario.to_string(), link_in(&mail.part("text/plain")))
            })
            .collect()
    }

    /// Moves a user's pending code past its expiry, as an hour passing would.
    async fn expire_code(&self, scenario: &str) {
        let pool = sqlx::SqlitePool::connect(self.install.db.url())
            .await
            .unwrap();
        let done = sqlx::query(
            "UPDATE reset_codes SET expires_at = created_at WHERE user_id = ? AND used_at IS NULL",
        )
        .bind(self.user(scenario))
        .execute(&pool)
        .await
        .unwrap();
        assert_eq!(done.rows_affected(), 1);
        pool.close().await;
    }

    /// SetPassword verified by the current password, to a new one: 200 when `current` was
    /// the password (which then changes, so a test asks about a wrong password first).
    async fn password_is(&self, scenario: &str, current: &str) -> bool {
        let answer = post_json(
            &self.client,
            &format!(
                "{}/v2/users/{}/password",
                self.server.base,
                self.user(scenario)
            ),
            Some(&self.admin),
            &json!({
                "newPassword": { "password": format!("{current}-next") },
                "currentPassword": current,
            }),
        )
        .await;
        if answer.status != 200 {
            eprintln!("{scenario}: SetPassword with a current password: {answer:?}");
        }
        answer.status == 200
    }
}

fn mail_to<'a>(mails: &'a [Received], to: &str) -> &'a Received {
    mails
        .iter()
        .find(|m| m.rcpt_tos.iter().any(|r| r == to))
        .unwrap_or_else(|| panic!("no mail to {to}"))
}

/// The first `http…/ui/password/…` link in a mail's text.
fn link_in(text: &str) -> String {
    let start = text
        .find("http")
        .unwrap_or_else(|| panic!("no link in {text}"));
    let link: String = text[start..]
        .chars()
        .take_while(|c| !c.is_whitespace() && *c != ')' && *c != '>')
        .collect();
    assert!(link.contains("/ui/password/"), "{link}");
    link
}

fn run_pages_script(plan: &Value) -> Value {
    let node_modules = browser_dir().join("node_modules/playwright-core");
    assert!(
        node_modules.exists(),
        "{} is missing: run tests/browser/install.sh (scripts/test.sh does)",
        node_modules.display()
    );
    let plan_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(plan_file.path(), serde_json::to_vec(plan).unwrap()).unwrap();
    let mut child = Command::new("node")
        .arg(browser_dir().join("pages.mjs"))
        .env("REKEY_BROWSER_PLAN", plan_file.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node runs");
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > SCRIPT_TIMEOUT {
            let _ = child.kill();
            panic!("the browser script took longer than {SCRIPT_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let summary: Value = stdout
        .lines()
        .rev()
        .find_map(|line| serde_json::from_str(line).ok())
        .unwrap_or_else(|| {
            panic!(
                "no summary from the browser script; stderr: {}",
                String::from_utf8_lossy(&output.stderr)
            )
        });
    let failed: Vec<&Value> = summary["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["ok"] != json!(true))
        .collect();
    assert!(
        failed.is_empty() && summary["ok"] == json!(true),
        "browser checks failed: {failed:#?}\nfacts: {}\nstderr: {}",
        summary["facts"],
        String::from_utf8_lossy(&output.stderr)
    );
    summary
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_resets_a_password_in_the_browser() {
    let world = World::new().await;
    let mut scenarios: Vec<&str> = MAILED.iter().map(|(s, _)| *s).collect();
    scenarios.push("onboarding");
    let links = world.mailed_links(&scenarios).await;
    assert!(
        links["onboarding"].contains("/ui/password/set?"),
        "{}",
        links["onboarding"]
    );
    assert!(links["success_en"].contains("/ui/password/reset?"));
    world.expire_code("expired").await;

    let mut plan_scenarios = serde_json::Map::new();
    for (scenario, link) in &links {
        plan_scenarios.insert(scenario.clone(), json!({ "link": link }));
    }
    plan_scenarios.insert(
        "forgot".to_owned(),
        json!({
            "known": email("forgot"),
            "unknown": "nobody@acme.example",
            "unknown_de": "niemand@acme.example",
        }),
    );
    let plan = json!({
        "base": world.server.base,
        "artifacts": artifacts_dir(),
        "cname": "acme",
        "tenantName": "Acme Widgets",
        "loginUrl": LOGIN_URL,
        "newPassword": NEW_PASSWORD,
        "codeTriesPerIp": CODE_TRIES_PER_IP,
        "scenarios": plan_scenarios,
        "cors": {
            "allowedPort": world.cors.0,
            "refusedPort": world.cors.1,
            "token": world.admin,
            "userId": world.user("cors"),
        },
    });
    let summary = run_pages_script(&plan);

    // Every step reported, each state screenshotted on desktop and phone.
    let names: Vec<&str> = summary["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    for required in [
        "success_en.success_state",
        "success_de.success_title",
        "success_nojs.success_state",
        "onboarding.success_title",
        "wrong_code.error",
        "wrong_code_de.error",
        "used_up.error",
        "expired.error",
        "policy.names_rule",
        "policy_de.names_rules",
        "policy_nojs.error",
        "forgot_nojs.sent_state",
        "mismatch.error",
        "mismatch_de.error",
        "rate_limited.status",
        "forgot.identical_pages",
        "forgot_de.sent_state",
        "language_switch.de",
        "success_en-form.axe",
        "forgot_known-sent.axe",
        "docs.renders_operations",
        "docs.no_console_errors",
        "cors.allowed.rest",
        "cors.allowed.grpc_web_status_exposed",
        "cors.refused.connect",
    ] {
        assert!(names.contains(&required), "missing check {required}");
    }
    for shot in ["success_en-success", "used_up", "forgot_unknown-sent"] {
        for device in ["desktop", "phone"] {
            let file = artifacts_dir().join(format!("{shot}-{device}.png"));
            assert!(
                std::fs::metadata(&file).is_ok_and(|m| m.len() > 1000),
                "{}",
                file.display()
            );
        }
    }

    // Successes: the new password works and the old one no longer does.
    for scenario in ["success_en", "success_de", "success_nojs"] {
        assert!(
            !world.password_is(scenario, OLD_PASSWORD).await,
            "{scenario}: the old password still works"
        );
        assert!(
            world.password_is(scenario, NEW_PASSWORD).await,
            "{scenario}: the new password does not work"
        );
    }
    assert!(world.password_is("onboarding", NEW_PASSWORD).await);
    // Failures changed nothing.
    for scenario in [
        "wrong_code",
        "wrong_code_de",
        "used_up",
        "expired",
        "policy",
        "policy_de",
        "policy_nojs",
        "mismatch",
        "mismatch_de",
        "rate_limited",
    ] {
        assert!(
            world.password_is(scenario, OLD_PASSWORD).await,
            "{scenario}: the password changed"
        );
    }

    // No code or password reached the server's log (it runs at the most verbose level).
    let log = std::fs::read_to_string(&world.server.log).unwrap();
    for (scenario, link) in &links {
        let code = url::Url::parse(link)
            .unwrap()
            .query_pairs()
            .find(|(k, _)| k == "code")
            .map(|(_, v)| v.into_owned())
            .unwrap();
        assert!(!log.contains(&code), "{scenario}'s code is in the log");
    }
    for secret in [NEW_PASSWORD, OLD_PASSWORD, world.admin.as_str()] {
        assert!(!log.contains(secret), "a secret is in the log");
    }

    // The forgot page mailed the known address, and nobody else.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !world
        .sink
        .received()
        .iter()
        .any(|m| m.rcpt_tos.contains(&email("forgot")))
    {
        assert!(
            Instant::now() < deadline,
            "no mail for the forgot page's known address"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let strangers: Vec<String> = world
        .sink
        .received()
        .iter()
        .flat_map(|m| m.rcpt_tos.clone())
        .filter(|to| to.starts_with("nobody@") || to.starts_with("niemand@"))
        .collect();
    assert!(strangers.is_empty(), "{strangers:?}");
    // Both forgot answers left at the padded deadline (400 ms by default).
    for name in ["forgot_known", "forgot_unknown"] {
        let took = summary["facts"][format!("{name}.took_ms")]
            .as_u64()
            .unwrap();
        assert!(took >= 400, "{name} answered after {took} ms");
    }
}
