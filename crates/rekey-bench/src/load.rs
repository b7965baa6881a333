//! The load generator: closed-loop HTTP workers for throughput, and an open-loop prober for
//! latency under load.
//!
//! Workers run from the start of the warm-up to the end of the measured window without a pause;
//! only requests that *complete* inside the window count, so the warm-up fills connection pools,
//! statement caches and the hash queue without bending the numbers.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::body::Bytes;
use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use reqwest::{Client, Method, StatusCode, Url};

/// One prepared request; workers cycle through their own list of them.
#[derive(Clone, Debug)]
pub struct Prepared {
    pub method: Method,
    pub url: Url,
    pub bearer: Option<HeaderValue>,
    pub body: Option<Bytes>,
}

impl Prepared {
    pub fn post_json(url: Url, bearer: Option<&str>, body: &'static str) -> anyhow::Result<Self> {
        let bearer = bearer
            .map(|token| HeaderValue::from_str(&format!("Bearer {token}")))
            .transpose()
            .context("token is not a header value")?;
        Ok(Self {
            method: Method::POST,
            url,
            bearer,
            body: Some(Bytes::from_static(body.as_bytes())),
        })
    }

    pub fn get(url: Url) -> Self {
        Self {
            method: Method::GET,
            url,
            bearer: None,
            body: None,
        }
    }

    /// Sends the request and reads the whole response body (so the connection is reused).
    pub async fn send(&self, client: &Client) -> Result<(StatusCode, Bytes), reqwest::Error> {
        let mut request = client.request(self.method.clone(), self.url.clone());
        if let Some(bearer) = &self.bearer {
            request = request.header(AUTHORIZATION, bearer.clone());
        }
        if let Some(body) = &self.body {
            request = request
                .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
                .body(body.clone());
        }
        let response = request.send().await?;
        let status = response.status();
        let body = response.bytes().await?;
        Ok((status, body))
    }
}

/// A client for the load: HTTP/1.1 keep-alive, no proxy from the environment, no idle limit.
pub fn client() -> anyhow::Result<Client> {
    Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(usize::MAX)
        .timeout(Duration::from_secs(30))
        .build()
        .context("building the HTTP client")
}

/// The measured window of a phase.
#[derive(Clone, Copy, Debug)]
pub struct Window {
    pub start: Instant,
    pub end: Instant,
}

impl Window {
    /// A window that opens after `warmup` from now and lasts `length`.
    pub fn after(warmup: Duration, length: Duration) -> Self {
        let start = Instant::now() + warmup;
        Self {
            start,
            end: start + length,
        }
    }

    fn contains(&self, at: Instant) -> bool {
        at >= self.start && at <= self.end
    }

    pub fn seconds(&self) -> f64 {
        (self.end - self.start).as_secs_f64()
    }
}

/// Counts and latencies of one phase (latencies of successful requests only).
#[derive(Debug, Default)]
pub struct Tally {
    pub ok: u64,
    /// 429: the server refused at once (the hash pool's queue was full).
    pub busy: u64,
    /// Any other status, or a transport error.
    pub errors: u64,
    pub first_error: Option<String>,
    latencies: Vec<Duration>,
}

impl Tally {
    fn record(&mut self, outcome: &Result<(StatusCode, Bytes), reqwest::Error>, took: Duration) {
        match outcome {
            Ok((status, _)) if status.is_success() => {
                self.ok += 1;
                self.latencies.push(took);
            }
            Ok((StatusCode::TOO_MANY_REQUESTS, _)) => self.busy += 1,
            Ok((status, body)) => {
                self.errors += 1;
                if self.first_error.is_none() {
                    let body = String::from_utf8_lossy(body);
                    self.first_error = Some(format!("{status}: {}", truncate(&body, 200)));
                }
            }
            Err(err) => {
                self.errors += 1;
                if self.first_error.is_none() {
                    self.first_error = Some(format!("transport: {err}"));
                }
            }
        }
    }

