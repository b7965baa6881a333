//! ZITADEL's published clients against a running `rekey serve`, on both databases:
//!
//! - PyPI `zitadel-client` — Connect with JSON bodies over HTTP/1.1 (v2 and v2beta);
//! - npm `@zitadel/client` — gRPC over h2c from its `/node` entry, gRPC-Web over HTTP/1.1 from its
//!   `/web` entry (user v2);
//! - npm `@zitadel/node` — gRPC (`application/grpc`) with its user client on v2beta and its
//!   management v1 client with `x-zitadel-orgid`.
//!
//! The scripts in `tests/clients/` (installed by `tests/clients/install.sh`, which
//! `scripts/test.sh` runs) check each step themselves and print one JSON summary line; this
//! module sets up the tenants, users and tokens with the CLI, runs a script, asserts its summary
//! (every required check present and passed, the pinned client version) and cross-checks the
//! outcome through the database and REST.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::{DbKind, Install, Server};

const PASSWORD: &str = "Correct-Horse-Battery-9";
/// What every script sets through its client; the cross-check proves it took effect.
const NEW_PASSWORD: &str = "Client-Set-Passphrase-42";
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(90);

/// The checks every v2/v2beta script must report (and pass).
const USER_SERVICE_CHECKS: &[&str] = &[
    "setup.add_human_user",
    "setup.get_user_initial",
    "reset.return_code",
    "set.wrong_code",
    "set.with_code",
    "set.code_replayed",
    "setup.get_user_active",
    "set.unknown_user",
    "reset.unknown_user",
    "reset.no_token",
    "reset.other_tenant",
    "reset.other_tenant_same_as_unknown",
];

fn clients_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/clients")
}

/// Two tenants, a user in the other one, tokens, and the running server.
struct World {
    install: Install,
    server: Server,
    org_id: String,
    other_org_id: String,
    other_user_id: String,
    /// An `initial` user of the org made with the CLI: what a script resets when AddHumanUser
    /// through its client fails (that check fails on its own; the reset checks still run).
    fallback_user_id: String,
    admin_token: String,
    system_token: String,
}

impl World {
    async fn new(kind: DbKind) -> Self {
        let install = Install::new(kind).await;
        let org_id = install.add_tenant("Acme", "acme");
        let other_org_id = install.add_tenant("Other", "other-org");
        let other_user_id = install.add_user(
            "other-org",
            "someone@other.example",
            &["--password", PASSWORD],
        );
        let fallback_user_id = install.add_user("acme", "fallback@acme.example", &[]);
        let admin_token = install.admin_token("acme");
        let system_token = install.stdout(&["token", "create", "--role", "system"]);
        let server = install.serve();
        World {
            install,
            server,
            org_id,
            other_org_id,
            other_user_id,
            fallback_user_id,
            admin_token,
            system_token,
        }
    }

