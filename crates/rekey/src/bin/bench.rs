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
//! - (c) `SetPassword` set by an admin — one argon2id hash with the production parameters per
//!   request — against the raw argon2id rate of as many threads as the hash pool has, target
//!   ≥ 90 %;
//! - (d) `/healthz` latency while (c) saturates the hash pool, target p99 < 20 ms.
//!
//! Threads: the servers run on their own multi-threaded tokio runtime built like `rekey serve`'s
//! (one worker per core, its blocking pool runs the hash jobs); the load generator runs on a
//! second runtime (`--load-threads`, default 1) so it cannot take the servers' workers, though
//! on a small machine all of them still share the cores — the report shows where the CPU went.

// A binary's root file takes its modules from its own folder (`src/bin/`); these live in
// `src/bin/bench/` so that Cargo does not take them for binaries of their own.
#[path = "bench/cpu.rs"]
mod cpu;
#[path = "bench/load.rs"]
mod load;
#[path = "bench/mail.rs"]
mod mail;
#[path = "bench/raw_argon2.rs"]
mod raw_argon2;
#[path = "bench/replicas.rs"]
mod replicas;
#[path = "bench/report.rs"]
mod report;
#[path = "bench/servers.rs"]
mod servers;

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use rekey::config::Settings;
use rekey_core::flows::{Caller, Delivery};
use rekey_core::hasher::HashParams;
use rekey_core::ids::UserId;
use secrecy::SecretString;
use tokio::runtime::Handle;

use load::{Job, Prepared, Window};
use report::{DbReport, Machine, Phase};
use servers::{CeilingDb, PgDatabase, RekeyServer, Running};

/// The path of (b) over gRPC and Connect.
const RESET_RPC: &str = "/zitadel.user.v2.UserService/PasswordReset";
/// The body of (b); the ceiling receives the same bytes.
const RESET_BODY: &str = r#"{"returnCode":{}}"#;
/// The body of (c): 12+ characters and not on the common-password list.
const SET_PASSWORD_BODY: &str = r#"{"newPassword":{"password":"Bench-rekey-quartz-42"}}"#;

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
    let reports = load.block_on(async {
        let mut reports = Vec::new();
        if args.skip_core {
            return anyhow::Ok(reports);
        }
        if !args.skip_sqlite {
            eprintln!("rekey-bench: SQLite …");
            reports.push(bench_sqlite(&args, &handle, scratch.path()).await?);
        }
        if !args.skip_postgres {
            eprintln!("rekey-bench: PostgreSQL …");
            reports.push(bench_postgres(&args, &handle, scratch.path()).await?);
        }
        anyhow::Ok(reports)
    })?;
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
    Ok(())
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

async fn bench_sqlite(args: &Args, server: &Handle, scratch: &Path) -> anyhow::Result<DbReport> {
    let dir = scratch.join("sqlite");
    let file = dir.join("rekey.db");
    let url = format!("sqlite://{}", file.display());
    let ceiling_file = file.clone();
    let open_ceiling = async move { CeilingDb::sqlite(&ceiling_file).await };
    bench_database(args, server, &url, &dir, open_ceiling).await
}

async fn bench_postgres(args: &Args, server: &Handle, scratch: &Path) -> anyhow::Result<DbReport> {
    let admin_url = args.postgres_url.clone();
    let database = on(server, async move { PgDatabase::create(&admin_url).await }).await?;
    let url = database.url.clone();
    let ceiling_url = url.clone();
    let open_ceiling = async move { CeilingDb::postgres(&ceiling_url).await };
    let result = bench_database(args, server, &url, &scratch.join("postgres"), open_ceiling).await;
    let name = database.name.clone();
    let dropped = on(server, async move { database.drop_database().await }).await;
    match (result, dropped) {
        (Ok(report), Ok(())) => Ok(report),
        (Ok(_), Err(err)) => Err(err.context(format!("dropping database {name}"))),
        (Err(err), Ok(())) => Err(err),
        (Err(err), Err(drop_err)) => {
            eprintln!("rekey-bench: also failed to drop database {name}: {drop_err:#}");
            Err(err)
        }
    }
}

