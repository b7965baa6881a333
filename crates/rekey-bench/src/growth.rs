//! Growth (`--growth`, issue 11): does the cost of a reset and of the outbox drain stay flat as
//! the data grows?
//!
//! For one database (a fresh one, apart from (a)–(g)): Rekey starts with `--growth-tenants`
//! tenants and `--users` users seeded through the product's flow (the measured users, as in
//! (b)); then for each of `--growth-steps` (users in all) the database is grown with filler users
//! and (b) — `PasswordReset` with `returnCode` over REST, the same clients and users — is
//! measured again. Target: ok/s ≥ 80 % and p99 ≤ 120 % of the first step's.
//!
//! Fillers are bulk-inserted with plain SQL in large transactions, as copies of the rows the
//! flow wrote for one template user (`add_user`): its `users` row (state `initial`, sequence 1),
//! its `user_index` and `email_index` rows and its `user.added` event, with a new id, a unique
//! email (and the username, lower-cased columns and names that follow from it) and the tenant
//! changed. The columns are read from the database, so a column the store adds later is copied
//! from the template as the store wrote it. Fillers are spread evenly over the tenants.
//!
//! Then the pending-messages drain: with `--growth-pending` messages pending in the outbox, the
//! worker `serve` builds delivers to the SMTP sink, and the first `--growth-drain` deliveries are
//! timed. Target: the rate at the last step within 20 % of the first step's. The pending
//! messages are copies of one message the flow queued (its row, with a new id and idempotency
//! key, and its body opened and sealed again for the new id, since the message id is the sealed
//! body's associated data).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use rekey::app;
use rekey::config::{Settings, SmtpTls};
use rekey_core::domain::{Channel, EmailAddress, TenantId, UserId};
use rekey_core::flows::{Caller, Delivery, NewUser};
use rekey_core::ports::{Clock, SystemClock};
use secrecy::SecretString;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{ConnectOptions, PgPool, SqlitePool};
use tokio::runtime::Handle;

use crate::mail::Sink;
use crate::phases::{self, MESSAGES_PER_USER_PER_HOUR};
use crate::report::{self, Phase};
use crate::servers::{self, RekeyServer, Seeded};
use crate::{on, Args};

/// ok/s of a later step ≥ 80 % of the first step's.
const RATE_TARGET: f64 = 0.80;
/// p99 of a later step ≤ 120 % of the first step's.
const P99_TARGET: f64 = 1.20;
/// Drain rate of a later step ≥ 80 % of the first step's.
const DRAIN_TARGET: f64 = 0.80;
/// Filler users per INSERT statement (and transaction).
const USER_CHUNK: u64 = 100_000;
/// Pending messages per INSERT statement, and per transaction.
const MESSAGE_BATCH: usize = 500;
const MESSAGE_TRANSACTION: usize = 20_000;

/// One step of users: how long the fillers took to insert, and (b) measured after.
pub struct UserStep {
    pub users: u64,
    pub added: u64,
    pub seed_seconds: f64,
    pub phase: Phase,
}

/// One step of pending messages: the rate of the first `delivered` deliveries.
pub struct DrainStep {
    pub pending: u64,
    pub queue_seconds: f64,
    pub delivered: usize,
    pub rate: f64,
    pub peak_rss_mib: Option<f64>,
}

pub struct GrowthReport {
    pub database: String,
    pub tenants: usize,
    pub measured_users: usize,
    pub users: Vec<UserStep>,
    pub drain: Vec<DrainStep>,
    /// Argon2id hashes ran in this process before (the (c) phases): see [`about`].
    pub after_hashing: bool,
}

/// The options of the growth run, checked.
pub struct GrowthArgs {
    pub steps: Vec<u64>,
    pub tenants: usize,
    pub pending: Vec<u64>,
    pub drain: usize,
}

impl GrowthArgs {
    pub fn from(args: &Args) -> anyhow::Result<Self> {
        let steps = args.growth_steps.clone();
        if steps.is_empty() || steps.windows(2).any(|w| w[1] < w[0]) {
            anyhow::bail!("--growth-steps must be one or more user counts in ascending order");
        }
        if steps[0] < args.users as u64 + 1 {
            anyhow::bail!(
                "the first of --growth-steps must be more than --users ({}): the measured users \
                 and a template user are part of every step",
                args.users
            );
        }
        if args.growth_pending.windows(2).any(|w| w[1] < w[0]) || args.growth_pending.contains(&0) {
            anyhow::bail!("--growth-pending must be positive message counts in ascending order");
        }
        Ok(Self {
            steps,
            tenants: args.growth_tenants.max(1),
            pending: args.growth_pending.clone(),
            drain: args.growth_drain.max(1),
        })
    }
}

