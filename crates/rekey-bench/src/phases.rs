//! (a)–(d) for one database: the real Rekey and the bare-INSERT ceiling side by side, each phase
//! a function that returns its [`Phase`] (or, for the hashing phases, the raw rate too).
//!
//! Phases that are compared with each other run in `--rounds` slices, interleaved (a, a', b, b',
//! a, a', …; raw, c, raw, c, …, raw), so that a ratio compares numbers taken side by side even
//! when the machine's other load drifts during the run.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rekey::config::Settings;
use rekey_core::crypto::HashParams;
use rekey_core::domain::UserId;
use rekey_core::flows::{Caller, Delivery};
use secrecy::SecretString;
use tokio::runtime::Handle;

use crate::load::{self, Job, Prepared, Window};
use crate::raw_argon2::{self, RawRate};
use crate::report::{DbReport, Phase, Resources};
use crate::servers::{self, CeilingDb, PgDatabase, RekeyServer, Running, Seeded};
use crate::{cpu, on, Args};

/// The path of (b) over gRPC and Connect.
const RESET_RPC: &str = "/zitadel.user.v2.UserService/PasswordReset";
/// The body of (b); the ceiling receives the same bytes.
pub const RESET_BODY: &str = r#"{"returnCode":{}}"#;
/// The body of (b-link) (SPEC §3.1): the code is sent by email, so the message is sealed and
/// queued in the same transaction.
const RESET_LINK_BODY: &str = r#"{"sendLink":{"notificationType":"NOTIFICATION_TYPE_Email"}}"#;
/// The per-user message limit of the bench's Rekey: (b-link) sends each user far more than the
/// default 3 messages an hour; this never refuses during a run, and the counter is still written.
pub const MESSAGES_PER_USER_PER_HOUR: u32 = 1_000_000;
/// The body of (c): 12+ characters and not on the common-password list.
const SET_PASSWORD_BODY: &str = r#"{"newPassword":{"password":"Bench-rekey-quartz-42"}}"#;

/// (a)–(d) on SQLite: a file in the run's scratch directory, shared by Rekey and the ceiling.
pub async fn bench_sqlite(
    args: &Args,
    server: &Handle,
    scratch: &Path,
) -> anyhow::Result<DbReport> {
    let dir = scratch.join("sqlite");
    let file = dir.join("rekey.db");
    let url = format!("sqlite://{}", file.display());
    let ceiling_file = file.clone();
    let open_ceiling = async move { CeilingDb::sqlite(&ceiling_file).await };
    bench_database(args, server, &url, &dir, open_ceiling).await
}

