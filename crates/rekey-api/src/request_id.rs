//! Request ids: every request gets one, answered as the `x-request-id` response header on every
//! face and form (pages, REST, Connect, gRPC trailers-only errors), recorded on the request's
//! log span and carried by the flows into the outbox rows the request queues, so the delivery
//! worker's lines for those messages can be found with the request's.
//!
//! An incoming `x-request-id` is kept only when the connection's peer is a trusted proxy
//! (`REKEY_TRUSTED_PROXIES`) and the value is sane — visible ASCII, at most 128 characters —
//! so a client cannot write what it likes into the logs or pose as another request. Otherwise
//! a new one is drawn. tower-http's request-id layers keep any incoming id, whoever sent it,
//! hence this small middleware.
//!
//! The chosen id replaces the request's own `x-request-id` header before the faces see it, so
//! everything downstream reads it from the headers ([`of`]) — gRPC metadata included.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use http::header::HeaderName;
use http::{HeaderMap, HeaderValue};
use ipnet::IpNet;
use rekey_core::ports::{OsRandom, Random};
use tracing::Instrument;

/// `x-request-id`.
pub const HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// The longest incoming id kept.
pub const MAX_LEN: usize = 128;

/// The request's id, as [`assign`] set it (`None` outside the middleware, e.g. in tests that
/// call a face directly).
pub fn of(headers: &HeaderMap) -> Option<String> {
    headers
        .get(HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// Middleware: picks the request's id, puts it in the request's headers and a `request` span
/// around everything the request does, and answers it as the response's `x-request-id`.
pub async fn assign(
    State(trusted): State<Arc<Vec<IpNet>>>,
    mut request: Request,
    next: Next,
) -> Response {
    let from_proxy = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .is_some_and(|peer| trusted.iter().any(|net| net.contains(&peer.0.ip())));
    let value = from_proxy
        .then(|| incoming(request.headers()))
        .flatten()
        .unwrap_or_else(generate);
    let id = value.to_str().unwrap_or_default().to_owned();
    request.headers_mut().insert(HEADER, value.clone());
    let span = tracing::info_span!("request", request_id = %id);
    let mut response = next.run(request).instrument(span).await;
    response.headers_mut().insert(HEADER, value);
    response
}

/// The one incoming `x-request-id`, when it is sane: 1–128 characters of visible ASCII (no
/// spaces, no control characters). Several of them count as none.
fn incoming(headers: &HeaderMap) -> Option<HeaderValue> {
    let mut values = headers.get_all(HEADER).iter();
    let value = values.next()?;
    if values.next().is_some() {
        return None;
    }
    let bytes = value.as_bytes();
    let sane =
        !bytes.is_empty() && bytes.len() <= MAX_LEN && bytes.iter().all(|b| b.is_ascii_graphic());
    sane.then(|| value.clone())
}

/// A fresh id: 16 hex digits from the operating system's randomness. Not a secret, only
/// unique enough to tell requests apart.
fn generate() -> HeaderValue {
    let mut bytes = [0u8; 8];
    OsRandom.fill(&mut bytes);
    let hex = format!("{:016x}", u64::from_be_bytes(bytes));
    HeaderValue::from_str(&hex).unwrap_or_else(|_| HeaderValue::from_static("0000000000000000"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&[u8]]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(HEADER, HeaderValue::from_bytes(v).unwrap());
        }
        h
    }

    #[test]
    fn only_one_sane_incoming_id_is_kept() {
        assert_eq!(
            incoming(&headers(&[b"abc-123_X.y:z"])).unwrap(),
            "abc-123_X.y:z"
        );
        let longest = "a".repeat(MAX_LEN);
        assert!(incoming(&headers(&[longest.as_bytes()])).is_some());
        let too_long = "a".repeat(MAX_LEN + 1);
        assert!(incoming(&headers(&[too_long.as_bytes()])).is_none());
        for bad in [&b""[..], b"with space", b"tab\there", b"caf\xc3\xa9"] {
            assert!(incoming(&headers(&[bad])).is_none(), "{bad:?}");
        }
        assert!(incoming(&headers(&[b"one", b"two"])).is_none());
        assert!(incoming(&HeaderMap::new()).is_none());
    }

    #[test]
    fn generated_ids_are_16_hex_digits_and_differ() {
        let a = generate();
        let b = generate();
        assert_eq!(a.len(), 16);
        assert!(a.as_bytes().iter().all(u8::is_ascii_hexdigit));
        assert_ne!(a, b);
    }
}
