//! Connect unary (SPEC §5): `POST /{package}.{Service}/{Method}` with `Content-Type:
//! application/json` (protojson through pbjson, timestamps as `…Z`) or `application/proto`
//! (prost), `Connect-Protocol-Version: 1` optional, sized or chunked bodies. Errors are Connect's
//! JSON with the HTTP status of SPEC §6 and the `zitadel.v1.ErrorDetail` as a detail:
//! `{"code":"not_found","message":"… (ID)","details":[{"type":"zitadel.v1.ErrorDetail",
//! "value":"<base64, no padding>","debug":{"id":"…","message":"…"}}]}`.
//!
//! A small adapter rather than a Connect crate: the ones that serve prost types are early or
//! pinned to older prost (see DESIGN, "Connect"), and unary Connect is only a content-type
//! switch, a decode, the shared operation and an encode. gRPC requests on the same paths never
//! get here: the router sends every `application/grpc…` request to tonic first.
//!
//! The RPCs come from [`crate::operations`]: adding one there serves it here.

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, post};
use axum::Router;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use base64::Engine;
use http::{header, HeaderMap, HeaderValue, StatusCode};
use prost::Message;
use rekey_core::{Error, ErrorKind};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::json;

use super::zitadel::{self, RequestMeta};
use crate::error::{error_detail_bytes, status_of, with_retry_after};
use crate::json::{self, read_body, status_override};
use crate::operations::{self, Handler};
use crate::{auth, AppState};

fn service_of(path: &str) -> Option<&str> {
    let rest = path.strip_prefix('/')?;
    let (service, method) = rest.split_once('/')?;
    (!method.is_empty() && !method.contains('/') && service.contains('.')).then_some(service)
}

/// Whether `path` is an RPC path of a served service (for errors raised outside a handler).
pub fn is_rpc_path(path: &str) -> bool {
    service_of(path).is_some_and(|service| operations::services().contains(&service))
}

pub fn routes() -> Router<AppState> {
    let mut router = Router::new();
    for service in operations::services() {
        router = router.route(&format!("/{service}/{{method}}"), any(unimplemented));
    }
    for op in operations::operations() {
        let handler = op.handler;
        router = router.route(
            &op.rpc_path(),
            post(move |State(state): State<AppState>, request: Request| {
                handle(state, handler, request)
            }),
        );
    }
    router
}

/// The two unary codecs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    Json,
    Proto,
}

impl Codec {
    /// From `Content-Type`, ignoring parameters (`; charset=utf-8`) and case.
    fn of(headers: &HeaderMap) -> Option<Self> {
        let value = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
        let media = value.split(';').next().unwrap_or("").trim();
        if media.eq_ignore_ascii_case("application/json") {
            Some(Codec::Json)
        } else if media.eq_ignore_ascii_case("application/proto") {
            Some(Codec::Proto)
        } else {
            None
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Codec::Json => "application/json",
            Codec::Proto => "application/proto",
        }
    }

    pub fn decode<T>(self, body: &[u8]) -> Result<T, Error>
    where
        T: Message + DeserializeOwned + Default,
    {
        match self {
            Codec::Json => json::decode(body),
            Codec::Proto => operations::decode_proto(body),
        }
    }

    pub fn encode<T: Message + Serialize>(self, message: &T) -> Result<Vec<u8>, Error> {
        match self {
            Codec::Json => json::encode(message),
            Codec::Proto => Ok(message.encode_to_vec()),
        }
    }
}

async fn handle(state: AppState, handler: Handler, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let Some(codec) = Codec::of(&parts.headers) else {
        return unsupported_media_type();
    };
    let result = async {
        check_protocol_version(&parts.headers)?;
        check_encoding(&parts.headers)?;
        let timeout = connect_timeout(&parts.headers)?;
        let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>();
        let meta = RequestMeta {
            ip: auth::client_ip(&state.settings.trusted_proxies, peer, &parts.headers)
                .map(|ip| ip.to_string()),
            headers: parts.headers.clone(),
        };
        let limit = state.settings.body_limit_bytes;
        let call = async move {
            let bytes = read_body(body, limit).await?;
            match codec {
                Codec::Json => (handler.json)(state, meta, bytes, Vec::new()).await,
                Codec::Proto => (handler.proto)(state, meta, bytes).await,
            }
        };
        match timeout {
            // The client's own deadline; the server's deadline middleware still applies.
            Some(timeout) => tokio::time::timeout(timeout, call)
                .await
                .map_err(|_| deadline_exceeded())?,
            None => call.await,
        }
    }
    .await;
    match result {
        Ok(body) => {
            let mut response = (StatusCode::OK, body).into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(codec.content_type()),
            );
            response
        }
        Err(err) => error_response(&err),
    }
}

