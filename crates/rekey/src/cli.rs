//! The command line (SPEC §11). Every command applies pending migrations first; logs go to
//! stderr, results to stdout (the id alone, or one JSON object with `--json`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context};
use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand, ValueEnum};
use rekey_core::flows::{NewUser, Rekey};
use rekey_core::ids::UserId;
use rekey_core::model::{
    CodeAlphabet, Event, OutboxMessage, OutboxState, Role, Tenant, TenantSettings, User, UserState,
};
use rekey_core::retry::Retried;
use rekey_core::store::EventFilter;
use rekey_core::validate::{Cname, EmailAddress, PhoneNumber};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Value};

use crate::app;
use crate::config::Settings;

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
    Add {
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
    },
    /// Change a user's state.
    SetState { user: String, state: StateArg },
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
    },
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
    let cli = Cli::parse();
    let settings = match Settings::load(cli.config.as_deref()) {
        Ok(settings) => settings,
        Err(err) => {
            eprintln!("rekey: {err:#}");
            return ExitCode::from(2);
        }
    };
    init_logging(&settings.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("rekey: cannot start the runtime: {err}");
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
            eprintln!("rekey: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(format: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,hyper=warn,h2=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn core_err(err: rekey_core::Error) -> anyhow::Error {
    anyhow!("{}", err.message())
}

async fn run(cli: Cli, settings: Settings) -> anyhow::Result<()> {
    if let Command::Serve = cli.command {
        return app::serve(settings).await;
    }
    let rekey = app::build(&settings).await?;
    let out = Output { json: cli.json };
    match cli.command {
        Command::Serve => Ok(()),
        Command::Tenant(TenantCommand::Add { name, cname }) => {
            let cname = Cname::parse(&cname).map_err(core_err)?;
            let tenant = rekey
                .add_tenant(CLI_ACTOR, &name, cname)
                .await
                .map_err(core_err)?;
            out.print(tenant.id.as_str(), tenant_json(&tenant));
            Ok(())
        }
        Command::Tenant(TenantCommand::Set {
            tenant,
            assignments,
        }) => {
            let tenant = rekey.tenant_by_ref(&tenant).await.map_err(core_err)?;
            let mut settings = tenant.settings.clone();
            for assignment in &assignments {
                apply_setting(&mut settings, assignment)?;
            }
            rekey
                .set_tenant_settings(CLI_ACTOR, &tenant.id, settings)
                .await
                .map_err(core_err)?;
            let tenant = rekey
                .tenant_by_ref(tenant.id.as_str())
                .await
                .map_err(core_err)?;
            out.print(tenant.id.as_str(), tenant_json(&tenant));
            Ok(())
        }
        Command::Tenant(TenantCommand::Show { tenant }) => {
            let tenant = rekey.tenant_by_ref(&tenant).await.map_err(core_err)?;
            let value = tenant_json(&tenant);
            println!("{}", serde_json::to_string_pretty(&value)?);
            Ok(())
        }
        Command::User(UserCommand::Add {
            tenant,
            email,
            username,
            phone,
            first_name,
            last_name,
            language,
            password,
        }) => {
            let tenant = rekey.tenant_by_ref(&tenant).await.map_err(core_err)?;
            let new = NewUser {
                email: EmailAddress::parse(&email).map_err(core_err)?,
                username,
                phone: phone
                    .as_deref()
                    .map(PhoneNumber::parse)
                    .transpose()
                    .map_err(core_err)?,
                first_name: first_name.unwrap_or_default(),
                last_name: last_name.unwrap_or_default(),
                display_name: None,
                preferred_language: language,
                password: password.map(SecretString::from),
            };
            let user = rekey
                .add_user(CLI_ACTOR, &tenant.id, new)
                .await
                .map_err(core_err)?;
            out.print(user.id.as_str(), user_json(&user));
            Ok(())
        }
        Command::User(UserCommand::SetState { user, state }) => {
            let user_id = UserId::parse(user).map_err(core_err)?;
            let user = rekey.user_by_id(&user_id).await.map_err(core_err)?;
            let state = match state {
                StateArg::Active => UserState::Active,
                StateArg::Inactive => UserState::Inactive,
                StateArg::Locked => UserState::Locked,
                StateArg::Deleted => UserState::Deleted,
            };
            let details = rekey
                .set_user_state(CLI_ACTOR, &user, state)
                .await
                .map_err(core_err)?;
            out.print(
                user.id.as_str(),
                json!({ "id": user.id.as_str(), "state": state.as_str(), "sequence": details.sequence }),
            );
            Ok(())
        }
        Command::Token(TokenCommand::Create { role, tenant, user }) => {
            let role = resolve_role(&rekey, role, tenant, user).await?;
            let issued = rekey.create_token(role.clone()).await.map_err(core_err)?;
            let secret = issued.secret.expose_secret();
            out.print(
                secret,
                json!({ "id": issued.token.id, "role": role.name(), "token": secret }),
            );
            Ok(())
        }
        Command::Outbox(OutboxCommand::List { failed }) => {
            let state = failed.then_some(OutboxState::Failed);
            let messages = rekey
                .store()
                .outbox_messages(state, 1000)
                .await
                .map_err(|e| anyhow!("{e}"))?;
            let items: Vec<Value> = messages.iter().map(outbox_json).collect();
            if out.json {
                println!("{}", json!({ "messages": items }));
            } else {
                for m in &messages {
                    println!(
                        "{}\t{}\t{}\t{}\tattempts={}\t{}",
                        m.id,
                        m.state.as_str(),
                        m.channel.as_str(),
                        m.kind.as_str(),
                        m.attempts,
                        m.last_error.as_deref().unwrap_or("")
                    );
                }
            }
            Ok(())
        }
        Command::Outbox(OutboxCommand::Retry { id }) => {
            match rekey
                .retry_outbox_message("cli", &id)
                .await
                .map_err(core_err)?
            {
                Retried::Requeued { id } => {
                    out.print(&id, json!({ "id": id, "state": "pending" }));
                }
                Retried::Reissued { id: new } => {
                    out.print(
                        &new,
                        json!({ "id": new, "state": "pending", "reissued_from": id }),
                    );
                }
            }
            Ok(())
        }
        Command::Events {
            tenant,
            user,
            since,
        } => {
            let tenant_id = match tenant {
                Some(t) => Some(rekey.tenant_by_ref(&t).await.map_err(core_err)?.id),
                None => None,
            };
            let since = since
                .map(|s| {
                    DateTime::parse_from_rfc3339(&s)
                        .map(|t| t.with_timezone(&Utc))
                        .with_context(|| format!("--since {s:?} is not RFC 3339"))
                })
                .transpose()?;
            let events = rekey
                .store()
                .events(&EventFilter {
                    tenant_id,
                    aggregate_id: user,
                    since,
                    limit: 10_000,
                })
                .await
                .map_err(|e| anyhow!("{e}"))?;
            let items: Vec<Value> = events.iter().map(event_json).collect();
            if out.json {
                println!("{}", json!({ "events": items }));
            } else {
                for item in items {
                    println!("{item}");
                }
            }
            Ok(())
        }
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

async fn resolve_role(
    rekey: &Rekey,
    role: RoleArg,
    tenant: Option<String>,
    user: Option<String>,
) -> anyhow::Result<Role> {
    match role {
        RoleArg::System => Ok(Role::System),
        RoleArg::TenantAdmin => {
            let tenant = tenant.context("--role tenant-admin needs --tenant")?;
            let tenant = rekey.tenant_by_ref(&tenant).await.map_err(core_err)?;
            Ok(Role::TenantAdmin(tenant.id))
        }
        RoleArg::User => {
            let user = user.context("--role user needs --user")?;
            let user = rekey
                .user_by_id(&UserId::parse(user).map_err(core_err)?)
                .await
                .map_err(core_err)?;
            Ok(Role::User {
                tenant_id: user.tenant_id,
                user_id: user.id,
            })
        }
    }
}

/// `key=value` for `rekey tenant set`; an empty value resets the key.
fn apply_setting(settings: &mut TenantSettings, assignment: &str) -> anyhow::Result<()> {
    let (key, value) = assignment
        .split_once('=')
        .with_context(|| format!("{assignment:?} is not KEY=VALUE"))?;
    let value = value.trim();
    let reset = value.is_empty();
    fn num<T: std::str::FromStr>(key: &str, value: &str) -> anyhow::Result<T> {
        value
            .parse()
            .map_err(|_| anyhow!("{key}: {value:?} is not a number"))
    }
    fn flag(key: &str, value: &str) -> anyhow::Result<bool> {
        match value {
            "true" | "yes" | "on" | "1" => Ok(true),
            "false" | "no" | "off" | "0" => Ok(false),
            _ => bail!("{key}: {value:?} is not true or false"),
        }
    }
    match key.trim() {
        "code.length" => settings.code_length = (!reset).then(|| num(key, value)).transpose()?,
        "code.alphabet" => {
            settings.code_alphabet = match value {
                "" => None,
                "rekey" => Some(CodeAlphabet::Rekey),
                "zitadel" => Some(CodeAlphabet::Zitadel),
                _ => bail!("code.alphabet must be rekey or zitadel"),
            }
        }
        "code.expiry_secs" => {
            settings.code_expiry_secs = (!reset).then(|| num(key, value)).transpose()?
        }
        "code.init_expiry_secs" => {
            settings.code_init_expiry_secs = (!reset).then(|| num(key, value)).transpose()?
        }
        "password.min_length" => {
            settings.password_min_length = (!reset).then(|| num(key, value)).transpose()?
        }
        "password.max_length" => {
            settings.password_max_length = (!reset).then(|| num(key, value)).transpose()?
        }
        "password.require_lower" => {
            settings.password_require_lower = (!reset).then(|| flag(key, value)).transpose()?
        }
        "password.require_upper" => {
            settings.password_require_upper = (!reset).then(|| flag(key, value)).transpose()?
        }
        "password.require_digit" => {
            settings.password_require_digit = (!reset).then(|| flag(key, value)).transpose()?
        }
        "password.require_symbol" => {
            settings.password_require_symbol = (!reset).then(|| flag(key, value)).transpose()?
        }
        "limits.messages_per_user_per_hour" => {
            settings.limits_messages_per_user_per_hour =
                (!reset).then(|| num(key, value)).transpose()?
        }
        "link_template" => settings.link_template = (!reset).then(|| value.to_owned()),
        "language" => settings.language = (!reset).then(|| value.to_owned()),
        "ui.login_url" => {
            if !reset {
                rekey_core::flows::validate_login_url(value).map_err(|what| anyhow!(what))?;
            }
            settings.ui_login_url = (!reset).then(|| value.to_owned());
        }
        other => bail!("unknown tenant setting {other:?}"),
    }
    Ok(())
}

fn tenant_json(t: &Tenant) -> Value {
    json!({
        "id": t.id.as_str(),
        "name": t.name,
        "cname": t.cname,
        "settings": t.settings,
        "creationDate": t.creation_date.to_rfc3339(),
    })
}

fn user_json(u: &User) -> Value {
    json!({
        "id": u.id.as_str(),
        "tenantId": u.tenant_id.as_str(),
        "username": u.username,
        "email": u.email,
        "phone": u.phone,
        "displayName": u.display_name,
        "state": u.state.as_str(),
        "sequence": u.sequence,
    })
}

fn outbox_json(m: &OutboxMessage) -> Value {
    json!({
        "id": m.id,
        "tenantId": m.tenant_id.as_str(),
        "userId": m.user_id.as_str(),
        "channel": m.channel.as_str(),
        "kind": m.kind.as_str(),
        "state": m.state.as_str(),
        "attempts": m.attempts,
        "lastError": m.last_error,
        "createdAt": m.created_at.to_rfc3339(),
    })
}

fn event_json(e: &Event) -> Value {
    json!({
        "tenantId": e.tenant_id.as_str(),
        "aggregateId": e.aggregate_id,
        "sequence": e.sequence,
        "kind": e.kind,
        "actor": e.actor,
        "ip": e.ip,
        "at": e.at.to_rfc3339(),
        "payload": e.payload,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_settings_assignments() {
        let mut s = TenantSettings::default();
        apply_setting(&mut s, "code.length=10").unwrap();
        apply_setting(&mut s, "code.alphabet=zitadel").unwrap();
        apply_setting(&mut s, "password.require_upper=true").unwrap();
        apply_setting(&mut s, "link_template=https://x.test/r?c={{.Code}}").unwrap();
        assert_eq!(s.code_length, Some(10));
        assert_eq!(s.code_alphabet, Some(CodeAlphabet::Zitadel));
        assert_eq!(s.password_require_upper, Some(true));
        apply_setting(&mut s, "code.length=").unwrap();
        assert_eq!(s.code_length, None);
        assert!(apply_setting(&mut s, "nope=1").is_err());
        assert!(apply_setting(&mut s, "code.length=ten").is_err());
        assert!(apply_setting(&mut s, "novalue").is_err());
    }
}
