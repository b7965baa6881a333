//! protojson in and out (SPEC §3.4), through the pbjson impls of the generated types. Decode
//! errors never echo the input back: a serde message such as `invalid type: string "hunter2"`
//! would leak a password into a response or a log.

use axum::body::{Body, Bytes};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, SecondsFormat};
use http::{header, HeaderValue, StatusCode};
use rekey_core::{Error, ErrorKind};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

/// Reads the whole body, at most `limit` bytes (→ 413, code 3).
pub async fn read_body(body: Body, limit: usize) -> Result<Bytes, Error> {
    axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| body_too_large())
}

pub fn body_too_large() -> Error {
    Error::invalid("REKEY-Body2", "Request body is too large")
}

/// HTTP status for an error raised while reading a body: 413 for the size limit.
pub fn status_override(err: &Error) -> Option<StatusCode> {
    (err.id == "REKEY-Body2").then_some(StatusCode::PAYLOAD_TOO_LARGE)
}

/// Decodes a protojson body. An empty body is the empty message.
pub fn decode<T: DeserializeOwned + Default>(bytes: &[u8]) -> Result<T, Error> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    let mut value: Value = serde_json::from_slice(bytes).map_err(|err| describe(&err))?;
    drop_nulls(&mut value);
    serde_json::from_value(value).map_err(|err| describe(&err))
}

/// Decodes a protojson body into which REST path parameters are put: each `(field, value)`
/// replaces the field in the body under either of its names (`user_id`, `userId`), as
/// grpc-gateway lets the path win. Without parameters this is [`decode`].
pub fn decode_with_path<T: DeserializeOwned + Default>(
    bytes: &[u8],
    params: &[(String, String)],
) -> Result<T, Error> {
    if params.is_empty() {
        return decode(bytes);
    }
    let mut value = if bytes.iter().all(u8::is_ascii_whitespace) {
        Value::Object(serde_json::Map::new())
    } else {
        serde_json::from_slice(bytes).map_err(|err| describe(&err))?
    };
    if let Value::Object(map) = &mut value {
        for (field, text) in params {
            map.remove(field.as_str());
            map.insert(lower_camel(field), Value::String(text.clone()));
        }
    }
    drop_nulls(&mut value);
    serde_json::from_value(value).map_err(|err| describe(&err))
}

/// protojson's JSON name of a proto field name: `user_id` → `userId`.
pub fn lower_camel(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let mut upper = false;
    for c in field.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// protojson reads `null` as "the default value"; pbjson refuses it for scalars and enums, so
/// null members are removed before decoding (which is the same thing).
fn drop_nulls(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(drop_nulls);
        }
        Value::Array(items) => items.iter_mut().for_each(drop_nulls),
        _ => {}
    }
}

fn describe(err: &serde_json::Error) -> Error {
    use serde_json::error::Category;
    let text = err.to_string();
    if text.starts_with("duplicate field") {
        // pbjson reports two members of one oneof as a duplicate field.
        return Error::invalid(
            "REKEY-Oneof",
            "Request sets more than one member of a oneof; set only one",
        );
    }
    match err.classify() {
        Category::Syntax | Category::Eof | Category::Io => Error::invalid(
            "REKEY-Json1",
            format!(
                "Request body is not valid JSON (line {}, column {})",
                err.line(),
                err.column()
            ),
        ),
        Category::Data => Error::invalid(
            "REKEY-Json2",
            format!(
                "Request body does not match the message: {} (line {}, column {})",
                data_problem(&text),
                err.line(),
                err.column()
            ),
        ),
    }
}

/// The kind of data problem, without any of the input's values.
fn data_problem(text: &str) -> &'static str {
    if text.starts_with("invalid type") {
        "a field has the wrong type"
    } else if text.starts_with("unknown variant") || text.contains("enum") {
        "an enum field has an unknown value"
    } else if text.starts_with("missing field") {
        "a required field is missing"
    } else if text.starts_with("invalid value") || text.contains("invalid") {
        "a field has an invalid value"
    } else {
        "a field could not be read"
    }
}