    fn record_job(&mut self, outcome: Result<(), String>, took: Duration) {
        match outcome {
            Ok(()) => {
                self.ok += 1;
                self.latencies.push(took);
            }
            Err(err) => {
                self.errors += 1;
                if self.first_error.is_none() {
                    self.first_error = Some(err);
                }
            }
        }
    }

    /// Both tallies as one (latencies re-sorted).
    pub fn combine(mut self, other: Tally) -> Tally {
        self.merge(other);
        self.finish()
    }

    fn merge(&mut self, other: Tally) {
        self.ok += other.ok;
        self.busy += other.busy;
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        self.latencies.extend(other.latencies);
    }

    /// Nearest-rank percentile of the successful requests' latencies.
    pub fn percentile(&self, p: f64) -> Option<Duration> {
        crate::stats::percentile(&self.latencies, p)
    }

    pub fn max(&self) -> Option<Duration> {
        self.latencies.last().copied()
    }

    fn finish(mut self) -> Self {
        self.latencies.sort_unstable();
        self
    }
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((at, _)) => &s[..at],
        None => s,
    }
}

/// Runs `plans.len()` closed-loop workers (worker `i` cycles through `plans[i]`) until the end
/// of `window`, counting the requests that complete inside it.
pub async fn closed_loop(
    client: &Client,
    plans: Vec<Vec<Prepared>>,
    window: Window,
) -> anyhow::Result<Tally> {
    let mut tasks = Vec::with_capacity(plans.len());
    for plan in plans {
        if plan.is_empty() {
            anyhow::bail!("a worker has nothing to send");
        }
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            for request in plan.iter().cycle() {
                let started = Instant::now();
                if started >= window.end {
                    break;
                }
                let outcome = request.send(&client).await;
                let done = Instant::now();
                if window.contains(done) {
                    tally.record(&outcome, done - started);
                }
            }
            tally
        }));
    }
    let mut total = Tally::default();
    for task in tasks {
        total.merge(task.await.context("load worker failed")?);
    }
    Ok(total.finish())
}

/// One unit of in-process work (no HTTP), for the phases that split a request's cost.
pub type Job =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

/// Like [`closed_loop`], but each worker is a task on `runtime` (the servers' runtime) running
/// jobs instead of sending requests.
pub async fn closed_loop_jobs(
    runtime: &tokio::runtime::Handle,
    plans: Vec<Vec<Job>>,
    window: Window,
) -> anyhow::Result<Tally> {
    let mut tasks = Vec::with_capacity(plans.len());
    for plan in plans {
        if plan.is_empty() {
            anyhow::bail!("a worker has nothing to do");
        }
        tasks.push(runtime.spawn(async move {
            let mut tally = Tally::default();
            for job in plan.iter().cycle() {
                let started = Instant::now();
                if started >= window.end {
                    break;
                }
                let outcome = job().await;
                let done = Instant::now();
                if window.contains(done) {
                    tally.record_job(outcome, done - started);
                }
            }
            tally
        }));
    }
    let mut total = Tally::default();
    for task in tasks {
        total.merge(task.await.context("job worker failed")?);
    }
    Ok(total.finish())
}

/// Sends `request` every `period` from now until the end of `window`, each on its own task, so
/// a slow answer does not delay the next probe. A probe's latency counts from the instant it was
/// *scheduled*, so a stalled client or server cannot hide its stall (no coordinated omission).
pub async fn open_loop(
    client: &Client,
    request: Prepared,
    period: Duration,
    window: Window,
) -> anyhow::Result<Tally> {
    let request = Arc::new(request);
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut probes = Vec::new();
    loop {
        let scheduled = ticker.tick().await.into_std();
        if scheduled >= window.end {
            break;
        }
        let client = client.clone();
        let request = request.clone();
        probes.push(tokio::spawn(async move {
            let outcome = request.send(&client).await;
            (scheduled, outcome, Instant::now())
        }));
    }
    let mut tally = Tally::default();
    for probe in probes {
        let (scheduled, outcome, done) = probe.await.context("probe failed")?;
        if scheduled >= window.start {
            tally.record(&outcome, done.saturating_duration_since(scheduled));
        }
    }
    Ok(tally.finish())
}