/// A method of a served service that Rekey does not have.
async fn unimplemented(uri: http::Uri) -> Response {
    error_response(&zitadel::unimplemented(uri.path()))
}

/// `Connect-Protocol-Version` is optional (ZITADEL's clients do not all send it); when sent it
/// must be `1`.
fn check_protocol_version(headers: &HeaderMap) -> Result<(), Error> {
    match headers.get("connect-protocol-version") {
        None => Ok(()),
        Some(value) if value.as_bytes() == b"1" => Ok(()),
        Some(_) => Err(Error::invalid(
            "REKEY-CnVer",
            "Connect-Protocol-Version must be 1",
        )),
    }
}

/// Request bodies are not compressed by the clients Rekey serves; anything but identity is
/// refused rather than misread.
fn check_encoding(headers: &HeaderMap) -> Result<(), Error> {
    match headers.get(header::CONTENT_ENCODING) {
        None => Ok(()),
        Some(value) if value.as_bytes().eq_ignore_ascii_case(b"identity") => Ok(()),
        Some(_) => Err(Error::new(
            ErrorKind::Unimplemented,
            "REKEY-CnEnc",
            "Request compression is not supported; send the body uncompressed",
        )),
    }
}

/// `Connect-Timeout-Ms`: at most 10 digits (Connect's rule).
fn connect_timeout(headers: &HeaderMap) -> Result<Option<Duration>, Error> {
    let Some(value) = headers.get("connect-timeout-ms") else {
        return Ok(None);
    };
    let text = value.to_str().unwrap_or("");
    if text.is_empty() || text.len() > 10 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::invalid(
            "REKEY-CnTmo",
            "Connect-Timeout-Ms must be 1 to 10 digits",
        ));
    }
    Ok(text.parse().ok().map(Duration::from_millis))
}

fn deadline_exceeded() -> Error {
    Error::new(
        ErrorKind::DeadlineExceeded,
        "REKEY-Dline",
        "Deadline exceeded",
    )
}

/// 415 with `Accept-Post`, as Connect asks of a server that cannot read the content type.
fn unsupported_media_type() -> Response {
    let err = Error::invalid(
        "REKEY-CType",
        "Content-Type must be application/json or application/proto",
    );
    let mut response = error_response(&err);
    *response.status_mut() = StatusCode::UNSUPPORTED_MEDIA_TYPE;
    response.headers_mut().insert(
        "accept-post",
        HeaderValue::from_static("application/json, application/proto"),
    );
    response
}

/// A domain error in Connect's shape (always JSON, whatever the request's codec), with
/// `Retry-After` for a rate limit and 413 for an oversized body.
pub fn error_response(err: &Error) -> Response {
    let status = status_override(err).unwrap_or_else(|| status_of(err));
    let body = json!({
        "code": err.kind.connect_code(),
        "message": err.message(),
        "details": [{
            "type": "zitadel.v1.ErrorDetail",
            "value": STANDARD_NO_PAD.encode(error_detail_bytes(err)),
            "debug": { "id": err.id, "message": err.text },
        }],
    });
    let mut response = (status, body.to_string()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    with_retry_after(response, err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rpc_paths() {
        assert!(is_rpc_path("/zitadel.user.v2.UserService/PasswordReset"));
        assert!(is_rpc_path("/zitadel.user.v2.UserService/Nope"));
        assert!(!is_rpc_path("/v2/users/1/password"));
        assert!(!is_rpc_path("/other.Service/Method"));
    }

    #[test]
    fn content_types() {
        let mut headers = HeaderMap::new();
        assert_eq!(Codec::of(&headers), None);
        for (value, codec) in [
            ("application/json", Some(Codec::Json)),
            ("Application/JSON; charset=utf-8", Some(Codec::Json)),
            ("application/proto", Some(Codec::Proto)),
            ("application/connect+json", None),
            ("text/plain", None),
        ] {
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(value));
            assert_eq!(Codec::of(&headers), codec, "{value}");
        }
    }

    #[test]
    fn timeouts() {
        let mut headers = HeaderMap::new();
        assert_eq!(connect_timeout(&headers).unwrap(), None);
        headers.insert("connect-timeout-ms", HeaderValue::from_static("250"));
        assert_eq!(
            connect_timeout(&headers).unwrap(),
            Some(Duration::from_millis(250))
        );
        headers.insert(
            "connect-timeout-ms",
            HeaderValue::from_static("12345678901"),
        );
        assert!(connect_timeout(&headers).is_err());
        headers.insert("connect-timeout-ms", HeaderValue::from_static("-1"));
        assert!(connect_timeout(&headers).is_err());
    }
}
