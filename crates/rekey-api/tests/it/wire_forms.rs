//! The proto wire forms on the one port (SPEC §5, §6): gRPC over h2c with tonic's generated
//! client, raw gRPC frames (content types, trailers), gRPC-Web hand-framed over HTTP/1.1,
//! Connect unary in JSON and binary with sized and chunked bodies, each form's error shape, and
//! the serving loop itself (plain h2c + HTTP/1.1, TLS with ALPN, request deadline, shutdown).

use std::collections::HashMap;
use std::time::Duration;

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use base64::Engine;
use bytes::{Buf, Bytes};
use http_body_util::BodyExt;
use prost::Message;
use rekey_api::serve::{serve, ServeOptions, TlsConfig};
use rekey_api::{AppState, ServeSettings};
use rekey_proto::zitadel::management::v1 as mgmt;
use rekey_proto::zitadel::org::v2 as org_v2;
use rekey_proto::zitadel::user::v2 as user_v2;
use rekey_proto::zitadel::user::v2beta as user_v2beta;
use rekey_proto::zitadel::v1::ErrorDetail;
use rekey_testkit::DbKind;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::sync::oneshot;
use tonic::transport::{Channel, Endpoint};

use crate::helpers::{both_dbs, spawn_app, TestApp, NEW_PASSWORD};

both_dbs!(
    grpc_reset_then_set_password_then_reused_code,
    grpc_v2beta_and_management_v1_with_org_header,
    grpc_missing_token_and_unknown_method,
    grpc_raw_frames_with_grpc_proto_content_type,
    grpc_web_over_http1,
    connect_json_sized_and_chunked,
    connect_proto,
    connect_error_shape_and_unknown_method,
    serve_plain_h2c_and_http1_then_shut_down,
    serve_tls_alpn_h2_and_http1,
    deadline_in_each_form,
    setup_rpcs_in_each_form,
);

const PASSWORD_RESET: &str = "/zitadel.user.v2.UserService/PasswordReset";
const SET_PASSWORD: &str = "/zitadel.user.v2.UserService/SetPassword";

/// `google.rpc.Status` (google/rpc/status.proto), declared here so the test decodes the
/// trailer independently of the server's own type.
#[derive(Clone, PartialEq, Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
    #[prost(message, repeated, tag = "3")]
    details: Vec<prost_types_any::Any>,
}

mod prost_types_any {
    /// `google.protobuf.Any`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Any {
        #[prost(string, tag = "1")]
        pub type_url: String,
        #[prost(bytes = "vec", tag = "2")]
        pub value: Vec<u8>,
    }
}

/// The one `zitadel.v1.ErrorDetail` inside a `grpc-status-details-bin` payload.
#[track_caller]
fn error_detail_of(status_details: &[u8], code: i32) -> ErrorDetail {
    let rpc = RpcStatus::decode(status_details).expect("google.rpc.Status");
    assert_eq!(rpc.code, code);
    assert_eq!(rpc.details.len(), 1, "{rpc:?}");
    assert_eq!(
        rpc.details[0].type_url,
        "type.googleapis.com/zitadel.v1.ErrorDetail"
    );
    let detail = ErrorDetail::decode(rpc.details[0].value.as_slice()).expect("ErrorDetail");
    assert_eq!(rpc.message, format!("{} ({})", detail.message, detail.id));
    detail
}

async fn channel(base: &str) -> Channel {
    Endpoint::from_shared(base.to_owned())
        .unwrap()
        .connect()
        .await
        .expect("h2c connection")
}

