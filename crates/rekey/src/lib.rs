//! The `rekey` binary's library: configuration, wiring and the command line.

pub mod app;
pub mod cli;
pub mod config;
pub mod key_files;
pub mod logging;
