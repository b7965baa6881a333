//! `GET /metrics` (SPEC §11): Prometheus text format 0.0.4, unauthenticated, on the main listener
//! or — `REKEY_METRICS_LISTEN` — only on a listener of its own ([`router`]).
//!
//! Requests are counted by the [`observe`] layer around the whole router; everything else is read
//! when scraped: the hash pool, rate-limit refusals, the outbox backlog and the database pools
//! from the core ([`rekey_core::flows::Rekey::stats`]), deliveries from the outbox worker
//! ([`DeliveryCounts`], wired by the binary). No label carries a tenant, a user, an address or a
//! token.
//!
//! Why no metrics crate: `prometheus-client` writes only OpenMetrics text, which `promtool check
//! metrics` (the format's own checker) refuses (the `_total` samples of a counter family named
//! without it read as untyped, help-less metrics); `metrics-exporter-prometheus` writes the
//! right format but brings some thirty crates and keeps every histogram sample until the next
//! scrape or upkeep. The set of metrics here is fixed, the counters are atomics, and the text
//! format is a few lines ([`text`]).

mod requests;
mod text;

use std::cell::Cell;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use http::header::CONTENT_TYPE;
use http::HeaderValue;
use rekey_core::{Error, ErrorKind};
use tokio::time::Instant;

use crate::{AppState, RestError};
use requests::{classify, Code, Requests};

/// The Prometheus text exposition format's media type.
pub const CONTENT_TYPE_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Deliveries counted by the outbox worker, read at scrape time: (channel, outcome, count) for
/// every channel and outcome, zeros included. The binary implements it over
/// `rekey_notify::Worker::deliveries` (the api crate does not depend on the worker's).
pub trait DeliveryCounts: Send + Sync + 'static {
    fn delivery_counts(&self) -> Vec<(&'static str, &'static str, u64)>;
}

/// The request counters of one server, and where to read the worker's.
#[derive(Default)]
pub struct Metrics {
    requests: Requests,
    deliveries: Option<Arc<dyn DeliveryCounts>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("deliveries", &self.deliveries.is_some())
            .finish_non_exhaustive()
    }
}

impl Metrics {
    pub fn new() -> Self {
        Self::default()
    }

    /// Also reports the worker's deliveries.
    pub fn with_deliveries(mut self, deliveries: Arc<dyn DeliveryCounts>) -> Self {
        self.deliveries = Some(deliveries);
        self
    }
}

tokio::task_local! {
    /// The gRPC status of the request in flight on this task, set by the gRPC face when its
    /// operation returns: a successful gRPC answer carries its status in trailers, which the
    /// layer does not wait for.
    static GRPC_STATUS: Cell<Option<i32>>;
}

/// Called by the gRPC face with the status its operation answered.
pub(crate) fn note_grpc_status(code: i32) {
    let _ = GRPC_STATUS.try_with(|status| status.set(Some(code)));
}

/// The outermost layer: counts each request by face, operation and code, and its latency to
/// the response head.
pub async fn observe(
    State(metrics): State<Arc<Metrics>>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let grpc = grpc_form(request.headers());
    let route = classify(request.method(), request.uri().path(), grpc);
    let (response, noted) = GRPC_STATUS
        .scope(Cell::new(None), async move {
            let response = next.run(request).await;
            (response, GRPC_STATUS.with(Cell::get))
        })
        .await;
    let code = match grpc {
        None => Code::Http(response.status().as_u16()),
        Some(_) => Code::Grpc(noted.or_else(|| header_status(&response)).unwrap_or(2)),
    };
    metrics.requests.record(route, code, started.elapsed());
    response
}

/// `Some(web)` for the forms tonic serves (gRPC, or gRPC-Web when `web`).
fn grpc_form(headers: &http::HeaderMap) -> Option<bool> {
    let content_type = headers.get(CONTENT_TYPE)?.to_str().ok()?;
    crate::is_grpc(content_type).then(|| {
        content_type
            .get(.."application/grpc-web".len())
            .is_some_and(|head| head.eq_ignore_ascii_case("application/grpc-web"))
    })
}

/// The status of a trailers-only gRPC answer (an error raised before or outside an operation).
fn header_status(response: &Response) -> Option<i32> {
    response
        .headers()
        .get("grpc-status")?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// `GET /metrics` on the main listener: the metrics, or 404 when they have a listener of their
/// own.
pub async fn metrics(state: AppState, _request: Request) -> Response {
    if !state.settings.metrics_on_main_listener {
        return RestError(Error::new(ErrorKind::NotFound, "REKEY-Route", "Not found"))
            .into_response();
    }
    scrape(&state).await
}

/// The separate metrics listener's whole surface: `GET /metrics`, 404 for anything else.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(|State(state): State<AppState>| async move { scrape(&state).await }),
        )
        .fallback(|| async {
            RestError(Error::new(ErrorKind::NotFound, "REKEY-Route", "Not found")).into_response()
        })
        .with_state(state)
}

async fn scrape(state: &AppState) -> Response {
    let stats = state.rekey.stats().await;
    if let Err(err) = &stats.outbox {
        tracing::warn!(error = %err, "metrics: outbox backlog not readable");
    }
    let metrics = &state.settings.metrics;
    let deliveries = metrics
        .deliveries
        .as_ref()
        .map(|d| d.delivery_counts())
        .unwrap_or_default();
    let body = text::render(&metrics.requests.snapshot(), &stats, &deliveries);
    let mut response = body.into_response();
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE_TEXT));
    response
}
