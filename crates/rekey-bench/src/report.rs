//! The numbers, the ratios against the targets, as a plain table or as Markdown.

use std::fmt::Write as _;
use std::time::Duration;

use rekey_core::crypto::HashParams;
use rekey_core::ports::{Clock, SystemClock};

use crate::cpu::Usage;
use crate::load::{Tally, Window};
use crate::raw_argon2::RawRate;

/// (b) ≥ 50 % of (a).
const RESET_TARGET: f64 = 0.50;
/// (c) ≥ 90 % of the raw argon2id rate.
const HASH_TARGET: f64 = 0.90;
/// (b-gRPC) ≥ 100 % of (b) (issue 4: gRPC at least as fast as REST).
const GRPC_TARGET: f64 = 1.0;
/// (d) p99 < 20 ms.
const HEALTH_P99_TARGET: Duration = Duration::from_millis(20);
/// (b-link) ≥ 40 % of (a).
const RESET_LINK_TARGET: f64 = 0.40;
/// The process's peak resident memory under (b)'s load < 64 MiB.
const RESET_RSS_TARGET_MIB: f64 = 64.0;

/// What a measured window cost: CPU by group, and this process's peak resident memory.
#[derive(Clone, Debug, Default)]
pub struct Resources {
    pub cpu: Usage,
    /// Peak `VmRSS` of the bench process during the window, MiB ([`crate::rss`]).
    pub peak_rss_mib: Option<f64>,
}

pub struct Phase {
    pub name: &'static str,
    pub clients: usize,
    pub tally: Tally,
    pub seconds: f64,
    pub cpu: Usage,
    pub peak_rss_mib: Option<f64>,
}

impl Phase {
    pub fn new(
        name: &'static str,
        clients: usize,
        tally: Tally,
        window: Window,
        used: Resources,
    ) -> Self {
        Self {
            name,
            clients,
            tally,
            seconds: window.seconds(),
            cpu: used.cpu,
            peak_rss_mib: used.peak_rss_mib,
        }
    }

    /// `next` added to `so_far` (slices of one phase): counts add up, latencies merge, CPU is
    /// averaged over the time measured, the peak memory is the larger peak.
    pub fn absorb(so_far: Option<Phase>, next: Phase) -> Phase {
        let Some(before) = so_far else {
            return next;
        };
        let seconds = before.seconds + next.seconds;
        let weigh = |a: f64, b: f64| (a * before.seconds + b * next.seconds) / seconds;
        let cpu = Usage {
            server: weigh(before.cpu.server, next.cpu.server),
            load: weigh(before.cpu.load, next.cpu.load),
            sqlite: weigh(before.cpu.sqlite, next.cpu.sqlite),
            other_in_process: weigh(before.cpu.other_in_process, next.cpu.other_in_process),
            postgres: weigh(before.cpu.postgres, next.cpu.postgres),
            machine: match (before.cpu.machine, next.cpu.machine) {
                (Some(a), Some(b)) => Some(weigh(a, b)),
                _ => None,
            },
        };
        Phase {
            name: before.name,
            clients: before.clients,
            tally: before.tally.combine(next.tally),
            seconds,
            cpu,
            peak_rss_mib: max_mib(before.peak_rss_mib, next.peak_rss_mib),
        }
    }

    pub fn rate(&self) -> f64 {
        self.tally.ok as f64 / self.seconds
    }

    /// CPU time of the database (SQLite's threads or PostgreSQL's processes) per success.
    fn db_cpu_per_request(&self, database: &str) -> Option<Duration> {
        let db = if database.starts_with("SQLite") {
            self.cpu.sqlite
        } else {
            self.cpu.postgres
        };
        (self.tally.ok > 0)
            .then(|| Duration::from_secs_f64(db * self.seconds / self.tally.ok as f64))
    }

    /// CPU time of the server threads per successful request.
    fn server_cpu_per_request(&self) -> Option<Duration> {
        (self.tally.ok > 0)
            .then(|| Duration::from_secs_f64(self.cpu.server * self.seconds / self.tally.ok as f64))
    }
}

