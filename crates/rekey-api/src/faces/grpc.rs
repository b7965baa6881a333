//! gRPC and gRPC-Web (SPEC §5) for `zitadel.user.v2.UserService`, `zitadel.user.v2beta.UserService`,
//! `zitadel.management.v1.ManagementService` and `zitadel.org.v2.OrganizationService`: tonic's generated servers, with tonic-web's
//! layer in front for `application/grpc-web(+proto|-text)` over HTTP/1.1. Every method only turns
//! the metadata into a [`RequestMeta`] and calls the `faces::zitadel` operation; errors become
//! trailers `grpc-status`, `grpc-message` (percent-encoded by tonic) and `grpc-status-details-bin`
//! (a `google.rpc.Status` whose one detail is the `zitadel.v1.ErrorDetail`, SPEC §6).
//!
//! Adding an RPC: the generated trait gains a method as soon as the proto has it, so the
//! compiler points here; add one line to the service's `grpc_service!` block below
//! (`snake_name(Request) -> Response = zitadel::operation;`); a proto RPC whose operation does
//! not exist yet goes under `not yet { snake_name(Request) -> Response; }` and answers
//! `UNIMPLEMENTED` until then.

use std::net::SocketAddr;

use axum::extract::ConnectInfo;
use bytes::Bytes;
use prost::Message;
use rekey_core::Error;
use rekey_proto::zitadel::management::v1 as mgmt;
use rekey_proto::zitadel::org::v2 as org_v2;
use rekey_proto::zitadel::user::v2 as user_v2;
use rekey_proto::zitadel::user::v2beta as user_v2beta;
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::service::Routes;
use tonic_web::{GrpcWebLayer, GrpcWebService};
use tower::Layer;

use super::zitadel::{self, RequestMeta};
use super::zitadel_setup;
use crate::error::error_detail_any;
use crate::{auth, AppState};

/// `google.rpc.Status`, the message `grpc-status-details-bin` carries (google/rpc/status.proto;
/// field numbers are the wire contract).
#[derive(Clone, PartialEq, Message)]
pub struct RpcStatus {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
    #[prost(message, repeated, tag = "3")]
    pub details: Vec<pbjson_types::Any>,
}

/// A domain error as a gRPC status: code, `"<text> (<ID>)"`, the details above, and
/// `retry-after` metadata for a rate limit (in the trailers, or the headers of a trailers-only
/// answer).
pub fn status(err: &Error) -> tonic::Status {
    let code = tonic::Code::from_i32(err.kind.grpc_code());
    let message = err.message();
    let details = RpcStatus {
        code: err.kind.grpc_code(),
        message: message.clone(),
        details: vec![error_detail_any(err)],
    }
    .encode_to_vec();
    let mut metadata = MetadataMap::new();
    if let Some(secs) = err.retry_after {
        metadata.insert("retry-after", MetadataValue::from(secs));
    }
    tonic::Status::with_details_and_metadata(code, message, Bytes::from(details), metadata)
}

/// A trailers-only gRPC (or gRPC-Web) answer for an error raised outside a method, such as the
/// request deadline. `content_type` is echoed for gRPC-Web so the client reads its own form.
pub fn error_response(err: &Error, content_type: &str) -> axum::response::Response {
    let mut response = status(err).into_http::<axum::body::Body>();
    if content_type.starts_with("application/grpc-web") {
        let web = if content_type.starts_with("application/grpc-web-text") {
            "application/grpc-web-text+proto"
        } else {
            "application/grpc-web+proto"
        };
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static(web),
        );
    }
    response
}

/// The services behind tonic-web, as one service (the caller routes `application/grpc…`
/// requests here). Messages are limited to the configured body limit.
pub fn service(state: &AppState) -> GrpcWebService<Routes> {
    let limit = state.settings.body_limit_bytes;
    let face = Grpc {
        state: state.clone(),
    };
    let routes = Routes::new(
        user_v2::user_service_server::UserServiceServer::new(face.clone())
            .max_decoding_message_size(limit),
    )
    .add_service(
        user_v2beta::user_service_server::UserServiceServer::new(face.clone())
            .max_decoding_message_size(limit),
    )
    .add_service(
        mgmt::management_service_server::ManagementServiceServer::new(face.clone())
            .max_decoding_message_size(limit),
    )
    .add_service(
        org_v2::organization_service_server::OrganizationServiceServer::new(face)
            .max_decoding_message_size(limit),
    )
    .prepare();
    GrpcWebLayer::new().layer(routes)
}

/// The gRPC face: one value serves every service.
#[derive(Clone)]
pub struct Grpc {
    state: AppState,
}

