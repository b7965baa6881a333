//! ZITADEL's REST mapping (grpc-gateway style) of the user v2 / v2beta, management v1 and org v2
//! operations. The routes come from [`crate::operations`]; path parameters (`user_id`) are put
//! into the message over whatever the body says (the path wins, as in grpc-gateway).

use std::net::SocketAddr;

use axum::extract::rejection::PathRejection;
use axum::extract::{ConnectInfo, Path, Request};
use axum::response::{IntoResponse, Response};
use axum::RequestExt;
use http::{header, HeaderValue, StatusCode};
use rekey_core::Error;

use super::zitadel::RequestMeta;
use crate::json::{read_body, status_override};
use crate::operations::Handler;
use crate::{auth, AppState, RestError};

/// A REST error response, with 413 for an oversized body.
pub fn error_response(err: Error) -> Response {
    let status = status_override(&err);
    let mut response = RestError(err).into_response();
    if let Some(status) = status {
        *response.status_mut() = status;
    }
    response
}

/// One REST call of a table operation: path parameters, body, client address, run, encode;
/// `success` replaces 200 (201 for the creating RPCs).
pub async fn handle(
    state: AppState,
    mut request: Request,
    handler: Handler,
    success: u16,
) -> Response {
    let params = match request.extract_parts::<Path<Vec<(String, String)>>>().await {
        Ok(Path(params)) => params,
        Err(PathRejection::MissingPathParams(_)) => Vec::new(),
        Err(rejection) => return rejection.into_response(),
    };
    let (parts, body) = request.into_parts();
    let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>();
    let meta = RequestMeta {
        ip: auth::client_ip(&state.settings.trusted_proxies, peer, &parts.headers)
            .map(|ip| ip.to_string()),
        headers: parts.headers,
    };
    let result = async {
        let bytes = read_body(body, state.settings.body_limit_bytes).await?;
        (handler.json)(state, meta, bytes, params).await
    }
    .await;
    match result {
        Ok(body) => {
            let status = StatusCode::from_u16(success).unwrap_or(StatusCode::OK);
            let mut response = (status, body).into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            response
        }
        Err(err) => error_response(err),
    }
}
