//! The REST (grpc-gateway) error shape of ZITADEL, SPEC §6:
//! `{"code":5,"message":"… (ID)","details":[{"@type":"type.googleapis.com/zitadel.v1.ErrorDetail","id":"…","message":"…"}]}`.

use axum::response::{IntoResponse, Response};
use axum::Json;
use http::{HeaderValue, StatusCode};
use prost::Message;
use rekey_core::Error;
use rekey_proto::zitadel::v1::ErrorDetail;
use serde_json::json;

pub const ERROR_DETAIL_TYPE: &str = "type.googleapis.com/zitadel.v1.ErrorDetail";

/// The `zitadel.v1.ErrorDetail` of an error, prost-encoded: what the proto forms (Connect's
/// `details[].value`, gRPC's `grpc-status-details-bin`) carry.
pub fn error_detail_bytes(err: &Error) -> Vec<u8> {
    ErrorDetail {
        id: err.id.to_owned(),
        message: err.text.to_string(),
    }
    .encode_to_vec()
}

/// The same detail packed as `google.protobuf.Any`.
pub fn error_detail_any(err: &Error) -> pbjson_types::Any {
    pbjson_types::Any {
        type_url: ERROR_DETAIL_TYPE.to_owned(),
        value: error_detail_bytes(err).into(),
    }
}

/// A domain error answered in ZITADEL's REST shape.
#[derive(Debug)]
pub struct RestError(pub Error);

impl From<Error> for RestError {
    fn from(err: Error) -> Self {
        Self(err)
    }
}

pub fn status_of(err: &Error) -> StatusCode {
    StatusCode::from_u16(err.kind.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// Adds `Retry-After` to rate-limited answers.
pub fn with_retry_after(mut response: Response, err: &Error) -> Response {
    if let Some(secs) = err.retry_after {
        if let Ok(value) = HeaderValue::from_str(&secs.to_string()) {
            response
                .headers_mut()
                .insert(http::header::RETRY_AFTER, value);
        }
    }
    response
}

impl IntoResponse for RestError {
    fn into_response(self) -> Response {
        let err = self.0;
        let body = json!({
            "code": err.kind.grpc_code(),
            "message": err.message(),
            "details": [{
                "@type": ERROR_DETAIL_TYPE,
                "id": err.id,
                "message": err.text,
            }],
        });
        with_retry_after((status_of(&err), Json(body)).into_response(), &err)
    }
}
