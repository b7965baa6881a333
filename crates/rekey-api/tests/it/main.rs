//! Black-box tests of the ZITADEL REST faces: the real router on a real socket, over a fresh
//! SQLite and a fresh PostgreSQL database per test (every test runs on both).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod cancellation;
mod connections;
mod cors;
mod f5;
mod helpers;
mod list_users;
mod management_v1;
mod metrics;
mod openapi;
mod operations_api;
mod outbox_retry;
mod pages;
mod password_reset;
mod rate_limit;
mod request_ids;
mod secrets;
mod send_link;
mod set_password;
mod setup;
mod wire_forms;
