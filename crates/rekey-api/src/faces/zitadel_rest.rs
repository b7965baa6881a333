//! ZITADEL's REST mapping (grpc-gateway style) of the user v2 / v2beta and management v1
//! operations. `user_id` comes from the path; a `userId` in the body is ignored.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Path, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use rekey_core::Error;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::zitadel::{self, RequestMeta};
use crate::json::{decode, read_body, respond, status_override};
use crate::{auth, AppState, RestError};

pub fn routes() -> Router<AppState> {
    let mut router = Router::new();
    for version in ["v2", "v2beta"] {
        router = router
            .route(
                &format!("/{version}/users/{{user_id}}/password_reset"),
                post(password_reset),
            )
            .route(
                &format!("/{version}/users/{{user_id}}/password"),
                post(set_password),
            );
    }
    router
        .route(
            "/management/v1/users/{user_id}/password/_reset",
            post(send_human_reset_password_notification),
        )
        .route(
            "/management/v1/users/{user_id}/password",
            post(set_human_password),
        )
        .route(
            "/management/v1/users/{user_id}/password/_initialize",
            post(set_human_initial_password),
        )
}

/// A REST error response, with 413 for an oversized body.
pub fn error_response(err: Error) -> Response {
    let status = status_override(&err);
    let mut response = RestError(err).into_response();
    if let Some(status) = status {
        *response.status_mut() = status;
    }
    response
}

/// Shared REST plumbing: read + decode the body, put the path's user id in, run, encode.
async fn handle<Req, Resp, F, Fut>(
    state: AppState,
    user_id: String,
    request: Request,
    set_user_id: fn(&mut Req, String),
    run: F,
) -> Response
where
    Req: DeserializeOwned + Default,
    Resp: Serialize,
    F: FnOnce(AppState, RequestMeta, Req) -> Fut,
    Fut: std::future::Future<Output = Result<Resp, Error>>,
{
    let (parts, body) = request.into_parts();
    let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>();
    let headers = parts.headers;
    let result = async {
        let bytes = read_body(body, state.settings.body_limit_bytes).await?;
        let mut request: Req = decode(&bytes)?;
        set_user_id(&mut request, user_id);
        let meta = RequestMeta {
            ip: auth::client_ip(&state.settings.trusted_proxies, peer, &headers)
                .map(|ip| ip.to_string()),
            headers,
        };
        run(state, meta, request).await
    }
    .await;
    match result {
        Ok(response) => respond(&response),
        Err(err) => error_response(err),
    }
}

macro_rules! rest_operation {
    ($name:ident, $req:ty, $op:path) => {
        async fn $name(
            State(state): State<AppState>,
            Path(user_id): Path<String>,
            request: Request,
        ) -> Response {
            handle(
                state,
                user_id,
                request,
                |req: &mut $req, id| req.user_id = id,
                |state, meta, req| async move { $op(&state, &meta, req).await },
            )
            .await
        }
    };
}

rest_operation!(
    password_reset,
    rekey_proto::zitadel::user::v2::PasswordResetRequest,
    zitadel::password_reset
);
rest_operation!(
    set_password,
    rekey_proto::zitadel::user::v2::SetPasswordRequest,
    zitadel::set_password
);
rest_operation!(
    send_human_reset_password_notification,
    rekey_proto::zitadel::management::v1::SendHumanResetPasswordNotificationRequest,
    zitadel::send_human_reset_password_notification
);
rest_operation!(
    set_human_password,
    rekey_proto::zitadel::management::v1::SetHumanPasswordRequest,
    zitadel::set_human_password
);
rest_operation!(
    set_human_initial_password,
    rekey_proto::zitadel::management::v1::SetHumanInitialPasswordRequest,
    zitadel::set_human_initial_password
);