/// The growth run on one database (`url`, fresh), with SMTP to `sink` for the drain.
pub async fn bench_growth(
    args: &Args,
    growth: &GrowthArgs,
    server: &Handle,
    url: &str,
    data_dir: &Path,
    sink: Option<&Sink>,
    database: String,
) -> anyhow::Result<GrowthReport> {
    let mut settings = Settings {
        database_url: Some(url.to_owned()),
        data_dir: data_dir.to_path_buf(),
        ..Settings::default()
    };
    settings.limits.messages_per_user_per_hour = MESSAGES_PER_USER_PER_HOUR;
    if let Some(sink) = sink {
        settings.smtp.host = Some("127.0.0.1".to_owned());
        settings.smtp.port = Some(sink.port);
        settings.smtp.tls = SmtpTls::None;
    }
    let (tenants, users) = (growth.tenants, args.users);
    let start_settings = settings.clone();
    let rekey = on(server, async move {
        servers::start_rekey(start_settings, tenants, users).await
    })
    .await
    .context("starting Rekey for the growth run")?;
    let url = url.to_owned();
    let db = on(server, async move { Bulk::open(&url).await }).await?;
    let result = growth_steps(args, growth, server, &settings, &rekey, &db, sink)
        .await
        .map(|(tenants, users, drain)| GrowthReport {
            database,
            tenants,
            measured_users: rekey.users.len(),
            users,
            drain,
            after_hashing: !args.skip_core,
        });
    let RekeyServer { running, .. } = rekey;
    on(server, async move {
        db.close().await;
        running.stop().await
    })
    .await?;
    result
}

/// What every step of one database's growth run works with.
struct Run<'a> {
    args: &'a Args,
    growth: &'a GrowthArgs,
    server: &'a Handle,
    settings: &'a Settings,
    rekey: &'a RekeyServer,
    db: &'a Bulk,
    /// The first measured user, in whose tenant the templates are made.
    first: &'a Seeded,
    first_id: UserId,
    first_tenant: TenantId,
}

fn core_error(e: rekey_core::Error) -> anyhow::Error {
    anyhow::anyhow!("{e}")
}

async fn growth_steps(
    args: &Args,
    growth: &GrowthArgs,
    server: &Handle,
    settings: &Settings,
    rekey: &RekeyServer,
    db: &Bulk,
    sink: Option<&Sink>,
) -> anyhow::Result<(usize, Vec<UserStep>, Vec<DrainStep>)> {
    if rekey.users.len() < args.clients {
        anyhow::bail!("--users must be at least the number of clients, so no two share a user");
    }
    let first = rekey.users.first().context("no users were seeded")?;
    let first_id = UserId::parse(first.user_id.clone()).map_err(core_error)?;
    let first_tenant = rekey
        .rekey
        .user_by_id(&first_id)
        .await
        .map_err(core_error)?
        .tenant_id;
    let run = Run {
        args,
        growth,
        server,
        settings,
        rekey,
        db,
        first,
        first_id,
        first_tenant,
    };
    let tenant_ids = db.tenants().await?;
    let users = run.user_steps(&tenant_ids).await?;
    let drain = match sink {
        Some(sink) => run.drain_steps(sink).await?,
        None => Vec::new(),
    };
    Ok((tenant_ids.len(), users, drain))
}

