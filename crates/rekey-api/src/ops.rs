//! Operations routes without authentication: liveness and readiness.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use http::StatusCode;
use serde_json::{json, Map, Value};

use crate::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
}

/// The process is up.
async fn healthz() -> Response {
    Json(json!({ "status": "ok" })).into_response()
}

/// 200 when the database is reachable and migrated; channel status in the body only.
async fn readyz(State(state): State<AppState>) -> Response {
    let channels: Map<String, Value> = state
        .settings
        .channels
        .iter()
        .map(|(name, status)| (name.clone(), Value::String(status.clone())))
        .collect();
    match state.rekey.store().ping().await {
        Ok(()) => Json(json!({ "status": "ready", "database": "ok", "channels": channels }))
            .into_response(),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "not ready", "database": "unavailable", "channels": channels })),
        )
            .into_response(),
    }
}
