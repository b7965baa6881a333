//! Migrations that rebuild a table keep what was in it: 0006 rebuilds SQLite's outbox (to
//! widen its CHECK constraints for the event webhooks) the documented twelve-step way.

use std::path::Path;

use rekey_core::domain::{Channel, MessageId, MessageKind, OutboxState};
use rekey_core::ports::store::prelude::*;
use rekey_store::SqliteStore;
use sqlx::Row;

#[tokio::test]
async fn sqlite_outbox_rebuild_keeps_rows_indexes_and_constraints() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    let pool = sqlx::SqlitePool::connect_with(
        sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .foreign_keys(true),
    )
    .await
    .unwrap();
    // The schema as it was before 0006, with rows in it.
    let mut before = sqlx::migrate::Migrator::new(Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/migrations/sqlite"
    )))
    .await
    .unwrap();
    before.migrations = before
        .migrations
        .iter()
        .filter(|m| m.version < 6)
        .cloned()
        .collect::<Vec<_>>()
        .into();
    before.run(&pool).await.unwrap();
    for sql in [
        "INSERT INTO tenants VALUES ('t1', 'T', 'acme.test', '{}', 1, 1)",
        "INSERT INTO users (tenant_id, id, username, username_lower, email, email_lower, \
         email_verified, phone_verified, first_name, last_name, display_name, \
         preferred_language, state, password_change_required, sequence, creation_date, \
         change_date) VALUES ('t1', 'u1', 'ada', 'ada', 'ada@acme.test', 'ada@acme.test', 1, 0, \
         'Ada', 'L', 'Ada L', 'en', 'active', 0, 1, 1, 1)",
        "INSERT INTO outbox VALUES ('t1', 'm1', 'u1', 'email', 'ada@acme.test', \
         'password_reset', 'm1.t1', 'o1', X'0102', 'failed', 8, 50, 'gave up', 10, NULL, 99)",
        "INSERT INTO outbox VALUES ('t1', 'm2', 'u1', 'sms', '+41790000001', \
         'password_changed', 'm2.t1', 'o1', X'', 'sent', 1, 20, NULL, 11, 21, NULL)",
        "INSERT INTO outbox VALUES ('t1', 'm3', 'u1', 'email', 'ada@acme.test', \
         'password_init', 'm3.t1', 'o1', X'03', 'pending', 0, 30, NULL, 12, NULL, 1000)",
    ] {
        sqlx::query(sql).execute(&pool).await.unwrap();
    }
    pool.close().await;

    let store = SqliteStore::open(&path).await.unwrap();
    let all = store.outbox_messages(None, 0).await.unwrap();
    let ids: Vec<&str> = all.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, ["m1", "m2", "m3"]);
    let m1 = store
        .outbox_message(&MessageId::parse("m1").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (m1.channel, m1.kind, m1.state, m1.attempts),
        (
            Channel::Email,
            MessageKind::PasswordReset,
            OutboxState::Failed,
            8
        )
    );
    assert_eq!(m1.body, [1, 2]);
    assert_eq!(m1.last_error.as_deref(), Some("gave up"));
    assert_eq!(m1.idempotency_key, "m1.t1");
    assert_eq!(m1.body_expires_at.map(|at| at.timestamp_micros()), Some(99));
    assert_eq!(all[1].sent_at.map(|at| at.timestamp_micros()), Some(21));
    assert_eq!(all[2].state, OutboxState::Pending);

    let pool = sqlx::SqlitePool::connect_with(
        sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&path)
            .foreign_keys(true),
    )
    .await
    .unwrap();
    let mut indexes: Vec<String> = sqlx::query(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'outbox' \
         AND name NOT LIKE 'sqlite_autoindex%'",
    )
    .fetch_all(&pool)
    .await
    .unwrap()
    .iter()
    .map(|r| r.get("name"))
    .collect();
    indexes.sort();
    assert_eq!(
        indexes,
        [
            "outbox_created",
            "outbox_id",
            "outbox_pending_due",
            "outbox_user"
        ]
    );
    let table: String = sqlx::query("SELECT sql FROM sqlite_master WHERE name = 'outbox'")
        .fetch_one(&pool)
        .await
        .unwrap()
        .get("sql");
    assert!(
        table.contains("CONSTRAINT outbox_idempotency_key UNIQUE"),
        "{table}"
    );
    assert!(table.contains("STRICT"), "{table}");

    // The new channel and kind are accepted; others still are not; keys still hold. (The last
    // column is 0008's request_id.)
    let insert = |id: &str, channel: &str, kind: &str, key: &str| {
        format!(
            "INSERT INTO outbox VALUES ('t1', '{id}', 'u1', '{channel}', 'https://h.example', \
             '{kind}', '{key}', 'o1', X'01', 'pending', 0, 40, NULL, 13, NULL, NULL, NULL)"
        )
    };
    sqlx::query(&insert("w1", "webhook", "event", "w1.t1"))
        .execute(&pool)
        .await
        .unwrap();
    for bad in [
        insert("w2", "fax", "event", "w2.t1"),
        insert("w3", "webhook", "fax", "w3.t1"),
        insert("w4", "webhook", "event", "m1.t1"),
        insert("m1", "webhook", "event", "w5.t1"),
        "INSERT INTO outbox VALUES ('t1', 'w6', 'nobody', 'webhook', 'https://h.example', \
         'event', 'w6.t1', 'o1', X'01', 'pending', 0, 40, NULL, 13, NULL, NULL, NULL)"
            .to_owned(),
    ] {
        assert!(sqlx::query(&bad).execute(&pool).await.is_err(), "{bad}");
    }
    let check: Vec<sqlx::sqlite::SqliteRow> = sqlx::query("PRAGMA foreign_key_check")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert!(check.is_empty());
}