/// A tonic request with metadata.
fn with_metadata<T>(message: T, metadata: &[(&'static str, &str)]) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    for (name, value) in metadata {
        request.metadata_mut().insert(*name, value.parse().unwrap());
    }
    request
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn return_code_request(user_id: &str) -> user_v2::PasswordResetRequest {
    user_v2::PasswordResetRequest {
        user_id: user_id.to_owned(),
        medium: Some(user_v2::password_reset_request::Medium::ReturnCode(
            user_v2::ReturnPasswordResetCode {},
        )),
    }
}

fn set_with_code_request(user_id: &str, code: &str) -> user_v2::SetPasswordRequest {
    user_v2::SetPasswordRequest {
        user_id: user_id.to_owned(),
        new_password: Some(user_v2::Password {
            password: NEW_PASSWORD.to_owned(),
            change_required: false,
        }),
        verification: Some(
            user_v2::set_password_request::Verification::VerificationCode(code.to_owned()),
        ),
    }
}

/// The 5-byte gRPC (and gRPC-Web) message frame: flag 0, big-endian length, message.
fn frame(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + message.len());
    out.push(0);
    out.extend_from_slice(&u32::try_from(message.len()).unwrap().to_be_bytes());
    out.extend_from_slice(message);
    out
}

/// Splits a gRPC-Web body into its data messages and its trailer frame (flag 0x80), whose
/// `name:value\r\n` lines become a map.
fn web_frames(mut body: Bytes) -> (Vec<Bytes>, HashMap<String, String>) {
    let mut messages = Vec::new();
    let mut trailers = HashMap::new();
    while body.has_remaining() {
        assert!(body.len() >= 5, "truncated frame header");
        let flag = body.get_u8();
        let len = body.get_u32() as usize;
        assert!(body.len() >= len, "truncated frame");
        let payload = body.split_to(len);
        if flag & 0x80 != 0 {
            let text = std::str::from_utf8(&payload).unwrap();
            for line in text.split("\r\n").filter(|l| !l.is_empty()) {
                let (name, value) = line.split_once(':').unwrap();
                trailers.insert(name.trim().to_ascii_lowercase(), value.trim().to_owned());
            }
        } else {
            assert_eq!(flag, 0, "compressed frames are not expected");
            messages.push(payload);
        }
    }
    (messages, trailers)
}

/// A raw gRPC exchange over h2c (tonic's channel as a plain HTTP/2 client): headers, the data
/// frames, and the trailers (or, for a trailers-only answer, the headers).
struct RawAnswer {
    headers: http::HeaderMap,
    messages: Vec<Bytes>,
    trailers: http::HeaderMap,
}

impl RawAnswer {
    fn grpc(&self, name: &str) -> Option<String> {
        self.trailers
            .get(name)
            .or_else(|| self.headers.get(name))
            .map(|v| v.to_str().unwrap().to_owned())
    }
}

async fn raw_grpc(
    channel: &Channel,
    path: &str,
    content_type: &str,
    metadata: &[(&str, &str)],
    message: &[u8],
) -> RawAnswer {
    let mut request = http::Request::builder()
        .method("POST")
        .uri(path)
        .header("content-type", content_type)
        .header("te", "trailers");
    for (name, value) in metadata {
        request = request.header(*name, *value);
    }
    let request = request
        .body(tonic::body::Body::new(http_body_util::Full::new(
            Bytes::from(frame(message)),
        )))
        .unwrap();
    let response = tower::ServiceExt::oneshot(channel.clone(), request)
        .await
        .expect("HTTP/2 exchange");
    assert_eq!(response.status(), StatusCode::OK);
    let (parts, body) = response.into_parts();
    let collected = body.collect().await.expect("response body");
    let trailers = collected.trailers().cloned().unwrap_or_default();
    let mut data = collected.to_bytes();
    let mut messages = Vec::new();
    while data.has_remaining() {
        let _flag = data.get_u8();
        let len = data.get_u32() as usize;
        messages.push(data.split_to(len));
    }
    RawAnswer {
        headers: parts.headers,
        messages,
        trailers,
    }
}

// ---------------------------------------------------------------------------------- gRPC

async fn grpc_reset_then_set_password_then_reused_code(db: DbKind) {
    let app = spawn_app(db).await;
    let user = app.add_user(&app.t1, "grpc@acme.test").await;
    let mut client = user_v2::user_service_client::UserServiceClient::new(channel(&app.base).await);

    let auth = bearer(&app.admin1);
    let answer = client
        .password_reset(with_metadata(
            return_code_request(user.id.as_str()),
            &[("authorization", &auth)],
        ))
        .await
        .expect("PasswordReset over gRPC")
        .into_inner();
    let code = answer.verification_code.expect("verification_code");
    let details = answer.details.expect("details");
    assert_eq!(details.resource_owner, app.t1.id.to_string());
    assert!(details.change_date.is_some());

    // The code is the proof: no metadata at all.
    client
        .set_password(set_with_code_request(user.id.as_str(), &code))
        .await
        .expect("SetPassword over gRPC");
    assert!(app.has_password(&user, NEW_PASSWORD).await);

    let status = client
        .set_password(set_with_code_request(user.id.as_str(), &code))
        .await
        .expect_err("a used code");
    assert_eq!(status.code(), tonic::Code::FailedPrecondition);
    assert_eq!(status.message(), "Code not found (COMMAND-2M9fs)");
    let detail = error_detail_of(status.details(), 9);
    assert_eq!(detail.id, "COMMAND-2M9fs");
    assert_eq!(detail.message, "Code not found");
}

async fn grpc_v2beta_and_management_v1_with_org_header(db: DbKind) {
    let app = spawn_app(db).await;
    let user = app.add_user(&app.t1, "beta@acme.test").await;
    let channel = channel(&app.base).await;

    // v2beta: the same operations, its own message types.
    let mut beta = user_v2beta::user_service_client::UserServiceClient::new(channel.clone());
    let auth = bearer(&app.admin1);
    let answer = beta
        .password_reset(with_metadata(
            user_v2beta::PasswordResetRequest {
                user_id: user.id.to_string(),
                medium: Some(user_v2beta::password_reset_request::Medium::ReturnCode(
                    user_v2beta::ReturnPasswordResetCode {},
                )),
            },
            &[("authorization", &auth)],
        ))
        .await
        .expect("v2beta PasswordReset")
        .into_inner();
    let code = answer.verification_code.expect("verification_code");
    assert_eq!(
        answer.details.expect("details").resource_owner,
        app.t1.id.to_string()
    );
    beta.set_password(user_v2beta::SetPasswordRequest {
        user_id: user.id.to_string(),
        new_password: Some(user_v2beta::Password {
            password: NEW_PASSWORD.to_owned(),
            change_required: true,
        }),
        verification: Some(user_v2beta::set_password_request::Verification::VerificationCode(code)),
    })
    .await
    .expect("v2beta SetPassword");
    let stored = app.user(&user).await;
    assert!(stored.password_change_required);

    // v2beta errors are v2's: another tenant's admin sees "not found".
    let other = bearer(&app.admin2);
    let status = beta
        .password_reset(with_metadata(
            user_v2beta::PasswordResetRequest {
                user_id: user.id.to_string(),
                medium: None,
            },
            &[("authorization", &other)],
        ))
        .await
        .expect_err("other tenant");
    assert_eq!(status.code(), tonic::Code::NotFound);
    assert_eq!(error_detail_of(status.details(), 5).id, "COMMAND-SAF4f");

    // management v1 with x-zitadel-orgid.
    let mut management =
        mgmt::management_service_client::ManagementServiceClient::new(channel.clone());
    let system = bearer(&app.system);
    let t1 = app.t1.id.to_string();
    let answer = management
        .send_human_reset_password_notification(with_metadata(
            mgmt::SendHumanResetPasswordNotificationRequest {
                user_id: user.id.to_string(),
                r#type: 0,
            },
            &[("authorization", &system), ("x-zitadel-orgid", &t1)],
        ))
        .await
        .expect("v1 SendHumanResetPasswordNotification")
        .into_inner();
    assert_eq!(answer.details.expect("details").resource_owner, t1);
    assert!(!app
        .messages(&user, rekey_core::domain::MessageKind::PasswordReset)
        .await
        .is_empty());

    // A tenant admin naming another org → PERMISSION_DENIED; system without org → INVALID_ARGUMENT.
    let t2 = app.t2.id.to_string();
    let status = management
        .send_human_reset_password_notification(with_metadata(
            mgmt::SendHumanResetPasswordNotificationRequest {
                user_id: user.id.to_string(),
                r#type: 0,
            },
            &[("authorization", &auth), ("x-zitadel-orgid", &t2)],
        ))
        .await
        .expect_err("other org");
    assert_eq!(status.code(), tonic::Code::PermissionDenied);
    let status = management
        .set_human_password(with_metadata(
            mgmt::SetHumanPasswordRequest {
                user_id: user.id.to_string(),
                password: NEW_PASSWORD.to_owned(),
                no_change_required: true,
            },
            &[("authorization", &system)],
        ))
        .await
        .expect_err("system without org");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);

    // A tenant admin in its own org (header = own tenant) may set the password.
    management
        .set_human_password(with_metadata(
            mgmt::SetHumanPasswordRequest {
                user_id: user.id.to_string(),
                password: NEW_PASSWORD.to_owned(),
                no_change_required: true,
            },
            &[("authorization", &auth), ("x-zitadel-orgid", &t1)],
        ))
        .await
        .expect("v1 SetHumanPassword");
}

