//! gRPC and gRPC-Web (SPEC §5) for `zitadel.user.v2.UserService`, `zitadel.user.v2beta.UserService`,
//! `zitadel.management.v1.ManagementService` and `zitadel.org.v2.OrganizationService`: tonic's generated servers, with tonic-web's
//! layer in front for `application/grpc-web(+proto|-text)` over HTTP/1.1. Every method only turns
//! the metadata into a [`RequestMeta`] and calls the `faces::zitadel` operation; errors become
//! trailers `grpc-status`, `grpc-message` (percent-encoded by tonic) and `grpc-status-details-bin`
//! (a `google.rpc.Status` whose one detail is the `zitadel.v1.ErrorDetail`, SPEC §6).
//!
//! The services are not tonic's generated servers: one router serves `/{service}/{method}` for
//! every entry of [`crate::operations`], running tonic's unary machinery
//! ([`tonic::server::Grpc`] with the prost codec) for that entry's message types. A method of a
//! served service that is not in the table answers `UNIMPLEMENTED` as a generated server does;
//! any other path answers `UNIMPLEMENTED` as tonic's `Routes` does. v2beta paths decode their
//! bytes straight as the v2 messages (identical on the wire) and run the v2 operations.

use std::net::SocketAddr;

use axum::extract::ConnectInfo;
use bytes::Bytes;
use prost::Message;
use rekey_core::Error;
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::service::Routes;
use tonic_web::{GrpcWebLayer, GrpcWebService};
use tower::Layer;

use super::zitadel::RequestMeta;
use crate::error::error_detail_any;
use crate::operations::{self, BoxFuture};
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

/// The served services behind tonic-web, as one service (the caller routes `application/grpc…`
/// requests here). Messages are limited to the configured body limit.
pub fn service(state: &AppState) -> GrpcWebService<Routes> {
    let mut router = axum::Router::new().fallback(unimplemented_service);
    for service in operations::services() {
        let state = state.clone();
        router = router.route_service(
            &format!("/{service}/{{*rest}}"),
            tower::service_fn(move |request: axum::extract::Request| {
                let state = state.clone();
                async move { Ok::<_, std::convert::Infallible>(dispatch(state, request).await) }
            }),
        );
    }
    GrpcWebLayer::new().layer(Routes::from(router).prepare())
}

/// A path of no served service: what tonic's `Routes` answers.
async fn unimplemented_service() -> http::Response<tonic::body::Body> {
    let (parts, ()) = tonic::Status::unimplemented("")
        .into_http::<()>()
        .into_parts();
    http::Response::from_parts(parts, tonic::body::Body::empty())
}

/// A path of a served service: its operation, or what a generated server answers for a method
/// it does not have.
fn dispatch(
    state: AppState,
    request: axum::extract::Request,
) -> BoxFuture<http::Response<tonic::body::Body>> {
    match operations::by_rpc_path(request.uri().path()) {
        Some(op) => (op.handler.grpc)(state, request),
        None => Box::pin(async {
            let mut response = http::Response::new(tonic::body::Body::default());
            let headers = response.headers_mut();
            headers.insert(
                tonic::Status::GRPC_STATUS,
                (tonic::Code::Unimplemented as i32).into(),
            );
            headers.insert(
                http::header::CONTENT_TYPE,
                tonic::metadata::GRPC_CONTENT_TYPE,
            );
            response
        }),
    }
}

/// One unary gRPC exchange of an operation whose request and response messages are `Req` and
/// `Resp`: tonic decodes (at most the body limit), the operation runs with the metadata as
/// headers and the client address, tonic encodes the answer or the error's trailers.
pub async fn unary<Req, Resp, F, Fut>(
    state: AppState,
    request: axum::extract::Request,
    operation: F,
) -> http::Response<tonic::body::Body>
where
    Req: Message + Default + Send + 'static,
    Resp: Message + Send + 'static,
    F: Fn(AppState, RequestMeta, Req) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<Resp, Error>> + Send + 'static,
{
    let limit = state.settings.body_limit_bytes;
    let method = tower::service_fn(move |request: tonic::Request<Req>| {
        let (meta, message) = split(&state, request);
        let answer = operation(state.clone(), meta, message);
        async move {
            let answer = answer.await;
            crate::metrics::note_grpc_status(match &answer {
                Ok(_) => 0,
                Err(err) => err.kind.grpc_code(),
            });
            answer.map(tonic::Response::new).map_err(|err| status(&err))
        }
    });
    let mut grpc = tonic::server::Grpc::new(tonic_prost::ProstCodec::<Resp, Req>::default())
        .apply_max_message_size_config(Some(limit), None);
    grpc.unary(method, request).await
}

/// Metadata as the headers the operations read (`authorization`, `x-zitadel-orgid`), and the
/// client address from the connection (or a trusted proxy's `X-Forwarded-For`).
fn split<T>(state: &AppState, request: tonic::Request<T>) -> (RequestMeta, T) {
    let (metadata, extensions, message) = request.into_parts();
    let headers = metadata.into_headers();
    let peer = extensions.get::<ConnectInfo<SocketAddr>>();
    let ip =
        auth::client_ip(&state.settings.trusted_proxies, peer, &headers).map(|ip| ip.to_string());
    (RequestMeta { headers, ip }, message)
}

/// v2beta messages are wire-identical to v2 (SPEC §3): re-encode one as the other. The gRPC
/// face no longer needs it (it decodes v2beta bytes as v2 directly); public for the fuzz
/// targets (`fuzz/`), which check the identity.
#[doc(hidden)]
pub fn recode<A: Message, B: Message + Default>(message: &A) -> Result<B, tonic::Status> {
    B::decode(message.encode_to_vec().as_slice()).map_err(|err| {
        tracing::error!(%err, "v2beta/v2 message conversion failed");
        status(&Error::internal())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rekey_proto::zitadel::user::v2 as user_v2;
    use rekey_proto::zitadel::user::v2beta as user_v2beta;
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