impl Grpc {
    /// Metadata as the headers the operations read (`authorization`, `x-zitadel-orgid`), and
    /// the client address from the connection (or a trusted proxy's `X-Forwarded-For`).
    fn split<T>(&self, request: tonic::Request<T>) -> (RequestMeta, T) {
        let (metadata, extensions, message) = request.into_parts();
        let headers = metadata.into_headers();
        let peer = extensions.get::<ConnectInfo<SocketAddr>>();
        let ip = auth::client_ip(&self.state.settings.trusted_proxies, peer, &headers)
            .map(|ip| ip.to_string());
        (RequestMeta { headers, ip }, message)
    }
}

/// v2beta messages are wire-identical to v2 (SPEC §3): re-encode one as the other, so v2beta
/// calls run the v2 operations. Public only for the fuzz targets (`fuzz/`).
#[doc(hidden)]
pub fn recode<A: Message, B: Message + Default>(message: &A) -> Result<B, tonic::Status> {
    B::decode(message.encode_to_vec().as_slice()).map_err(|err| {
        tracing::error!(%err, "v2beta/v2 message conversion failed");
        status(&Error::internal())
    })
}

/// Implements a generated service trait for [`Grpc`], one line per method:
/// `method(Request) -> Response = operation;`. With `via recode` each request is re-encoded as
/// the operation's own (wire-identical) type and the answer back. Methods listed under
/// `not yet` exist in the proto but have no operation yet; they answer `UNIMPLEMENTED`.
/// (Every method is spelled out inside the `impl` each arm expands to: `async_trait` rewrites
/// only what it sees, not items left to an inner macro call.)
macro_rules! grpc_service {
    ($service:path { $($served:tt)* } $(not yet { $($later:tt)* })?) => {
        grpc_service!(@impl direct $service { $($served)* } { $($($later)*)? });
    };
    ($service:path, via recode { $($served:tt)* } $(not yet { $($later:tt)* })?) => {
        grpc_service!(@impl recode $service { $($served)* } { $($($later)*)? });
    };
    (@impl direct $service:path
        { $($method:ident($req:ty) -> $resp:ty = $op:path;)* }
        { $($later:ident($lreq:ty) -> $lresp:ty;)* }
    ) => {
        #[tonic::async_trait]
        impl $service for Grpc {
            $(
                async fn $method(
                    &self,
                    request: tonic::Request<$req>,
                ) -> Result<tonic::Response<$resp>, tonic::Status> {
                    let (meta, message) = self.split(request);
                    $op(&self.state, &meta, message)
                        .await
                        .map(tonic::Response::new)
                        .map_err(|err| status(&err))
                }
            )*
            $(
                async fn $later(
                    &self,
                    _request: tonic::Request<$lreq>,
                ) -> Result<tonic::Response<$lresp>, tonic::Status> {
                    Err(status(&zitadel::unimplemented(stringify!($later))))
                }
            )*
        }
    };
    (@impl recode $service:path
        { $($method:ident($req:ty) -> $resp:ty = $op:path;)* }
        { $($later:ident($lreq:ty) -> $lresp:ty;)* }
    ) => {
        #[tonic::async_trait]
        impl $service for Grpc {
            $(
                async fn $method(
                    &self,
                    request: tonic::Request<$req>,
                ) -> Result<tonic::Response<$resp>, tonic::Status> {
                    let (meta, message) = self.split(request);
                    let message = recode(&message)?;
                    let answer = $op(&self.state, &meta, message)
                        .await
                        .map_err(|err| status(&err))?;
                    recode(&answer).map(tonic::Response::new)
                }
            )*
            $(
                async fn $later(
                    &self,
                    _request: tonic::Request<$lreq>,
                ) -> Result<tonic::Response<$lresp>, tonic::Status> {
                    Err(status(&zitadel::unimplemented(stringify!($later))))
                }
            )*
        }
    };
}

grpc_service!(user_v2::user_service_server::UserService {
    add_human_user(user_v2::AddHumanUserRequest) -> user_v2::AddHumanUserResponse
        = zitadel_setup::add_human_user;
    get_user_by_id(user_v2::GetUserByIdRequest) -> user_v2::GetUserByIdResponse
        = zitadel_setup::get_user_by_id;
    list_users(user_v2::ListUsersRequest) -> user_v2::ListUsersResponse
        = zitadel_setup::list_users;
    deactivate_user(user_v2::DeactivateUserRequest) -> user_v2::DeactivateUserResponse
        = zitadel_setup::deactivate_user;
    reactivate_user(user_v2::ReactivateUserRequest) -> user_v2::ReactivateUserResponse
        = zitadel_setup::reactivate_user;
    lock_user(user_v2::LockUserRequest) -> user_v2::LockUserResponse
        = zitadel_setup::lock_user;
    unlock_user(user_v2::UnlockUserRequest) -> user_v2::UnlockUserResponse
        = zitadel_setup::unlock_user;
    delete_user(user_v2::DeleteUserRequest) -> user_v2::DeleteUserResponse
        = zitadel_setup::delete_user;
    password_reset(user_v2::PasswordResetRequest) -> user_v2::PasswordResetResponse
        = zitadel::password_reset;
    set_password(user_v2::SetPasswordRequest) -> user_v2::SetPasswordResponse
        = zitadel::set_password;
});

