//! `rekey-bench`: measures Rekey against ceilings taken in the same run (DESIGN 13).
//!
//! For SQLite (a temporary file) and PostgreSQL (a fresh database on `--postgres-url`, dropped at
//! the end) it starts, in this process, the real Rekey router and a bare axum handler doing one
//! INSERT per request into the same database, drives both with concurrent HTTP clients, and
//! reports:
//!
//! - (a) the ceiling: requests/s of the bare INSERT handler;
//! - (b) `PasswordReset` with `returnCode` (tenant-admin token), target ≥ 50 % of (a); the same
//!   call over gRPC (h2c, tonic's client, `--grpc-connections` connections carrying all the
//!   clients' streams), target ≥ 100 % of (b), and over Connect JSON (HTTP/1.1), for comparison;
//! - (b-link) `PasswordReset` with `sendLink` (the message is sealed and queued too; no worker
//!   runs, so it stays queued), target ≥ 40 % of (a);
//! - (c) `SetPassword` set by an admin — one argon2id hash with the production parameters per
//!   request — against the raw argon2id rate of as many threads as the hash pool has, target
//!   ≥ 90 %;
//! - (d) `/healthz` latency while (c) saturates the hash pool, target p99 < 20 ms.
//!
//! Every phase also reports the peak resident memory of this process during its window
//! ([`rss`]; an upper bound of the server's, which runs in this process), target < 64 MiB under
//! (b)'s load. `--growth` adds the growth run ([`growth`]): (b) as the database grows to a
//! million users, and the outbox drain with many messages pending.
//!
//! Threads: the servers run on their own multi-threaded tokio runtime built like `rekey serve`'s
//! (one worker per core, its blocking pool runs the hash jobs); the load generator runs on a
//! second runtime (`--load-threads`, default 1) so it cannot take the servers' workers, though
//! on a small machine all of them still share the cores — the report shows where the CPU went.

//! The mail phases (e) and (f) are in [`mail`], the replica comparison (g) in [`replicas`].

mod cpu;
mod growth;
mod load;
mod mail;
mod phases;
mod raw_argon2;
mod replicas;
mod report;
mod rss;
mod servers;
mod stats;

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use tokio::runtime::Handle;

use report::Machine;
use servers::PgDatabase;

