//! The raw argon2id rate: as many OS threads as the server's hash pool has, each hashing in a
//! loop with the production parameters exactly as the pool's job does (fresh 16-byte salt, PHC
//! string out), no HTTP, no database, no queue.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use argon2::password_hash::{PasswordHasher as _, SaltString};
use rand::RngCore;
use rekey_core::crypto::HashParams;

use crate::cpu;

pub struct RawRate {
    pub threads: usize,
    /// Hashes per second of each measured slice.
    pub slices: Vec<f64>,
    hashes: u64,
    seconds: f64,
    /// Time of each hash on its thread, sorted.
    took: Vec<Duration>,
}

impl RawRate {
    pub fn per_second(&self) -> f64 {
        self.hashes as f64 / self.seconds
    }

    /// Median time of one hash on one thread.
    pub fn p50(&self) -> Option<Duration> {
        crate::stats::percentile(&self.took, 50.0)
    }

    /// Both measurements as one.
    pub fn absorb(mut self, other: RawRate) -> RawRate {
        self.slices.extend(other.slices);
        self.hashes += other.hashes;
        self.seconds += other.seconds;
        self.took.extend(other.took);
        self.took.sort_unstable();
        self
    }

    /// The slowest and fastest slice, to show drift.
    pub fn spread(&self) -> String {
        let min = self.slices.iter().copied().fold(f64::INFINITY, f64::min);
        let max = self.slices.iter().copied().fold(0.0, f64::max);
        format!("slices {min:.1}–{max:.1}/s")
    }
}

/// Blocks for `warmup + length`: run it off the async runtime.
pub fn measure(
    params: HashParams,
    threads: usize,
    warmup: Duration,
    length: Duration,
) -> anyhow::Result<RawRate> {
    let argon2 = params
        .argon2()
        .map_err(|e| anyhow::anyhow!("argon2 parameters: {e}"))?;
    let password = b"Bench-rekey-raw-42";
    let start = Instant::now() + warmup;
    let end = start + length;
    let failed = AtomicBool::new(false);
    let results = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|i| {
                let argon2 = argon2.clone();
                let failed = &failed;
                std::thread::Builder::new()
                    .name(format!("{}-{i}", cpu::RAW_ARGON2))
                    .spawn_scoped(scope, move || {
                        let mut rng = rand::thread_rng();
                        let mut took = Vec::new();
                        loop {
                            let began = Instant::now();
                            if began >= end {
                                break;
                            }
                            let mut salt = [0u8; 16];
                            rng.fill_bytes(&mut salt);
                            let phc = match SaltString::encode_b64(&salt) {
                                Ok(salt) => argon2
                                    .hash_password(password, &salt)
                                    .map(|hash| hash.to_string())
                                    .ok(),
                                Err(_) => None,
                            };
                            if phc.is_none() {
                                failed.store(true, Ordering::Relaxed);
                                break;
                            }
                            let done = Instant::now();
                            if done >= start && done <= end {
                                took.push(done - began);
                            }
                        }
                        took
                    })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| {
                w.context("spawning a hash thread")?
                    .join()
                    .map_err(|_| anyhow::anyhow!("a hash thread panicked"))
            })
            .collect::<anyhow::Result<Vec<Vec<Duration>>>>()
    })?;
    if failed.load(Ordering::Relaxed) {
        anyhow::bail!("argon2 hashing failed");
    }
    let mut took: Vec<Duration> = results.into_iter().flatten().collect();
    took.sort_unstable();
    let hashes = took.len() as u64;
    let seconds = length.as_secs_f64();
    Ok(RawRate {
        threads,
        slices: vec![hashes as f64 / seconds],
        hashes,
        seconds,
        took,
    })
}
