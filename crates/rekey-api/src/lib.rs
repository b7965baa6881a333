//! Rekey's wire faces on one axum router: ZITADEL REST (user v2, management v1), operations
//! routes, and the plumbing they share (authentication, error shapes, limits, deadlines).
//! Faces only decode, authenticate and map; the rules live in `rekey_core::flows`.
//! [`serve::serve`] runs the router on the one listener.

pub mod auth;
pub mod error;
pub mod faces;
pub mod json;
pub mod ops;
pub mod serve;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use ipnet::IpNet;
use rekey_core::flows::Rekey;
use rekey_core::Error;

pub use error::RestError;

/// What the faces need besides the flows: serving limits and status for `/readyz`.
#[derive(Clone)]
pub struct AppState {
    pub rekey: Arc<Rekey>,
    pub settings: Arc<ServeSettings>,
}

#[derive(Debug, Clone)]
pub struct ServeSettings {
    pub body_limit_bytes: usize,
    pub request_timeout: Duration,
    pub trusted_proxies: Vec<IpNet>,
    /// Every unauthenticated reset request is answered after this long (SPEC §10).
    pub unauth_deadline: Duration,
    /// Channel name → status line shown by `/readyz` (e.g. `"email": "not configured"`).
    pub channels: Vec<(String, String)>,
}

impl Default for ServeSettings {
    fn default() -> Self {
        Self {
            body_limit_bytes: 64 * 1024,
            request_timeout: Duration::from_secs(10),
            trusted_proxies: Vec::new(),
            unauth_deadline: Duration::from_millis(400),
            channels: Vec::new(),
        }
    }
}

/// The whole HTTP surface.
pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(faces::zitadel_rest::routes())
        .merge(faces::f5::routes())
        .merge(ops::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), deadline))
        .layer(middleware::from_fn(log_request))
        .with_state(state)
}

/// An error raised outside a handler, in the shape of the face the path belongs to.
fn face_error(path: &str, err: Error) -> Response {
    if faces::f5::is_f5_path(path) {
        faces::f5::F5Error(err).into_response()
    } else {
        RestError(err).into_response()
    }
}

async fn not_found(uri: http::Uri) -> Response {
    face_error(
        uri.path(),
        Error::new(rekey_core::ErrorKind::NotFound, "REKEY-Route", "Not found"),
    )
}

async fn method_not_allowed() -> Response {
    // grpc-gateway answers a wrong method with UNIMPLEMENTED and status 405.
    let mut response = RestError(Error::new(
        rekey_core::ErrorKind::Unimplemented,
        "REKEY-Meth1",
        "Method not allowed",
    ))
    .into_response();
    *response.status_mut() = http::StatusCode::METHOD_NOT_ALLOWED;
    response
}

/// Every request has a deadline (→ 504, code 4).
async fn deadline(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let path = request.uri().path().to_owned();
    match tokio::time::timeout(state.settings.request_timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => face_error(
            &path,
            Error::new(
                rekey_core::ErrorKind::DeadlineExceeded,
                "REKEY-Dline",
                "Deadline exceeded",
            ),
        ),
    }
}

/// Logs method, path and status, never the query string: reset links carry the code there.
async fn log_request(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    tracing::info!(
        %method,
        path = %path,
        status = response.status().as_u16(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        peer = ?peer,
        "request"
    );
    response
}