    /// Runs one client script with the world in its environment; returns its JSON summary
    /// after asserting that it passed, names the expected client version and reports every
    /// `required` check.
    fn run_script(
        &self,
        program: &Path,
        args: &[&str],
        email: &str,
        client: &str,
        version: &str,
        required: &[&str],
    ) -> Value {
        let dir = self.install.data_path();
        let tag = email.split('@').next().unwrap_or("script");
        let stdout_path = dir.join(format!("{tag}.stdout"));
        let stderr_path = dir.join(format!("{tag}.stderr"));
        let mut child = Command::new(program)
            .args(args)
            .current_dir(clients_dir())
            .env("REKEY_BASE_URL", &self.server.base)
            .env("REKEY_ORG_ID", &self.org_id)
            .env("REKEY_ADMIN_TOKEN", &self.admin_token)
            .env("REKEY_SYSTEM_TOKEN", &self.system_token)
            .env("REKEY_OTHER_ORG_ID", &self.other_org_id)
            .env("REKEY_OTHER_USER_ID", &self.other_user_id)
            .env("REKEY_EMAIL", email)
            .env("REKEY_FALLBACK_USER_ID", &self.fallback_user_id)
            .env("REKEY_NEW_PASSWORD", NEW_PASSWORD)
            .env("NO_COLOR", "1")
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env("PYTHONWARNINGS", "ignore")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout_path).unwrap())
            .stderr(std::fs::File::create(&stderr_path).unwrap())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {} ({e}); run tests/clients/install.sh (scripts/test.sh does)",
                    program.display()
                )
            });
        let deadline = Instant::now() + SCRIPT_TIMEOUT;
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break Some(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let stdout = std::fs::read_to_string(&stdout_path).unwrap_or_default();
        let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
        let context = || {
            format!(
                "{} {args:?}\n--- stdout\n{stdout}\n--- stderr\n{stderr}\n--- server log (requests, warnings)\n{}",
                program.display(),
                log_digest(&self.server.stderr())
            )
        };
        let Some(status) = status else {
            panic!("timed out after {SCRIPT_TIMEOUT:?}: {}", context());
        };
        let summary: Value = stdout
            .lines()
            .rev()
            .find(|l| l.trim_start().starts_with('{'))
            .and_then(|l| serde_json::from_str(l).ok())
            .unwrap_or_else(|| panic!("no JSON summary (exit {status}): {}", context()));

        let failed: Vec<&Value> = summary["checks"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|c| c["ok"] != true)
            .collect();
        assert!(
            failed.is_empty() && summary["ok"] == true && status.success(),
            "{client} ({}) failed {} check(s):\n{}\n(exit {status}; stderr:\n{stderr}\nserver log (requests, warnings):\n{})",
            summary["form"],
            failed.len(),
            failed
                .iter()
                .map(|c| format!("  {}: {}", c["name"], c["detail"]))
                .collect::<Vec<_>>()
                .join("\n"),
            log_digest(&self.server.stderr())
        );
        assert_eq!(summary["client"], client, "{summary}");
        assert_eq!(summary["version"], version, "pinned {client} version");
        let names: BTreeSet<&str> = summary["checks"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|c| c["name"].as_str())
            .collect();
        let missing: Vec<&&str> = required.iter().filter(|n| !names.contains(**n)).collect();
        assert!(missing.is_empty(), "{client}: checks missing: {missing:?}");
        summary
    }

    fn node_script(&self, script: &str, args: &[&str], email: &str, client: &str) -> Value {
        let dir = clients_dir().join("node");
        assert!(
            dir.join("node_modules").is_dir(),
            "{} is missing: run tests/clients/install.sh (scripts/test.sh does)",
            dir.join("node_modules").display()
        );
        let mut all = vec![dir.join(script).to_string_lossy().into_owned()];
        all.extend(args.iter().map(|a| (*a).to_owned()));
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        let (version, required): (&str, Vec<&str>) = match client {
            "@zitadel/client" => ("1.3.1", USER_SERVICE_CHECKS.to_vec()),
            _ => ("3.0.28", zitadel_node_checks()),
        };
        self.run_script(Path::new("node"), &all, email, client, version, &required)
    }

    fn python_script(&self, script: &str, email: &str, required: &[&str]) -> Value {
        let python = clients_dir().join("python/.venv/bin/python");
        assert!(
            python.exists(),
            "{} is missing: run tests/clients/install.sh (scripts/test.sh does)",
            python.display()
        );
        let script = clients_dir().join("python").join(script);
        self.run_script(
            &python,
            &[&script.to_string_lossy()],
            email,
            "zitadel-client",
            "4.1.9",
            required,
        )
    }

    /// The script's user, from its summary.
    fn user_of(summary: &Value) -> String {
        summary["facts"]["userId"]
            .as_str()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| panic!("no userId fact in {summary}"))
            .to_owned()
    }

    /// Outbox message kinds queued for `user`.
    fn outbox_kinds(&self, user: &str) -> Vec<String> {
        let list: Value =
            serde_json::from_str(&self.install.stdout(&["--json", "outbox", "list"])).unwrap();
        list["messages"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["userId"] == user)
            .map(|m| m["kind"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    async fn rest(&self, method: &str, path: &str, token: &str, body: Value) -> (u16, Value) {
        let client = reqwest::Client::new();
        let url = format!("{}{path}", self.server.base);
        let req = match method {
            "GET" => client.get(url),
            _ => client.post(url).json(&body),
        };
        let resp = req
            .header("Authorization", format!("Bearer {token}"))
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// The password the client set is the user's password now: a change that has to present
    /// it as the current password succeeds (and a wrong one does not).
    async fn assert_password_is(&self, user: &str, password: &str) {
        let path = format!("/v2/users/{user}/password");
        let (status, body) = self
            .rest(
                "POST",
                &path,
                &self.admin_token,
                json!({ "newPassword": { "password": "Wrong-Guess-Passphrase-1" },
                        "currentPassword": "Not-The-Password-0" }),
            )
            .await;
        assert_eq!(status, 400, "a wrong current password is refused: {body}");
        let (status, body) = self
            .rest(
                "POST",
                &path,
                &self.admin_token,
                json!({ "newPassword": { "password": "After-The-Client-Test-3" },
                        "currentPassword": password }),
            )
            .await;
        assert_eq!(status, 200, "the client's password is current: {body}");
    }

    /// The other tenant's user, as the system sees it: `(state, sequence)`.
    async fn other_user_state(&self) -> (String, String) {
        let (status, body) = self
            .rest(
                "GET",
                &format!("/v2/users/{}", self.other_user_id),
                &self.system_token,
                Value::Null,
            )
            .await;
        assert_eq!(status, 200, "{body}");
        (
            body["user"]["state"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            body["user"]["details"]["sequence"].to_string(),
        )
    }
}

fn zitadel_node_checks() -> Vec<&'static str> {
    let mut checks = USER_SERVICE_CHECKS.to_vec();
    checks.extend([
        "v1.send_reset_notification",
        "v1.send_reset_notification_system_other_org",
        "v1.unknown_user",
        "v1.other_tenant_user",
        "v1.other_tenant_same_as_unknown",
        "v1.other_org_header",
        "v1.no_token",
        "v1.system_without_org",
        "v1.set_human_password",
        "set.wrong_current_password",
        "set.with_current_password",
    ]);
    checks
}

/// The server log's last request lines, warnings and errors, without colour codes.
fn log_digest(log: &str) -> String {
    let mut plain = String::with_capacity(log.len());
    let mut chars = log.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ parameters final-byte
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            plain.push(c);
        }
    }
    let lines: Vec<&str> = plain
        .lines()
        .filter(|l| l.contains(" request ") || l.contains(" WARN ") || l.contains(" ERROR "))
        .collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// After a v2 script: the user's password is the one the client set, a "password changed"
/// notice was queued and no reset message (the code was returned, not sent); the other
/// tenant's user is untouched.
async fn assert_v2_outcome(world: &World, summary: &Value, other_before: &(String, String)) {
    let user = World::user_of(summary);
    let kinds = world.outbox_kinds(&user);
    assert!(
        kinds.iter().any(|k| k == "password_changed"),
        "password changed notice queued: {kinds:?}"
    );
    assert!(
        !kinds
            .iter()
            .any(|k| k == "password_reset" || k == "password_init"),
        "return_code sends nothing: {kinds:?}"
    );
    world.assert_password_is(&user, NEW_PASSWORD).await;
    assert_eq!(
        &world.other_user_state().await,
        other_before,
        "the other tenant's user is untouched"
    );
}

/// PyPI `zitadel-client`: Connect JSON over HTTP/1.1, user v2 and v2beta.
async fn zitadel_client_python_connect(kind: DbKind) {
    let world = World::new(kind).await;
    let before = world.other_user_state().await;
    let mut required = USER_SERVICE_CHECKS.to_vec();
    required.extend([
        "get.other_tenant",
        "v2beta.reset_and_set",
        "v2beta.code_replayed",
        "v2beta.other_tenant",
    ]);
    let summary = world.python_script(
        "zitadel_client_connect.py",
        "python-connect@acme.example",
        &required,
    );
    assert_eq!(summary["form"], "connect-json");
    assert_v2_outcome(&world, &summary, &before).await;
}

/// npm `@zitadel/client` from its `/node` entry: gRPC over h2c.
async fn zitadel_client_node_grpc(kind: DbKind) {
    let world = World::new(kind).await;
    let before = world.other_user_state().await;
    let summary = world.node_script(
        "zitadel-client.mjs",
        &["grpc"],
        "client-grpc@acme.example",
        "@zitadel/client",
    );
    assert_eq!(summary["form"], "grpc");
    assert_v2_outcome(&world, &summary, &before).await;
}

/// npm `@zitadel/client` from its `/web` entry: gRPC-Web over HTTP/1.1.
async fn zitadel_client_web_grpc_web(kind: DbKind) {
    let world = World::new(kind).await;
    let before = world.other_user_state().await;
    let summary = world.node_script(
        "zitadel-client.mjs",
        &["grpc-web"],
        "client-grpc-web@acme.example",
        "@zitadel/client",
    );
    assert_eq!(summary["form"], "grpc-web");
    assert_v2_outcome(&world, &summary, &before).await;
}

/// npm `@zitadel/node`: gRPC, user client on v2beta, management v1 with `x-zitadel-orgid`.
async fn zitadel_node_grpc(kind: DbKind) {
    let world = World::new(kind).await;
    let summary = world.node_script(
        "zitadel-node.mjs",
        &[],
        "zitadel-node@acme.example",
        "@zitadel/node",
    );
    let user = World::user_of(&summary);
    // v1 SendHumanResetPasswordNotification queued an email for the user, and the system
    // token's call in the other org one for the other user.
    let kinds = world.outbox_kinds(&user);
    assert!(
        kinds.iter().any(|k| k == "password_reset"),
        "v1 reset queued: {kinds:?}"
    );
    let other_kinds = world.outbox_kinds(&world.other_user_id);
    assert_eq!(
        other_kinds
            .iter()
            .filter(|k| *k == "password_reset")
            .count(),
        1,
        "only the system token's v1 call reached the other tenant's user: {other_kinds:?}"
    );
    world.assert_password_is(&user, NEW_PASSWORD).await;
}

rekey_testkit::both_dbs!(
    zitadel_client_python_connect,
    zitadel_client_node_grpc,
    zitadel_client_web_grpc_web,
    zitadel_node_grpc,
);
