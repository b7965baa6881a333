//! `rekey backup FILE` (issue 10): a copy taken from a running server under write load passes
//! SQLite's integrity check and holds every row acknowledged before the backup began; the copy,
//! restored as the database, serves. For PostgreSQL the command names pg_dump and fails.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Row};

use crate::harness::{get, post_json, DbKind, Install};

const WRITERS: usize = 4;

/// The user ids in a database file, read directly, after `PRAGMA integrity_check` passed.
async fn checked_user_ids(path: &Path) -> BTreeSet<String> {
    let mut conn = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
        .unwrap()
        .read_only(true)
        .connect()
        .await
        .unwrap();
    let check: Vec<String> = sqlx::query("PRAGMA integrity_check")
        .fetch_all(&mut conn)
        .await
        .unwrap()
        .iter()
        .map(|row| row.get::<String, _>(0))
        .collect();
    assert_eq!(check, ["ok"]);
    sqlx::query("SELECT id FROM users")
        .fetch_all(&mut conn)
        .await
        .unwrap()
        .iter()
        .map(|row| row.get::<String, _>("id"))
        .collect()
}

fn database_path(install: &Install) -> PathBuf {
    PathBuf::from(install.db.url().strip_prefix("sqlite://").unwrap())
}

/// Adds users until `stop`, from `WRITERS` concurrent clients; every id the server
/// acknowledged (201) goes into `acked` the moment its answer arrives.
fn start_load(
    base: &str,
    token: &str,
    acked: &Arc<Mutex<Vec<String>>>,
    stop: &Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..WRITERS)
        .map(|writer| {
            let (base, token) = (base.to_owned(), token.to_owned());
            let (acked, stop) = (acked.clone(), stop.clone());
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let body = json!({
                        "profile": {"givenName": "Load", "familyName": format!("W{writer}")},
                        "email": {"email": format!("load-{writer}-{n}@example.com")},
                    });
                    let answer = post_json(
                        &client,
                        &format!("{base}/v2/users/human"),
                        Some(&token),
                        &body,
                    )
                    .await;
                    assert_eq!(answer.status, 201, "{}", answer.body);
                    let id = answer.body["userId"].as_str().unwrap().to_owned();
                    acked.lock().unwrap().push(id);
                }
            })
        })
        .collect()
}

fn acked_count(acked: &Mutex<Vec<String>>) -> usize {
    acked.lock().unwrap().len()
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_under_write_load_is_consistent_and_restores() {
    let install = Install::new(DbKind::Sqlite).await;
    install.add_tenant("Example", "example");
    let token = install.admin_token("example");
    let server = install.serve();
    let acked = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let load = start_load(&server.base, &token, &acked, &stop);
    wait_for("the first writes", || acked_count(&acked) >= 40).await;

    // Everything acknowledged up to here must be in the copy.
    let before: Vec<String> = acked.lock().unwrap().clone();
    let file = install.data_path().join("backup.db");
    let backup = {
        let mut command = install.command();
        command.args(["--json", "backup"]).arg(&file);
        tokio::task::spawn_blocking(move || command.output().unwrap())
            .await
            .unwrap()
    };
    let stderr = String::from_utf8_lossy(&backup.stderr);
    assert!(backup.status.success(), "rekey backup failed: {stderr}");
    let after_backup = acked_count(&acked);
    eprintln!(
        "acknowledged before the backup: {}, when it ended: {after_backup}",
        before.len()
    );
    let report: Value = serde_json::from_slice(&backup.stdout).unwrap();
    assert_eq!(report["file"], file.display().to_string());
    assert!(report["bytes"].as_u64().unwrap() > 0, "{report}");
    assert!(report["schema_version"].as_i64().unwrap() > 0, "{report}");
    assert!(
        stderr.contains("code_hmac.keys") && stderr.contains("outbox.keys"),
        "the keys are named as not in the backup: {stderr}"
    );

    // The writers were never held up: they go on after the backup.
    wait_for("writes after the backup", || {
        acked_count(&acked) >= after_backup + 20
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    for writer in load {
        writer.await.unwrap();
    }

    let copied = checked_user_ids(&file).await;
    let missing: Vec<&String> = before.iter().filter(|id| !copied.contains(*id)).collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged users missing from the backup",
        missing.len(),
        before.len()
    );
    let everything = checked_user_ids(&database_path(&install)).await;
    assert!(
        copied.is_subset(&everything) && copied.len() < everything.len(),
        "the copy is a snapshot: {} users in it, {} in the live database",
        copied.len(),
        everything.len()
    );

    // FILE exists now: refused, and left as it was.
    let again = install.command().arg("backup").arg(&file).output().unwrap();
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("already exists"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert_eq!(checked_user_ids(&file).await, copied);

    // Restore: stop the server, put the copy in place of the database (without the old
    // database's -wal and -shm), start again.
    let (graceful, log) = server.stop();
    assert!(graceful, "{log}");
    let db = database_path(&install);
    for suffix in ["", "-wal", "-shm"] {
        let path = PathBuf::from(format!("{}{suffix}", db.display()));
        if path.exists() {
            std::fs::remove_file(&path).unwrap();
        }
    }
    std::fs::copy(&file, &db).unwrap();
    let server = install.serve();
    let client = reqwest::Client::new();
    let ready = get(&client, &format!("{}/readyz", server.base)).await;
    assert_eq!(ready.status, 200, "{}", ready.body);
    for id in before.iter().step_by(7).chain(before.last()) {
        let answer = client
            .get(format!("{}/v2/users/{id}", server.base))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200, "restored user {id}");
    }
    // It takes writes: a reset (its code signed with the data directory's keys) and a new user.
    let user = &before[0];
    let reset = post_json(
        &client,
        &format!("{}/v2/users/{user}/password_reset", server.base),
        Some(&token),
        &json!({ "returnCode": {} }),
    )
    .await;
    assert_eq!(reset.status, 200, "{}", reset.body);
    let added = post_json(
        &client,
        &format!("{}/v2/users/human", server.base),
        Some(&token),
        &json!({
            "profile": {"givenName": "After", "familyName": "Restore"},
            "email": {"email": "after-restore@example.com"},
        }),
    )
    .await;
    assert_eq!(added.status, 201, "{}", added.body);
    let (graceful, log) = server.stop();
    assert!(graceful, "{log}");
    assert_eq!(checked_user_ids(&db).await.len(), copied.len() + 1);
}

#[tokio::test]
async fn postgres_is_pointed_at_its_own_tools() {
    let install = Install::new(DbKind::Sqlite).await;
    let file = install.data_path().join("backup.db");
    let output = install
        .command()
        // Refused before any connection is tried.
        .env("REKEY_DATABASE_URL", "postgres://rekey@127.0.0.1:1/rekey")
        .arg("backup")
        .arg(&file)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("pg_dump") && stderr.contains("pg_basebackup"),
        "{stderr}"
    );
    assert!(!file.exists());
}
