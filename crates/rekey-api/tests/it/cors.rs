//! CORS (SPEC §5): preflights and answers for an allowed origin on every form (REST, Connect,
//! gRPC-Web); nothing at all for a refused origin or when CORS is off; never on the pages.
//! The router is driven directly: CORS is a property of the answer's headers, not of the
//! store (Chromium checks the same from a page on another origin, crates/rekey/tests/it).

use std::sync::Arc;

use axum::body::Body;
use http::{Request, Response, StatusCode};
use rekey_api::cors::CorsPolicy;
use rekey_api::{AppState, ServeSettings};
use rekey_testkit::DbKind;
use tower::ServiceExt;

use crate::helpers::spawn_app;

const ALLOWED: &str = "http://app.example:3000";

async fn router_with(policy: CorsPolicy) -> (axum::Router, crate::helpers::TestApp) {
    let app = spawn_app(DbKind::Sqlite).await;
    let settings = ServeSettings {
        cors: policy,
        ..ServeSettings::default()
    };
    let router = rekey_api::router(AppState {
        rekey: app.rekey.clone(),
        settings: Arc::new(settings),
    });
    (router, app)
}

fn preflight(path: &str, origin: &str, headers: &str) -> Request<Body> {
    Request::builder()
        .method("OPTIONS")
        .uri(path)
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", headers)
        .body(Body::empty())
        .unwrap()
}

fn header<'a>(response: &'a Response<Body>, name: &str) -> Option<&'a str> {
    response.headers().get(name).map(|v| v.to_str().unwrap())
}

fn cors_headers(response: &Response<Body>) -> Vec<String> {
    response
        .headers()
        .keys()
        .map(|k| k.as_str().to_owned())
        .filter(|k| k.starts_with("access-control-"))
        .collect()
}

#[tokio::test]
async fn preflights_are_answered_for_an_allowed_origin_on_every_form() {
    let (router, _app) = router_with(CorsPolicy::parse(ALLOWED).unwrap()).await;
    for (path, requested) in [
        // REST (a web app's fetch with a bearer token)
        ("/v2/users/123/password_reset", "authorization,content-type"),
        // Connect (connect-web)
        (
            "/zitadel.user.v2.UserService/PasswordReset",
            "authorization,connect-protocol-version,connect-timeout-ms,content-type",
        ),
        // gRPC-Web (@zitadel/client/web)
        (
            "/zitadel.user.v2.UserService/SetPassword",
            "authorization,content-type,x-grpc-web,x-user-agent,grpc-timeout",
        ),
        // management v1 with the org header, F5
        (
            "/management/v1/users/1/password/_reset",
            "authorization,content-type,x-zitadel-orgid",
        ),
        ("/no_auth/send_password_email", "content-type"),
    ] {
        let response = router
            .clone()
            .oneshot(preflight(path, ALLOWED, requested))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::NO_CONTENT, "{path}");
        assert_eq!(
            header(&response, "access-control-allow-origin"),
            Some(ALLOWED)
        );
        assert!(header(&response, "access-control-allow-methods")
            .unwrap()
            .contains("POST"));
        let allowed: Vec<&str> = header(&response, "access-control-allow-headers")
            .unwrap()
            .split(", ")
            .collect();
        let wanted: Vec<&str> = requested.split(',').collect();
        assert_eq!(allowed, wanted, "{path}");
        assert!(header(&response, "access-control-max-age").is_some());
        assert!(header(&response, "vary").unwrap().contains("Origin"));
        assert_eq!(header(&response, "access-control-allow-credentials"), None);
    }
}

#[tokio::test]
async fn unknown_request_headers_are_not_allowed() {
    let (router, _app) = router_with(CorsPolicy::parse(ALLOWED).unwrap()).await;
    let response = router
        .oneshot(preflight(
            "/v2/users/1/password_reset",
            ALLOWED,
            "authorization, x-evil",
        ))
        .await
        .unwrap();
    assert_eq!(
        header(&response, "access-control-allow-headers"),
        Some("authorization")
    );
}

#[tokio::test]
async fn answers_expose_the_grpc_status_headers_to_an_allowed_origin() {
    let (router, _app) = router_with(CorsPolicy::parse(ALLOWED).unwrap()).await;
    // A gRPC-Web call without a token: a trailers-only answer whose status is in headers.
    // The message: PasswordResetRequest { user_id (1) = "123" } in one uncompressed frame.
    let request = Request::builder()
        .method("POST")
        .uri("/zitadel.user.v2.UserService/PasswordReset")
        .header("origin", ALLOWED)
        .header("content-type", "application/grpc-web+proto")
        .header("x-grpc-web", "1")
        .body(Body::from(vec![0u8, 0, 0, 0, 5, 0x0a, 3, b'1', b'2', b'3']))
        .unwrap();
    let response = router.oneshot(request).await.unwrap();
    assert_eq!(header(&response, "grpc-status"), Some("16"));
    assert_eq!(
        header(&response, "access-control-allow-origin"),
        Some(ALLOWED)
    );
    let exposed = header(&response, "access-control-expose-headers").unwrap();
    for name in [
        "grpc-status",
        "grpc-message",
        "grpc-status-details-bin",
        "retry-after",
    ] {
        assert!(exposed.contains(name), "{name} in {exposed}");
    }
}

#[tokio::test]
async fn a_refused_origin_gets_no_cors_headers() {
    let (router, _app) = router_with(CorsPolicy::parse(ALLOWED).unwrap()).await;
    for origin in ["http://evil.example", "http://app.example", "null"] {
        let response = router
            .clone()
            .oneshot(preflight(
                "/v2/users/1/password_reset",
                origin,
                "authorization",
            ))
            .await
            .unwrap();
        assert_eq!(cors_headers(&response), Vec::<String>::new(), "{origin}");
        assert_ne!(response.status(), StatusCode::NO_CONTENT);
    }
}

#[tokio::test]
async fn cors_off_by_default_sends_nothing() {
    let (router, _app) = router_with(CorsPolicy::default()).await;
    let response = router
        .oneshot(preflight(
            "/v2/users/1/password_reset",
            ALLOWED,
            "authorization",
        ))
        .await
        .unwrap();
    assert_eq!(cors_headers(&response), Vec::<String>::new());
}

#[tokio::test]
async fn any_origin_names_the_caller_and_never_allows_credentials() {
    let (router, _app) = router_with(CorsPolicy::parse("*").unwrap()).await;
    let response = router
        .oneshot(preflight(
            "/zitadel.user.v2.UserService/PasswordReset",
            "https://anywhere.example",
            "content-type",
        ))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        header(&response, "access-control-allow-origin"),
        Some("https://anywhere.example")
    );
    assert_eq!(header(&response, "access-control-allow-credentials"), None);
}

#[tokio::test]
async fn the_hosted_pages_never_get_cors_headers() {
    let (router, _app) = router_with(CorsPolicy::parse("*").unwrap()).await;
    let request = Request::builder()
        .uri("/ui/password/forgot")
        .header("origin", ALLOWED)
        .body(Body::empty())
        .unwrap();
    let response = router.oneshot(request).await.unwrap();
    assert_eq!(cors_headers(&response), Vec::<String>::new());
}
