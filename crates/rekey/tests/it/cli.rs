use serde_json::{json, Value};

use crate::harness::{DbKind, Install};

const PASSWORD: &str = "Correct-Horse-Battery-9";
const NEW_PASSWORD: &str = "Another-Long-Passphrase-7";

async fn post(base: &str, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .post(format!("{base}{path}"))
        .json(&body);
    if let Some(token) = token {
        req = req.header("Authorization", format!("Bearer {token}"));
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// The README walk-through: from nothing to a working reset with the binary alone.
async fn walkthrough(kind: DbKind) {
    let install = Install::new(kind).await;
    let tenant = install.add_tenant("Example Corp", "example-corp");
    assert!(tenant.chars().all(|c| c.is_ascii_digit()), "{tenant}");
    install.run(&[
        "tenant",
        "set",
        "example-corp",
        "code.length=10",
        "password.min_length=14",
    ]);
    let shown: Value =
        serde_json::from_str(&install.stdout(&["--json", "tenant", "show", &tenant])).unwrap();
    assert_eq!(shown["settings"]["code_length"], 10);
    assert_eq!(shown["cname"], "example-corp");

    let user = install.add_user(
        "example-corp",
        "hello@example.com",
        &[
            "--first-name",
            "Hello",
            "--last-name",
            "World",
            "--password",
            PASSWORD,
        ],
    );
    let token = install.admin_token("example-corp");
    assert!(token.starts_with("rk_") && token.len() >= 43, "{token}");

    let server = install.serve();
    // Seed 004's curl line with returnCode as its medium.
    let (status, body) = post(
        &server.base,
        &format!("/v2/users/{user}/password_reset"),
        Some(&token),
        json!({ "returnCode": {} }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["details"]["resourceOwner"], tenant.as_str());
    let code = body["verificationCode"].as_str().unwrap().to_owned();
    assert_eq!(code.len(), 10, "tenant code.length applies");

    let set = json!({ "newPassword": { "password": NEW_PASSWORD }, "verificationCode": code });
    let (status, body) = post(
        &server.base,
        &format!("/v2/users/{user}/password"),
        None,
        set.clone(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = post(
        &server.base,
        &format!("/v2/users/{user}/password"),
        None,
        set,
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["details"][0]["id"], "COMMAND-2M9fs");

    let health = reqwest::get(format!("{}/healthz", server.base))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let ready: Value = reqwest::get(format!("{}/readyz", server.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["database"], "ok");

    let (graceful, log) = server.stop();
    assert!(graceful, "server did not stop gracefully:\n{log}");
    assert!(log.contains("/v2/users/"), "request log missing:\n{log}");

    let events = install.stdout(&["--json", "events", "--user", &user]);
    let events: Value = serde_json::from_str(&events).unwrap();
    let kinds: Vec<&str> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "user.added",
            "user.password.code.added",
            "user.password.changed"
        ]
    );

    // No secret anywhere in logs or the audit trail.
    for (what, text) in [("server log", &log), ("events", &events.to_string())] {
        for secret in [&code, &token, PASSWORD, NEW_PASSWORD] {
            assert!(!text.contains(secret), "{what} contains a secret");
        }
    }
}

/// On a database without tokens, `serve` prints one system token once.
async fn first_start_prints_a_system_token_once(kind: DbKind) {
    let install = Install::new(kind).await;
    let server = install.serve();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let token = loop {
        let log = server.stderr();
        if let Some(t) = log.split_whitespace().find(|w| w.starts_with("rk_")) {
            break t.to_owned();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no token printed:\n{log}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    // The token authenticates: an unknown user is 404, not 401.
    let (status, _) = post(
        &server.base,
        "/v2/users/42/password_reset",
        Some(&token),
        json!({}),
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = post(
        &server.base,
        "/v2/users/42/password_reset",
        Some("rk_nope"),
        json!({}),
    )
    .await;
    assert_eq!(status, 401);
    let (ok, _) = server.stop();
    assert!(ok);

    let again = install.serve();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let (_, log) = again.stop();
    assert!(!log.contains("rk_"), "token printed twice:\n{log}");
    // Keys were generated into the data directory on first start.
    assert!(install.data_path().join("code_hmac.keys").exists());
    assert!(install.data_path().join("outbox.keys").exists());
}

/// TOML file < environment < `_FILE` secrets; bad input is refused with a clear message.
async fn configuration_layers_and_cli_errors(kind: DbKind) {
    let mut install = Install::new(kind).await;
    let key_file = install.data_path().join("hmac.key");
    std::fs::write(
        &key_file,
        "k7:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n",
    )
    .unwrap();
    install.extra_env.push((
        "REKEY_KEYS__CODE_HMAC_FILE".to_owned(),
        key_file.display().to_string(),
    ));
    let toml = install.data_path().join("rekey.toml");
    std::fs::write(
        &toml,
        "public_url = \"https://from-toml.test\"\n[code]\nlength = 12\n",
    )
    .unwrap();

    let tenant = install.stdout(&[
        "--config",
        toml.to_str().unwrap(),
        "tenant",
        "add",
        "--name",
        "T",
        "--cname",
        "t1",
    ]);
    assert!(!tenant.is_empty());
    assert!(
        !install.data_path().join("code_hmac.keys").exists(),
        "a configured key (via _FILE) must not be replaced by a generated one"
    );

    // Refused input: all-digit cname, bad email, unknown setting — non-zero exit, clear stderr.
    for (args, needle) in [
        (
            vec!["tenant", "add", "--name", "N", "--cname", "12345"],
            "all digits",
        ),
        (
            vec!["user", "add", "--tenant", "t1", "--email", "not-an-email"],
            "Email is invalid",
        ),
        (
            vec!["tenant", "set", "t1", "nope=1"],
            "unknown tenant setting",
        ),
        (vec!["tenant", "show", "missing"], "Tenant not found"),
    ] {
        let out = install.command().args(&args).output().unwrap();
        assert!(!out.status.success(), "{args:?} should fail");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
    }

    let bad = install
        .command()
        .env("REKEY_PUBLIC_URL", "ftp://nope")
        .args(["tenant", "show", "t1"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("public_url"));
}

/// SIGTERM while a client holds an HTTP/2 connection open without a request and never answers
/// the GOAWAY's PING: the process still exits, within the shutdown timeout and a little.
#[tokio::test]
async fn shutdown_is_not_held_by_an_idle_h2c_connection() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let mut install = Install::new(DbKind::Sqlite).await;
    install.set_env("REKEY_SHUTDOWN_TIMEOUT_MS", "1500");
    let server = install.serve();
    let addr = server.base.trim_start_matches("http://").to_owned();
    let mut idle = tokio::net::TcpStream::connect(&addr).await.unwrap();
    // The preface and an empty SETTINGS frame; the server's SETTINGS back means it is HTTP/2.
    idle.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .await
        .unwrap();
    let mut head = [0u8; 9];
    tokio::time::timeout(
        std::time::Duration::from_secs(5),
        idle.read_exact(&mut head),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(head[3], 4, "SETTINGS first");

    let started = std::time::Instant::now();
    let (graceful, log) = server.stop();
    let took = started.elapsed();
    assert!(graceful, "server did not stop gracefully:\n{log}");
    assert!(
        took < std::time::Duration::from_secs(6),
        "took {took:?}:\n{log}"
    );
    assert!(log.contains("rekey stopped"), "{log}");
    drop(idle);
}

rekey_testkit::both_dbs!(walkthrough);
rekey_testkit::both_dbs!(first_start_prints_a_system_token_once);
rekey_testkit::both_dbs!(configuration_layers_and_cli_errors);

/// `ui.login_url`: an absolute http(s) URL, shown by `tenant show`, unset with an empty value;
/// anything else is refused and leaves the settings as they were.
async fn tenant_ui_login_url(kind: DbKind) {
    let install = Install::new(kind).await;
    install.add_tenant("L", "login-corp");
    install.run(&[
        "tenant",
        "set",
        "login-corp",
        "ui.login_url=https://login.example.com/app?x=1",
    ]);
    let shown: Value =
        serde_json::from_str(&install.stdout(&["--json", "tenant", "show", "login-corp"])).unwrap();
    assert_eq!(
        shown["settings"]["ui_login_url"],
        "https://login.example.com/app?x=1"
    );
    for bad in [
        "ui.login_url=javascript:alert(1)",
        "ui.login_url=/relative/path",
        "ui.login_url=ftp://files.example.com/",
        "ui.login_url=https://",
        "ui.login_url=https://user:pw@example.com/",
    ] {
        let out = install
            .command()
            .args(["tenant", "set", "login-corp", bad])
            .output()
            .unwrap();
        assert!(!out.status.success(), "{bad} should be refused");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("ui.login_url"), "{bad}: {err}");
    }
    let shown: Value =
        serde_json::from_str(&install.stdout(&["--json", "tenant", "show", "login-corp"])).unwrap();
    assert_eq!(
        shown["settings"]["ui_login_url"],
        "https://login.example.com/app?x=1"
    );
    install.run(&["tenant", "set", "login-corp", "ui.login_url="]);
    let shown: Value =
        serde_json::from_str(&install.stdout(&["--json", "tenant", "show", "login-corp"])).unwrap();
    assert!(shown["settings"].get("ui_login_url").is_none(), "{shown}");
}

rekey_testkit::both_dbs!(tenant_ui_login_url);