/// The larger of two optional peaks.
pub fn max_mib(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

/// A peak resident size as the tables show it.
pub fn mib(m: Option<f64>) -> String {
    m.map_or_else(|| "–".to_owned(), |m| format!("{m:.1}"))
}

pub struct DbReport {
    pub database: String,
    pub hash_threads: usize,
    pub ceiling: Phase,
    pub ceiling_direct: Phase,
    pub reset: Phase,
    /// (b) with `sendLink`: the message is sealed and queued too.
    pub reset_link: Phase,
    pub reset_direct: Phase,
    /// (b) over gRPC (h2c, few connections, many streams) and over Connect JSON.
    pub reset_grpc: Phase,
    pub reset_connect: Phase,
    /// Taken in slices before, between and after the slices of (c).
    pub raw: RawRate,
    pub set_password: Phase,
    pub health_idle: Phase,
    pub health_loaded: Phase,
    /// This process ran argon2id hashes (another database's (c)) before these phases: the
    /// allocator keeps much of that memory, so the peak RSS says little about these phases.
    pub after_hashing: bool,
}

pub struct Verdict {
    pub what: &'static str,
    pub value: String,
    pub target: &'static str,
    /// `None`: shown for comparison, no target.
    pub pass: Option<bool>,
}

impl Verdict {
    fn result(&self) -> &'static str {
        match self.pass {
            Some(true) => "PASS",
            Some(false) => "MISS",
            None => "info",
        }
    }
}

impl DbReport {
    pub fn verdicts(&self) -> Vec<Verdict> {
        let reset = ratio(self.reset.rate(), self.ceiling.rate());
        let link = ratio(self.reset_link.rate(), self.ceiling.rate());
        let grpc = ratio(self.reset_grpc.rate(), self.reset.rate());
        let connect = ratio(self.reset_connect.rate(), self.reset.rate());
        let hash = ratio(self.set_password.rate(), self.raw.per_second());
        let p99 = self.health_loaded.tally.percentile(99.0);
        vec![
            Verdict {
                what: "(b) / (a): PasswordReset vs ceiling",
                value: format!("{:.1} %", reset * 100.0),
                target: "≥ 50 %",
                pass: Some(reset >= RESET_TARGET),
            },
            Verdict {
                what: "(b-link) / (a): PasswordReset sendLink vs ceiling",
                value: format!("{:.1} %", link * 100.0),
                target: "≥ 40 %",
                pass: Some(link >= RESET_LINK_TARGET),
            },
            Verdict {
                what: "(b-gRPC) / (b): gRPC vs REST",
                value: format!("{:.1} %", grpc * 100.0),
                target: "≥ 100 %",
                pass: Some(grpc >= GRPC_TARGET),
            },
            Verdict {
                what: "(b-Connect) / (b): Connect vs REST",
                value: format!("{:.1} %", connect * 100.0),
                target: "–",
                pass: None,
            },
            Verdict {
                what: "(c) / raw: SetPassword vs raw argon2id",
                value: format!("{:.1} %", hash * 100.0),
                target: "≥ 90 %",
                pass: Some(hash >= HASH_TARGET),
            },
            Verdict {
                what: "(d) /healthz p99 while (c) runs",
                value: ms(p99),
                target: "< 20 ms",
                // Probes that failed count against the target too.
                pass: Some(
                    p99.is_some_and(|p| p < HEALTH_P99_TARGET)
                        && self.health_loaded.tally.errors == 0,
                ),
            },
            Verdict {
                what: "(b) peak RSS under PasswordReset load",
                value: match (self.reset.peak_rss_mib, self.after_hashing) {
                    (None, _) => "–".to_owned(),
                    (Some(m), false) => format!("{m:.1} MiB"),
                    (Some(m), true) => format!("{m:.1} MiB (after earlier hashing)"),
                },
                target: "< 64 MiB",
                // Judged after another database's hashing too: a server that has hashed must
                // come back down (the allocator returns argon2's blocks).
                pass: self.reset.peak_rss_mib.map(|m| m < RESET_RSS_TARGET_MIB),
            },
        ]
    }
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        a / b
    } else {
        0.0
    }
}

fn ms(d: Option<Duration>) -> String {
    match d {
        Some(d) if d < Duration::from_millis(10) => format!("{:.2} ms", d.as_secs_f64() * 1e3),
        Some(d) => format!("{:.1} ms", d.as_secs_f64() * 1e3),
        None => "–".to_owned(),
    }
}

fn us(d: Option<Duration>) -> String {
    d.map_or_else(
        || "–".to_owned(),
        |d| format!("{:.0} µs", d.as_secs_f64() * 1e6),
    )
}

fn cores(c: Option<f64>) -> String {
    c.map_or_else(|| "–".to_owned(), |c| format!("{c:.2}"))
}

/// What the tables cannot say themselves.
const NOTES: &str = "notes: peak RSS MiB is the peak VmRSS of the whole bench process during the \
    measured window (sampled every 50 ms), an upper bound of the server's memory: the servers run \
    in-process, so it also holds the load generator, the ceiling server, SQLite's page cache and \
    what earlier phases left allocated (the second database's phases run after the first's \
    argon2id hashing in (c): Rekey's allocator, mimalloc, gives the 19 MiB blocks back, where \
    glibc's kept hundreds of MiB); limits.messages_per_user_per_hour is raised to \
    1000000 so (b-link) never hits the per-user message limit (its counter is still written); no \
    outbox worker runs in (a)-(d), so (b-link)'s messages stay queued";

