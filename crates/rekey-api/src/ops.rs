//! Operations routes without authentication: liveness and readiness (registered from
//! [`crate::operations::HTTP_ROUTES`]).

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use axum::Json;
use http::StatusCode;
use serde_json::{json, Map, Value};

use crate::AppState;

/// The process is up.
pub async fn healthz(_state: AppState, _request: Request) -> Response {
    Json(json!({ "status": "ok" })).into_response()
}

/// 200 when the database is reachable and migrated; channel status in the body only.
pub async fn readyz(state: AppState, _request: Request) -> Response {
    let channels: Map<String, Value> = state
        .settings
        .channels
        .iter()
        .map(|(name, status)| (name.clone(), Value::String(status.clone())))
        .collect();
    match state.rekey.ready().await {
        Ok(()) => Json(json!({ "status": "ready", "database": "ok", "channels": channels }))
            .into_response(),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "not ready", "database": "unavailable", "channels": channels })),
        )
            .into_response(),
    }
}
