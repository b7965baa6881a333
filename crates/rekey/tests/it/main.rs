//! Black-box tests of the `rekey` binary: the README walk-through with the CLI and the
//! seed-004 curl line, first start, configuration layering, and that no secret reaches a log;
//! the deployment files and the README's configuration table (`deploy.rs`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod backup;
mod browser;
mod cli;
mod clients;
mod delivery;
mod deploy;
mod dev_mail;
mod harness;
mod keys;
mod logs;
mod metrics;
mod openapi;
mod outage;
mod replicas;
mod tokens;
mod webhooks;
