//! The two servers under load: the real Rekey router, and the ceiling — a bare axum handler
//! doing one INSERT per request into the same database, through a pool built like the store's.
//! Both are served exactly as production serves (`rekey_api::serve::serve`: HTTP/1.1 and h2c
//! on one port, with connect info).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use rand::Rng;
use rekey::app;
use rekey::config::Settings;
use rekey_api::AppState;
use rekey_core::domain::Role;
use rekey_core::domain::{Cname, EmailAddress};
use rekey_core::flows::{Deps, NewUser, Rekey};
use rekey_core::ports::{Clock, SystemClock};
use secrecy::ExposeSecret;
use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, SqlitePool};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A server running on the current runtime until [`Running::stop`].
pub struct Running {
    pub addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Running {
    /// Binds 127.0.0.1:0 and serves `router` as `app::serve` does (plain, HTTP/1.1 + h2c). Call
    /// on the server runtime.
    pub async fn start(router: Router) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding 127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(rekey_api::serve::serve(
            listener,
            router,
            None,
            rekey_api::serve::ServeOptions::default(),
            async {
                let _ = stopped.await;
            },
        ));
        Ok(Self { addr, stop, task })
    }

    /// Stops accepting, lets open connections finish (bounded), and waits for the server.
    pub async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(());
        let mut task = self.task;
        match tokio::time::timeout(Duration::from_secs(10), &mut task).await {
            Ok(joined) => joined
                .context("server task failed")?
                .context("server failed"),
            Err(_) => {
                task.abort();
                Ok(())
            }
        }
    }

    pub fn url(&self, path: &str) -> anyhow::Result<reqwest::Url> {
        reqwest::Url::parse(&format!("http://{}{path}", self.addr)).context("building a URL")
    }
}

/// One seeded user and the tenant-admin token that may act on it.
#[derive(Clone)]
pub struct Seeded {
    pub user_id: String,
    pub admin_token: Arc<str>,
}

/// The real Rekey, built by `app::build` from settings as `rekey serve` builds it.
pub struct RekeyServer {
    pub running: Running,
    pub users: Vec<Seeded>,
    pub hash_threads: usize,
    pub rekey: Arc<Rekey>,
    /// The parts the flows run on, for the outbox worker and the drain's bookkeeping.
    pub deps: Deps,
}

/// Builds Rekey, seeds `tenants` tenants with `users` users in all (no password yet, so the
/// seeding does no hashing) and one tenant-admin token per tenant, and starts serving.
pub async fn start_rekey(
    settings: Settings,
    tenants: usize,
    users: usize,
) -> anyhow::Result<RekeyServer> {
    let deps = app::deps(&settings).await?;
    let rekey = Arc::new(Rekey::new(deps.clone(), settings.core_config()));
    let core = |e: rekey_core::Error| anyhow::anyhow!("{e}");
    let mut seeded = Vec::with_capacity(users);
    let tenants = tenants.max(1);
    let mut admins = Vec::new();
    for t in 0..tenants {
        let cname = Cname::parse(&format!("bench-{t}.example")).map_err(core)?;
        let tenant = rekey
            .add_tenant("bench", &format!("Bench tenant {t}"), cname)
            .await
            .map_err(core)?;
        let token = rekey
            .create_token(Role::TenantAdmin(tenant.id.clone()))
            .await
            .map_err(core)?;
        admins.push((tenant.id, Arc::<str>::from(token.secret.expose_secret())));
    }
    for i in 0..users {
        // Users alternate between tenants, so neighbouring workers act in different tenants.
        let (tenant, token) = admins
            .get(i % tenants)
            .context("tenant index out of range")?;
        let new = NewUser {
            email: EmailAddress::parse(&format!("user{i}@bench-{}.example", i % tenants))
                .map_err(core)?,
            username: None,
            phone: None,
            first_name: "Bench".to_owned(),
            last_name: format!("User {i}"),
            display_name: None,
            preferred_language: None,
            password: None,
        };
        let user = rekey.add_user("bench", tenant, new).await.map_err(core)?;
        seeded.push(Seeded {
            user_id: user.id.as_str().to_owned(),
            admin_token: token.clone(),
        });
    }
    let state = AppState {
        rekey: rekey.clone(),
        settings: Arc::new(app::serve_settings(&settings)?),
    };
    let running = Running::start(rekey_api::router(state)).await?;
    Ok(RekeyServer {
        running,
        users: seeded,
        hash_threads: deps.hasher.threads(),
        rekey,
        deps,
    })
}