/// Serializes a response message as protojson, with timestamps in ZITADEL's `…Z` form
/// (pbjson writes `+00:00`).
pub fn respond<T: Serialize>(message: &T) -> Response {
    let body = match encode(message) {
        Ok(body) => body,
        Err(err) => return crate::RestError(err).into_response(),
    };
    let mut response = (StatusCode::OK, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// A message as protojson bytes, timestamps in the `…Z` form.
pub fn encode<T: Serialize>(message: &T) -> Result<Vec<u8>, Error> {
    let mut value = serde_json::to_value(message).map_err(|err| {
        tracing::error!(%err, "response serialization failed");
        Error::internal()
    })?;
    zulu_timestamps(&mut value);
    serde_json::to_vec(&value).map_err(|_| Error::internal())
}

/// Rewrites the RFC 3339 timestamps of ZITADEL messages (`…Date`, `timestamp`,
/// `passwordChanged`) to UTC with `Z` and milliseconds.
pub fn zulu_timestamps(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                if key.ends_with("Date") || key == "timestamp" || key == "passwordChanged" {
                    if let Value::String(s) = v {
                        if let Ok(t) = DateTime::parse_from_rfc3339(s) {
                            *s = t.to_utc().to_rfc3339_opts(SecondsFormat::Millis, true);
                        }
                    }
                } else {
                    zulu_timestamps(v);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(zulu_timestamps),
        _ => {}
    }
}

/// Whether an error came from a decode step (for callers that map them specially).
pub fn is_decode_error(err: &Error) -> bool {
    err.kind == ErrorKind::InvalidArgument && err.id.starts_with("REKEY-Json")
}

#[cfg(test)]
mod tests {
    use super::*;
    use rekey_proto::zitadel::user::v2::{password_reset_request::Medium, PasswordResetRequest};

    #[test]
    fn both_oneof_members_is_a_clear_invalid_argument() {
        let err =
            decode::<PasswordResetRequest>(br#"{"sendLink":{},"returnCode":{}}"#).unwrap_err();
        assert_eq!(err.id, "REKEY-Oneof");
        assert_eq!(err.kind, ErrorKind::InvalidArgument);
    }

    #[test]
    fn accepts_proto_names_camel_case_and_unknown_fields() {
        let a: PasswordResetRequest =
            decode(br#"{"user_id":"1","return_code":{},"whatever":1}"#).unwrap();
        let b: PasswordResetRequest = decode(br#"{"userId":"1","returnCode":{}}"#).unwrap();
        assert_eq!(a, b);
        assert!(matches!(a.medium, Some(Medium::ReturnCode(_))));
        let c: PasswordResetRequest = decode(br#"{"sendLink":{"notificationType":2}}"#).unwrap();
        let d: PasswordResetRequest =
            decode(br#"{"sendLink":{"notificationType":"NOTIFICATION_TYPE_SMS"}}"#).unwrap();
        assert_eq!(c, d);
    }

    #[test]
    fn decode_errors_do_not_echo_input() {
        let err = decode::<rekey_proto::zitadel::user::v2::SetPasswordRequest>(
            br#"{"newPassword":{"password":["hunter2"]}}"#,
        )
        .unwrap_err();
        assert!(!err.message().contains("hunter2"), "{}", err.message());
        let err = decode::<PasswordResetRequest>(br#"{"userId": "hunter2" "#).unwrap_err();
        assert!(!err.message().contains("hunter2"));
        assert_eq!(err.id, "REKEY-Json1");
    }

    #[test]
    fn the_path_wins_over_the_body() {
        let params = [("user_id".to_owned(), "7".to_owned())];
        for body in [
            &br#"{"userId":"1","returnCode":{}}"#[..],
            br#"{"user_id":1,"returnCode":{}}"#,
            br#"{"returnCode":{}}"#,
        ] {
            let req: PasswordResetRequest = decode_with_path(body, &params).unwrap();
            assert_eq!(req.user_id, "7");
        }
        let req: PasswordResetRequest = decode_with_path(b" ", &params).unwrap();
        assert_eq!(req.user_id, "7");
        assert_eq!(lower_camel("send_link"), "sendLink");
    }

    #[test]
    fn timestamps_become_zulu() {
        let mut v = serde_json::json!({"details":{"changeDate":"2025-03-05T21:29:22.155+00:00","sequence":"2"}});
        zulu_timestamps(&mut v);
        assert_eq!(v["details"]["changeDate"], "2025-03-05T21:29:22.155Z");
    }
}
