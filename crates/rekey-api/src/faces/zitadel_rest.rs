//! ZITADEL's REST mapping (grpc-gateway style) of the user v2 / v2beta and management v1
//! operations. `user_id` comes from the path; a `userId` in the body is ignored.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Path, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use http::StatusCode;
use rekey_core::Error;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::zitadel::{self, RequestMeta};
use super::zitadel_setup;
use crate::json::{decode, read_body, respond, status_override};
use crate::{auth, AppState, RestError};

pub fn routes() -> Router<AppState> {
    let mut router = Router::new();
    for version in ["v2", "v2beta"] {
        router = router
            .route(&format!("/{version}/users/human"), post(add_human_user))
            .route(&format!("/{version}/users"), post(list_users))
            .route(
                &format!("/{version}/users/{{user_id}}"),
                get(get_user_by_id).delete(delete_user),
            )
            .route(
                &format!("/{version}/users/{{user_id}}/deactivate"),
                post(deactivate_user),
            )
            .route(
                &format!("/{version}/users/{{user_id}}/reactivate"),
                post(reactivate_user),
            )
            .route(
                &format!("/{version}/users/{{user_id}}/lock"),
                post(lock_user),
            )
            .route(
                &format!("/{version}/users/{{user_id}}/unlock"),
                post(unlock_user),
            )
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
        .route("/v2/organizations", post(add_organization))
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
    user_id: Option<String>,
    request: Request,
    set_user_id: fn(&mut Req, String),
    run: F,
    success: StatusCode,
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
        if let Some(user_id) = user_id {
            set_user_id(&mut request, user_id);
        }
        let meta = RequestMeta {
            ip: auth::client_ip(&state.settings.trusted_proxies, peer, &headers)
                .map(|ip| ip.to_string()),
            headers,
        };
        run(state, meta, request).await
    }
    .await;
    match result {
        Ok(response) => {
            let mut response = respond(&response);
            if response.status() == StatusCode::OK {
                *response.status_mut() = success;
            }
            response
        }
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
                Some(user_id),
                request,
                |req: &mut $req, id| req.user_id = id,
                |state, meta, req| async move { $op(&state, &meta, req).await },
                StatusCode::OK,
            )
            .await
        }
    };
}

/// A route without a path parameter; the whole request is the body.
macro_rules! rest_body_operation {
    ($name:ident, $req:ty, $op:path, $success:expr) => {
        async fn $name(State(state): State<AppState>, request: Request) -> Response {
            handle(
                state,
                None,
                request,
                |_: &mut $req, _| {},
                |state, meta, req| async move { $op(&state, &meta, req).await },
                $success,
            )
            .await
        }
    };
}

rest_body_operation!(
    add_human_user,
    rekey_proto::zitadel::user::v2::AddHumanUserRequest,
    zitadel_setup::add_human_user,
    StatusCode::CREATED
);
rest_body_operation!(
    list_users,
    rekey_proto::zitadel::user::v2::ListUsersRequest,
    zitadel_setup::list_users,
    StatusCode::OK
);
rest_body_operation!(
    add_organization,
    rekey_proto::zitadel::org::v2::AddOrganizationRequest,
    zitadel_setup::add_organization,
    StatusCode::CREATED
);
rest_operation!(
    get_user_by_id,
    rekey_proto::zitadel::user::v2::GetUserByIdRequest,
    zitadel_setup::get_user_by_id
);
rest_operation!(
    deactivate_user,
    rekey_proto::zitadel::user::v2::DeactivateUserRequest,
    zitadel_setup::deactivate_user
);
rest_operation!(
    reactivate_user,
    rekey_proto::zitadel::user::v2::ReactivateUserRequest,
    zitadel_setup::reactivate_user
);
rest_operation!(
    lock_user,
    rekey_proto::zitadel::user::v2::LockUserRequest,
    zitadel_setup::lock_user
);
rest_operation!(
    unlock_user,
    rekey_proto::zitadel::user::v2::UnlockUserRequest,
    zitadel_setup::unlock_user
);
rest_operation!(
    delete_user,
    rekey_proto::zitadel::user::v2::DeleteUserRequest,
    zitadel_setup::delete_user
);

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
