//! (g) Two replicas on one PostgreSQL (issue 7): `PasswordReset(returnCode)` throughput of two
//! Rekey servers built from the same settings (same database, same keys) sharing the clients,
//! against one server taking them all, in interleaved slices. Both servers run in this process
//! on the same cores, so the ratio shows what a second replica costs or gains on one machine
//! (shared database, no coordination between replicas), not the scaling of separate hosts.
//! Every answer must be 200: a replica never refuses or loses a request the other could serve.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rekey::app;
use rekey::config::Settings;
use rekey_api::AppState;
use tokio::runtime::Handle;

use crate::load::{self, Prepared, Tally, Window};
use crate::phases::RESET_BODY;
use crate::servers::{self, Running};

pub struct ReplicaReport {
    pub one: Vec<f64>,
    pub two: Vec<f64>,
    pub errors: u64,
    pub first_error: Option<String>,
    pub clients: usize,
}

pub async fn bench_replicas(
    server: &Handle,
    url: &str,
    data_dir: &std::path::Path,
    clients: usize,
    seconds: u64,
    rounds: u32,
) -> anyhow::Result<ReplicaReport> {
    let settings = Settings {
        database_url: Some(url.to_owned()),
        data_dir: data_dir.to_path_buf(),
        ..Settings::default()
    };
    let (s, users) = (settings.clone(), clients.max(1));
    let a = crate::on(
        server,
        async move { servers::start_rekey(s, 2, users).await },
    )
    .await
    .context("starting replica A")?;
    // Replica B: built from the same settings (same database, same generated keys in the data
    // directory), nothing seeded.
    let s = settings.clone();
    let b: Running = crate::on(server, async move {
        let rekey = app::build(&s).await?;
        let state = AppState {
            rekey,
            settings: Arc::new(app::serve_settings(&s)?),
        };
        Running::start(rekey_api::router(state)).await
    })
    .await
    .context("starting replica B")?;

    let reset = |running: &Running, user: &servers::Seeded| {
        Prepared::post_json(
            running.url(&format!("/v2/users/{}/password_reset", user.user_id))?,
            Some(&user.admin_token),
            RESET_BODY,
        )
    };
    let mut one_plans = Vec::new();
    let mut two_plans = Vec::new();
    for (i, user) in a.users.iter().enumerate() {
        one_plans.push(vec![reset(&a.running, user)?]);
        let target = if i % 2 == 0 { &a.running } else { &b };
        two_plans.push(vec![reset(target, user)?]);
    }
    let client = load::client()?;
    let slice = Duration::from_secs(seconds.max(1)) / rounds.max(1);
    let warmup = Duration::from_millis(250);
    let (mut one, mut two) = (Vec::new(), Vec::new());
    let mut all = Tally::default();
    for _ in 0..rounds.max(1) {
        for (plans, rates) in [(&one_plans, &mut one), (&two_plans, &mut two)] {
            let window = Window::after(warmup, slice);
            let tally = load::closed_loop(&client, plans.clone(), window).await?;
            rates.push(tally.ok as f64 / window.seconds());
            all = all.combine(tally);
        }
    }
    let servers::RekeyServer { running, .. } = a;
    crate::on(server, async move {
        running.stop().await?;
        b.stop().await
    })
    .await?;
    Ok(ReplicaReport {
        one,
        two,
        errors: all.errors + all.busy,
        first_error: all.first_error,
        clients,
    })
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted.get(sorted.len() / 2).copied().unwrap_or(f64::NAN)
}

pub fn markdown(r: &ReplicaReport) -> String {
    let list = |v: &[f64]| {
        v.iter()
            .map(|x| format!("{x:.0}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (one, two) = (median(&r.one), median(&r.two));
    format!(
        "| (g) PostgreSQL, {} clients | one replica req/s (slices) | two replicas req/s (slices) | ratio of medians | non-200 |\n|---|---|---|---|---|\n| PasswordReset(returnCode) | {one:.0} ({}) | {two:.0} ({}) | {:.0} % | {}{} |\n",
        r.clients,
        list(&r.one),
        list(&r.two),
        100.0 * two / one,
        r.errors,
        r.first_error
            .as_deref()
            .map(|e| format!(" (first: {e})"))
            .unwrap_or_default(),
    )
}
