//! Test-only helpers shared by the crates' integration tests.
//!
//! - [`TestDb`]: a fresh database per test — a SQLite file in a temporary directory, or a new
//!   PostgreSQL database on the server named by `REKEY_TEST_DATABASE_URL` (default
//!   `postgres://postgres@127.0.0.1:5432/test`), dropped `WITH (FORCE)` when the guard drops.
//!   PostgreSQL being unreachable is a test failure, never a silent skip.
//! - [`both_dbs!`]: runs one `async fn name(db: DbKind)` as two tests, `name::sqlite` and
//!   `name::postgres`.
//! - [`fixtures`]: builders for the records tests write (tenant, Ada the user, outbox
//!   message, audit event).
//! - [`probe::StoreProbe`]: the core over a given store with a clock the test moves, and the
//!   probes the flow and API tests share (users made through the flows, rows read back, a
//!   [`probe::Snapshot`] for "nothing was written").

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod fixtures;
pub mod probe;
pub mod promtool;
pub mod proxy;
pub mod smtp;

use std::time::Duration;

use sqlx::{Connection, Executor, PgConnection};

/// Default server for the PostgreSQL tests (trust auth on the CI machine).
pub const DEFAULT_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// How long to wait for PostgreSQL before declaring it unreachable.
const PG_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A loopback port that nothing listens on right now (the OS picks it; the listener is
/// closed again before returning, so another process could take it — fine for tests).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbKind {
    Sqlite,
    Postgres,
}

impl DbKind {
    pub fn name(self) -> &'static str {
        match self {
            DbKind::Sqlite => "sqlite",
            DbKind::Postgres => "postgres",
        }
    }
}

enum Guard {
    /// The directory holding the SQLite file; removed on drop.
    Sqlite { _dir: tempfile::TempDir },
    /// A database created for this test on `admin_url`'s server.
    Postgres { admin_url: String, name: String },
}

/// A fresh, empty database for one test. Keep the guard alive as long as the test uses the
/// database: dropping it deletes the SQLite directory or drops the PostgreSQL database.
pub struct TestDb {
    kind: DbKind,
    url: String,
    guard: Guard,
}

impl std::fmt::Debug for TestDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestDb")
            .field("kind", &self.kind)
            .field("url", &redact(&self.url))
            .finish()
    }
}

impl TestDb {
    /// A fresh database of `kind`.
    pub fn new(kind: DbKind) -> Self {
        match kind {
            DbKind::Sqlite => Self::sqlite(),
            DbKind::Postgres => Self::postgres(),
        }
    }

    /// `sqlite://<tmp>/rekey.db` in a new temporary directory (the file itself is created by
    /// whoever opens the URL).
    pub fn sqlite() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("rekey-test-")
            .tempdir()
            .expect("creating a temporary directory for the SQLite test database");
        let url = format!("sqlite://{}", dir.path().join("rekey.db").display());
        Self {
            kind: DbKind::Sqlite,
            url,
            guard: Guard::Sqlite { _dir: dir },
        }
    }

    /// A new database `rekey_t_<random>` on the server at `REKEY_TEST_DATABASE_URL` (default
    /// [`DEFAULT_PG_URL`]). Panics with a clear message when the server cannot be reached:
    /// the PostgreSQL tests are never skipped.
    ///
    /// Works from sync code and from inside any tokio runtime: the database is created on a
    /// separate thread with its own small runtime.
    pub fn postgres() -> Self {
        let admin_url = admin_url();
        let name = format!("rekey_t_{:016x}", rand::random::<u64>());
        let url = database_url(&admin_url, &name);
        let created = {
            let admin_url = admin_url.clone();
            let name = name.clone();
            on_own_runtime(move || async move {
                let mut conn = connect_admin(&admin_url).await?;
                conn.execute(format!(r#"CREATE DATABASE "{name}""#).as_str())
                    .await
                    .map_err(|e| format!("CREATE DATABASE {name} failed: {e}"))?;
                let _ = conn.close().await;
                Ok::<(), String>(())
            })
        };
        if let Err(message) = created {
            panic!(
                "PostgreSQL test database could not be created: {message}.\n\
                 The PostgreSQL tests never skip: start PostgreSQL or point \
                 REKEY_TEST_DATABASE_URL at a server where this user may CREATE DATABASE \
                 (now {}).",
                redact(&admin_url)
            );
        }
        Self {
            kind: DbKind::Postgres,
            url,
            guard: Guard::Postgres { admin_url, name },
        }
    }

    pub fn kind(&self) -> DbKind {
        self.kind
    }

    /// The URL to open the database with (`rekey_store::connect`).
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Guard::Postgres { admin_url, name } = &self.guard {
            let (admin_url, db_name) = (admin_url.clone(), name.clone());
            // Its own thread and runtime: this works inside async tests (whose runtime may be
            // shutting down) and during unwinding. A failure is reported, never a panic.
            let dropped = on_own_runtime(move || async move {
                let mut conn = connect_admin(&admin_url).await?;
                conn.execute(
                    format!(r#"DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)"#).as_str(),
                )
                .await
                .map_err(|e| format!("DROP DATABASE {db_name} failed: {e}"))?;
                let _ = conn.close().await;
                Ok::<(), String>(())
            });
            if let Err(message) = dropped {
                eprintln!("rekey-testkit: could not drop test database {name}: {message}");
            }
        }
    }
}

fn admin_url() -> String {
    std::env::var("REKEY_TEST_DATABASE_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_PG_URL.to_owned())
}

/// `base` with its database name replaced by `name` (query parameters kept).
fn database_url(base: &str, name: &str) -> String {
    let mut url = url::Url::parse(base).unwrap_or_else(|e| {
        panic!(
            "REKEY_TEST_DATABASE_URL is not a URL ({e}): {}",
            redact(base)
        )
    });
    url.set_path(&format!("/{name}"));
    url.to_string()
}

/// The URL without its password, for messages.
fn redact(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut url) => {
            if url.password().is_some() {
                let _ = url.set_password(Some("***"));
            }
            url.to_string()
        }
        Err(_) => "<unparseable URL>".to_owned(),
    }
}