#[derive(Debug, Parser)]
#[command(
    name = "rekey-bench",
    about = "Benchmarks Rekey on SQLite and PostgreSQL against ceilings measured in the same run"
)]
struct Args {
    /// Measured seconds per phase.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Warm-up before each measured window, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    warmup_ms: u64,
    /// A PostgreSQL URL whose user may create databases; the run creates
    /// `rekey_bench_<random>` there and drops it at the end.
    #[arg(
        long,
        env = "REKEY_BENCH_POSTGRES_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/test"
    )]
    postgres_url: String,
    /// Leave PostgreSQL out (otherwise an unreachable server is an error).
    #[arg(long)]
    skip_postgres: bool,
    /// Leave SQLite out.
    #[arg(long)]
    skip_sqlite: bool,
    /// Concurrent clients for (a) and (b).
    #[arg(long, default_value_t = 32)]
    clients: usize,
    /// Concurrent clients for (c); default 8 per hash thread, which keeps the pool and its queue
    /// busy and stays far below the queue's 64.
    #[arg(long)]
    hash_clients: Option<usize>,
    /// Users to spread the requests over (each worker owns its own users).
    #[arg(long, default_value_t = 200)]
    users: usize,
    /// Tenants the users are spread over.
    #[arg(long, default_value_t = 2)]
    tenants: usize,
    /// HTTP/2 connections the gRPC phase multiplexes its `--clients` streams over.
    #[arg(long, default_value_t = 4)]
    grpc_connections: usize,
    /// Worker threads of the load generator's runtime.
    #[arg(long, default_value_t = 1)]
    load_threads: usize,
    /// Slices per phase, interleaved with the phase it is compared with (the measured time per
    /// phase stays `--seconds`); more slices resist drift in the machine's other load.
    #[arg(long, default_value_t = 1)]
    rounds: u32,
    /// Before each slice, wait (up to --quiet-wait seconds) until the background load — busy
    /// cores outside this process and PostgreSQL — is below this; for shared machines.
    #[arg(long)]
    quiet_below: Option<f64>,
    /// Longest wait for --quiet-below before a slice, in seconds (then it runs anyway).
    #[arg(long, default_value_t = 120)]
    quiet_wait: u64,
    /// Period of the `/healthz` probes in (d), in milliseconds.
    #[arg(long, default_value_t = 2)]
    probe_ms: u64,
    /// Leave out (a)–(d) (run only the mail phases (e) and (f)).
    #[arg(long)]
    skip_core: bool,
    /// Leave out the mail phases (e) outbox drain and (f) no_auth timing.
    #[arg(long)]
    skip_mail: bool,
    /// Messages per round of (e).
    #[arg(long, default_value_t = 1000)]
    mail_messages: usize,
    /// Interleaved rounds of (e) (plain client, drain, plain client, drain, …).
    #[arg(long, default_value_t = 3)]
    mail_rounds: usize,
    /// Requests per class (existing / unknown email) in (f).
    #[arg(long, default_value_t = 400)]
    no_auth_samples: usize,
    /// Concurrent clients in (f), each alternating existing and unknown emails.
    #[arg(long, default_value_t = 8)]
    no_auth_clients: usize,
    /// Also run (g): two replicas on one PostgreSQL against one (needs PostgreSQL).
    #[arg(long)]
    replicas: bool,
    /// Also run the growth phases, after the others, on a fresh database each (add
    /// `--skip-core --skip-mail` to run only them): for each of --growth-steps, the database is
    /// grown to that many users (bulk-inserted fillers over --growth-tenants tenants) and (b)
    /// PasswordReset returnCode is measured again (same clients, same --users measured users);
    /// then for each of --growth-pending, that many messages are made pending in the outbox and
    /// the outbox worker's first --growth-drain deliveries to an SMTP sink are timed. Needs
    /// python3 with aiosmtpd, like the mail phases.
    #[arg(long)]
    growth: bool,
    /// Users in all at each growth step (measured users and a template user included).
    #[arg(long, value_delimiter = ',', default_value = "1000,100000,1000000")]
    growth_steps: Vec<u64>,
    /// Tenants the growth run's users are spread over.
    #[arg(long, default_value_t = 10)]
    growth_tenants: usize,
    /// Messages pending in the outbox at each drain step of the growth run.
    #[arg(long, value_delimiter = ',', default_value = "1000,100000")]
    growth_pending: Vec<u64>,
    /// Deliveries timed at each drain step of the growth run.
    #[arg(long, default_value_t = 1000)]
    growth_drain: usize,
    /// Also print a Markdown section for BENCHMARKS.md.
    #[arg(long)]
    markdown: bool,
    /// Drop the per-request log line `rekey serve` writes at `info` (by default it is written,
    /// as in production, to a file in the run's temporary directory).
    #[arg(long)]
    no_request_log: bool,
    /// Keep the servers' log in this file (default: the run's temporary directory, removed at
    /// the end). `RUST_LOG` sets its filter as for `rekey serve`.
    #[arg(long)]
    log_file: Option<std::path::PathBuf>,
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("rekey-bench: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.seconds == 0 || args.clients == 0 || args.load_threads == 0 || args.probe_ms == 0 {
        anyhow::bail!("--seconds, --clients, --load-threads and --probe-ms must be positive");
    }
    if args.skip_sqlite && args.skip_postgres {
        anyhow::bail!("nothing to do: both databases are skipped");
    }
    let growth_args = if args.growth {
        Some(growth::GrowthArgs::from(&args)?)
    } else {
        None
    };
    let background_before = background_load();
    let scratch = tempfile::Builder::new()
        .prefix("rekey-bench-")
        .tempdir()
        .context("creating a temporary directory")?;
    let log_file = args
        .log_file
        .clone()
        .unwrap_or_else(|| scratch.path().join("requests.log"));
    init_logging(&log_file, args.no_request_log)?;

    // The servers' runtime: as `rekey serve` builds it (one worker per core), named for the CPU
    // report. The hash pool's jobs run on its blocking threads.
    let server = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name(cpu::SERVER)
        .build()
        .context("building the server runtime")?;
    let load = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.load_threads)
        .enable_all()
        .thread_name(cpu::LOAD)
        .build()
        .context("building the load runtime")?;

    let handle = server.handle().clone();
    let mut mail_reports = Vec::new();
    if !args.skip_mail {
        let sink = mail::Sink::start()?;
        let mail_args = mail::MailArgs {
            messages: args.mail_messages.max(1),
            rounds: args.mail_rounds,
            samples: args.no_auth_samples.max(1),
            clients: args.no_auth_clients,
        };
        load.block_on(async {
            if !args.skip_sqlite {
                eprintln!("rekey-bench: mail phases, SQLite …");
                let dir = scratch.path().join("mail-sqlite");
                let url = format!("sqlite://{}", dir.join("rekey.db").display());
                mail_reports.push(
                    mail::bench_mail(&mail_args, &handle, &url, &dir, &sink, "SQLite".into())
                        .await?,
                );
            }
            if !args.skip_postgres {
                eprintln!("rekey-bench: mail phases, PostgreSQL …");
                let admin_url = args.postgres_url.clone();
                let database =
                    on(&handle, async move { PgDatabase::create(&admin_url).await }).await?;
                let dir = scratch.path().join("mail-postgres");
                let result = mail::bench_mail(
                    &mail_args,
                    &handle,
                    &database.url,
                    &dir,
                    &sink,
                    "PostgreSQL".into(),
                )
                .await;
                on(&handle, async move { database.drop_database().await }).await?;
                mail_reports.push(result?);
            }
            anyhow::Ok(())
        })?;
    }
    let replica_report = if args.replicas && !args.skip_postgres {
        load.block_on(async {
            eprintln!("rekey-bench: (g) two replicas on PostgreSQL …");
            let admin_url = args.postgres_url.clone();
            let database = on(&handle, async move { PgDatabase::create(&admin_url).await }).await?;
            let dir = scratch.path().join("replicas");
            let result = replicas::bench_replicas(
                &handle,
                &database.url,
                &dir,
                args.clients,
                args.seconds,
                args.rounds.max(2),
            )
            .await;
            on(&handle, async move { database.drop_database().await }).await?;
            result.map(Some)
        })?
    } else {
        None
    };
    let mut reports = load.block_on(async {
        let mut reports = Vec::new();
        if args.skip_core {
            return anyhow::Ok(reports);
        }
        if !args.skip_sqlite {
            eprintln!("rekey-bench: SQLite …");
            reports.push(phases::bench_sqlite(&args, &handle, scratch.path()).await?);
        }
        if !args.skip_postgres {
            eprintln!("rekey-bench: PostgreSQL …");
            reports.push(phases::bench_postgres(&args, &handle, scratch.path()).await?);
        }
        anyhow::Ok(reports)
    })?;
    // The first database's (c) ran before the second's phases, in this process.
    for report in reports.iter_mut().skip(1) {
        report.after_hashing = true;
    }
    let growth_reports = match &growth_args {
        Some(growth_args) => {
            load.block_on(run_growth(&args, growth_args, &handle, scratch.path()))?
        }
        None => Vec::new(),
    };
    load.shutdown_timeout(Duration::from_secs(5));
    server.shutdown_timeout(Duration::from_secs(5));

    let machine = Machine::here(
        std::env::args().collect::<Vec<_>>().join(" "),
        args.load_threads,
        !args.no_request_log,
        (background_before, background_load()),
    );
    if !reports.is_empty() {
        print!("{}", report::text(&machine, &reports));
        if args.markdown {
            println!();
            print!("{}", report::markdown(&machine, &reports));
        }
    }
    if !mail_reports.is_empty() {
        println!();
        print!("{}", mail::markdown(&mail_reports));
    }
    if let Some(report) = &replica_report {
        println!();
        print!("{}", replicas::markdown(report));
    }
    if !growth_reports.is_empty() {
        print!(
            "{}",
            growth::text(&growth_reports, args.clients, args.growth_drain)
        );
        if args.markdown {
            print!(
                "{}",
                growth::markdown(&growth_reports, args.clients, args.growth_drain)
            );
        }
    }
    Ok(())
}

