//! Rekey's wire faces on one axum router: ZITADEL REST (user v2, management v1), Connect, gRPC
//! and gRPC-Web, F5 REST, operations routes, and the plumbing they share (authentication, error
//! shapes, limits, deadlines). Faces only decode, authenticate and map; the rules live in
//! `rekey_core::flows`. [`serve::serve`] runs the router on the one listener.

pub mod auth;
pub mod cors;
pub mod error;
pub mod faces;
pub mod json;
pub mod metrics;
pub mod openapi;
pub mod operations;
pub mod ops;
pub mod pages;
pub mod request_id;
pub mod serve;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use http::header::CONTENT_TYPE;
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
    /// Browser origins allowed to call the API (SPEC §5).
    pub cors: cors::CorsPolicy,
    /// This server's request counters (and the worker's deliveries) for `/metrics`.
    pub metrics: Arc<metrics::Metrics>,
    /// `false` when `/metrics` has a listener of its own (`REKEY_METRICS_LISTEN`): the main
    /// listener then answers it 404.
    pub metrics_on_main_listener: bool,
}

impl Default for ServeSettings {
    fn default() -> Self {
        Self {
            body_limit_bytes: 64 * 1024,
            request_timeout: Duration::from_secs(10),
            trusted_proxies: Vec::new(),
            unauth_deadline: Duration::from_millis(400),
            channels: Vec::new(),
            cors: cors::CorsPolicy::Off,
            metrics: Arc::new(metrics::Metrics::new()),
            metrics_on_main_listener: true,
        }
    }
}

/// The whole HTTP surface. gRPC and Connect share the paths `/package.Service/Method`, so the
/// request's form is chosen by `Content-Type` before any routing: `application/grpc…` (gRPC and
/// gRPC-Web) goes to tonic, everything else to the axum routes (REST, Connect, F5, operations).
pub fn router(state: AppState) -> Router {
    let http = Router::new()
        .merge(operations::routes())
        .merge(faces::connect::routes())
        .merge(openapi::routes())
        .merge(pages::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state.clone());
    let grpc = faces::grpc::service(&state);
    let forms = tower::service_fn(move |request: Request| {
        let grpc = grpc.clone();
        let http = http.clone();
        async move {
            if is_grpc(content_type(&request)) {
                let response = tower::ServiceExt::oneshot(grpc, request).await?;
                Ok::<_, Infallible>(response.map(axum::body::Body::new))
            } else {
                tower::ServiceExt::oneshot(http, request).await
            }
        }
    });
    Router::new()
        .fallback_service(forms)
        .layer(middleware::from_fn_with_state(state.clone(), deadline))
        .layer(middleware::from_fn_with_state(
            Arc::new(state.settings.cors.clone()),
            cors::cors,
        ))
        .layer(middleware::from_fn(log_request))
        .layer(middleware::from_fn_with_state(
            state.settings.metrics.clone(),
            metrics::observe,
        ))
        .layer(middleware::from_fn_with_state(
            Arc::new(state.settings.trusted_proxies.clone()),
            request_id::assign,
        ))
        .with_state(state)
}

fn content_type(request: &Request) -> &str {
    request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// `application/grpc`, `application/grpc+proto`, `application/grpc-web…` (any case, any
/// parameters): the forms tonic serves.
fn is_grpc(content_type: &str) -> bool {
    const GRPC: &str = "application/grpc";
    content_type
        .get(..GRPC.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(GRPC))
        && matches!(
            content_type.as_bytes().get(GRPC.len()),
            None | Some(b'+' | b'-' | b';' | b' ')
        )
}

/// An error raised outside a handler, in the shape of the request's form: gRPC trailers,
/// Connect JSON, F5 or ZITADEL REST.
fn face_error(path: &str, content_type: &str, err: Error) -> Response {
    if is_grpc(content_type) {
        faces::grpc::error_response(&err, content_type)
    } else if faces::connect::is_rpc_path(path) {
        faces::connect::error_response(&err)
    } else if faces::f5::is_f5_path(path) {
        faces::f5::F5Error(err).into_response()
    } else if path.starts_with(faces::operations_api::PREFIX) {
        faces::operations_api::OpsError(err).into_response()
    } else {
        RestError(err).into_response()
    }
}

async fn not_found(uri: http::Uri) -> Response {
    face_error(
        uri.path(),
        "",
        Error::new(rekey_core::ErrorKind::NotFound, "REKEY-Route", "Not found"),
    )
}

async fn method_not_allowed(uri: http::Uri) -> Response {
    // grpc-gateway answers a wrong method with UNIMPLEMENTED and status 405.
    let err = Error::new(
        rekey_core::ErrorKind::Unimplemented,
        "REKEY-Meth1",
        "Method not allowed",
    );
    let mut response = if uri.path().starts_with(faces::operations_api::PREFIX) {
        faces::operations_api::OpsError(err).into_response()
    } else {
        RestError(err).into_response()
    };
    *response.status_mut() = http::StatusCode::METHOD_NOT_ALLOWED;
    response
}

/// Every request has a deadline (→ 504, code 4; gRPC: `DEADLINE_EXCEEDED` trailers).
async fn deadline(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let path = request.uri().path().to_owned();
    let content_type = content_type(&request).to_owned();
    match tokio::time::timeout(state.settings.request_timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => face_error(
            &path,
            &content_type,
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
    let request_id = request_id::of(request.headers());
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    tracing::info!(
        request_id = request_id.as_deref(),
        %method,
        path = %path,
        status = response.status().as_u16(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        peer = ?peer,
        "request"
    );
    response
}

#[cfg(test)]
mod tests {
    use super::is_grpc;

    #[test]
    fn grpc_content_types() {
        for yes in [
            "application/grpc",
            "application/grpc+proto",
            "Application/GRPC+proto",
            "application/grpc-web",
            "application/grpc-web+proto",
            "application/grpc-web-text",
            "application/grpc; charset=utf-8",
        ] {
            assert!(is_grpc(yes), "{yes}");
        }
        for no in [
            "",
            "application/json",
            "application/proto",
            "application/grpcx",
            "application/connect+proto",
        ] {
            assert!(!is_grpc(no), "{no}");
        }
    }
}