/// The ceiling's database handle: a pool built as the store builds its writer.
#[derive(Clone)]
pub enum CeilingDb {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

const CEILING_TABLE: &str = "CREATE TABLE IF NOT EXISTS bench_ceiling (\
    id TEXT PRIMARY KEY, at BIGINT NOT NULL, body TEXT NOT NULL)";
const CEILING_INSERT: &str = "INSERT INTO bench_ceiling (id, at, body) VALUES ($1, $2, $3)";

impl CeilingDb {
    /// The store's SQLite writer settings (`rekey-store/src/sqlite.rs`): one connection, WAL,
    /// `synchronous=NORMAL`, 5 s busy timeout, foreign keys on — same file as the store.
    pub async fn sqlite(path: &Path) -> anyhow::Result<Self> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true)
            .synchronous(SqliteSynchronous::Normal)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .connect_with(options)
            .await
            .context("opening the SQLite ceiling pool")?;
        sqlx::query(CEILING_TABLE).execute(&pool).await?;
        Ok(Self::Sqlite(pool))
    }

    /// The store's PostgreSQL pool settings (`rekey-store/src/postgres.rs`): 16 connections.
    pub async fn postgres(url: &str) -> anyhow::Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await
            .context("opening the PostgreSQL ceiling pool")?;
        sqlx::query(CEILING_TABLE).execute(&pool).await?;
        Ok(Self::Postgres(pool))
    }

    async fn insert(&self, id: String, at: i64, body: String) -> Result<(), sqlx::Error> {
        match self {
            Self::Sqlite(pool) => {
                sqlx::query(CEILING_INSERT)
                    .bind(id)
                    .bind(at)
                    .bind(body)
                    .execute(pool)
                    .await?;
            }
            Self::Postgres(pool) => {
                sqlx::query(CEILING_INSERT)
                    .bind(id)
                    .bind(at)
                    .bind(body)
                    .execute(pool)
                    .await?;
            }
        }
        Ok(())
    }

    /// One row with a fresh random id; returns the id.
    pub async fn insert_one(&self, body: String) -> Result<String, sqlx::Error> {
        let id = format!("{:032x}", rand::thread_rng().gen::<u128>());
        let at = SystemClock.now().timestamp_micros();
        self.insert(id.clone(), at, body).await?;
        Ok(id)
    }

    pub async fn rows(&self) -> anyhow::Result<i64> {
        const COUNT: &str = "SELECT COUNT(*) FROM bench_ceiling";
        Ok(match self {
            Self::Sqlite(pool) => sqlx::query_scalar(COUNT).fetch_one(pool).await?,
            Self::Postgres(pool) => sqlx::query_scalar(COUNT).fetch_one(pool).await?,
        })
    }

    /// The database and version, as the report names it.
    pub async fn describe(&self) -> anyhow::Result<String> {
        Ok(match self {
            Self::Sqlite(pool) => {
                let version: String = sqlx::query_scalar("SELECT sqlite_version()")
                    .fetch_one(pool)
                    .await?;
                format!("SQLite {version} (WAL, synchronous=NORMAL)")
            }
            Self::Postgres(pool) => {
                let version: String = sqlx::query_scalar("SHOW server_version")
                    .fetch_one(pool)
                    .await?;
                format!("PostgreSQL {version}")
            }
        })
    }

    pub async fn close(&self) {
        match self {
            Self::Sqlite(pool) => pool.close().await,
            Self::Postgres(pool) => pool.close().await,
        }
    }
}

/// The ceiling handler: take the body, INSERT one row, answer with its id. Nothing else.
async fn ceiling_insert(State(db): State<CeilingDb>, body: Bytes) -> Response {
    match db
        .insert_one(String::from_utf8_lossy(&body).into_owned())
        .await
    {
        Ok(id) => Json(serde_json::json!({ "id": id })).into_response(),
        Err(err) => (StatusCode::INTERNAL_SERVER_ERROR, err.to_string()).into_response(),
    }
}

pub async fn start_ceiling(db: CeilingDb) -> anyhow::Result<Running> {
    let router = Router::new()
        .route("/ceiling", post(ceiling_insert))
        .with_state(db);
    Running::start(router).await
}

/// A fresh PostgreSQL database for one run, dropped at the end.
pub struct PgDatabase {
    admin_url: String,
    pub name: String,
    pub url: String,
}

/// The URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut parsed) => {
            if parsed.password().is_some() {
                let _ = parsed.set_password(Some("***"));
            }
            parsed.to_string()
        }
        Err(_) => "<unparsable URL>".to_owned(),
    }
}

impl PgDatabase {
    pub async fn create(admin_url: &str) -> anyhow::Result<Self> {
        let admin = admin_pool(admin_url).await?;
        let name = format!("rekey_bench_{:016x}", rand::thread_rng().gen::<u64>());
        let created = sqlx::raw_sql(&format!("CREATE DATABASE {name}"))
            .execute(&admin)
            .await
            .with_context(|| format!("creating database {name}"));
        admin.close().await;
        created?;
        let mut url = reqwest::Url::parse(admin_url).context("invalid --postgres-url")?;
        url.set_path(&format!("/{name}"));
        Ok(Self {
            admin_url: admin_url.to_owned(),
            url: url.to_string(),
            name,
        })
    }

    pub async fn drop_database(&self) -> anyhow::Result<()> {
        let admin = admin_pool(&self.admin_url).await?;
        // FORCE ends connections a pool may still hold (PostgreSQL 13+).
        let forced = sqlx::raw_sql(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ))
        .execute(&admin)
        .await;
        let dropped = match forced {
            Ok(_) => Ok(()),
            Err(_) => sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS {}", self.name))
                .execute(&admin)
                .await
                .map(|_| ())
                .with_context(|| format!("dropping database {}", self.name)),
        };
        admin.close().await;
        dropped
    }
}

/// One connection to the maintenance database (a pool, because sqlx's executor for a bare
/// `&mut PgConnection` does not make a `Send` future here).
async fn admin_pool(admin_url: &str) -> anyhow::Result<PgPool> {
    PgPoolOptions::new()
        .max_connections(1)
        .connect(admin_url)
        .await
        .with_context(|| {
            format!(
                "PostgreSQL at {} is unreachable (start it, pass --postgres-url, or run with \
                 --skip-postgres)",
                redact(admin_url)
            )
        })
}
