//! Peak resident memory of this process during a measured window: a plain OS thread reads
//! `VmRSS` from `/proc/self/status` every 50 ms and keeps the largest value since the last
//! [`reset`]. A thread rather than a task, so a busy runtime cannot delay the samples. The
//! servers run in this process, so the figure is an upper bound of the server's memory: it also
//! holds the load generator, the ceiling server and (on SQLite) the database's page cache.
//! Elsewhere than Linux the figure is simply absent.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

const PERIOD: Duration = Duration::from_millis(50);

/// The largest sample since the last reset, in KiB (0: none yet).
static PEAK_KIB: AtomicU64 = AtomicU64::new(0);
/// Whether the sampler thread is running (started on first use).
static STARTED: OnceLock<bool> = OnceLock::new();

/// `VmRSS` of this process now, in KiB.
pub fn current_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

fn start() -> bool {
    *STARTED.get_or_init(|| {
        if current_kib().is_none() {
            return false;
        }
        std::thread::Builder::new()
            .name("rss-sampler".to_owned())
            .spawn(|| loop {
                if let Some(kib) = current_kib() {
                    PEAK_KIB.fetch_max(kib, Ordering::Relaxed);
                }
                std::thread::sleep(PERIOD);
            })
            .is_ok()
    })
}

/// Starts a new window: the peak becomes the current resident size.
pub fn reset() {
    if start() {
        PEAK_KIB.store(current_kib().unwrap_or(0), Ordering::Relaxed);
    }
}

/// The peak since the last [`reset`] (including a last sample taken now), in MiB.
pub fn peak_mib() -> Option<f64> {
    if !start() {
        return None;
    }
    let now = current_kib().unwrap_or(0);
    let peak = PEAK_KIB.fetch_max(now, Ordering::Relaxed).max(now);
    (peak > 0).then(|| peak as f64 / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_plausible_resident_size_on_linux() {
        if cfg!(target_os = "linux") {
            let kib = current_kib().unwrap();
            assert!(kib > 100, "{kib} KiB");
            reset();
            let peak = peak_mib().unwrap();
            assert!(peak * 1024.0 >= kib as f64 * 0.5, "{peak} MiB");
        }
    }
}
