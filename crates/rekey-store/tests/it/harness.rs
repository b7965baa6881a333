//! Fixtures: a fresh store per test on either database (a `rekey_testkit::TestDb`), an independent connection to look at
//! the raw rows, and builders for multi-tenant test data.

use std::future::Future;
use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use rekey_core::domain::{
    ApiToken, CodeKind, NewEvent, OutboxMessage, OutboxState, ResetCodeRecord, Role, Tenant, User,
};
use rekey_core::domain::{CodeId, MessageId, TenantId, TokenId, UserId};
use rekey_core::ports::store::{NewResetCode, Store, UserChange, UserSearch};
use rekey_testkit::{fixtures, DbKind, TestDb};
use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::SqlitePoolOptions;
use sqlx::{Connection, PgConnection, PgPool, SqlitePool};

/// A raw view of the test database, independent of the store under test.
pub enum Db {
    Sqlite(SqlitePool),
    Pg(PgPool),
}

/// A write lock held by another connection; released (rolled back) when dropped. The
/// connection is only ever held, never read.
#[allow(dead_code)]
pub enum WriteLock {
    Sqlite(sqlx::SqliteConnection),
    Pg(PgConnection),
}

pub struct Fixture {
    pub store: Arc<dyn Store>,
    pub db: Db,
    /// The URL the store was opened with (to open a second store on the same database).
    pub url: String,
}

/// Runs `test` against a fresh store on a fresh [`TestDb`] of `kind`, then cleans up (also
/// when the test panics, whose panic is then passed on). The runner of
/// `rekey_testkit::both_dbs!(run = crate::harness::run; …)`.
pub async fn run<F, Fut>(kind: DbKind, test: F)
where
    F: FnOnce(Fixture) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let test_db = TestDb::new(kind);
    let url = test_db.url().to_owned();
    let store = rekey_store::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("open the {} store: {e}", kind.name()));
    let db = match kind {
        DbKind::Sqlite => Db::Sqlite(
            SqlitePoolOptions::new()
                .max_connections(2)
                .connect(&format!("{url}?mode=ro"))
                .await
                .expect("raw SQLite connection"),
        ),
        DbKind::Postgres => Db::Pg(
            PgPoolOptions::new()
                .max_connections(2)
                .connect(&url)
                .await
                .expect("raw PostgreSQL connection"),
        ),
    };
    let raw = match &db {
        Db::Sqlite(pool) => Db::Sqlite(pool.clone()),
        Db::Pg(pool) => Db::Pg(pool.clone()),
    };
    let outcome = tokio::spawn(test(Fixture { store, db, url })).await;
    match raw {
        Db::Sqlite(pool) => pool.close().await,
        Db::Pg(pool) => pool.close().await,
    }
    // Dropping the guard removes the SQLite directory or drops the PostgreSQL database
    // (`WITH (FORCE)`, which also ends the store's pooled connections).
    drop(test_db);
    if let Err(err) = outcome {
        std::panic::resume_unwind(err.into_panic());
    }
}