async fn connect_admin(admin_url: &str) -> Result<PgConnection, String> {
    match tokio::time::timeout(PG_CONNECT_TIMEOUT, PgConnection::connect(admin_url)).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) => Err(format!(
            "PostgreSQL at {} is unreachable: {e}",
            redact(admin_url)
        )),
        Err(_) => Err(format!(
            "PostgreSQL at {} did not answer within {} s",
            redact(admin_url),
            PG_CONNECT_TIMEOUT.as_secs()
        )),
    }
}

/// Runs an async job to completion on a new thread with a current-thread runtime.
fn on_own_runtime<F, Fut, T>(job: F) -> Result<T, String>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<T, String>>,
    T: Send + 'static,
{
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("tokio runtime: {e}"))?;
        runtime.block_on(job())
    })
    .join()
    .unwrap_or_else(|_| Err("the database thread panicked".to_owned()))
}

/// Generates, for each `async fn name(db: DbKind)`, a module `name` with two tests,
/// `name::sqlite` and `name::postgres`, each on a multi-threaded runtime with two workers.
/// Attributes written before a name (`#[ignore = "…"]`) go on both tests.
///
/// ```ignore
/// async fn resets_a_password(db: DbKind) { /* … */ }
/// rekey_testkit::both_dbs!(resets_a_password, #[ignore = "BUG: …"] another_test);
/// ```
///
/// The calling crate needs `tokio` (with `macros` and `rt-multi-thread`) as a dependency.
///
/// With `run = path;` first, each test is `async fn name(fixture: F)` and both tests call
/// `path(DbKind, name).await` instead, for suites whose runner builds a richer fixture from the
/// database (the store's conformance suite):
///
/// ```ignore
/// rekey_testkit::both_dbs!(run = crate::harness::run; tokens_round_trip);
/// ```
#[macro_export]
macro_rules! both_dbs {
    (run = $run:path; $($(#[$meta:meta])* $name:ident),+ $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                $(#[$meta])*
                async fn sqlite() {
                    $run($crate::DbKind::Sqlite, super::$name).await
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                $(#[$meta])*
                async fn postgres() {
                    $run($crate::DbKind::Postgres, super::$name).await
                }
            }
        )+
    };
    ($($(#[$meta:meta])* $name:ident),+ $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                $(#[$meta])*
                async fn sqlite() {
                    super::$name($crate::DbKind::Sqlite).await
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                $(#[$meta])*
                async fn postgres() {
                    super::$name($crate::DbKind::Postgres).await
                }
            }
        )+
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_url_replaces_only_the_name() {
        assert_eq!(
            database_url("postgres://u:p@h:5432/test?sslmode=disable", "rekey_t_1"),
            "postgres://u:p@h:5432/rekey_t_1?sslmode=disable"
        );
        assert_eq!(redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
    }

    #[test]
    fn sqlite_url_is_absolute_and_the_directory_goes_away() {
        let db = TestDb::sqlite();
        assert!(db.url().starts_with("sqlite:///"), "{}", db.url());
        let dir = std::path::PathBuf::from(db.url().trim_start_matches("sqlite://"))
            .parent()
            .unwrap()
            .to_owned();
        assert!(dir.exists());
        drop(db);
        assert!(!dir.exists());
    }

    async fn exists(name: &str) -> bool {
        let mut conn = connect_admin(&admin_url()).await.unwrap();
        let row: Option<(i32,)> = sqlx::query_as("SELECT 1 FROM pg_database WHERE datname = $1")
            .bind(name)
            .fetch_optional(&mut conn)
            .await
            .unwrap();
        row.is_some()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_database_is_created_and_dropped_inside_async_tests() {
        let db = TestDb::postgres();
        let name = db.url().rsplit('/').next().unwrap().to_owned();
        assert!(name.starts_with("rekey_t_"));
        // Open a connection and keep it open: the drop must force it out.
        let _conn = PgConnection::connect(db.url()).await.unwrap();
        assert!(exists(&name).await);
        drop(db);
        assert!(!exists(&name).await, "{name} was not dropped");
    }
}
