//! The command line (SPEC §11). Every command applies pending migrations first; logs go to
//! stderr, results to stdout (the id alone, or one JSON object with `--json`).
//!
//! This module holds the clap types and the dispatch; each noun's commands are functions in its
//! own file.

mod backup;
mod events;
mod keys;
mod outbox;
mod tenant;
mod token;
mod user;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::anyhow;
use clap::{Args, Parser, Subcommand, ValueEnum};
use serde_json::Value;

use crate::app;
use crate::config::{LogFormat, Settings};
use crate::logging;

#[derive(Debug, Parser)]
#[command(
    name = "rekey",
    version,
    about = "Self-hosted password reset and account recovery"
)]
struct Cli {
    /// TOML configuration file (environment `REKEY_…` overrides it).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Print results as one JSON object.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server.
    Serve,
    /// Manage tenants.
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// Manage users.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage API tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Inspect the outbox.
    #[command(subcommand)]
    Outbox(OutboxCommand),
    /// Show or rotate the code-MAC and outbox key rings.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// Show the audit trail.
    Events {
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long)]
        user: Option<String>,
        /// RFC 3339 time, e.g. 2026-01-01T00:00:00Z.
        #[arg(long)]
        since: Option<String>,
    },
    /// Copy the SQLite database, consistently, while the server runs (FILE must not exist).
    Backup { file: PathBuf },
}

#[derive(Debug, Subcommand)]
enum TenantCommand {
    /// Create a tenant; prints its id.
    Add {
        #[arg(long)]
        name: String,
        #[arg(long)]
        cname: String,
    },
    /// Change settings: KEY=VALUE… (an empty value resets a key to the instance default).
    Set {
        tenant: String,
        #[arg(required = true)]
        assignments: Vec<String>,
    },
    /// Show a tenant and its settings.
    Show { tenant: String },
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Create a user; prints its id. Without a password the user is `initial`.
    Add(AddUser),
    /// Change a user's state.
    SetState { user: String, state: StateArg },
}

#[derive(Debug, Args)]
struct AddUser {
    #[arg(long)]
    tenant: String,
    #[arg(long)]
    email: String,
    #[arg(long)]
    username: Option<String>,
    #[arg(long)]
    phone: Option<String>,
    #[arg(long)]
    first_name: Option<String>,
    #[arg(long)]
    last_name: Option<String>,
    #[arg(long)]
    language: Option<String>,
    #[arg(long)]
    password: Option<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum StateArg {
    Active,
    Inactive,
    Locked,
    Deleted,
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Create a token; it is printed once.
    Create {
        #[arg(long)]
        role: RoleArg,
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long)]
        user: Option<String>,
        /// Lifetime, e.g. 90d, 12h, 30m, 1h30m (units w, d, h, m, s); default: no expiry.
        #[arg(long, value_name = "DURATION")]
        expires_in: Option<String>,
    },
    /// List tokens: ids, roles, creation, last use, expiry (never the token).
    List {
        /// Only this tenant's tokens (id or cname).
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Revoke a token by its id.
    Revoke { id: String },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum RoleArg {
    System,
    TenantAdmin,
    User,
}

#[derive(Debug, Subcommand)]
enum OutboxCommand {
    /// List messages (newest state first), optionally only failed ones.
    List {
        #[arg(long)]
        failed: bool,
    },
    /// Put a failed message back in the queue (attempts start again).
    Retry { id: String },
}

const CLI_ACTOR: &str = "cli";

pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => return usage_error(&err),
    };
    // Logging starts before the settings load, so that even a refused configuration is
    // reported in the configured format (every stderr line JSON under `REKEY_LOG_FORMAT=json`).
    let format = logging::early_format(cli.config.as_deref());
    logging::init(format);
    let settings = match Settings::load(cli.config.as_deref()) {
        Ok(settings) => settings,
        Err(err) => {
            logging::failure(format, &format!("{err:#}"));
            return ExitCode::from(2);
        }
    };
    let format = settings.log_format;
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            logging::failure(format, &format!("cannot start the runtime: {err}"));
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(cli, settings));
    // A handler whose connection was cut at the shutdown timeout may still be running (an
    // HTTP/2 stream's own task, a blocking hash): it must not hold the exit.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            logging::failure(format, &format!("{err:#}"));
            ExitCode::FAILURE
        }
    }
}

/// A command line clap refuses: its usage message as clap prints it, or — under
/// `REKEY_LOG_FORMAT=json` — one JSON error line. Help and version go to stdout as usual.
fn usage_error(err: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    // Help on a missing subcommand goes to stderr with exit 2: in JSON, an error line.
    let is_output = matches!(
        err.kind(),
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
    );
    let format = logging::early_format(None);
    if is_output || format == LogFormat::Text {
        let _ = err.print();
    } else {
        logging::init(format);
        logging::failure(format, &err.render());
    }
    ExitCode::from(u8::try_from(err.exit_code()).unwrap_or(2))
}

fn core_err(err: rekey_core::Error) -> anyhow::Error {
    anyhow!("{}", err.message())
}

async fn run(cli: Cli, settings: Settings) -> anyhow::Result<()> {
    let command = match cli.command {
        Command::Serve => return app::serve(settings).await,
        // The key rings are files or configuration: no database needed.
        Command::Keys(command) => return keys::run(&settings, &Output { json: cli.json }, command),
        // A copy of the database as it is: no migration, no flows.
        Command::Backup { file } => {
            return backup::run(&settings, &Output { json: cli.json }, &file).await
        }
        command => command,
    };
    let rekey = app::build(&settings).await?;
    let rekey = &rekey;
    let out = &Output { json: cli.json };
    match command {
        Command::Serve | Command::Keys(_) | Command::Backup { .. } => Ok(()),
        Command::Tenant(TenantCommand::Add { name, cname }) => {
            tenant::add(rekey, out, &name, &cname).await
        }
        Command::Tenant(TenantCommand::Set {
            tenant,
            assignments,
        }) => tenant::set(rekey, out, &tenant, &assignments).await,
        Command::Tenant(TenantCommand::Show { tenant }) => tenant::show(rekey, &tenant).await,
        Command::User(UserCommand::Add(args)) => user::add(rekey, out, args).await,
        Command::User(UserCommand::SetState { user, state }) => {
            user::set_state(rekey, out, user, state).await
        }
        Command::Token(TokenCommand::Create {
            role,
            tenant,
            user,
            expires_in,
        }) => token::create(rekey, out, role, tenant, user, expires_in).await,
        Command::Token(TokenCommand::List { tenant }) => token::list(rekey, out, tenant).await,
        Command::Token(TokenCommand::Revoke { id }) => token::revoke(rekey, out, &id).await,
        Command::Outbox(OutboxCommand::List { failed }) => outbox::list(rekey, out, failed).await,
        Command::Outbox(OutboxCommand::Retry { id }) => outbox::retry(rekey, out, &id).await,
        Command::Events {
            tenant,
            user,
            since,
        } => events::show(rekey, out, tenant, user, since).await,
    }
}

struct Output {
    json: bool,
}

impl Output {
    fn print(&self, plain: &str, value: Value) {
        if self.json {
            println!("{value}");
        } else {
            println!("{plain}");
        }
    }
}
