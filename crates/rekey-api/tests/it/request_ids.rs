//! Request ids: every answer of every face and form carries `x-request-id` — REST, Connect,
//! gRPC and gRPC-Web trailers-only errors, the pages, health, a route that does not exist;
//! an incoming id is kept only from a trusted proxy and only when sane. The router is driven
//! directly, with the connection's peer set as the server sets it (the binary's test,
//! crates/rekey/tests/it/logs.rs, follows an id from a real socket into the logs).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::ConnectInfo;
use http::{Request, Response};
use http_body_util::BodyExt;
use rekey_api::{AppState, ServeSettings};
use rekey_testkit::DbKind;
use tower::ServiceExt;

use crate::helpers::spawn_app;

const PROXY: &str = "10.0.0.1:40000";

async fn router() -> (axum::Router, crate::helpers::TestApp) {
    let app = spawn_app(DbKind::Sqlite).await;
    let settings = ServeSettings {
        trusted_proxies: vec!["10.0.0.0/30".parse().unwrap()],
        ..ServeSettings::default()
    };
    let router = rekey_api::router(AppState {
        rekey: app.rekey.clone(),
        settings: Arc::new(settings),
    });
    (router, app)
}

fn request_id(response: &Response<Body>) -> String {
    response
        .headers()
        .get("x-request-id")
        .unwrap_or_else(|| panic!("no x-request-id on {response:?}"))
        .to_str()
        .unwrap()
        .to_owned()
}

fn is_generated(id: &str) -> bool {
    id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A gRPC frame holding `PasswordResetRequest { user_id: "123" }`.
fn reset_frame() -> Body {
    Body::from(vec![0u8, 0, 0, 0, 5, 0x0a, 3, b'1', b'2', b'3'])
}

#[tokio::test]
async fn every_face_and_form_answers_with_a_request_id() {
    let (router, _app) = router().await;
    let get = |path: &str| Request::builder().uri(path).body(Body::empty()).unwrap();
    let post = |path: &str, content_type: &str, body: Body| {
        // gRPC is HTTP/2 only (gRPC-Web and the rest do not mind).
        let version = if content_type == "application/grpc" {
            http::Version::HTTP_2
        } else {
            http::Version::HTTP_11
        };
        Request::builder()
            .method("POST")
            .version(version)
            .uri(path)
            .header("content-type", content_type)
            .body(body)
            .unwrap()
    };
    const RPC: &str = "/zitadel.user.v2.UserService/PasswordReset";
    let cases = [
        ("health", get("/healthz"), None),
        ("unknown route", get("/nope"), None),
        ("page", get("/ui/password/forgot"), None),
        (
            "REST without a token",
            post(
                "/v2/users/1/password_reset",
                "application/json",
                Body::from("{}"),
            ),
            None,
        ),
        (
            "Connect without a token",
            post(RPC, "application/json", Body::from("{}")),
            None,
        ),
        (
            "gRPC trailers-only error",
            post(RPC, "application/grpc", reset_frame()),
            Some("16"),
        ),
        (
            "gRPC-Web trailers-only error",
            post(RPC, "application/grpc-web+proto", reset_frame()),
            Some("16"),
        ),
    ];
    let mut seen = std::collections::HashSet::new();
    for (what, request, grpc_status) in cases {
        let response = router.clone().oneshot(request).await.unwrap();
        let id = request_id(&response);
        if let Some(code) = grpc_status {
            // In the head of a trailers-only answer, or in the trailers after an empty body.
            let in_head = response.headers().get("grpc-status").cloned();
            let trailers = response
                .into_body()
                .collect()
                .await
                .unwrap()
                .trailers()
                .cloned();
            let status = in_head.or_else(|| trailers?.get("grpc-status").cloned());
            assert_eq!(status.unwrap(), code, "{what}");
        }
        assert!(is_generated(&id), "{what}: {id}");
        assert!(seen.insert(id), "{what}: a fresh id per request");
    }
}

#[tokio::test]
async fn an_incoming_id_is_kept_only_from_a_trusted_proxy_and_only_when_sane() {
    let (router, _app) = router().await;
    let call = |peer: Option<&str>, incoming: &[&str]| {
        let router = router.clone();
        let mut request = Request::builder().uri("/healthz");
        for value in incoming {
            request = request.header("x-request-id", *value);
        }
        let mut request = request.body(Body::empty()).unwrap();
        if let Some(peer) = peer {
            let peer: SocketAddr = peer.parse().unwrap();
            request.extensions_mut().insert(ConnectInfo(peer));
        }
        async move { request_id(&router.oneshot(request).await.unwrap()) }
    };
    assert_eq!(call(Some(PROXY), &["lb-1234.abc"]).await, "lb-1234.abc");
    let longest = "x".repeat(128);
    assert_eq!(call(Some(PROXY), &[longest.as_str()]).await, longest);
    for (peer, incoming) in [
        // A client that is not a proxy.
        (Some("10.0.0.9:40000"), vec!["lb-1234.abc"]),
        // No known peer.
        (None, vec!["lb-1234.abc"]),
        // A proxy, but an id not fit for a log line.
        (Some(PROXY), vec!["has space"]),
        (Some(PROXY), vec![&*"x".repeat(129)]),
        (Some(PROXY), vec![""]),
        (Some(PROXY), vec!["one", "two"]),
    ] {
        let id = call(peer, &incoming).await;
        assert!(is_generated(&id), "{peer:?} {incoming:?}: {id}");
    }
}
