//! `rekey token create --expires-in`, `token list`, `token revoke` and `user set-state …
//! deleted` through the binary, against a running server: a listed token shows its last use
//! but never its secret or hash; a revoked or expired token gets 401; a deleted user's address
//! is gone from the audit trail and free for a new user.

use std::time::{Duration, Instant};

use base64::Engine;
use chrono::{DateTime, Utc};
use rekey_core::domain::token_hash;
use rekey_core::ports::{Clock, SystemClock};
use serde_json::Value;

use crate::harness::{DbKind, Install};

rekey_testkit::both_dbs!(tokens_listed_revoked_expired_and_a_user_erased);

fn json(install: &Install, args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    serde_json::from_str(&install.stdout(&all)).unwrap()
}

async fn get_user(base: &str, user: &str, token: &str) -> u16 {
    reqwest::Client::new()
        .get(format!("{base}/v2/users/{user}"))
        .header("Authorization", format!("Bearer {token}"))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// The listed token with this id.
fn listed(install: &Install, id: &str) -> Value {
    json(install, &["token", "list"])["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == id)
        .cloned()
        .unwrap_or_else(|| panic!("token {id} not listed"))
}

async fn tokens_listed_revoked_expired_and_a_user_erased(kind: DbKind) {
    let install = Install::new(kind).await;
    install.run(&["tenant", "add", "--name", "Acme", "--cname", "acme"]);
    install.run(&["tenant", "add", "--name", "Other", "--cname", "other"]);
    let user = install.stdout(&[
        "user",
        "add",
        "--tenant",
        "acme",
        "--email",
        "Dana.Delete@example.com",
        "--phone",
        "+41791112233",
        "--first-name",
        "Dana",
        "--last-name",
        "Delete",
    ]);

    let before = SystemClock.now();
    let admin = json(
        &install,
        &[
            "token",
            "create",
            "--role",
            "tenant-admin",
            "--tenant",
            "acme",
            "--expires-in",
            "90d",
        ],
    );
    let expires: DateTime<Utc> = admin["expiresAt"].as_str().unwrap().parse().unwrap();
    let ninety = chrono::Duration::days(90);
    assert!(expires >= before + ninety - chrono::Duration::seconds(1));
    assert!(expires <= SystemClock.now() + ninety);
    let (admin_id, admin_secret) = (
        admin["id"].as_str().unwrap().to_owned(),
        admin["token"].as_str().unwrap().to_owned(),
    );
    let other = install.stdout(&[
        "token",
        "create",
        "--role",
        "tenant-admin",
        "--tenant",
        "other",
    ]);
    let brief = install.stdout(&[
        "token",
        "create",
        "--role",
        "tenant-admin",
        "--tenant",
        "acme",
        "--expires-in",
        "1s",
    ]);
    let bad = install
        .command()
        .args(["token", "create", "--role", "system", "--expires-in", "5x"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("Invalid token lifetime"));

    let server = install.serve();
    assert_eq!(get_user(&server.base, &user, &admin_secret).await, 200);

    // The last use shows up (written off the request's path, so give it a moment).
    let deadline = Instant::now() + Duration::from_secs(10);
    let used = loop {
        let token = listed(&install, &admin_id);
        if !token["lastUsedAt"].is_null() || Instant::now() > deadline {
            break token;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let last: DateTime<Utc> = used["lastUsedAt"].as_str().unwrap().parse().unwrap();
    assert!(last >= before - chrono::Duration::seconds(1));
    assert_eq!(used["status"], "active");
    assert_eq!(used["role"], "tenant_admin");
    assert!(used["tenantId"].is_string() && used["userId"].is_null());

    // Listed everywhere without its secret or its hash (in any usual spelling).
    let hash = token_hash(&admin_secret);
    let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    let b64 = base64::engine::general_purpose::STANDARD.encode(hash);
    let text = install.stdout(&["token", "list"]);
    let all_json = install.stdout(&["--json", "token", "list"]);
    for out in [&text, &all_json] {
        for secret in [&admin_secret, &other, &brief, &hex, &b64] {
            assert!(
                !out.contains(secret.as_str()),
                "token list shows a secret or hash"
            );
        }
    }
    assert_eq!(
        text.lines().count(),
        3,
        "the three tokens made here (the server made none: tokens existed):\n{text}"
    );
    let line = text.lines().find(|l| l.starts_with(&admin_id)).unwrap();
    assert!(
        line.contains("\ttenant_admin\t") && line.ends_with("\tactive"),
        "{line}"
    );
    let acme = json(&install, &["token", "list", "--tenant", "acme"]);
    let acme_ids: Vec<&str> = acme["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(acme_ids.len(), 2, "acme's two admin tokens only: {acme}");
    assert!(acme_ids.contains(&admin_id.as_str()));

    // Expired: 401, like any unknown token.
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(get_user(&server.base, &user, &brief).await, 401);

    // Revoked: 401, an audit event; again: reported, nothing changes; unknown id: an error.
    assert_eq!(install.stdout(&["token", "revoke", &admin_id]), admin_id);
    assert_eq!(get_user(&server.base, &user, &admin_secret).await, 401);
    assert_eq!(listed(&install, &admin_id)["status"], "revoked");
    let again = json(&install, &["token", "revoke", &admin_id]);
    assert_eq!(again["alreadyRevoked"], true);
    let unknown = install
        .command()
        .args(["token", "revoke", "69629023906488334"])
        .output()
        .unwrap();
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("No token with this id"));
    let events = json(&install, &["events"]);
    let revocations: Vec<&Value> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "token.revoked")
        .collect();
    assert_eq!(revocations.len(), 1, "{events}");

    // Deleting the user erases their data; the address can be used again.
    install.run(&["user", "set-state", &user, "deleted"]);
    let trail = install
        .stdout(&["--json", "events", "--user", &user])
        .to_lowercase();
    for personal in ["dana", "example.com", "+4179111"] {
        assert!(
            !trail.contains(personal),
            "the audit trail holds {personal:?}"
        );
    }
    install.run(&[
        "user",
        "add",
        "--tenant",
        "acme",
        "--email",
        "dana.delete@example.com",
    ]);

    let (graceful, log) = server.stop();
    assert!(graceful, "{log}");
    for secret in [&admin_secret, &other, &brief] {
        assert!(
            !log.contains(secret.as_str()),
            "the server log holds a token"
        );
    }
}