impl Run<'_> {
    /// Grows the users step by step, measuring (b) after each.
    async fn user_steps(&self, tenant_ids: &[String]) -> anyhow::Result<Vec<UserStep>> {
        let (args, rekey, db) = (self.args, self.rekey, self.db);
        let client = crate::load::client()?;
        // The template: a user added by the flow that no phase touches, so its rows stay as
        // `add_user` wrote them.
        let template = rekey
            .rekey
            .add_user(
                "bench",
                &self.first_tenant,
                NewUser {
                    email: EmailAddress::parse("template@growth.example").map_err(core_error)?,
                    username: None,
                    phone: None,
                    first_name: "Bench".to_owned(),
                    last_name: "Template".to_owned(),
                    display_name: None,
                    preferred_language: None,
                    password: None,
                },
            )
            .await
            .map_err(core_error)?;
        let template = Template {
            tenant: template.tenant_id.as_str().to_owned(),
            id: template.id.as_str().to_owned(),
        };
        let plans = phases::partition(&rekey.users, args.clients, |user| {
            phases::reset_request(rekey, user)
        })?;
        let smoke = phases::reset_request(rekey, self.first)?;
        let (status, _) = smoke.send(&client).await.context("growth smoke check")?;
        if !status.is_success() {
            anyhow::bail!("growth smoke check: PasswordReset answered {status}");
        }

        // Filler ids: decimal like the product's (milliseconds << 22 | random), from a
        // millisecond two days back, so they cannot meet an id the product draws now.
        let base = (SystemClock.now().timestamp_millis() - 2 * 86_400_000) << 22;
        let mut next_filler = 0u64;
        let mut steps = Vec::new();
        for &target in &self.growth.steps {
            let have = db.count("SELECT COUNT(*) FROM users").await?;
            let add = target.saturating_sub(have);
            eprintln!("rekey-bench:   growth: {have} users, adding {add} …");
            let started = Instant::now();
            let chunks = fillers(next_filler, add, tenant_ids);
            next_filler += add;
            let (db2, template2) = (db.clone(), template.clone());
            on(self.server, async move {
                for (tenant, first, last) in chunks {
                    db2.add_users(&template2, &tenant, base, first, last)
                        .await?;
                }
                db2.settle().await
            })
            .await?;
            let seed_seconds = started.elapsed().as_secs_f64();
            let users = db.check_users().await?;
            if add > 0 {
                // The newest filler reads back through the product as a new user would.
                let id = UserId::parse((base + i64::try_from(next_filler - 1)?).to_string())
                    .map_err(core_error)?;
                let filler = rekey.rekey.user_by_id(&id).await.map_err(core_error)?;
                if filler.sequence != 1 || filler.state.as_str() != "initial" {
                    anyhow::bail!(
                        "a filler user reads back as {:?}/{}",
                        filler.state,
                        filler.sequence
                    );
                }
            }
            eprintln!(
                "rekey-bench:   growth: {users} users (added in {seed_seconds:.1} s); measuring \
                 (b) …"
            );
            phases::quiet(args).await;
            let phase = phases::closed_phase(
                "(b) PasswordReset returnCode",
                &client,
                plans.clone(),
                Duration::from_millis(args.warmup_ms),
                Duration::from_secs(args.seconds),
            )
            .await?;
            steps.push(UserStep {
                users,
                added: add,
                seed_seconds,
                phase,
            });
        }
        Ok(steps)
    }

    /// Fills the outbox step by step, timing the worker's first deliveries after each.
    async fn drain_steps(&self, sink: &Sink) -> anyhow::Result<Vec<DrainStep>> {
        let (rekey, db) = (self.rekey, self.db);
        const PENDING: &str = "SELECT COUNT(*) FROM outbox WHERE state = 'pending'";
        let token = SecretString::from(self.first.admin_token.to_string());
        let caller = Caller {
            principal: Some(rekey.rekey.authenticate(&token).await.map_err(core_error)?),
            ip: Some("127.0.0.1".to_owned()),
            request_id: None,
        };
        let mut delivered_so_far = sink.delivered(0);
        let mut steps = Vec::new();
        for &target in &self.growth.pending {
            // A message queued by the flow, copied as the bulk of the pending ones.
            let issued = rekey
                .rekey
                .request_password_reset(
                    &caller,
                    &self.first_id,
                    Delivery::Send {
                        channel: Channel::Email,
                        url_template: None,
                    },
                )
                .await
                .map_err(core_error)?;
            let message = Template {
                tenant: self.first_tenant.as_str().to_owned(),
                id: issued
                    .message_id
                    .context("the reset queued no message")?
                    .as_str()
                    .to_owned(),
            };
            let have = db.count(PENDING).await?;
            let add = target.saturating_sub(have);
            eprintln!("rekey-bench:   growth: {have} messages pending, adding {add} …");
            let started = Instant::now();
            let (db2, deps) = (db.clone(), rekey.deps.clone());
            on(self.server, async move {
                db2.add_messages(&deps, &message, add).await?;
                db2.settle().await
            })
            .await?;
            let queue_seconds = started.elapsed().as_secs_f64();
            let pending = db.count(PENDING).await?;
            let n = self
                .growth
                .drain
                .min(usize::try_from(pending).unwrap_or(usize::MAX));
            eprintln!(
                "rekey-bench:   growth: {pending} pending (added in {queue_seconds:.1} s); timing \
                 {n} deliveries …"
            );
            phases::quiet(self.args).await;
            let (s, deps) = (self.settings.clone(), rekey.deps.clone());
            let sink_dir = sink.dir().to_path_buf();
            let (rate, peak, after) = on(self.server, async move {
                drain_first(&s, &deps, &sink_dir, delivered_so_far, n).await
            })
            .await?;
            delivered_so_far = after;
            steps.push(DrainStep {
                pending,
                queue_seconds,
                delivered: n,
                rate,
                peak_rss_mib: peak,
            });
        }
        Ok(steps)
    }
}