/// (a)–(d) on PostgreSQL: a fresh database, dropped afterwards even when a phase failed.
pub async fn bench_postgres(
    args: &Args,
    server: &Handle,
    scratch: &Path,
) -> anyhow::Result<DbReport> {
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
    // only where the data lives differs, and the per-user message limit (b-link) would hit.
    let mut settings = Settings {
        database_url: Some(url.to_owned()),
        data_dir: data_dir.to_path_buf(),
        ..Settings::default()
    };
    settings.limits.messages_per_user_per_hour = MESSAGES_PER_USER_PER_HOUR;
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

/// Lengths of a run's measured windows.
#[derive(Clone, Copy)]
struct Timing {
    /// Before the first slice of a phase.
    warmup: Duration,
    /// Before later slices: the pools and caches are warm by then.
    short_warmup: Duration,
    /// A whole phase (`--seconds`).
    length: Duration,
    /// One of its `--rounds` slices.
    slice: Duration,
}

impl Timing {
    fn new(args: &Args) -> anyhow::Result<Self> {
        let warmup = Duration::from_millis(args.warmup_ms);
        let length = Duration::from_secs(args.seconds);
        if args.rounds == 0 || length / args.rounds < Duration::from_millis(200) {
            anyhow::bail!("--rounds must be at least 1 and leave at least 200 ms per slice");
        }
        Ok(Self {
            warmup,
            short_warmup: warmup.min(Duration::from_millis(250)),
            length,
            slice: length / args.rounds,
        })
    }

    fn warmup(&self, round: u32) -> Duration {
        if round == 0 {
            self.warmup
        } else {
            self.short_warmup
        }
    }
}

/// The requests every phase sends, built once from the seeded users.
struct Requests {
    ceiling: Prepared,
    reset: Vec<Vec<Prepared>>,
    reset_link: Vec<Vec<Prepared>>,
    connect: Vec<Vec<Prepared>>,
    grpc: Vec<Vec<Job>>,
    in_process: Vec<Vec<Job>>,
    set_password: Vec<Vec<Prepared>>,
    health: Prepared,
}

/// The smoke checks, then every phase of (a)–(d).
async fn phases(
    args: &Args,
    server: &Handle,
    rekey: &RekeyServer,
    ceiling: &Running,
    ceiling_db: &CeilingDb,
) -> anyhow::Result<DbReport> {
    let client = load::client()?;
    let timing = Timing::new(args)?;
    let hash_threads = rekey.hash_threads;
    let hash_clients = args.hash_clients.unwrap_or(8 * hash_threads).max(1);
    if rekey.users.len() < args.clients.max(hash_clients) {
        anyhow::bail!("--users must be at least the number of clients, so no two share a user");
    }
    let requests = prepare(args, rekey, ceiling, &client, hash_clients).await?;

    let rows_before = ceiling_db.rows().await?;
    let [ceiling_phase, ceiling_direct, reset, reset_grpc, reset_connect, reset_direct, reset_link] =
        request_phases(args, server, &client, &requests, ceiling_db, timing).await?;
    let inserted = ceiling_db.rows().await? - rows_before;
    let answered = (ceiling_phase.tally.ok + ceiling_direct.tally.ok) as i64;
    if inserted < answered {
        anyhow::bail!("the ceiling reported {answered} inserts but the table grew by {inserted}");
    }

    let health_client = load::client()?;
    let health_idle = health_idle(args, &health_client, &requests.health, timing).await?;
    let (raw, set_password, health_loaded) = hash_phases(
        args,
        &client,
        &health_client,
        &requests,
        hash_threads,
        timing,
    )
    .await?;

    Ok(DbReport {
        database: ceiling_db.describe().await?,
        hash_threads,
        ceiling: ceiling_phase,
        ceiling_direct,
        reset,
        reset_link,
        reset_direct,
        reset_grpc,
        reset_connect,
        raw,
        set_password,
        health_idle,
        health_loaded,
        after_hashing: false,
    })
}

/// Builds every request and job, and checks that each phase measures the success path it
/// claims to.
async fn prepare(
    args: &Args,
    rekey: &RekeyServer,
    ceiling: &Running,
    client: &reqwest::Client,
    hash_clients: usize,
) -> anyhow::Result<Requests> {
    let ceiling_request = Prepared::post_json(ceiling.url("/ceiling")?, None, RESET_BODY)?;
    let reset = |user: &Seeded| reset_request(rekey, user);
    let reset_link = |user: &Seeded| {
        Prepared::post_json(
            rekey
                .running
                .url(&format!("/v2/users/{}/password_reset", user.user_id))?,
            Some(&user.admin_token),
            RESET_LINK_BODY,
        )
    };
    let set_password = |user: &Seeded| {
        Prepared::post_json(
            rekey
                .running
                .url(&format!("/v2/users/{}/password", user.user_id))?,
            Some(&user.admin_token),
            SET_PASSWORD_BODY,
        )
    };
    let health = Prepared::get(rekey.running.url("/healthz")?);
    let reset_connect = |user: &Seeded| connect_reset(rekey, user);

    let first = rekey.users.first().context("no users were seeded")?;
    smoke(client, &ceiling_request, "\"id\"").await?;
    smoke(client, &reset(first)?, "\"verificationCode\"").await?;
    smoke_link(client, &reset_link(first)?).await?;
    smoke(client, &reset_connect(first)?, "\"verificationCode\"").await?;
    let channels = grpc_channels(rekey, args.grpc_connections).await?;
    let grpc = grpc_plans(&rekey.users, args.clients, &channels)?;
    grpc_smoke(&grpc).await?;
    smoke(client, &set_password(first)?, "\"details\"").await?;
    smoke(client, &health, "\"ok\"").await?;

    Ok(Requests {
        ceiling: ceiling_request,
        reset: partition(&rekey.users, args.clients, reset)?,
        reset_link: partition(&rekey.users, args.clients, reset_link)?,
        connect: partition(&rekey.users, args.clients, reset_connect)?,
        grpc,
        in_process: partition(&rekey.users, args.clients, |user| reset_job(rekey, user))?,
        set_password: partition(&rekey.users, hash_clients, set_password)?,
        health,
    })
}

/// How the workers of one slice are driven.
enum Drive {
    /// Closed-loop HTTP clients on the load runtime.
    Http(Vec<Vec<Prepared>>),
    /// Closed-loop in-process jobs, each worker a task on the given runtime.
    Jobs(Handle, Vec<Vec<Job>>),
}

/// A phase measured in slices.
struct Sliced {
    name: &'static str,
    drive: Drive,
}

impl Sliced {
    async fn slice(
        &self,
        client: &reqwest::Client,
        warmup: Duration,
        length: Duration,
    ) -> anyhow::Result<Phase> {
        match &self.drive {
            Drive::Http(plans) => {
                closed_phase(self.name, client, plans.clone(), warmup, length).await
            }
            Drive::Jobs(runtime, plans) => {
                jobs_phase(self.name, runtime, plans.clone(), warmup, length).await
            }
        }
    }
}

/// (a), (a'), (b), (b-gRPC), (b-Connect), (b') and (b-link), in that order, interleaved slice by
/// slice. (b-link) comes last in each round: the messages it queues stay in the outbox (no
/// worker runs), and the other phases of the round then see the same outbox as before.
async fn request_phases(
    args: &Args,
    server: &Handle,
    client: &reqwest::Client,
    requests: &Requests,
    ceiling_db: &CeilingDb,
    timing: Timing,
) -> anyhow::Result<[Phase; 7]> {
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
    let clients = args.clients;
    let sliced = [
        // (a) the ceiling
        Sliced {
            name: "(a) ceiling: bare INSERT",
            drive: Drive::Http(vec![vec![requests.ceiling.clone()]; clients]),
        },
        // (a') the same INSERT without HTTP: what the database path alone allows
        Sliced {
            name: "(a') bare INSERT, no HTTP",
            drive: Drive::Jobs(server.clone(), vec![vec![insert]; clients]),
        },
        // (b) PasswordReset with returnCode
        Sliced {
            name: "(b) PasswordReset returnCode",
            drive: Drive::Http(requests.reset.clone()),
        },
        // (b-gRPC) the same call over gRPC: h2c, few connections, one stream per client; the
        // client runs on the load runtime like the HTTP clients
        Sliced {
            name: "(b-gRPC) PasswordReset, gRPC h2c",
            drive: Drive::Jobs(Handle::current(), requests.grpc.clone()),
        },
        // (b-Connect) the same call as Connect JSON over HTTP/1.1
        Sliced {
            name: "(b-Connect) PasswordReset, JSON",
            drive: Drive::Http(requests.connect.clone()),
        },
        // (b') the same flow called in-process: token lookup + flow + store, no HTTP or JSON
        Sliced {
            name: "(b') PasswordReset flow, no HTTP",
            drive: Drive::Jobs(server.clone(), requests.in_process.clone()),
        },
        // (b-link) PasswordReset with sendLink: as (b), plus sealing and queueing the message
        Sliced {
            name: "(b-link) PasswordReset sendLink",
            drive: Drive::Http(requests.reset_link.clone()),
        },
    ];
    let mut totals: [Option<Phase>; 7] = Default::default();
    for round in 0..args.rounds {
        for (phase, total) in sliced.iter().zip(totals.iter_mut()) {
            quiet(args).await;
            let slice = phase
                .slice(client, timing.warmup(round), timing.slice)
                .await?;
            *total = Some(Phase::absorb(total.take(), slice));
        }
    }
    let [a, a_direct, b, b_grpc, b_connect, b_direct, b_link] = totals;
    Ok([
        a.context("no rounds were run")?,
        a_direct.context("no rounds were run")?,
        b.context("no rounds were run")?,
        b_grpc.context("no rounds were run")?,
        b_connect.context("no rounds were run")?,
        b_direct.context("no rounds were run")?,
        b_link.context("no rounds were run")?,
    ])
}

/// (d0) `/healthz` on the idle server, for comparison with (d).
async fn health_idle(
    args: &Args,
    health_client: &reqwest::Client,
    health: &Prepared,
    timing: Timing,
) -> anyhow::Result<Phase> {
    let probe = Duration::from_millis(args.probe_ms);
    quiet(args).await;
    let window = Window::after(timing.warmup, timing.length);
    let (idle, idle_cpu) = tokio::join!(
        load::open_loop(health_client, health.clone(), probe, window),
        resources_during(window)
    );
    Ok(Phase::new(
        "(d0) /healthz, idle",
        1,
        idle?,
        window,
        idle_cpu,
    ))
}

/// The raw argon2id rate, then (c) with (d) probing alongside, raw again, …: returns the raw
/// rate, (c) and (d).
async fn hash_phases(
    args: &Args,
    client: &reqwest::Client,
    health_client: &reqwest::Client,
    requests: &Requests,
    hash_threads: usize,
    timing: Timing,
) -> anyhow::Result<(RawRate, Phase, Phase)> {
    let probe = Duration::from_millis(args.probe_ms);
    let hash_clients = requests.set_password.len();
    quiet(args).await;
    let mut raw = raw_rate(hash_threads, timing.warmup, timing.slice).await?;
    let (mut set_phase, mut health_loaded) = (None, None);
    for round in 0..args.rounds {
        quiet(args).await;
        let window = Window::after(timing.warmup(round), timing.slice);
        let (set, loaded, set_cpu) = tokio::join!(
            load::closed_loop(client, requests.set_password.clone(), window),
            load::open_loop(health_client, requests.health.clone(), probe, window),
            resources_during(window)
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
        raw = raw.absorb(raw_rate(hash_threads, timing.short_warmup, timing.slice).await?);
    }
    let (Some(set_phase), Some(health_loaded)) = (set_phase, health_loaded) else {
        anyhow::bail!("no rounds were run");
    };
    Ok((raw, set_phase, health_loaded))
}

/// `PasswordReset` with `returnCode` as the REST face runs it, minus HTTP and JSON.
fn reset_job(rekey: &RekeyServer, user: &Seeded) -> anyhow::Result<Job> {
    let core = rekey.rekey.clone();
    let token = user.admin_token.clone();
    let user_id = UserId::parse(user.user_id.clone()).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(Arc::new(move || {
        let core = core.clone();
        let token = SecretString::from(token.to_string());
        let user_id = user_id.clone();
        Box::pin(async move {
            // What the ZITADEL faces call: the token checked in the read that finds the user.
            let caller = Caller {
                principal: None,
                ip: Some("127.0.0.1".to_owned()),
                request_id: None,
            };
            core.request_password_reset_with_token(&token, caller, &user_id, Delivery::ReturnCode)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
    }))
}

/// (b) as a Connect unary call: the same operation, protojson body with the user id.
fn connect_reset(rekey: &RekeyServer, user: &Seeded) -> anyhow::Result<Prepared> {
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
    users: &[Seeded],
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
pub fn partition<T>(
    users: &[Seeded],
    workers: usize,
    request: impl Fn(&Seeded) -> anyhow::Result<T>,
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

pub async fn closed_phase(
    name: &'static str,
    client: &reqwest::Client,
    plans: Vec<Vec<Prepared>>,
    warmup: Duration,
    length: Duration,
) -> anyhow::Result<Phase> {
    let clients = plans.len();
    let window = Window::after(warmup, length);
    let (tally, usage) = tokio::join!(
        load::closed_loop(client, plans, window),
        resources_during(window)
    );
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
        resources_during(window)
    );
    Ok(Phase::new(name, clients, tally?, window, usage))
}

async fn raw_rate(threads: usize, warmup: Duration, length: Duration) -> anyhow::Result<RawRate> {
    tokio::task::spawn_blocking(move || {
        raw_argon2::measure(HashParams::default(), threads, warmup, length)
    })
    .await
    .context("raw argon2 task failed")?
}

/// Waits until the machine's background load is below `--quiet-below` (if given).
pub async fn quiet(args: &Args) {
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

/// CPU by group and the process's peak resident memory over `window`.
pub async fn resources_during(window: Window) -> Resources {
    tokio::time::sleep_until(window.start.into()).await;
    let before = cpu::snapshot();
    crate::rss::reset();
    tokio::time::sleep_until(window.end.into()).await;
    Resources {
        peak_rss_mib: crate::rss::peak_mib(),
        cpu: cpu::since(&before),
    }
}

/// (b-link) answers with its details and without a code (the code went into the outbox).
async fn smoke_link(client: &reqwest::Client, request: &Prepared) -> anyhow::Result<()> {
    smoke(client, request, "\"details\"").await?;
    let (_, body) = request
        .send(client)
        .await
        .context("smoke check of sendLink")?;
    if String::from_utf8_lossy(&body).contains("verificationCode") {
        anyhow::bail!("smoke check of sendLink: the answer carries a code");
    }
    Ok(())
}

/// (b): `PasswordReset` with `returnCode` over REST for `user`.
pub fn reset_request(rekey: &RekeyServer, user: &Seeded) -> anyhow::Result<Prepared> {
    Prepared::post_json(
        rekey
            .running
            .url(&format!("/v2/users/{}/password_reset", user.user_id))?,
        Some(&user.admin_token),
        RESET_BODY,
    )
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