grpc_service!(user_v2beta::user_service_server::UserService, via recode {
    add_human_user(user_v2beta::AddHumanUserRequest) -> user_v2beta::AddHumanUserResponse
        = zitadel_setup::add_human_user;
    get_user_by_id(user_v2beta::GetUserByIdRequest) -> user_v2beta::GetUserByIdResponse
        = zitadel_setup::get_user_by_id;
    list_users(user_v2beta::ListUsersRequest) -> user_v2beta::ListUsersResponse
        = zitadel_setup::list_users;
    deactivate_user(user_v2beta::DeactivateUserRequest) -> user_v2beta::DeactivateUserResponse
        = zitadel_setup::deactivate_user;
    reactivate_user(user_v2beta::ReactivateUserRequest) -> user_v2beta::ReactivateUserResponse
        = zitadel_setup::reactivate_user;
    lock_user(user_v2beta::LockUserRequest) -> user_v2beta::LockUserResponse
        = zitadel_setup::lock_user;
    unlock_user(user_v2beta::UnlockUserRequest) -> user_v2beta::UnlockUserResponse
        = zitadel_setup::unlock_user;
    delete_user(user_v2beta::DeleteUserRequest) -> user_v2beta::DeleteUserResponse
        = zitadel_setup::delete_user;
    password_reset(user_v2beta::PasswordResetRequest) -> user_v2beta::PasswordResetResponse
        = zitadel::password_reset;
    set_password(user_v2beta::SetPasswordRequest) -> user_v2beta::SetPasswordResponse
        = zitadel::set_password;
});

grpc_service!(mgmt::management_service_server::ManagementService {
    send_human_reset_password_notification(mgmt::SendHumanResetPasswordNotificationRequest)
        -> mgmt::SendHumanResetPasswordNotificationResponse
        = zitadel::send_human_reset_password_notification;
    set_human_password(mgmt::SetHumanPasswordRequest) -> mgmt::SetHumanPasswordResponse
        = zitadel::set_human_password;
    set_human_initial_password(mgmt::SetHumanInitialPasswordRequest)
        -> mgmt::SetHumanInitialPasswordResponse
        = zitadel::set_human_initial_password;
});

grpc_service!(org_v2::organization_service_server::OrganizationService {
    add_organization(org_v2::AddOrganizationRequest) -> org_v2::AddOrganizationResponse
        = zitadel_setup::add_organization;
});

#[cfg(test)]
mod tests {
    use super::*;
    use rekey_proto::zitadel::v1::ErrorDetail;

    #[test]
    fn status_details_are_a_google_rpc_status_with_the_error_detail() {
        let err = Error::code_not_found();
        let status = status(&err);
        assert_eq!(status.code(), tonic::Code::FailedPrecondition);
        assert_eq!(status.message(), "Code not found (COMMAND-2M9fs)");
        let rpc = RpcStatus::decode(status.details()).unwrap();
        assert_eq!(rpc.code, 9);
        assert_eq!(rpc.message, "Code not found (COMMAND-2M9fs)");
        assert_eq!(rpc.details.len(), 1);
        assert_eq!(
            rpc.details[0].type_url,
            "type.googleapis.com/zitadel.v1.ErrorDetail"
        );
        let detail = ErrorDetail::decode(rpc.details[0].value.as_ref()).unwrap();
        assert_eq!(detail.id, "COMMAND-2M9fs");
        assert_eq!(detail.message, "Code not found");
    }

    #[test]
    fn rate_limits_carry_retry_after() {
        let status = status(&Error::rate_limited(42));
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
        assert_eq!(status.metadata().get("retry-after").unwrap(), "42");
    }

    #[test]
    fn v2beta_and_v2_messages_recode_both_ways() {
        let beta = user_v2beta::PasswordResetRequest {
            user_id: "123".into(),
            medium: Some(user_v2beta::password_reset_request::Medium::SendLink(
                user_v2beta::SendPasswordResetLink {
                    notification_type: 2,
                    url_template: Some("https://x/{{.Code}}".into()),
                },
            )),
        };
        let v2: user_v2::PasswordResetRequest = recode(&beta).unwrap();
        assert_eq!(v2.user_id, "123");
        let back: user_v2beta::PasswordResetRequest = recode(&v2).unwrap();
        assert_eq!(back, beta);
    }
}
