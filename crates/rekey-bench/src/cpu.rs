//! Where the CPU goes during a phase, from Linux's accounting: each thread of this process by its
//! name (`/proc/self/task/*/{comm,schedstat}`, nanoseconds on the CPU), the local PostgreSQL
//! server's processes (`/proc/*/comm` = `postgres`), and the whole machine (`/proc/stat`); what
//! is left is background load — other work on a shared machine, which makes every number here
//! noisy. Elsewhere than Linux the numbers are simply absent.

use std::collections::BTreeMap;
use std::time::Instant;

/// Thread-name prefixes of the groups the report shows.
pub const SERVER: &str = "srv";
pub const LOAD: &str = "load";
const SQLITE: &str = "sqlx-sqlite";
pub const RAW_ARGON2: &str = "raw-argon2";

#[derive(Clone, Debug)]
pub struct Snapshot {
    at: Instant,
    /// tid → (name, ns on CPU).
    threads: BTreeMap<u32, (String, u64)>,
    /// (busy, total) jiffies of the whole machine.
    machine: Option<(u64, u64)>,
    /// pid → ns on CPU of the processes named `postgres` (single-threaded each).
    postgres: BTreeMap<u32, u64>,
}

/// CPU used between two snapshots, in cores (CPU-seconds per second of wall time).
#[derive(Clone, Debug, Default)]
pub struct Usage {
    pub server: f64,
    pub load: f64,
    pub sqlite: f64,
    pub other_in_process: f64,
    /// The local PostgreSQL server's processes.
    pub postgres: f64,
    /// Busy cores of the whole machine.
    pub machine: Option<f64>,
}

impl Usage {
    pub fn in_process(&self) -> f64 {
        self.server + self.load + self.sqlite + self.other_in_process
    }

    /// Busy cores outside this process and PostgreSQL: the rest of the machine.
    pub fn background(&self) -> Option<f64> {
        self.machine
            .map(|m| (m - self.in_process() - self.postgres).max(0.0))
    }
}

pub fn snapshot() -> Snapshot {
    Snapshot {
        at: Instant::now(),
        threads: threads().unwrap_or_default(),
        machine: machine(),
        postgres: postgres().unwrap_or_default(),
    }
}

fn postgres() -> std::io::Result<BTreeMap<u32, u64>> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir("/proc")? {
        let entry = entry?;
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let path = entry.path();
        match std::fs::read_to_string(path.join("comm")) {
            Ok(comm) if comm.trim() == "postgres" => {}
            _ => continue,
        }
        if let Some(ns) = std::fs::read_to_string(path.join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next().and_then(|n| n.parse().ok()))
        {
            out.insert(pid, ns);
        }
    }
    Ok(out)
}

fn threads() -> std::io::Result<BTreeMap<u32, (String, u64)>> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir("/proc/self/task")? {
        let entry = entry?;
        let Some(tid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let path = entry.path();
        // A thread may end between listing and reading: skip it.
        let (Ok(comm), Ok(sched)) = (
            std::fs::read_to_string(path.join("comm")),
            std::fs::read_to_string(path.join("schedstat")),
        ) else {
            continue;
        };
        let Some(ns) = sched
            .split_whitespace()
            .next()
            .and_then(|s| s.parse::<u64>().ok())
        else {
            continue;
        };
        out.insert(tid, (comm.trim().to_owned(), ns));
    }
    Ok(out)
}

fn machine() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is already in user)
    let total: u64 = fields.iter().take(8).sum();
    let idle = fields.get(3).copied().unwrap_or(0) + fields.get(4).copied().unwrap_or(0);
    Some((total.saturating_sub(idle), total))
}

/// The usage between `before` and now.
pub fn since(before: &Snapshot) -> Usage {
    let after = snapshot();
    let wall = after.at - before.at;
    let secs = wall.as_secs_f64().max(1e-9);
    let mut usage = Usage::default();
    for (tid, (name, ns)) in &after.threads {
        let start = before.threads.get(tid).map_or(0, |(_, ns)| *ns);
        let cores = ns.saturating_sub(start) as f64 / 1e9 / secs;
        if name.starts_with(SERVER) {
            usage.server += cores;
        } else if name.starts_with(LOAD) {
            usage.load += cores;
        } else if name.starts_with(SQLITE) {
            usage.sqlite += cores;
        } else {
            usage.other_in_process += cores;
        }
    }
    for (pid, ns) in &after.postgres {
        // A backend that started during the phase counts from zero.
        let start = before.postgres.get(pid).copied().unwrap_or(0);
        usage.postgres += ns.saturating_sub(start) as f64 / 1e9 / secs;
    }
    if let (Some((busy0, total0)), Some((busy1, total1))) = (before.machine, after.machine) {
        let total = total1.saturating_sub(total0);
        if total > 0 {
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
            usage.machine = Some(busy1.saturating_sub(busy0) as f64 / total as f64 * cores);
        }
    }
    usage
}