/// Facts of the machine and the run.
pub struct Machine {
    pub command: String,
    pub date: String,
    pub cores: usize,
    pub cpu_model: String,
    pub kernel: String,
    pub load_threads: usize,
    pub request_log: bool,
    /// Busy cores outside this process just before and after the run.
    pub background: (Option<f64>, Option<f64>),
}

impl Machine {
    pub fn here(
        command: String,
        load_threads: usize,
        request_log: bool,
        background: (Option<f64>, Option<f64>),
    ) -> Self {
        let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|info| {
                info.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split(':').nth(1))
                    .map(|m| m.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown".to_owned());
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|k| format!("Linux {}", k.trim()))
            .unwrap_or_else(|_| std::env::consts::OS.to_owned());
        Self {
            command,
            date: SystemClock.now().format("%Y-%m-%d %H:%M UTC").to_string(),
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu_model,
            kernel,
            load_threads,
            request_log,
            background,
        }
    }

    fn lines(&self) -> Vec<String> {
        let p = HashParams::default();
        vec![
            format!("command: {}", self.command),
            format!(
                "machine: {} cores ({}), {}; {}",
                self.cores, self.cpu_model, self.kernel, self.date
            ),
            format!(
                "argon2id m={} KiB, t={}, p={}; load generator: {} runtime thread(s) in-process; \
                 request log: {}",
                p.memory_kib,
                p.iterations,
                p.parallelism,
                self.load_threads,
                if self.request_log {
                    "on (production's info filter, to a file)"
                } else {
                    "off"
                }
            ),
            format!(
                "background load (busy cores outside this process and PostgreSQL, 1 s samples): \
                 {} before, {} after the run",
                cores(self.background.0),
                cores(self.background.1)
            ),
            NOTES.to_owned(),
        ]
    }
}

/// The CPU column: server threads / load threads / the database (SQLite's worker threads in
/// this process, or the PostgreSQL server's processes) / background (the rest of the machine).
fn cpu_column(database: &str, usage: &Usage) -> String {
    let db = if database.starts_with("SQLite") {
        usage.sqlite
    } else {
        usage.postgres
    };
    format!(
        "{:.2} / {:.2} / {db:.2} / {}",
        usage.server,
        usage.load,
        cores(usage.background())
    )
}

fn phases(r: &DbReport) -> [&Phase; 10] {
    [
        &r.ceiling,
        &r.ceiling_direct,
        &r.reset,
        &r.reset_link,
        &r.reset_grpc,
        &r.reset_connect,
        &r.reset_direct,
        &r.set_password,
        &r.health_idle,
        &r.health_loaded,
    ]
}

/// One column of the phase table: its heading in each format, and its width and alignment in
/// the plain one.
struct Column {
    text: &'static str,
    markdown: &'static str,
    width: usize,
    left: bool,
    /// Spaces before the column in the plain table.
    gap: &'static str,
}

const fn column(text: &'static str, markdown: &'static str, width: usize) -> Column {
    Column {
        text,
        markdown,
        width,
        left: false,
        gap: " ",
    }
}

/// The phase table, written once: the plain and the Markdown report both render these.
const COLUMNS: [Column; 12] = [
    Column {
        left: true,
        gap: "",
        ..column("phase", "phase", 34)
    },
    column("clients", "clients", 7),
    column("ok/s", "ok/s", 10),
    column("p50", "p50", 9),
    column("p99", "p99", 9),
    column("max", "max", 9),
    column("429", "429", 6),
    column("errors", "errors", 6),
    Column {
        gap: "  ",
        ..column(
            "CPU srv / load / db / bg",
            "CPU cores: server / load / db / background",
            30,
        )
    },
    Column {
        gap: "  ",
        ..column("srv CPU/ok", "server CPU per ok", 9)
    },
    Column {
        gap: "  ",
        ..column("db CPU/ok", "db CPU per ok", 9)
    },
    Column {
        gap: "  ",
        ..column("peak RSS MiB", "peak RSS MiB", 12)
    },
];

/// One row of the phase table, and the first error to show under it in the plain report.
struct Row {
    cells: [String; 12],
    first_error: Option<String>,
}

fn rows(r: &DbReport) -> Vec<Row> {
    phases(r)
        .into_iter()
        .map(|p| Row {
            cells: [
                p.name.to_owned(),
                p.clients.to_string(),
                format!("{:.1}", p.rate()),
                ms(p.tally.percentile(50.0)),
                ms(p.tally.percentile(99.0)),
                ms(p.tally.max()),
                p.tally.busy.to_string(),
                p.tally.errors.to_string(),
                cpu_column(&r.database, &p.cpu),
                us(p.server_cpu_per_request()),
                us(p.db_cpu_per_request(&r.database)),
                mib(p.peak_rss_mib),
            ],
            first_error: p.tally.first_error.clone(),
        })
        .collect()
}