async fn grpc_missing_token_and_unknown_method(db: DbKind) {
    let app = spawn_app(db).await;
    let user = app.add_user(&app.t1, "nobody@acme.test").await;
    let channel = channel(&app.base).await;
    let mut client = user_v2::user_service_client::UserServiceClient::new(channel.clone());

    let before = app.snapshot().await;
    let status = client
        .password_reset(return_code_request(user.id.as_str()))
        .await
        .expect_err("no token");
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
    assert_eq!(error_detail_of(status.details(), 16).id, "AUTH-7fs1e");
    let status = client
        .password_reset(with_metadata(
            return_code_request(user.id.as_str()),
            &[("authorization", "Bearer not-a-token")],
        ))
        .await
        .expect_err("unknown token");
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
    assert_eq!(app.snapshot().await, before, "refusals write nothing");

    // F5's scheme works in gRPC metadata too.
    let api_token = format!("APIToken {}", app.admin1);
    client
        .password_reset(with_metadata(
            return_code_request(user.id.as_str()),
            &[("authorization", &api_token)],
        ))
        .await
        .expect("APIToken scheme");

    for path in [
        "/zitadel.user.v2.UserService/NoSuchMethod",
        "/zitadel.management.v1.ManagementService/NoSuchMethod",
        "/zitadel.nothing.v1.NoService/Method",
    ] {
        let answer = raw_grpc(&channel, path, "application/grpc", &[], b"").await;
        assert_eq!(answer.grpc("grpc-status").as_deref(), Some("12"), "{path}");
    }
}