/// `count` fillers numbered from `first`, split evenly over the tenants and in chunks:
/// (tenant, first number, last number).
fn fillers(first: u64, count: u64, tenants: &[String]) -> Vec<(String, u64, u64)> {
    let mut chunks = Vec::new();
    let k = tenants.len().max(1) as u64;
    let mut next = first;
    for (t, tenant) in tenants.iter().enumerate() {
        let share = count / k + u64::from((t as u64) < count % k);
        let mut left = share;
        while left > 0 {
            let n = left.min(USER_CHUNK);
            chunks.push((tenant.clone(), next, next + n - 1));
            next += n;
            left -= n;
        }
    }
    chunks
}

/// Starts the worker `serve` builds, times until `n` more messages reached the sink (counted
/// from `before`), stops it; returns messages/s, the peak resident memory meanwhile, and how
/// many messages the sink holds once the worker has stopped.
async fn drain_first(
    settings: &Settings,
    deps: &rekey_core::flows::Deps,
    sink_dir: &Path,
    before: usize,
    n: usize,
) -> anyhow::Result<(f64, Option<f64>, usize)> {
    let (worker, mailer) = app::outbox_worker(settings, deps)?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    crate::rss::reset();
    let started = Instant::now();
    let run = tokio::spawn(worker.run(async move {
        let _ = stopped.await;
    }));
    let last = sink_dir.join(format!("{}.eml", before + n));
    let deadline = started + Duration::from_secs(600);
    while !last.exists() {
        if Instant::now() > deadline {
            let _ = stop.send(());
            anyhow::bail!("the outbox did not deliver {n} messages in 10 minutes");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let elapsed = started.elapsed();
    let peak = crate::rss::peak_mib();
    let _ = stop.send(());
    run.await.context("worker task")?;
    if let Some(mailer) = mailer {
        mailer.close().await;
    }
    Ok((
        n as f64 / elapsed.as_secs_f64(),
        peak,
        count_files(sink_dir, before + n),
    ))
}

/// The number of messages in the sink's directory (`1.eml`, `2.eml`, …), known to be at least
/// `at_least`.
fn count_files(dir: &Path, at_least: usize) -> usize {
    let mut n = at_least;
    while dir.join(format!("{}.eml", n + 1)).exists() {
        n += 1;
    }
    n
}

impl Sink {
    /// Messages the sink has accepted so far, known to be at least `at_least`.
    pub fn delivered(&self, at_least: usize) -> usize {
        count_files(self.dir(), at_least)
    }
}

/// A row the flow wrote, to copy: its tenant and id.
#[derive(Clone)]
struct Template {
    tenant: String,
    id: String,
}

/// A connection pool of its own for the bulk inserts.
#[derive(Clone)]
enum Bulk {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs one statement with the binds given, on whichever database.
macro_rules! on_both {
    ($self:expr, |$pool:ident| $body:expr) => {
        match $self {
            Bulk::Sqlite($pool) => $body,
            Bulk::Postgres($pool) => $body,
        }
    };
}

impl Bulk {
    async fn open(url: &str) -> anyhow::Result<Self> {
        if let Some(path) = url.strip_prefix("sqlite://") {
            // As the store's writer: WAL, synchronous=NORMAL; a long busy timeout, since the
            // store's own writer may hold the lock for a moment.
            let options = SqliteConnectOptions::new()
                .filename(path)
                .busy_timeout(Duration::from_secs(60))
                .foreign_keys(true)
                .synchronous(SqliteSynchronous::Normal)
                .journal_mode(SqliteJournalMode::Wal)
                // Bulk statements are slow by design: no slow-statement warnings.
                .disable_statement_logging();
            let pool = SqlitePoolOptions::new()
                .max_connections(1)
                .connect_with(options)
                .await
                .context("opening the SQLite database for the bulk inserts")?;
            Ok(Self::Sqlite(pool))
        } else {
            let options = url
                .parse::<PgConnectOptions>()
                .context("the PostgreSQL URL")?
                .disable_statement_logging();
            let pool = PgPoolOptions::new()
                .max_connections(2)
                .connect_with(options)
                .await
                .context("opening the PostgreSQL database for the bulk inserts")?;
            Ok(Self::Postgres(pool))
        }
    }

    async fn close(&self) {
        on_both!(self, |pool| pool.close().await)
    }

    async fn count(&self, sql: &str) -> anyhow::Result<u64> {
        let n: i64 = on_both!(self, |pool| sqlx::query_scalar(sql).fetch_one(pool).await)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// The number of users, after checking that every user has its index rows and its
    /// creation event.
    async fn check_users(&self) -> anyhow::Result<u64> {
        let users = self.count("SELECT COUNT(*) FROM users").await?;
        for (what, sql) in [
            ("user_index", "SELECT COUNT(*) FROM user_index"),
            ("email_index", "SELECT COUNT(*) FROM email_index"),
            (
                "user.added events",
                "SELECT COUNT(*) FROM events WHERE kind = 'user.added'",
            ),
        ] {
            let n = self.count(sql).await?;
            if n != users {
                anyhow::bail!("after the bulk load: {users} users but {n} {what} rows");
            }
        }
        Ok(users)
    }

    async fn tenants(&self) -> anyhow::Result<Vec<String>> {
        const SQL: &str = "SELECT id FROM tenants ORDER BY id";
        Ok(on_both!(self, |pool| sqlx::query_scalar(SQL)
            .fetch_all(pool)
            .await)?)
    }

    /// The table's columns in order, from the database itself.
    async fn columns(&self, table: &str) -> anyhow::Result<Vec<String>> {
        let columns: Vec<String> = match self {
            Self::Sqlite(pool) => {
                sqlx::query_scalar("SELECT name FROM pragma_table_info($1) ORDER BY cid")
                    .bind(table)
                    .fetch_all(pool)
                    .await?
            }
            Self::Postgres(pool) => {
                sqlx::query_scalar(
                    "SELECT column_name::text FROM information_schema.columns \
                     WHERE table_schema = current_schema() AND table_name = $1 \
                     ORDER BY ordinal_position",
                )
                .bind(table)
                .fetch_all(pool)
                .await?
            }
        };
        if columns.is_empty() {
            anyhow::bail!("table {table} has no columns (is the schema there?)");
        }
        Ok(columns)
    }

    /// `INSERT INTO table (every column) SELECT …` copying the template row `t` except where
    /// `overrides` say otherwise.
    async fn copy_sql(
        &self,
        with: &str,
        table: &str,
        from: &str,
        template: &str,
        overrides: &[(&str, &str)],
    ) -> anyhow::Result<String> {
        let columns = self.columns(table).await?;
        let values = columns
            .iter()
            .map(|c| {
                overrides
                    .iter()
                    .find(|(name, _)| name == c)
                    .map_or_else(|| format!("t.{c}"), |(_, expr)| (*expr).to_owned())
            })
            .collect::<Vec<_>>();
        Ok(format!(
            "{with} INSERT INTO {table} ({}) SELECT {} FROM {from} \
             CROSS JOIN (SELECT * FROM {table} WHERE {template}) t",
            columns.join(", "),
            values.join(", ")
        ))
    }

    /// Fillers `first..=last` in `tenant`, copies of the template user's rows, in one
    /// transaction. Binds: $1 first, $2 last, $3 tenant, $4 template tenant, $5 template id,
    /// $6 id base.
    async fn add_users(
        &self,
        template: &Template,
        tenant: &str,
        base: i64,
        first: u64,
        last: u64,
    ) -> anyhow::Result<()> {
        let numbers = match self {
            Self::Sqlite(_) => {
                "WITH RECURSIVE n(i) AS (SELECT $1 UNION ALL SELECT i + 1 FROM n WHERE i < $2)"
            }
            Self::Postgres(_) => "WITH n(i) AS (SELECT generate_series($1::bigint, $2::bigint))",
        };
        let (id, email) = match self {
            Self::Sqlite(_) => (
                "CAST($6 + n.i AS TEXT)",
                "'filler' || n.i || '@growth.example'",
            ),
            Self::Postgres(_) => (
                "CAST($6::bigint + n.i AS TEXT)",
                "'filler' || n.i || '@growth.example'",
            ),
        };
        let last_name = "'Filler ' || n.i";
        let display_name = "'Bench Filler ' || n.i";
        let statements = [
            self.copy_sql(
                numbers,
                "user_index",
                "n",
                "user_id = $5 AND tenant_id = $4",
                &[("user_id", id), ("tenant_id", "$3")],
            )
            .await?,
            self.copy_sql(
                numbers,
                "users",
                "n",
                "tenant_id = $4 AND id = $5",
                &[
                    ("tenant_id", "$3"),
                    ("id", id),
                    ("username", email),
                    ("username_lower", email),
                    ("email", email),
                    ("email_lower", email),
                    ("last_name", last_name),
                    ("display_name", display_name),
                ],
            )
            .await?,
            self.copy_sql(
                numbers,
                "email_index",
                "n",
                "tenant_id = $4 AND user_id = $5",
                &[("email_lower", email), ("tenant_id", "$3"), ("user_id", id)],
            )
            .await?,
            self.copy_sql(
                numbers,
                "events",
                "n",
                "tenant_id = $4 AND aggregate_id = $5 AND sequence = 1",
                &[("tenant_id", "$3"), ("aggregate_id", id)],
            )
            .await?,
        ];
        let (first, last) = (i64::try_from(first)?, i64::try_from(last)?);
        macro_rules! run {
            ($pool:expr) => {{
                let mut tx = $pool.begin().await?;
                for sql in &statements {
                    sqlx::query(sql)
                        .bind(first)
                        .bind(last)
                        .bind(tenant)
                        .bind(&template.tenant)
                        .bind(&template.id)
                        .bind(base)
                        .execute(&mut *tx)
                        .await
                        .with_context(|| format!("bulk insert: {sql}"))?;
                }
                tx.commit().await?;
            }};
        }
        match self {
            Self::Sqlite(pool) => run!(pool),
            Self::Postgres(pool) => run!(pool),
        }
        Ok(())
    }

    /// `count` copies of the queued message `template` (a new id and idempotency key each, the
    /// body sealed again for the new id), in batches.
    async fn add_messages(
        &self,
        deps: &rekey_core::flows::Deps,
        template: &Template,
        count: u64,
    ) -> anyhow::Result<()> {
        if count == 0 {
            return Ok(());
        }
        const ROW: &str = "SELECT key_id, body FROM outbox WHERE tenant_id = $1 AND id = $2";
        let (key_id, body): (String, Vec<u8>) = on_both!(self, |pool| sqlx::query_as(ROW)
            .bind(&template.tenant)
            .bind(&template.id)
            .fetch_one(pool)
            .await)?;
        // The payload holds the code: kept in memory only, never printed.
        let plain = deps
            .sealer
            .open(&key_id, template.id.as_bytes(), &body)
            .map_err(|e| anyhow::anyhow!("opening the template message: {e}"))?;
        let base = (SystemClock.now().timestamp_millis() - 2 * 86_400_000) << 22;
        let columns = self.columns("outbox").await?;
        let mut done = 0u64;
        while done < count {
            let in_tx = (count - done).min(MESSAGE_TRANSACTION as u64);
            let mut rows = Vec::with_capacity(in_tx as usize);
            for k in done..done + in_tx {
                let id = (base + i64::try_from(k)?).to_string();
                let (kid, sealed) = deps
                    .sealer
                    .seal(deps.rng.as_ref(), id.as_bytes(), &plain)
                    .map_err(|e| anyhow::anyhow!("sealing a copy: {e}"))?;
                rows.push((format!("growth-{id}"), id, kid, sealed));
            }
            self.insert_messages(&columns, template, &rows).await?;
            done += in_tx;
        }
        Ok(())
    }

    /// One transaction of message copies: rows of (idempotency key, id, key id, body).
    async fn insert_messages(
        &self,
        columns: &[String],
        template: &Template,
        rows: &[(String, String, String, Vec<u8>)],
    ) -> anyhow::Result<()> {
        let overrides = [
            ("id", "v.id"),
            ("idempotency_key", "v.ikey"),
            ("key_id", "v.kid"),
            ("body", "v.body"),
        ];
        let values = columns
            .iter()
            .map(|c| {
                overrides
                    .iter()
                    .find(|(name, _)| name == c)
                    .map_or_else(|| format!("t.{c}"), |(_, expr)| (*expr).to_owned())
            })
            .collect::<Vec<_>>()
            .join(", ");
        let sql_for = |n: usize| {
            let tuples = (0..n)
                .map(|r| {
                    let p = 3 + r * 4;
                    format!("(${}, ${}, ${}, ${})", p, p + 1, p + 2, p + 3)
                })
                .collect::<Vec<_>>()
                .join(", ");
            format!(
                "WITH v(ikey, id, kid, body) AS (VALUES {tuples}) \
                 INSERT INTO outbox ({}) SELECT {values} FROM v CROSS JOIN \
                 (SELECT * FROM outbox WHERE tenant_id = $1 AND id = $2) t",
                columns.join(", ")
            )
        };
        macro_rules! run {
            ($pool:expr) => {{
                let mut tx = $pool.begin().await?;
                for batch in rows.chunks(MESSAGE_BATCH) {
                    let sql = sql_for(batch.len());
                    let mut query = sqlx::query(&sql).bind(&template.tenant).bind(&template.id);
                    for (ikey, id, kid, body) in batch {
                        query = query.bind(ikey).bind(id).bind(kid).bind(body);
                    }
                    query
                        .execute(&mut *tx)
                        .await
                        .context("bulk insert of pending messages")?;
                }
                tx.commit().await?;
            }};
        }
        match self {
            Self::Sqlite(pool) => run!(pool),
            Self::Postgres(pool) => run!(pool),
        }
        Ok(())
    }

    /// After a bulk load, what the database would soon do on its own, so it does not happen
    /// inside a measured window: SQLite folds the WAL into the database file; PostgreSQL
    /// refreshes the planner's statistics (autovacuum's analyze) and writes the dirty pages
    /// (a checkpoint).
    async fn settle(&self) -> anyhow::Result<()> {
        match self {
            Self::Sqlite(pool) => {
                sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                    .execute(pool)
                    .await?;
            }
            Self::Postgres(pool) => {
                sqlx::query("ANALYZE users, user_index, email_index, events, outbox")
                    .execute(pool)
                    .await?;
                // Needs a superuser (or pg_checkpoint); without it the checkpointer writes the
                // pages on its own schedule.
                if let Err(err) = sqlx::query("CHECKPOINT").execute(pool).await {
                    eprintln!("rekey-bench: CHECKPOINT after the bulk load failed: {err}");
                }
            }
        }
        Ok(())
    }
}

/// The step's value relative to the first step's.
fn relative(value: f64, first: f64) -> f64 {
    if first > 0.0 {
        value / first
    } else {
        0.0
    }
}

fn percent(r: f64) -> String {
    format!("{:.0} %", r * 100.0)
}

fn verdict(pass: bool) -> &'static str {
    if pass {
        "PASS"
    } else {
        "MISS"
    }
}

/// The rows of one database's growth table: step, size, seeding time, rate, p50, p99, peak
/// RSS, rate and p99 relative to the first step, result.
fn rows(r: &GrowthReport) -> Vec<[String; 10]> {
    let mut rows = Vec::new();
    let first = r.users.first();
    for (i, step) in r.users.iter().enumerate() {
        let p = &step.phase;
        let p99 = p.tally.percentile(99.0).map(|d| d.as_secs_f64());
        let (rate, tail) = match first {
            Some(f) => (
                relative(p.rate(), f.phase.rate()),
                relative(
                    p99.unwrap_or(f64::INFINITY),
                    f.phase
                        .tally
                        .percentile(99.0)
                        .map_or(0.0, |d| d.as_secs_f64()),
                ),
            ),
            None => (0.0, 0.0),
        };
        let result = if i == 0 {
            "first".to_owned()
        } else {
            verdict(rate >= RATE_TARGET && tail <= P99_TARGET && p.tally.errors == 0).to_owned()
        };
        rows.push([
            format!("users {}", i + 1),
            format!("{} users (+{})", step.users, step.added),
            format!("{:.1} s", step.seed_seconds),
            format!("{:.1}", p.rate()),
            ms(p.tally.percentile(50.0)),
            ms(p.tally.percentile(99.0)),
            report::mib(p.peak_rss_mib),
            percent(rate),
            percent(tail),
            if p.tally.errors > 0 {
                format!("{result} ({} errors)", p.tally.errors)
            } else {
                result
            },
        ]);
    }
    let first = r.drain.first();
    for (i, step) in r.drain.iter().enumerate() {
        let rate = first.map_or(0.0, |f| relative(step.rate, f.rate));
        rows.push([
            format!("drain {}", i + 1),
            format!("{} pending, {} timed", step.pending, step.delivered),
            format!("{:.1} s", step.queue_seconds),
            format!("{:.1} msg/s", step.rate),
            "–".to_owned(),
            "–".to_owned(),
            report::mib(step.peak_rss_mib),
            percent(rate),
            "–".to_owned(),
            if i == 0 {
                "first".to_owned()
            } else {
                verdict(rate >= DRAIN_TARGET).to_owned()
            },
        ]);
    }
    rows
}

fn ms(d: Option<Duration>) -> String {
    d.map_or_else(
        || "–".to_owned(),
        |d| format!("{:.2} ms", d.as_secs_f64() * 1e3),
    )
}

const HEADINGS: [&str; 10] = [
    "step",
    "size",
    "seeded in",
    "ok/s",
    "p50",
    "p99",
    "peak RSS MiB",
    "ok/s vs first",
    "p99 vs first",
    "result",
];

fn about(r: &GrowthReport, clients: usize, drain: usize) -> String {
    format!(
        "{}: {} tenants; (b) PasswordReset returnCode over REST, {clients} clients on the same {} \
         measured users at every step; fillers bulk-inserted as copies of a user added by the \
         flow, then settled (SQLite: WAL checkpoint; PostgreSQL: ANALYZE, CHECKPOINT); drain: \
         the first {drain} deliveries to the SMTP sink timed at each step, pending messages \
         bulk-copied from one the flow queued. Targets: ok/s ≥ 80 % and p99 ≤ 120 % of the \
         first step's; drain rate ≥ 80 % of the first step's",
        r.database, r.tenants, r.measured_users
    ) + if r.after_hashing {
        "; peak RSS: after the (c) phases' hashing in this process, whose memory the allocator \
         keeps (run --growth with --skip-core --skip-mail for the growth run's own)"
    } else {
        ""
    }
}

pub fn text(reports: &[GrowthReport], clients: usize, drain: usize) -> String {
    let mut out = String::new();
    for r in reports {
        out.push_str(&format!("\n== growth: {} ==\n", r.database));
        out.push_str(&about(r, clients, drain));
        out.push('\n');
        let line = |cells: &[String]| {
            format!(
                "{:<9} {:>26} {:>10} {:>14} {:>9} {:>9} {:>12} {:>13} {:>12}  {}\n",
                cells[0],
                cells[1],
                cells[2],
                cells[3],
                cells[4],
                cells[5],
                cells[6],
                cells[7],
                cells[8],
                cells[9]
            )
        };
        out.push_str(&line(&HEADINGS.map(str::to_owned)));
        for row in rows(r) {
            out.push_str(&line(&row));
        }
    }
    out
}

pub fn markdown(reports: &[GrowthReport], clients: usize, drain: usize) -> String {
    let mut out = String::new();
    for r in reports {
        out.push_str(&format!("\n#### Growth: {}\n\n", r.database));
        out.push_str(&about(r, clients, drain));
        out.push_str(".\n\n");
        out.push_str(&format!("| {} |\n", HEADINGS.join(" | ")));
        out.push_str("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n");
        for row in rows(r) {
            out.push_str(&format!("| {} |\n", row.join(" | ")));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(users: u64, ok: u64) -> UserStep {
        let mut tally = crate::load::Tally::default();
        tally.ok = ok;
        let window = crate::load::Window::after(Duration::ZERO, Duration::from_secs(1));
        UserStep {
            users,
            added: users,
            seed_seconds: 1.0,
            phase: Phase::new("(b)", 1, tally, window, report::Resources::default()),
        }
    }

    fn drain(pending: u64, rate: f64) -> DrainStep {
        DrainStep {
            pending,
            queue_seconds: 0.5,
            delivered: 1000,
            rate,
            peak_rss_mib: Some(30.0),
        }
    }

    #[test]
    fn later_steps_are_judged_against_the_first() {
        let report = GrowthReport {
            database: "SQLite".to_owned(),
            tenants: 10,
            measured_users: 200,
            users: vec![step(1000, 1000), step(100_000, 850), step(1_000_000, 700)],
            drain: vec![drain(1000, 500.0), drain(100_000, 390.0)],
            after_hashing: false,
        };
        let rows = rows(&report);
        let results: Vec<&str> = rows.iter().map(|r| r[9].as_str()).collect();
        assert_eq!(results, ["first", "PASS", "MISS", "first", "MISS"]);
        assert_eq!(rows[1][7], "85 %");
        assert_eq!(rows[4][7], "78 %");
        assert_eq!(rows[4][1], "100000 pending, 1000 timed");
        let text = text(&[report], 32, 1000);
        assert!(text.contains("== growth: SQLite =="), "{text}");
        assert!(!text.contains("after the (c) phases"), "{text}");
    }

    #[test]
    fn fillers_are_spread_over_the_tenants_in_chunks() {
        let tenants: Vec<String> = (0..3).map(|t| t.to_string()).collect();
        let chunks = fillers(10, 250_001, &tenants);
        let total: u64 = chunks.iter().map(|(_, a, b)| b - a + 1).sum();
        assert_eq!(total, 250_001);
        assert_eq!(chunks.first().map(|c| c.1), Some(10));
        assert!(chunks.iter().all(|(_, a, b)| b - a < USER_CHUNK));
        // Numbers are contiguous and never reused.
        for pair in chunks.windows(2) {
            assert_eq!(pair[1].1, pair[0].2 + 1);
        }
        for t in &tenants {
            let share: u64 = chunks
                .iter()
                .filter(|c| &c.0 == t)
                .map(|(_, a, b)| b - a + 1)
                .sum();
            assert!((83_333..=83_334).contains(&share), "{share}");
        }
        assert!(fillers(0, 0, &tenants).is_empty());
    }
}
