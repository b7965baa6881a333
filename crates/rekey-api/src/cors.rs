//! CORS for browser clients on another origin (SPEC §5): a web app using `@zitadel/client/web`
//! (gRPC-Web or Connect) or the REST routes. Configured by `REKEY_CORS__ALLOWED_ORIGINS`: a
//! comma-separated list of origins, or `*`; empty (the default) means no CORS headers at all.
//!
//! Written here rather than taken from `tower_http::cors` because the contract is stricter than
//! that layer's behaviour: a preflight from an origin that is not allowed must get no CORS
//! headers at all (tower-http still sends the allowed methods, headers and max age), and the
//! answer names only the requested headers among the ones the ZITADEL clients send.
//! Credentials are never allowed: tokens travel in `authorization`, not in cookies.
//!
//! The hosted pages (`/ui/…`) never get CORS headers: a script on another origin has no
//! business reading a page that carries a form token.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::header::{
    ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN,
    ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE, ACCESS_CONTROL_REQUEST_HEADERS,
    ACCESS_CONTROL_REQUEST_METHOD, ORIGIN, VARY,
};
use http::{HeaderMap, HeaderValue, Method, StatusCode};

/// Request headers a browser client may send (lower case, as browsers list them in
/// `Access-Control-Request-Headers`).
pub const ALLOWED_HEADERS: &[&str] = &[
    "authorization",
    "content-type",
    "x-grpc-web",
    "x-user-agent",
    "connect-protocol-version",
    "connect-timeout-ms",
    "grpc-timeout",
    "x-zitadel-orgid",
];

/// Response headers scripts may read: the gRPC-Web status travels in headers of a
/// trailers-only answer, a 429 says when to come back, and the request id is what to quote
/// to an operator.
const EXPOSED_HEADERS: &str =
    "grpc-status, grpc-message, grpc-status-details-bin, retry-after, x-request-id";

const ALLOWED_METHODS: &str = "GET, POST, PATCH, DELETE";

/// How long a browser may cache a preflight answer (Chromium caps this at 2 hours).
const MAX_AGE_SECS: &str = "7200";

/// Which origins may call the API from a browser.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum CorsPolicy {
    /// No CORS headers at all (the default).
    #[default]
    Off,
    /// Any origin (`*`); the answer still names the calling origin, never credentials.
    AnyOrigin,
    /// Exactly these origins (`scheme://host[:port]`, compared as sent by browsers).
    Origins(Vec<String>),
}

impl CorsPolicy {
    /// Parses `REKEY_CORS__ALLOWED_ORIGINS`. Each origin must be `http(s)://host[:port]`
    /// with no path, query or trailing slash, because that is how a browser sends `Origin`
    /// and an entry that can never match would fail silently.
    pub fn parse(list: &str) -> Result<Self, String> {
        let entries: Vec<&str> = list
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        if entries.is_empty() {
            return Ok(Self::Off);
        }
        if entries == ["*"] {
            return Ok(Self::AnyOrigin);
        }
        let mut origins = Vec::with_capacity(entries.len());
        for entry in entries {
            if entry == "*" {
                return Err("`*` cannot be combined with other origins".to_owned());
            }
            if !is_origin(entry) {
                return Err(format!(
                    "{entry:?} is not an origin (scheme://host[:port], no path or trailing slash)"
                ));
            }
            origins.push(entry.to_ascii_lowercase());
        }
        Ok(Self::Origins(origins))
    }

    fn allows(&self, origin: &str) -> bool {
        match self {
            Self::Off => false,
            Self::AnyOrigin => origin != "null",
            Self::Origins(list) => list.iter().any(|o| o.eq_ignore_ascii_case(origin)),
        }
    }
}

fn is_origin(s: &str) -> bool {
    let Some((scheme, rest)) = s.split_once("://") else {
        return false;
    };
    matches!(scheme.to_ascii_lowercase().as_str(), "http" | "https")
        && !rest.is_empty()
        && !rest.contains(['/', '?', '#', '@', ' '])
}