async fn grpc_raw_frames_with_grpc_proto_content_type(db: DbKind) {
    let app = spawn_app(db).await;
    let user = app.add_user(&app.t1, "raw@acme.test").await;
    let channel = channel(&app.base).await;
    let auth = bearer(&app.admin1);

    for content_type in ["application/grpc+proto", "application/grpc"] {
        let answer = raw_grpc(
            &channel,
            PASSWORD_RESET,
            content_type,
            &[("authorization", &auth)],
            &return_code_request(user.id.as_str()).encode_to_vec(),
        )
        .await;
        assert_eq!(answer.grpc("grpc-status").as_deref(), Some("0"));
        assert!(answer.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/grpc"));
        assert_eq!(answer.messages.len(), 1);
        let reply = user_v2::PasswordResetResponse::decode(answer.messages[0].clone()).unwrap();
        assert!(reply.verification_code.is_some());
    }

    // An error's trailers, as bytes on the wire: percent-encoded message, base64 details.
    let answer = raw_grpc(
        &channel,
        SET_PASSWORD,
        "application/grpc+proto",
        &[],
        &set_with_code_request(user.id.as_str(), "ABCDEFGH").encode_to_vec(),
    )
    .await;
    assert_eq!(answer.grpc("grpc-status").as_deref(), Some("3"));
    assert_eq!(
        answer.grpc("grpc-message").as_deref(),
        Some("Code%20is%20invalid%20(CODE-woT0xc)")
    );
    let details = answer
        .grpc("grpc-status-details-bin")
        .expect("details trailer");
    let bytes = STANDARD_NO_PAD
        .decode(details.trim_end_matches('='))
        .expect("base64");
    assert_eq!(error_detail_of(&bytes, 3).id, "CODE-woT0xc");
}

// ------------------------------------------------------------------------------ gRPC-Web

/// A gRPC-Web answer: HTTP headers, data messages, and the trailers (from the trailer frame,
/// or from the headers of a trailers-only answer, which is how errors before any message come).
struct WebAnswer {
    headers: reqwest::header::HeaderMap,
    messages: Vec<Bytes>,
    trailers: HashMap<String, String>,
}

impl WebAnswer {
    fn status(&self) -> Option<&str> {
        self.trailers.get("grpc-status").map(String::as_str)
    }
}

/// A gRPC-Web call over HTTP/1.1 (reqwest's default for `http://`).
async fn grpc_web(
    app: &TestApp,
    path: &str,
    content_type: &str,
    headers: &[(&str, &str)],
    message: &[u8],
) -> WebAnswer {
    let mut request = app
        .client
        .post(app.url(path))
        .header("content-type", content_type)
        .header("x-grpc-web", "1")
        .body(frame(message));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.expect("gRPC-Web request");
    assert_eq!(response.version(), reqwest::Version::HTTP_11);
    assert_eq!(response.status(), StatusCode::OK);
    let headers = response.headers().clone();
    let (messages, mut trailers) = web_frames(response.bytes().await.unwrap());
    for name in ["grpc-status", "grpc-message", "grpc-status-details-bin"] {
        if let Some(value) = headers.get(name) {
            assert!(
                !trailers.contains_key(name),
                "{name} both in headers and trailers"
            );
            trailers.insert(name.to_owned(), value.to_str().unwrap().to_owned());
        }
    }
    WebAnswer {
        headers,
        messages,
        trailers,
    }
}

async fn grpc_web_over_http1(db: DbKind) {
    let app = spawn_app(db).await;
    let user = app.add_user(&app.t1, "web@acme.test").await;
    let admin1 = bearer(&app.admin1);
    let admin2 = bearer(&app.admin2);

    for content_type in ["application/grpc-web+proto", "application/grpc-web"] {
        let answer = grpc_web(
            &app,
            PASSWORD_RESET,
            content_type,
            &[("authorization", &admin1)],
            &return_code_request(user.id.as_str()).encode_to_vec(),
        )
        .await;
        assert!(answer.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/grpc-web"));
        assert_eq!(answer.status(), Some("0"));
        assert_eq!(answer.messages.len(), 1, "one data frame");
        let reply = user_v2::PasswordResetResponse::decode(answer.messages[0].clone()).unwrap();
        let code = reply.verification_code.expect("verification_code");

        let answer = grpc_web(
            &app,
            SET_PASSWORD,
            content_type,
            &[],
            &set_with_code_request(user.id.as_str(), &code).encode_to_vec(),
        )
        .await;
        assert_eq!(answer.status(), Some("0"));
        assert_eq!(answer.messages.len(), 1);
    }

    // Errors: status, message and details, with the org header read from HTTP headers.
    let answer = grpc_web(
        &app,
        PASSWORD_RESET,
        "application/grpc-web+proto",
        &[("authorization", &admin2)],
        &return_code_request(user.id.as_str()).encode_to_vec(),
    )
    .await;
    assert!(answer.messages.is_empty());
    assert_eq!(answer.status(), Some("5"));
    let details = STANDARD_NO_PAD
        .decode(answer.trailers["grpc-status-details-bin"].trim_end_matches('='))
        .unwrap();
    assert_eq!(error_detail_of(&details, 5).id, "COMMAND-SAF4f");

    let answer = grpc_web(
        &app,
        PASSWORD_RESET,
        "application/grpc-web+proto",
        &[],
        &return_code_request(user.id.as_str()).encode_to_vec(),
    )
    .await;
    assert_eq!(answer.status(), Some("16"));

    // management v1 over gRPC-Web: x-zitadel-orgid as an HTTP header.
    let system = bearer(&app.system);
    let t1 = app.t1.id.to_string();
    let request = mgmt::SendHumanResetPasswordNotificationRequest {
        user_id: user.id.to_string(),
        r#type: 0,
    }
    .encode_to_vec();
    let answer = grpc_web(
        &app,
        "/zitadel.management.v1.ManagementService/SendHumanResetPasswordNotification",
        "application/grpc-web+proto",
        &[("authorization", &system), ("x-zitadel-orgid", &t1)],
        &request,
    )
    .await;
    assert_eq!(answer.status(), Some("0"));
    let reply =
        mgmt::SendHumanResetPasswordNotificationResponse::decode(answer.messages[0].clone())
            .unwrap();
    assert_eq!(reply.details.unwrap().resource_owner, t1);
    let t2 = app.t2.id.to_string();
    let answer = grpc_web(
        &app,
        "/zitadel.management.v1.ManagementService/SendHumanResetPasswordNotification",
        "application/grpc-web+proto",
        &[("authorization", &admin1), ("x-zitadel-orgid", &t2)],
        &request,
    )
    .await;
    assert_eq!(answer.status(), Some("7"));
}

// ------------------------------------------------------------------------------- Connect

/// A Connect call; `body` is sent as is (a `reqwest::Body` may be a stream → chunked).
async fn connect(
    app: &TestApp,
    path: &str,
    content_type: &str,
    headers: &[(&str, &str)],
    body: impl Into<reqwest::Body>,
) -> reqwest::Response {
    let mut request = app
        .client
        .post(app.url(path))
        .header("content-type", content_type)
        .body(body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.expect("Connect request")
}

/// A body sent in several chunks, with `Transfer-Encoding: chunked` and no length.
fn chunked(bytes: Vec<u8>, chunk: usize) -> reqwest::Body {
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        bytes.chunks(chunk).map(|c| Ok(c.to_vec())).collect();
    reqwest::Body::wrap_stream(futures::stream::iter(chunks))
}

async fn connect_json_sized_and_chunked(db: DbKind) {
    let app = spawn_app(db).await;
    let user = app.add_user(&app.t1, "connect@acme.test").await;
    let auth = bearer(&app.admin1);

    // Sized, with Connect-Protocol-Version.
    let response = connect(
        &app,
        PASSWORD_RESET,
        "application/json",
        &[("authorization", &auth), ("connect-protocol-version", "1")],
        json!({"userId": user.id.to_string(), "returnCode": {}}).to_string(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/json");
    let body: Value = response.json().await.unwrap();
    let code = body["verificationCode"].as_str().expect("code").to_owned();
    assert_eq!(body["details"]["resourceOwner"], app.t1.id.to_string());
    let change_date = body["details"]["changeDate"].as_str().unwrap();
    assert!(change_date.ends_with('Z'), "{change_date}");
    assert!(
        body["details"]["sequence"].is_string(),
        "uint64 as a string"
    );

    // Chunked, without Connect-Protocol-Version, proto field names, unknown field ignored.
    let payload = json!({
        "user_id": user.id.to_string(),
        "new_password": {"password": NEW_PASSWORD},
        "verification_code": code,
        "somethingNew": true,
    })
    .to_string();
    let response = connect(
        &app,
        SET_PASSWORD,
        "application/json; charset=utf-8",
        &[],
        chunked(payload.into_bytes(), 7),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert!(body["details"]["changeDate"]
        .as_str()
        .unwrap()
        .ends_with('Z'));
    assert!(app.has_password(&user, NEW_PASSWORD).await);

    // Over the body limit, chunked: 413 in Connect's shape.
    let big = format!(
        "{{\"userId\":\"{}\",\"x\":\"{}\"}}",
        user.id,
        "a".repeat(70 * 1024)
    );
    let response = connect(
        &app,
        PASSWORD_RESET,
        "application/json",
        &[("authorization", &auth)],
        chunked(big.into_bytes(), 8 * 1024),
    )
    .await;
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], "invalid_argument");

    // A wrong Connect-Protocol-Version, a content type Connect does not have.
    let response = connect(
        &app,
        PASSWORD_RESET,
        "application/json",
        &[("authorization", &auth), ("connect-protocol-version", "2")],
        "{}",
    )
    .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let response = connect(&app, PASSWORD_RESET, "text/plain", &[], "{}").await;
    assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(response.headers().contains_key("accept-post"));
}

async fn connect_proto(db: DbKind) {
    let app = spawn_app(db).await;
    let user = app.add_user(&app.t1, "proto@acme.test").await;
    let auth = bearer(&app.admin1);

    let response = connect(
        &app,
        "/zitadel.user.v2beta.UserService/PasswordReset",
        "application/proto",
        &[("authorization", &auth), ("connect-protocol-version", "1")],
        return_code_request(user.id.as_str()).encode_to_vec(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/proto");
    let reply = user_v2beta::PasswordResetResponse::decode(response.bytes().await.unwrap())
        .expect("binary answer");
    let code = reply.verification_code.expect("verification_code");

    let response = connect(
        &app,
        SET_PASSWORD,
        "application/proto",
        &[],
        chunked(
            set_with_code_request(user.id.as_str(), &code).encode_to_vec(),
            5,
        ),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    user_v2::SetPasswordResponse::decode(response.bytes().await.unwrap()).unwrap();

    // Errors are JSON whatever the request's codec.
    let response = connect(
        &app,
        SET_PASSWORD,
        "application/proto",
        &[],
        set_with_code_request(user.id.as_str(), &code).encode_to_vec(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(response.headers()["content-type"], "application/json");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], "failed_precondition");
    assert_eq!(body["message"], "Code not found (COMMAND-2M9fs)");

    // Bytes that are no message.
    let response = connect(
        &app,
        PASSWORD_RESET,
        "application/proto",
        &[("authorization", &auth)],
        vec![0xff, 0xff, 0xff],
    )
    .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
}

async fn connect_error_shape_and_unknown_method(db: DbKind) {
    let app = spawn_app(db).await;
    let auth = bearer(&app.admin1);

    let response = connect(
        &app,
        PASSWORD_RESET,
        "application/json",
        &[("authorization", &auth)],
        json!({"userId": "69629023906488334", "returnCode": {}}).to_string(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(response.headers()["content-type"], "application/json");
    let body: Value = response.json().await.unwrap();
    let value = body["details"][0]["value"].as_str().unwrap().to_owned();
    assert!(!value.contains('='), "no padding: {value}");
    let detail = ErrorDetail::decode(STANDARD_NO_PAD.decode(&value).unwrap().as_slice()).unwrap();
    assert_eq!(
        detail,
        ErrorDetail {
            id: "COMMAND-SAF4f".into(),
            message: "User could not be found".into(),
        }
    );
    assert_eq!(
        body,
        json!({
            "code": "not_found",
            "message": "User could not be found (COMMAND-SAF4f)",
            "details": [{
                "type": "zitadel.v1.ErrorDetail",
                "value": value,
                "debug": {"id": "COMMAND-SAF4f", "message": "User could not be found"},
            }],
        })
    );
    // Standard alphabet: the same bytes as padded base64 minus the padding.
    assert_eq!(
        STANDARD
            .encode(detail.encode_to_vec())
            .trim_end_matches('='),
        value
    );

    // No token.
    let response = connect(
        &app,
        PASSWORD_RESET,
        "application/json",
        &[],
        json!({"userId": "1", "returnCode": {}}).to_string(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], "unauthenticated");

    // Unknown method of a served service → unimplemented (501, SPEC §6).
    let response = connect(
        &app,
        "/zitadel.user.v2.UserService/NoSuchMethod",
        "application/json",
        &[("connect-protocol-version", "1")],
        "{}",
    )
    .await;
    assert_eq!(response.status(), StatusCode::NOT_IMPLEMENTED);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], "unimplemented");
    assert_eq!(body["details"][0]["debug"]["id"], "REKEY-Unimp");
}

// ---------------------------------------------------------------------- the serving loop

/// Starts [`serve`] for `app`'s flows on a new port; returns the port and the shutdown trigger
/// with the server's task.
async fn serve_again(
    app: &TestApp,
    settings: ServeSettings,
    tls: Option<TlsConfig>,
) -> (
    u16,
    oneshot::Sender<()>,
    tokio::task::JoinHandle<std::io::Result<()>>,
) {
    let state = AppState {
        rekey: app.rekey.clone(),
        settings: std::sync::Arc::new(settings),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(serve(
        listener,
        rekey_api::router(state),
        tls,
        ServeOptions::default(),
        async {
            let _ = stopped.await;
        },
    ));
    (port, stop, task)
}

async fn serve_plain_h2c_and_http1_then_shut_down(db: DbKind) {
    let app = spawn_app(db).await;
    let user = app.add_user(&app.t1, "loop@acme.test").await;
    let (port, stop, task) = serve_again(&app, ServeSettings::default(), None).await;
    let base = format!("http://127.0.0.1:{port}");

    // h2c (prior knowledge): tonic, and reqwest speaking HTTP/2 to the REST face.
    let mut client = user_v2::user_service_client::UserServiceClient::new(channel(&base).await);
    let auth = bearer(&app.admin1);
    let reply = client
        .password_reset(with_metadata(
            return_code_request(user.id.as_str()),
            &[("authorization", &auth)],
        ))
        .await
        .expect("gRPC on the serving loop")
        .into_inner();
    assert!(reply.verification_code.is_some());
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let response = h2.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    assert_eq!(response.status(), StatusCode::OK);

    // HTTP/1.1 on the same port.
    let response = app
        .client
        .get(format!("{base}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_11);
    assert_eq!(response.status(), StatusCode::OK);

    // Shutdown: open (idle) connections are closed and the loop returns.
    drop(client);
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("serve returns after shutdown")
        .unwrap()
        .unwrap();
    assert!(app
        .client
        .get(format!("{base}/healthz"))
        .send()
        .await
        .is_err());
}

async fn serve_tls_alpn_h2_and_http1(db: DbKind) {
    let app = spawn_app(db).await;
    let user = app.add_user(&app.t1, "tls@acme.test").await;
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert_pem = cert.cert.pem();
    let key_pem = cert.key_pair.serialize_pem();
    let dir = tempfile::tempdir().unwrap();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, &cert_pem).unwrap();
    std::fs::write(&key_path, &key_pem).unwrap();
    let tls = TlsConfig::from_pem_files(&cert_path, &key_path).expect("TLS config");
    assert!(TlsConfig::from_pem(cert_pem.as_bytes(), b"not a key").is_err());

    let (port, stop, task) = serve_again(&app, ServeSettings::default(), Some(tls)).await;
    let base = format!("https://localhost:{port}");
    let root = reqwest::Certificate::from_pem(cert_pem.as_bytes()).unwrap();

    // ALPN h2 (reqwest offers h2 and http/1.1 and gets h2), then HTTP/1.1 only.
    let h2 = reqwest::Client::builder()
        .add_root_certificate(root.clone())
        .resolve("localhost", ([127, 0, 0, 1], port).into())
        .build()
        .unwrap();
    let auth = bearer(&app.admin1);
    let response = h2
        .post(format!("{base}{PASSWORD_RESET}"))
        .header("content-type", "application/json")
        .header("authorization", &auth)
        .body(json!({"userId": user.id.to_string(), "returnCode": {}}).to_string())
        .send()
        .await
        .expect("Connect over TLS");
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    assert_eq!(response.status(), StatusCode::OK);

    let h1 = reqwest::Client::builder()
        .add_root_certificate(root)
        .resolve("localhost", ([127, 0, 0, 1], port).into())
        .http1_only()
        .build()
        .unwrap();
    let response = h1.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_11);
    assert_eq!(response.status(), StatusCode::OK);

    // gRPC over TLS with tonic's client (ALPN h2).
    let channel = Endpoint::from_shared(format!("https://127.0.0.1:{port}"))
        .unwrap()
        .tls_config(
            tonic::transport::ClientTlsConfig::new()
                .ca_certificate(tonic::transport::Certificate::from_pem(&cert_pem))
                .domain_name("localhost"),
        )
        .unwrap()
        .connect()
        .await
        .expect("gRPC over TLS");
    let mut client = user_v2::user_service_client::UserServiceClient::new(channel);
    let reply = client
        .password_reset(with_metadata(
            return_code_request(user.id.as_str()),
            &[("authorization", &auth)],
        ))
        .await
        .expect("PasswordReset over TLS")
        .into_inner();
    assert!(reply.verification_code.is_some());

    drop(client);
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("serve returns after shutdown")
        .unwrap()
        .unwrap();
}

/// A body that arrives only after `delay`: the request waits on it, so the deadline fires
/// before any operation starts (nothing is cancelled halfway).
fn late_body(bytes: Vec<u8>, delay: Duration) -> reqwest::Body {
    reqwest::Body::wrap_stream(futures::stream::once(async move {
        tokio::time::sleep(delay).await;
        Ok::<_, std::io::Error>(bytes)
    }))
}

/// The server's request deadline answers each form in its own shape.
async fn deadline_in_each_form(db: DbKind) {
    let app = spawn_app(db).await;
    let user = app.add_user(&app.t1, "late@acme.test").await;
    let settings = ServeSettings {
        request_timeout: Duration::from_millis(300),
        ..ServeSettings::default()
    };
    let (port, stop, task) = serve_again(&app, settings, None).await;
    let base = format!("http://127.0.0.1:{port}");
    let auth = bearer(&app.admin1);
    let message = return_code_request(user.id.as_str()).encode_to_vec();
    let late = Duration::from_secs(3);

    // gRPC (h2c): the message frame comes late → DEADLINE_EXCEEDED trailers with details.
    let channel = channel(&base).await;
    let frame_bytes = Bytes::from(frame(&message));
    let body = http_body_util::StreamBody::new(futures::stream::once(async move {
        tokio::time::sleep(late).await;
        Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(frame_bytes))
    }));
    let request = http::Request::builder()
        .method("POST")
        .uri(PASSWORD_RESET)
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("authorization", &auth)
        .body(tonic::body::Body::new(body))
        .unwrap();
    let started = std::time::Instant::now();
    let response = tower::ServiceExt::oneshot(channel, request).await.unwrap();
    assert!(started.elapsed() < late, "answered before the body came");
    let status = tonic::Status::from_header_map(response.headers()).expect("trailers-only");
    assert_eq!(status.code(), tonic::Code::DeadlineExceeded);
    assert_eq!(status.message(), "Deadline exceeded (REKEY-Dline)");
    assert_eq!(error_detail_of(status.details(), 4).id, "REKEY-Dline");

    // gRPC-Web over HTTP/1.1.
    let response = app
        .client
        .post(format!("{base}{PASSWORD_RESET}"))
        .header("content-type", "application/grpc-web+proto")
        .header("authorization", &auth)
        .body(late_body(frame(&message), late))
        .send()
        .await
        .unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_11);
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-type"],
        "application/grpc-web+proto"
    );
    assert_eq!(response.headers()["grpc-status"], "4");

    // Connect and REST: 504 in their own bodies.
    let json_body = json!({"userId": user.id.to_string(), "returnCode": {}}).to_string();
    let response = app
        .client
        .post(format!("{base}{PASSWORD_RESET}"))
        .header("content-type", "application/json")
        .header("authorization", &auth)
        .body(late_body(json_body.clone().into_bytes(), late))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], "deadline_exceeded");
    assert_eq!(body["details"][0]["debug"]["id"], "REKEY-Dline");

    let response = app
        .client
        .post(format!("{base}/v2/users/{}/password_reset", user.id))
        .header("content-type", "application/json")
        .header("authorization", &auth)
        .body(late_body(json_body.into_bytes(), late))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], 4);

    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("serve returns after shutdown")
        .unwrap()
        .unwrap();
}

// ------------------------------------------------------------------------- setup RPCs

/// The setup RPCs run through the same tables: AddOrganization and AddHumanUser over gRPC,
/// GetUserByID over Connect JSON, LockUser over gRPC-Web, ListUsers over v2beta gRPC; the lock
/// then stops a reset in every form.
async fn setup_rpcs_in_each_form(db: DbKind) {
    let app = spawn_app(db).await;
    let channel = channel(&app.base).await;
    let system = bearer(&app.system);
    let admin1 = bearer(&app.admin1);

    let mut orgs =
        org_v2::organization_service_client::OrganizationServiceClient::new(channel.clone());
    let org = orgs
        .add_organization(with_metadata(
            org_v2::AddOrganizationRequest {
                name: "Initech".into(),
                ..Default::default()
            },
            &[("authorization", &system)],
        ))
        .await
        .expect("AddOrganization over gRPC")
        .into_inner();
    assert!(!org.organization_id.is_empty());

    let mut users = user_v2::user_service_client::UserServiceClient::new(channel.clone());
    let added = users
        .add_human_user(with_metadata(
            user_v2::AddHumanUserRequest {
                profile: Some(user_v2::SetHumanProfile {
                    given_name: "Ada".into(),
                    family_name: "Lovelace".into(),
                    ..Default::default()
                }),
                email: Some(user_v2::SetHumanEmail {
                    email: "ada@acme.test".into(),
                    verification: None,
                }),
                ..Default::default()
            },
            &[("authorization", &admin1)],
        ))
        .await
        .expect("AddHumanUser over gRPC")
        .into_inner();
    let user_id = added.user_id;
    assert_eq!(
        added.details.expect("details").resource_owner,
        app.t1.id.to_string()
    );

    let response = connect(
        &app,
        "/zitadel.user.v2.UserService/GetUserByID",
        "application/json",
        &[("authorization", &admin1)],
        json!({ "userId": user_id }).to_string(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["user"]["userId"], user_id.as_str(), "{body}");

    let answer = grpc_web(
        &app,
        "/zitadel.user.v2.UserService/LockUser",
        "application/grpc-web+proto",
        &[("authorization", &admin1)],
        &user_v2::LockUserRequest {
            user_id: user_id.clone(),
        }
        .encode_to_vec(),
    )
    .await;
    assert_eq!(answer.status(), Some("0"));

    let mut beta = user_v2beta::user_service_client::UserServiceClient::new(channel.clone());
    let listed = beta
        .list_users(with_metadata(
            user_v2beta::ListUsersRequest::default(),
            &[("authorization", &admin1)],
        ))
        .await
        .expect("v2beta ListUsers over gRPC")
        .into_inner();
    let found = listed
        .result
        .iter()
        .find(|u| u.user_id == user_id)
        .expect("the new user is listed");
    assert_eq!(found.state, user_v2beta::UserState::Locked as i32);

    // A locked user cannot be reset, whatever the form.
    let status = users
        .password_reset(with_metadata(
            return_code_request(&user_id),
            &[("authorization", &admin1)],
        ))
        .await
        .expect_err("locked");
    assert_eq!(status.code(), tonic::Code::FailedPrecondition);
    let response = connect(
        &app,
        PASSWORD_RESET,
        "application/json",
        &[("authorization", &admin1)],
        json!({ "userId": user_id, "returnCode": {} }).to_string(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], "failed_precondition");
}
