//! Flow tests: the core's flows called directly — no HTTP, no face — over a private in-memory
//! SQLite store, with a clock the test moves and a seeded random source. They pin the rules of
//! SPEC §3 (operations), §7 (codes) and §10 (security behaviour) where they live, as the fast
//! inner loop; the black-box tests in `rekey-api` check the same rules through every wire form
//! on both databases.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod access;
mod erasure;
mod events;
mod limits;
mod no_auth;
mod reset;
mod set_password;
mod support;
mod tokens;
mod webhooks;