/// The middleware; `policy` is shared by every request.
pub async fn cors(State(policy): State<Arc<CorsPolicy>>, request: Request, next: Next) -> Response {
    if *policy == CorsPolicy::Off || request.uri().path().starts_with("/ui/") {
        return next.run(request).await;
    }
    let origin = request
        .headers()
        .get(ORIGIN)
        .and_then(|v| v.to_str().ok())
        .filter(|origin| policy.allows(origin))
        .and_then(|origin| HeaderValue::from_str(origin).ok());
    let Some(origin) = origin else {
        let mut response = next.run(request).await;
        vary_origin(response.headers_mut());
        return response;
    };
    if request.method() == Method::OPTIONS
        && request
            .headers()
            .contains_key(ACCESS_CONTROL_REQUEST_METHOD)
    {
        return preflight(origin, request.headers());
    }
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    headers.insert(
        ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static(EXPOSED_HEADERS),
    );
    vary_origin(headers);
    response
}

/// 204 with the origin, the methods, the requested headers that are allowed, and a max age.
fn preflight(origin: HeaderValue, request: &HeaderMap) -> Response {
    let requested: Vec<String> = request
        .get_all(ACCESS_CONTROL_REQUEST_HEADERS)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|h| h.trim().to_ascii_lowercase())
        .filter(|h| ALLOWED_HEADERS.contains(&h.as_str()))
        .collect();
    let mut response = StatusCode::NO_CONTENT.into_response();
    let headers = response.headers_mut();
    headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    headers.insert(
        ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static(ALLOWED_METHODS),
    );
    if !requested.is_empty() {
        if let Ok(value) = HeaderValue::from_str(&requested.join(", ")) {
            headers.insert(ACCESS_CONTROL_ALLOW_HEADERS, value);
        }
    }
    headers.insert(
        ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static(MAX_AGE_SECS),
    );
    headers.append(
        VARY,
        HeaderValue::from_static(
            "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
        ),
    );
    response
}

/// The answer depends on `Origin`, so shared caches must key on it.
fn vary_origin(headers: &mut HeaderMap) {
    let already = headers
        .get_all(VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|v| v.trim().eq_ignore_ascii_case("origin"));
    if !already {
        headers.append(VARY, HeaderValue::from_static("Origin"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_configured_list() {
        assert_eq!(CorsPolicy::parse("").unwrap(), CorsPolicy::Off);
        assert_eq!(CorsPolicy::parse(" , ").unwrap(), CorsPolicy::Off);
        assert_eq!(CorsPolicy::parse("*").unwrap(), CorsPolicy::AnyOrigin);
        assert_eq!(
            CorsPolicy::parse("https://app.example, http://127.0.0.1:3000").unwrap(),
            CorsPolicy::Origins(vec![
                "https://app.example".to_owned(),
                "http://127.0.0.1:3000".to_owned()
            ])
        );
        for bad in [
            "app.example",
            "https://app.example/",
            "https://app.example/path",
            "ftp://app.example",
            "https://",
            "*, https://app.example",
        ] {
            assert!(CorsPolicy::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn matches_origins_exactly() {
        let policy = CorsPolicy::parse("https://app.example").unwrap();
        assert!(policy.allows("https://app.example"));
        assert!(policy.allows("HTTPS://APP.EXAMPLE"));
        assert!(!policy.allows("https://app.example:8443"));
        assert!(!policy.allows("http://app.example"));
        assert!(!policy.allows("https://evil.app.example"));
        assert!(!policy.allows("null"));
        assert!(!CorsPolicy::Off.allows("https://app.example"));
        assert!(CorsPolicy::AnyOrigin.allows("https://anything.example"));
        assert!(!CorsPolicy::AnyOrigin.allows("null"));
    }
}