/// Everything for one database: servers up, seed, smoke checks, the phases, servers down.
async fn bench_database<F>(
    args: &Args,
    server: &Handle,
    url: &str,
    data_dir: &Path,
    open_ceiling: F,
) -> anyhow::Result<DbReport>
where
    F: std::future::Future<Output = anyhow::Result<CeilingDb>> + Send + 'static,
{
    // Production defaults throughout (argon2id parameters, hash pool width and queue, limits);
    // only where the data lives differs.
    let settings = Settings {
        database_url: Some(url.to_owned()),
        data_dir: data_dir.to_path_buf(),
        ..Settings::default()
    };
    let (tenants, users) = (args.tenants, args.users);
    let rekey = on(server, async move {
        servers::start_rekey(settings, tenants, users).await
    })
    .await
    .context("starting Rekey")?;
    // The ceiling opens its pool after the store has created (and migrated) the database.
    let ceiling_db = on(server, open_ceiling).await?;
    let ceiling_for_server = ceiling_db.clone();
    let ceiling = on(server, async move {
        servers::start_ceiling(ceiling_for_server).await
    })
    .await
    .context("starting the ceiling")?;

    let result = phases(args, server, &rekey, &ceiling, &ceiling_db).await;

    let RekeyServer {
        running,
        rekey: core,
        ..
    } = rekey;
    let stopped = on(server, async move {
        running.stop().await?;
        ceiling.stop().await?;
        ceiling_db.close().await;
        drop(core);
        Ok(())
    })
    .await;
    let report = result?;
    stopped?;
    Ok(report)
}