/// A line of the plain table: each cell padded to its column.
fn text_line<S: AsRef<str>>(cells: &[S]) -> String {
    let mut line = String::new();
    for (column, cell) in COLUMNS.iter().zip(cells) {
        let (cell, width) = (cell.as_ref(), column.width);
        line.push_str(column.gap);
        if column.left {
            let _ = write!(line, "{cell:<width$}");
        } else {
            let _ = write!(line, "{cell:>width$}");
        }
    }
    line
}

/// A line of the Markdown table.
fn markdown_line<S: AsRef<str>>(cells: &[S]) -> String {
    let cells: Vec<&str> = cells.iter().map(AsRef::as_ref).collect();
    format!("| {} |", cells.join(" | "))
}

pub fn text(machine: &Machine, reports: &[DbReport]) -> String {
    let mut out = String::new();
    for line in machine.lines() {
        let _ = writeln!(out, "{line}");
    }
    for r in reports {
        let _ = writeln!(
            out,
            "\n== {} — hash pool {} thread(s) ==",
            r.database, r.hash_threads
        );
        let _ = writeln!(out, "{}", text_line(&COLUMNS.map(|c| c.text)));
        for row in rows(r) {
            let _ = writeln!(out, "{}", text_line(&row.cells));
            if let Some(err) = &row.first_error {
                let _ = writeln!(out, "    first error: {err}");
            }
        }
        let _ = writeln!(
            out,
            "{:<34} {:>7} {:>10.1} {:>9}   (p50 of one hash; {} slice(s) around (c), {})",
            "raw argon2id, no HTTP, no DB",
            r.raw.threads,
            r.raw.per_second(),
            ms(r.raw.p50()),
            r.raw.slices.len(),
            r.raw.spread(),
        );
        for v in r.verdicts() {
            let _ = writeln!(
                out,
                "  {:<50} {:>9}   target {:<8} {}",
                v.what,
                v.value,
                v.target,
                v.result()
            );
        }
    }
    out
}

pub fn markdown(machine: &Machine, reports: &[DbReport]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "```sh\n{}\n```\n", machine.command);
    for line in machine.lines().iter().skip(1) {
        let _ = writeln!(out, "- {line}");
    }
    for r in reports {
        let _ = writeln!(
            out,
            "\n### {} (hash pool: {} thread(s))\n",
            r.database, r.hash_threads
        );
        let _ = writeln!(out, "{}", markdown_line(&COLUMNS.map(|c| c.markdown)));
        let rule = COLUMNS.map(|c| if c.left { "---" } else { "---:" });
        let _ = writeln!(out, "{}", markdown_line(&rule));
        for row in rows(r) {
            let _ = writeln!(out, "{}", markdown_line(&row.cells));
        }
        let _ = writeln!(
            out,
            "| raw argon2id, no HTTP, no DB ({} slice(s) around (c), {}) | {} thread(s) | {:.1} | {} (one hash) | | | | | | | | |",
            r.raw.slices.len(),
            r.raw.spread(),
            r.raw.threads,
            r.raw.per_second(),
            ms(r.raw.p50()),
        );
        let _ = writeln!(out, "\n| ratio | value | target | result |");
        let _ = writeln!(out, "| --- | ---: | --- | --- |");
        for v in r.verdicts() {
            let _ = writeln!(
                out,
                "| {} | {} | {} | **{}** |",
                v.what,
                v.value,
                v.target,
                v.result()
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The headings as the reports printed them before the table was shared.
    #[test]
    fn headings_keep_their_layout() {
        assert_eq!(
            text_line(&COLUMNS.map(|c| c.text)),
            format!(
                "{:<34} {:>7} {:>10} {:>9} {:>9} {:>9} {:>6} {:>6}  {:>30}  {:>9}  {:>9}  {:>12}",
                "phase",
                "clients",
                "ok/s",
                "p50",
                "p99",
                "max",
                "429",
                "errors",
                "CPU srv / load / db / bg",
                "srv CPU/ok",
                "db CPU/ok",
                "peak RSS MiB"
            )
        );
        assert_eq!(
            markdown_line(&COLUMNS.map(|c| c.markdown)),
            "| phase | clients | ok/s | p50 | p99 | max | 429 | errors | CPU cores: server / load / db / background | server CPU per ok | db CPU per ok | peak RSS MiB |"
        );
        assert_eq!(
            markdown_line(&COLUMNS.map(|c| if c.left { "---" } else { "---:" })),
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
        );
    }
}
