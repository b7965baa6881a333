//! The `rekey` binary's library: configuration, wiring and the command line.

pub mod app;
pub mod cli;
pub mod config;
pub mod key_files;
pub mod logging;

/// The allocator of every program that links Rekey (the binary, the benchmark, the tests).
/// argon2 takes 19 MiB per hash; glibc's malloc, once such a block has been freed, raises its
/// mmap threshold and serves the next ones from per-thread arenas that it rarely gives back,
/// so a server that had hashed stayed at hundreds of MiB resident. mimalloc returns large
/// freed blocks to the system, so memory falls back after the hashing is over.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
