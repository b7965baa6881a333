//! The store conformance suite: every test runs against SQLite (a file in a temp dir) and
//! PostgreSQL (a fresh database per test, from `REKEY_TEST_DATABASE_URL`, default
//! `postgres://postgres@127.0.0.1:5432/test`). PostgreSQL being unreachable fails the tests; it
//! never skips them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

/// Declares each listed `async fn name(fx: Fixture)` of the calling module as two tests,
/// `name::sqlite` and `name::postgres`.
macro_rules! conformance {
    ($($name:ident),+ $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    crate::harness::run(crate::harness::Backend::Sqlite, super::$name).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    crate::harness::run(crate::harness::Backend::Postgres, super::$name).await;
                }
            }
        )+
    };
}

mod cancellation;
mod change_user;
mod codes;
mod connect;
mod harness;
mod outbox;
mod rate_limits;
mod tenants;
mod tokens;
mod users;