/// The growth run on each database, each on a fresh one.
async fn run_growth(
    args: &Args,
    growth_args: &growth::GrowthArgs,
    handle: &Handle,
    scratch: &Path,
) -> anyhow::Result<Vec<growth::GrowthReport>> {
    let sink = if growth_args.pending.is_empty() {
        None
    } else {
        Some(mail::Sink::start()?)
    };
    let mut reports = Vec::new();
    if !args.skip_sqlite {
        eprintln!("rekey-bench: growth, SQLite …");
        let dir = scratch.join("growth-sqlite");
        let url = format!("sqlite://{}", dir.join("rekey.db").display());
        reports.push(
            growth::bench_growth(
                args,
                growth_args,
                handle,
                &url,
                &dir,
                sink.as_ref(),
                "SQLite".into(),
            )
            .await?,
        );
    }
    if !args.skip_postgres {
        eprintln!("rekey-bench: growth, PostgreSQL …");
        let admin_url = args.postgres_url.clone();
        let database = on(handle, async move { PgDatabase::create(&admin_url).await }).await?;
        let dir = scratch.join("growth-postgres");
        let result = growth::bench_growth(
            args,
            growth_args,
            handle,
            &database.url,
            &dir,
            sink.as_ref(),
            "PostgreSQL".into(),
        )
        .await;
        on(handle, async move { database.drop_database().await }).await?;
        reports.push(result?);
    }
    Ok(reports)
}

/// Busy cores outside this process and PostgreSQL over one second: other work on the machine
/// makes every number here noisy, so the report says how much there was.
fn background_load() -> Option<f64> {
    let before = cpu::snapshot();
    std::thread::sleep(Duration::from_secs(1));
    cpu::since(&before).background()
}

/// Production's log filter (`rekey serve`, `info`: one line per request) into a file, so the
/// servers pay for their request log as in production; warnings also go to stderr.
fn init_logging(file: &Path, no_request_log: bool) -> anyhow::Result<()> {
    use tracing_subscriber::filter::LevelFilter;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::{EnvFilter, Layer};
    // As `rekey serve`: RUST_LOG wins over the default filter.
    let filter = if no_request_log {
        EnvFilter::new("warn")
    } else {
        EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,hyper=warn,h2=warn"))
    };
    let log = std::fs::File::create(file)
        .with_context(|| format!("creating the log file {}", file.display()))?;
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .with_writer(std::sync::Mutex::new(log))
                .with_filter(filter),
        )
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_filter(LevelFilter::WARN),
        )
        .try_init()
        .context("installing the log subscriber")
}

/// Runs `future` on the server runtime (so the pools and listeners live there) and waits.
async fn on<T, F>(server: &Handle, future: F) -> anyhow::Result<T>
where
    T: Send + 'static,
    F: std::future::Future<Output = anyhow::Result<T>> + Send + 'static,
{
    server
        .spawn(future)
        .await
        .context("server-side task failed")?
}
