//! Opening stores: URL forms, SQLite file setup, migrations on reopen, and SQLite's write path
//! under contention (also from a second store on the same file, as the CLI next to a server).

use std::sync::Arc;

use rekey_core::ports::store::{Health, Store, UserChange};
use rekey_store::{ConnectError, SqliteStore};

use crate::harness::{cid, event, issue_code, seed, t, tid, uid, Fixture};

rekey_testkit::both_dbs!(
    run = crate::harness::run;
    reopen_keeps_data_and_migrates_once,
    two_stores_write_concurrently
);

#[tokio::test]
async fn sqlite_creates_directory_file_and_uses_wal() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a").join("b").join("rekey.db");
    let url = format!("sqlite://{}", path.display());
    let store = rekey_store::connect(&url).await.unwrap();
    store.ping().await.unwrap();
    assert!(path.is_file());
    let raw = sqlx::SqlitePool::connect(&format!("{url}?mode=ro"))
        .await
        .unwrap();
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&raw)
        .await
        .unwrap();
    assert_eq!(mode, "wal");
    raw.close().await;
}

#[tokio::test]
async fn sqlite_in_memory() {
    let store = rekey_store::connect("sqlite::memory:").await.unwrap();
    store.ping().await.unwrap();
    let other = SqliteStore::open_in_memory().await.unwrap();
    other.ping().await.unwrap();
}

#[tokio::test]
async fn unsupported_urls_are_refused() {
    for url in ["mysql://localhost/x", "sqlite://", "file:rekey.db", ""] {
        let err = rekey_store::connect(url).await.err().unwrap();
        assert!(matches!(err, ConnectError::InvalidUrl(_)), "{url}: {err:?}");
    }
}

#[tokio::test]
async fn unreachable_postgres_is_an_error_without_the_password() {
    let err = rekey_store::connect("postgres://u:secret-pw@127.0.0.1:1/x")
        .await
        .err()
        .unwrap();
    assert!(matches!(err, ConnectError::Database(_)), "{err:?}");
    let text = format!("{err} {err:?}");
    assert!(!text.contains("secret-pw"), "{text}");
}

async fn reopen_keeps_data_and_migrates_once(fx: Fixture) {
    seed(&fx).await;
    let migrations = fx.count("_sqlx_migrations").await;
    let again = rekey_store::connect(&fx.url).await.unwrap();
    again.ping().await.unwrap();
    assert!(again.user(&tid("t1"), &uid("u1")).await.unwrap().is_some());
    assert_eq!(fx.count("_sqlx_migrations").await, migrations);
}

/// Two stores (two pools, as two processes would have) change users concurrently: every
/// change applies, none fails with a busy or lock error, sequences have no gaps.
async fn two_stores_write_concurrently(fx: Fixture) {
    seed(&fx).await;
    issue_code(&fx, "t1", "u1", "c1", t(5)).await;
    let second: Arc<dyn Store> = rekey_store::connect(&fx.url).await.unwrap();
    let stores = [fx.store.clone(), second];
    let mut tasks = Vec::new();
    for i in 0..40_i64 {
        let store = stores[(i % 2) as usize].clone();
        let (tenant, user) = [("t1", "u1"), ("t1", "u2"), ("t2", "u3")][(i % 3) as usize];
        tasks.push(tokio::spawn(async move {
            let change = UserChange::new(tid(tenant), uid(user), t(100 + i), event("user.touched"));
            store.change_user(&change).await.unwrap();
            // Interleave the attempt counter (a write outside change_user) and reads.
            store
                .reserve_code_attempt(&tid("t1"), &uid("u1"), &cid("c1"), 1000, &[])
                .await
                .unwrap();
            store.user(&tid(tenant), &uid(user)).await.unwrap().unwrap();
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let seq = |t: &'static str, u: &'static str| {
        let store = fx.store.clone();
        async move {
            store
                .user(&tid(t), &uid(u))
                .await
                .unwrap()
                .unwrap()
                .sequence
        }
    };
    // u1: added (1) + code issued (2) + 14 changes; u2: 1 + 13; u3: 1 + 13.
    assert_eq!(seq("t1", "u1").await, 16);
    assert_eq!(seq("t1", "u2").await, 14);
    assert_eq!(seq("t2", "u3").await, 14);
    assert_eq!(fx.pending("t1", "u1").await.attempts, 40);
}

/// The database holds password hashes: only the service's user may read it (the directory
/// 0700, the database and its WAL files 0600), and a file left readable is narrowed.
#[cfg(unix)]
#[tokio::test]
async fn sqlite_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let path = data.join("rekey.db");
    let store = rekey_store::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    store.ping().await.unwrap();
    assert_eq!(mode(&data), 0o700);
    for file in ["rekey.db", "rekey.db-wal", "rekey.db-shm"] {
        let p = data.join(file);
        assert!(p.exists(), "{file}");
        assert_eq!(mode(&p), 0o600, "{file}");
    }
    drop(store);

    let old = dir.path().join("old.db");
    std::fs::write(&old, b"").unwrap();
    std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o644)).unwrap();
    let store = rekey_store::connect(&format!("sqlite://{}", old.display()))
        .await
        .unwrap();
    store.ping().await.unwrap();
    assert_eq!(mode(&old), 0o600);
}