impl Fixture {
    /// One BIGINT from raw SQL (portable SQL only).
    pub async fn scalar(&self, sql: &str) -> i64 {
        match &self.db {
            Db::Sqlite(pool) => sqlx::query_scalar(sql).fetch_one(pool).await,
            Db::Pg(pool) => sqlx::query_scalar(sql).fetch_one(pool).await,
        }
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// One nullable TEXT from raw SQL.
    pub async fn text(&self, sql: &str) -> Option<String> {
        match &self.db {
            Db::Sqlite(pool) => sqlx::query_scalar(sql).fetch_one(pool).await,
            Db::Pg(pool) => sqlx::query_scalar(sql).fetch_one(pool).await,
        }
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// Takes the database's write lock from another connection, as a second process would
    /// (SQLite: `BEGIN IMMEDIATE` on the file; PostgreSQL: an exclusive lock on the rate-limit
    /// table, which lets reads through). Held until the guard is dropped.
    pub async fn hold_write_lock(&self) -> WriteLock {
        match &self.db {
            Db::Sqlite(_) => {
                let mut conn = sqlx::SqliteConnection::connect(&self.url).await.unwrap();
                sqlx::query("BEGIN IMMEDIATE")
                    .execute(&mut conn)
                    .await
                    .unwrap();
                WriteLock::Sqlite(conn)
            }
            Db::Pg(_) => {
                let mut conn = PgConnection::connect(&self.url).await.unwrap();
                sqlx::query("BEGIN").execute(&mut conn).await.unwrap();
                sqlx::query("LOCK TABLE rate_limits, users IN EXCLUSIVE MODE")
                    .execute(&mut conn)
                    .await
                    .unwrap();
                WriteLock::Pg(conn)
            }
        }
    }

    /// Runs a write statement on a connection of its own (the SQLite view is read-only), for
    /// bulk data the store API would take long to insert.
    pub async fn execute(&self, sql: &str) {
        match &self.db {
            Db::Sqlite(_) => {
                let mut conn = sqlx::SqliteConnection::connect(&self.url).await.unwrap();
                sqlx::query(sql).execute(&mut conn).await.map(drop)
            }
            Db::Pg(pool) => sqlx::query(sql).execute(pool).await.map(drop),
        }
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// The user's pending code; panics when there is none.
    pub async fn pending(&self, tenant: &str, user: &str) -> ResetCodeRecord {
        self.store
            .pending_code(&tid(tenant), &uid(user))
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{tenant}/{user} has no pending code"))
    }

    /// The id of the user's pending code; panics when there is none.
    pub async fn pending_id(&self, tenant: &str, user: &str) -> CodeId {
        self.pending(tenant, user).await.id
    }

    pub async fn count(&self, table: &str) -> i64 {
        self.scalar(&format!("SELECT COUNT(*) FROM {table}")).await
    }

    /// Everything a write could change, as numbers: row counts of every table plus the
    /// mutable columns summed up. "Writes nothing" is `snapshot()` before == after.
    pub async fn snapshot(&self) -> Vec<(&'static str, i64)> {
        const PROBES: &[(&str, &str)] = &[
            ("tenants", "SELECT COUNT(*) FROM tenants"),
            ("users", "SELECT COUNT(*) FROM users"),
            ("user_index", "SELECT COUNT(*) FROM user_index"),
            ("email_index", "SELECT COUNT(*) FROM email_index"),
            ("api_tokens", "SELECT COUNT(*) FROM api_tokens"),
            ("reset_codes", "SELECT COUNT(*) FROM reset_codes"),
            ("events", "SELECT COUNT(*) FROM events"),
            ("outbox", "SELECT COUNT(*) FROM outbox"),
            ("rate_limits", "SELECT COUNT(*) FROM rate_limits"),
            (
                "users.sequence",
                "SELECT CAST(COALESCE(SUM(sequence), 0) AS BIGINT) FROM users",
            ),
            (
                "users.change_date",
                "SELECT CAST(COALESCE(SUM(change_date), 0) AS BIGINT) FROM users",
            ),
            (
                "users with password",
                "SELECT COUNT(*) FROM users WHERE password_hash IS NOT NULL",
            ),
            (
                "users active",
                "SELECT COUNT(*) FROM users WHERE state = 'active'",
            ),
            (
                "codes pending",
                "SELECT COUNT(*) FROM reset_codes WHERE used_at IS NULL",
            ),
            (
                "codes attempts",
                "SELECT CAST(COALESCE(SUM(attempts), 0) AS BIGINT) FROM reset_codes",
            ),
            (
                "tokens revoked",
                "SELECT COUNT(*) FROM api_tokens WHERE revoked_at IS NOT NULL",
            ),
            (
                "rate_limits.count",
                "SELECT CAST(COALESCE(SUM(count), 0) AS BIGINT) FROM rate_limits",
            ),
        ];
        let mut out = Vec::new();
        for (name, sql) in PROBES {
            out.push((*name, self.scalar(sql).await));
        }
        out
    }
}

// --- test data ---------------------------------------------------------------------------

/// A fixed instant plus `secs` (whole seconds, so values survive the store's µs precision).
pub fn t(secs: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap() + Duration::seconds(secs)
}

pub fn tid(id: &str) -> TenantId {
    TenantId::parse(id).unwrap()
}

pub fn uid(id: &str) -> UserId {
    UserId::parse(id).unwrap()
}

pub fn cid(id: &str) -> CodeId {
    fixtures::code_id(id)
}

pub fn mid(id: &str) -> MessageId {
    fixtures::message_id(id)
}

pub fn event(kind: &'static str) -> NewEvent {
    fixtures::event(kind)
        .actor("token:test")
        .ip("192.0.2.7")
        .payload(serde_json::json!({ "note": kind }))
        .build()
}

pub fn tenant(id: &str, cname: &str) -> Tenant {
    fixtures::tenant(id)
        .name(&format!("Tenant {id}"))
        .cname(cname)
        .at(t(0))
        .build()
}

pub fn user(tenant: &str, id: &str, email: &str) -> User {
    fixtures::user()
        .id(id)
        .tenant(tenant)
        .username(&format!("user-{id}"))
        .email(email)
        .phone("+41790000000", false)
        .password_hash("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA")
        .at(t(1))
        .build()
}

pub fn new_code(id: &str, at: DateTime<Utc>) -> NewResetCode {
    NewResetCode {
        id: cid(id),
        key_id: "k1".to_owned(),
        mac: vec![0xAB; 32],
        kind: CodeKind::Reset,
        expires_at: at + Duration::hours(1),
    }
}

pub fn message(tenant: &str, user: &str, id: &str, state: OutboxState) -> OutboxMessage {
    fixtures::message(id)
        .to(tenant, user)
        .idempotency_key(&format!("idem-{id}"))
        .sealed("o1", vec![1, 2, 3, 0, 255])
        .state(state)
        .at(t(10))
        .build()
}

pub fn token(id: &str, byte: u8, role: Role) -> ApiToken {
    ApiToken {
        id: TokenId::parse(id).unwrap(),
        hash: [byte; 32],
        role,
        created_at: t(0),
        revoked_at: None,
        expires_at: None,
        last_used_at: None,
    }
}

/// Two tenants ("t1" cname "one.example", "t2" cname "two.example"), users "u1", "u2" in t1
/// and "u3" in t2.
pub async fn seed(fx: &Fixture) {
    let store = &fx.store;
    store
        .insert_tenant(&tenant("t1", "one.example"), &event("tenant.added"))
        .await
        .unwrap();
    store
        .insert_tenant(&tenant("t2", "two.example"), &event("tenant.added"))
        .await
        .unwrap();
    for (tenant, id, email) in [
        ("t1", "u1", "ada@example.com"),
        ("t1", "u2", "bob@example.com"),
        ("t2", "u3", "ada@example.com"),
    ] {
        store
            .insert_user(&user(tenant, id, email), &event("user.added"))
            .await
            .unwrap();
    }
}

/// A search for every user of `tenant` (None: of every tenant), deleted ones included, oldest
/// first, without a practical limit.
pub fn every_user(tenant: Option<&str>) -> UserSearch {
    UserSearch {
        tenant: tenant.map(tid),
        filters: Vec::new(),
        include_deleted: true,
        asc: true,
        offset: 0,
        limit: u32::MAX,
    }
}

/// Issues `code_id` to the user (as a reset request does: void the pending code, insert the
/// new one).
pub async fn issue_code(fx: &Fixture, tenant: &str, user: &str, code_id: &str, at: DateTime<Utc>) {
    let mut change = UserChange::new(tid(tenant), uid(user), at, event("user.code.added"));
    change.void_pending_codes = true;
    change.new_code = Some(new_code(code_id, at));
    fx.store.change_user(&change).await.unwrap();
}