async fn phases(
    args: &Args,
    server: &Handle,
    rekey: &RekeyServer,
    ceiling: &Running,
    ceiling_db: &CeilingDb,
) -> anyhow::Result<DbReport> {
    let client = load::client()?;
    let warmup = Duration::from_millis(args.warmup_ms);
    let length = Duration::from_secs(args.seconds);
    if args.rounds == 0 || length / args.rounds < Duration::from_millis(200) {
        anyhow::bail!("--rounds must be at least 1 and leave at least 200 ms per slice");
    }
    let hash_threads = rekey.hash_threads;
    let hash_clients = args.hash_clients.unwrap_or(8 * hash_threads).max(1);
    if rekey.users.len() < args.clients.max(hash_clients) {
        anyhow::bail!("--users must be at least the number of clients, so no two share a user");
    }

    let ceiling_request = Prepared::post_json(ceiling.url("/ceiling")?, None, RESET_BODY)?;
    let reset = |user: &servers::Seeded| {
        Prepared::post_json(
            rekey
                .running
                .url(&format!("/v2/users/{}/password_reset", user.user_id))?,
            Some(&user.admin_token),
            RESET_BODY,
        )
    };
    let set_password = |user: &servers::Seeded| {
        Prepared::post_json(
            rekey
                .running
                .url(&format!("/v2/users/{}/password", user.user_id))?,
            Some(&user.admin_token),
            SET_PASSWORD_BODY,
        )
    };
    let health = Prepared::get(rekey.running.url("/healthz")?);
    let reset_connect = |user: &servers::Seeded| connect_reset(rekey, user);

    // Smoke checks: each phase measures the success path it claims to.
    let first = rekey.users.first().context("no users were seeded")?;
    smoke(&client, &ceiling_request, "\"id\"").await?;
    smoke(&client, &reset(first)?, "\"verificationCode\"").await?;
    smoke(&client, &reset_connect(first)?, "\"verificationCode\"").await?;
    let channels = grpc_channels(rekey, args.grpc_connections).await?;
    let grpc_plans = grpc_plans(&rekey.users, args.clients, &channels)?;
    grpc_smoke(&grpc_plans).await?;
    smoke(&client, &set_password(first)?, "\"details\"").await?;
    smoke(&client, &health, "\"ok\"").await?;

    // Each phase runs in `--rounds` slices, interleaved (a, a', b, b', a, a', …; raw, c, raw,
    // c, …, raw), so that a ratio compares numbers taken side by side even when the machine's
    // other load drifts during the run.
    let rounds = args.rounds;
    let slice = length / rounds;
    let short_warmup = warmup.min(Duration::from_millis(250));
    let ceiling_rows_before = ceiling_db.rows().await?;
    let db = ceiling_db.clone();
    let insert: Job = Arc::new(move || {
        let db = db.clone();
        Box::pin(async move {
            db.insert_one(RESET_BODY.to_owned())
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
    });
    let ceiling_plans: Vec<Vec<Prepared>> = (0..args.clients)
        .map(|_| vec![ceiling_request.clone()])
        .collect();
    let insert_plans: Vec<Vec<Job>> = (0..args.clients).map(|_| vec![insert.clone()]).collect();
    let reset_plans = partition(&rekey.users, args.clients, reset)?;
    let connect_plans = partition(&rekey.users, args.clients, reset_connect)?;
    let reset_job_plans = partition(&rekey.users, args.clients, |user| reset_job(rekey, user))?;
    let (mut ceiling_phase, mut ceiling_direct, mut reset_phase, mut reset_direct) =
        (None, None, None, None);
    let (mut grpc_phase, mut connect_phase) = (None, None);
    for round in 0..rounds {
        let warmup = if round == 0 { warmup } else { short_warmup };
        // (a) the ceiling
        quiet(args).await;
        let phase = closed_phase(
            "(a) ceiling: bare INSERT",
            &client,
            ceiling_plans.clone(),
            warmup,
            slice,
        )
        .await?;
        ceiling_phase = Some(Phase::absorb(ceiling_phase, phase));
        // (a') the same INSERT without HTTP: what the database path alone allows
        quiet(args).await;
        let phase = jobs_phase(
            "(a') bare INSERT, no HTTP",
            server,
            insert_plans.clone(),
            warmup,
            slice,
        )
        .await?;
        ceiling_direct = Some(Phase::absorb(ceiling_direct, phase));
        // (b) PasswordReset with returnCode
        quiet(args).await;
        let phase = closed_phase(
            "(b) PasswordReset returnCode",
            &client,
            reset_plans.clone(),
            warmup,
            slice,
        )
        .await?;
        reset_phase = Some(Phase::absorb(reset_phase, phase));
        // (b-gRPC) the same call over gRPC: h2c, few connections, one stream per client
        quiet(args).await;
        let phase = jobs_phase(
            "(b-gRPC) PasswordReset, gRPC h2c",
            &Handle::current(),
            grpc_plans.clone(),
            warmup,
            slice,
        )
        .await?;
        grpc_phase = Some(Phase::absorb(grpc_phase, phase));
        // (b-Connect) the same call as Connect JSON over HTTP/1.1
        quiet(args).await;
        let phase = closed_phase(
            "(b-Connect) PasswordReset, JSON",
            &client,
            connect_plans.clone(),
            warmup,
            slice,
        )
        .await?;
        connect_phase = Some(Phase::absorb(connect_phase, phase));
        // (b') the same flow called in-process: token lookup + flow + store, no HTTP or JSON
        quiet(args).await;
        let phase = jobs_phase(
            "(b') PasswordReset flow, no HTTP",
            server,
            reset_job_plans.clone(),
            warmup,
            slice,
        )
        .await?;
        reset_direct = Some(Phase::absorb(reset_direct, phase));
    }
    let (
        Some(ceiling_phase),
        Some(ceiling_direct),
        Some(reset_phase),
        Some(reset_direct),
        Some(grpc_phase),
        Some(connect_phase),
    ) = (
        ceiling_phase,
        ceiling_direct,
        reset_phase,
        reset_direct,
        grpc_phase,
        connect_phase,
    )
    else {
        anyhow::bail!("no rounds were run");
    };
    let inserted = ceiling_db.rows().await? - ceiling_rows_before;
    let answered = (ceiling_phase.tally.ok + ceiling_direct.tally.ok) as i64;
    if inserted < answered {
        anyhow::bail!("the ceiling reported {answered} inserts but the table grew by {inserted}");
    }

    // (d0) /healthz on the idle server, for comparison with (d)
    let probe = Duration::from_millis(args.probe_ms);
    let health_client = load::client()?;
    quiet(args).await;
    let window = Window::after(warmup, length);
    let (idle, idle_cpu) = tokio::join!(
        load::open_loop(&health_client, health.clone(), probe, window),
        cpu_during(window)
    );
    let health_idle = Phase::new("(d0) /healthz, idle", 1, idle?, window, idle_cpu);

    // raw argon2id, then (c) with (d) probing alongside, raw again, …
    let set_plans = partition(&rekey.users, hash_clients, set_password)?;
    quiet(args).await;
    let mut raw = raw_rate(hash_threads, warmup, slice).await?;
    let (mut set_phase, mut health_loaded) = (None, None);
    for round in 0..rounds {
        quiet(args).await;
        let window = Window::after(if round == 0 { warmup } else { short_warmup }, slice);
        let (set, loaded, set_cpu) = tokio::join!(
            load::closed_loop(&client, set_plans.clone(), window),
            load::open_loop(&health_client, health.clone(), probe, window),
            cpu_during(window)
        );
        let phase = Phase::new(
            "(c) SetPassword admin (argon2id)",
            hash_clients,
            set?,
            window,
            set_cpu.clone(),
        );
        set_phase = Some(Phase::absorb(set_phase, phase));
        let phase = Phase::new("(d) /healthz during (c)", 1, loaded?, window, set_cpu);
        health_loaded = Some(Phase::absorb(health_loaded, phase));
        quiet(args).await;
        raw = raw.absorb(raw_rate(hash_threads, short_warmup, slice).await?);
    }
    let (Some(set_phase), Some(health_loaded)) = (set_phase, health_loaded) else {
        anyhow::bail!("no rounds were run");
    };

    Ok(DbReport {
        database: ceiling_db.describe().await?,
        hash_threads,
        ceiling: ceiling_phase,
        ceiling_direct,
        reset: reset_phase,
        reset_direct,
        reset_grpc: grpc_phase,
        reset_connect: connect_phase,
        raw,
        set_password: set_phase,
        health_idle,
        health_loaded,
    })
}

/// `PasswordReset` with `returnCode` as the REST face runs it, minus HTTP and JSON.
fn reset_job(rekey: &RekeyServer, user: &servers::Seeded) -> anyhow::Result<Job> {
    let core = rekey.rekey.clone();
    let token = user.admin_token.clone();
    let user_id = UserId::parse(user.user_id.clone()).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(Arc::new(move || {
        let core = core.clone();
        let token = SecretString::from(token.to_string());
        let user_id = user_id.clone();
        Box::pin(async move {
            let principal = core.authenticate(&token).await.map_err(|e| e.to_string())?;
            let caller = Caller {
                principal: Some(principal),
                ip: Some("127.0.0.1".to_owned()),
            };
            core.request_password_reset(&caller, &user_id, Delivery::ReturnCode)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
    }))
}

/// (b) as a Connect unary call: the same operation, protojson body with the user id.
fn connect_reset(rekey: &RekeyServer, user: &servers::Seeded) -> anyhow::Result<Prepared> {
    let body = serde_json::json!({ "userId": user.user_id, "returnCode": {} }).to_string();
    let mut request = Prepared::post_json(
        rekey.running.url(RESET_RPC)?,
        Some(&user.admin_token),
        RESET_BODY,
    )?;
    request.body = Some(body.into());
    Ok(request)
}

/// `connections` HTTP/2 (h2c) connections to Rekey, opened on the load runtime.
async fn grpc_channels(
    rekey: &RekeyServer,
    connections: usize,
) -> anyhow::Result<Vec<tonic::transport::Channel>> {
    let url = rekey.running.url("")?.to_string();
    let mut channels = Vec::with_capacity(connections.max(1));
    for _ in 0..connections.max(1) {
        let channel = tonic::transport::Endpoint::from_shared(url.clone())
            .context("gRPC endpoint")?
            .tcp_nodelay(true)
            .connect()
            .await
            .context("connecting over h2c")?;
        channels.push(channel);
    }
    Ok(channels)
}

/// (b) over gRPC: worker `w` owns the users of [`partition`] and sends its calls as streams on
/// connection `w % connections`.
fn grpc_plans(
    users: &[servers::Seeded],
    workers: usize,
    channels: &[tonic::transport::Channel],
) -> anyhow::Result<Vec<Vec<Job>>> {
    use rekey_proto::zitadel::user::v2 as user_v2;
    (0..workers)
        .map(|w| {
            let channel = channels[w % channels.len()].clone();
            users
                .iter()
                .skip(w)
                .step_by(workers)
                .map(|user| {
                    let bearer: tonic::metadata::MetadataValue<_> =
                        format!("Bearer {}", user.admin_token)
                            .parse()
                            .context("token is not a metadata value")?;
                    let user_id = user.user_id.clone();
                    let channel = channel.clone();
                    let job: Job = Arc::new(move || {
                        let mut client =
                            user_v2::user_service_client::UserServiceClient::new(channel.clone());
                        let mut request = tonic::Request::new(user_v2::PasswordResetRequest {
                            user_id: user_id.to_string(),
                            medium: Some(user_v2::password_reset_request::Medium::ReturnCode(
                                user_v2::ReturnPasswordResetCode {},
                            )),
                        });
                        request
                            .metadata_mut()
                            .insert("authorization", bearer.clone());
                        Box::pin(async move {
                            match client.password_reset(request).await {
                                Ok(reply) if reply.get_ref().verification_code.is_some() => Ok(()),
                                Ok(_) => Err("gRPC: no verification code".to_owned()),
                                Err(status) => {
                                    Err(format!("gRPC {:?}: {}", status.code(), status.message()))
                                }
                            }
                        })
                    });
                    Ok(job)
                })
                .collect::<anyhow::Result<Vec<_>>>()
        })
        .collect()
}

/// One gRPC call of the first worker must succeed before the gRPC phase counts anything.
async fn grpc_smoke(plans: &[Vec<Job>]) -> anyhow::Result<()> {
    let job = plans
        .first()
        .and_then(|plan| plan.first())
        .context("no gRPC work planned")?;
    job()
        .await
        .map_err(|err| anyhow::anyhow!("smoke check {RESET_RPC} over gRPC: {err}"))
}

/// Worker `w` of `workers` gets the users `i` with `i % workers == w`, so no two workers ever
/// act on the same user (each request bumps the user's sequence under its row lock).
fn partition<T>(
    users: &[servers::Seeded],
    workers: usize,
    request: impl Fn(&servers::Seeded) -> anyhow::Result<T>,
) -> anyhow::Result<Vec<Vec<T>>> {
    (0..workers)
        .map(|w| {
            users
                .iter()
                .skip(w)
                .step_by(workers)
                .map(&request)
                .collect::<anyhow::Result<Vec<_>>>()
        })
        .collect()
}

async fn closed_phase(
    name: &'static str,
    client: &reqwest::Client,
    plans: Vec<Vec<Prepared>>,
    warmup: Duration,
    length: Duration,
) -> anyhow::Result<Phase> {
    let clients = plans.len();
    let window = Window::after(warmup, length);
    let (tally, usage) = tokio::join!(load::closed_loop(client, plans, window), cpu_during(window));
    Ok(Phase::new(name, clients, tally?, window, usage))
}

async fn jobs_phase(
    name: &'static str,
    server: &Handle,
    plans: Vec<Vec<Job>>,
    warmup: Duration,
    length: Duration,
) -> anyhow::Result<Phase> {
    let clients = plans.len();
    let window = Window::after(warmup, length);
    let (tally, usage) = tokio::join!(
        load::closed_loop_jobs(server, plans, window),
        cpu_during(window)
    );
    Ok(Phase::new(name, clients, tally?, window, usage))
}

async fn raw_rate(
    threads: usize,
    warmup: Duration,
    length: Duration,
) -> anyhow::Result<raw_argon2::RawRate> {
    tokio::task::spawn_blocking(move || {
        raw_argon2::measure(HashParams::default(), threads, warmup, length)
    })
    .await
    .context("raw argon2 task failed")?
}

/// Waits until the machine's background load is below `--quiet-below` (if given).
async fn quiet(args: &Args) {
    let Some(limit) = args.quiet_below else {
        return;
    };
    let started = std::time::Instant::now();
    let mut told = false;
    loop {
        let before = cpu::snapshot();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let Some(background) = cpu::since(&before).background() else {
            return;
        };
        if background < limit {
            return;
        }
        if started.elapsed() >= Duration::from_secs(args.quiet_wait) {
            eprintln!(
                "rekey-bench: background load still {background:.2} cores after {} s; going on",
                args.quiet_wait
            );
            return;
        }
        if !told {
            eprintln!("rekey-bench: waiting for the background load ({background:.2} cores) to drop below {limit}");
            told = true;
        }
    }
}

async fn cpu_during(window: Window) -> cpu::Usage {
    tokio::time::sleep_until(window.start.into()).await;
    let before = cpu::snapshot();
    tokio::time::sleep_until(window.end.into()).await;
    cpu::since(&before)
}

async fn smoke(client: &reqwest::Client, request: &Prepared, expect: &str) -> anyhow::Result<()> {
    let (status, body) = request
        .send(client)
        .await
        .with_context(|| format!("smoke check {} {}", request.method, request.url.path()))?;
    let body = String::from_utf8_lossy(&body);
    if !status.is_success() || !body.contains(expect) {
        anyhow::bail!(
            "smoke check {} {} answered {status}: {body}",
            request.method,
            request.url.path()
        );
    }
    Ok(())
}
