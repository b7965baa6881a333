//! Development mail (`REKEY_MAIL__DIR`, issue 10): with no SMTP server, a reset by mail ends as
//! an `.eml` file whose link sets the password; the server warns at start that nothing is
//! delivered, wins over a configured SMTP host, and `/readyz` says so.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rekey_testkit::smtp::Received;
use serde_json::json;

use crate::harness::{get, post_json, DbKind, Install};

const PASSWORD: &str = "Correct-Horse-Battery-9";
const NEW_PASSWORD: &str = "Another-Long-Passphrase-7";

/// The `.eml` files in `dir`, by name (temporary files excluded).
fn eml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .map(|e| e.unwrap().path())
                .filter(|p| p.extension().is_some_and(|x| x == "eml"))
                .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// Waits (at most 15 s) until `dir` holds `count` mails; returns them.
async fn wait_for_mails(dir: &Path, count: usize, log: impl Fn() -> String) -> Vec<PathBuf> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let files = eml_files(dir);
        if files.len() >= count {
            return files;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {count} mails after 15 s; server log:\n{}",
            files.len(),
            log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn read_mail(path: &Path) -> Received {
    Received {
        mail_from: String::new(),
        rcpt_tos: Vec::new(),
        raw: std::fs::read(path).unwrap(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_link_arrives_as_an_eml_file() {
    let mut install = Install::new(DbKind::Sqlite).await;
    let mail_dir = install.data_path().join("mail");
    install.set_env("REKEY_MAIL__DIR", mail_dir.display().to_string());
    // A host nothing listens on: development mail wins, so it is never tried.
    install.set_env("REKEY_SMTP__HOST", "127.0.0.1");
    install.set_env("REKEY_SMTP__PORT", "1");
    install.set_env("REKEY_OUTBOX__POLL_MS", "50");
    install.add_tenant("Example", "example");
    let user = install.add_user(
        "example",
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
    let token = install.admin_token("example");
    let server = install.serve();
    let client = reqwest::Client::new();

    let log = server.stderr();
    let warning = log
        .lines()
        .find(|l| l.contains("DEVELOPMENT MAIL"))
        .unwrap_or_else(|| panic!("no start-up warning in:\n{log}"));
    assert!(warning.contains("WARN"), "{warning}");
    assert!(warning.contains("NOT delivered"), "{warning}");
    assert!(warning.contains("smtp.host is set as well"), "{warning}");

    let ready = get(&client, &format!("{}/readyz", server.base)).await;
    assert_eq!(ready.status, 200, "{}", ready.body);
    let email = ready.body["channels"]["email"].as_str().unwrap();
    assert!(
        email.starts_with("development:") && email.contains(&mail_dir.display().to_string()),
        "{email}"
    );

    let reset = post_json(
        &client,
        &format!("{}/v2/users/{user}/password_reset", server.base),
        Some(&token),
        &json!({ "sendLink": { "notificationType": "NOTIFICATION_TYPE_Email" } }),
    )
    .await;
    assert_eq!(reset.status, 200, "{}", reset.body);

    let files = wait_for_mails(&mail_dir, 1, || server.stderr()).await;
    assert_eq!(files.len(), 1, "{files:?}");
    let mail = read_mail(&files[0]);
    let message_id = mail.header("Message-ID");
    let stem = files[0].file_stem().unwrap().to_string_lossy().into_owned();
    assert_eq!(
        message_id,
        format!("<{stem}@127.0.0.1>"),
        "the file is named after the Message-ID"
    );
    assert!(mail.header("To").contains("hello@example.com"));
    assert_eq!(mail.header("Subject"), "Reset password");
    let text = mail.part("text/plain");
    let link = text
        .split_whitespace()
        .find(|w| w.starts_with("http") && w.contains("code="))
        .unwrap_or_else(|| panic!("no link in:\n{text}"))
        .trim_end_matches(['.', ')', '>']);
    let link = url::Url::parse(link).unwrap();
    assert!(link.as_str().starts_with(&server.base), "{link}");
    let param = |name: &str| {
        link.query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
            .unwrap_or_else(|| panic!("{name} missing in {link}"))
    };
    assert_eq!(param("userID"), user);

    // Following the link: its code sets the password.
    let set = post_json(
        &client,
        &format!("{}/v2/users/{user}/password", server.base),
        None,
        &json!({ "newPassword": { "password": NEW_PASSWORD }, "verificationCode": param("code") }),
    )
    .await;
    assert_eq!(set.status, 200, "{}", set.body);

    // The "password changed" notice follows as a second file, with its own Message-ID.
    let files = wait_for_mails(&mail_dir, 2, || server.stderr()).await;
    let ids: std::collections::BTreeSet<String> = files
        .iter()
        .map(|f| read_mail(f).header("Message-ID"))
        .collect();
    assert_eq!(ids.len(), 2, "{ids:?}");

    let (graceful, log) = server.stop();
    assert!(graceful, "{log}");
    assert!(!log.contains(&param("code")), "the code is not logged");
}
