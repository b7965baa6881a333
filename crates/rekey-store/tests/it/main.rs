//! The store conformance suite: every test runs against SQLite (a file in a temp dir) and
//! PostgreSQL (a fresh database per test, from `REKEY_TEST_DATABASE_URL`, default
//! `postgres://postgres@127.0.0.1:5432/test`), through `rekey_testkit::both_dbs!` and
//! `TestDb`. PostgreSQL being unreachable fails the tests; it never skips them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod cancellation;
mod change_user;
mod codes;
mod connect;
mod erasure;
mod harness;
mod migrations;
mod outbox;
mod paging;
mod postgres_tls;
mod rate_limits;
mod retention;
mod tenants;
mod tokens;
mod users;
