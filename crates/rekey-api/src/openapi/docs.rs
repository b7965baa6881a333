//! `GET /docs`: Swagger UI on `/openapi.json`. The UI's script and style sheet are the ones the
//! `swagger-ui-dist` crate embeds (no CDN, nothing fetched at build time); the page and its
//! start-up script are Rekey's own, so no inline script is needed and every `/docs` answer
//! carries a Content-Security-Policy that allows only Rekey's own origin.

use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use http::{header, HeaderValue};
use swagger_ui_dist::{ApiDefinition, OpenApiSource};

use crate::AppState;

/// Own origin only. Swagger UI sets `style` attributes (hence `'unsafe-inline'` for styles
/// only) and its CSS draws icons from `data:` URLs.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
    img-src 'self' data:; connect-src 'self'; font-src 'self'; object-src 'none'; \
    base-uri 'none'; frame-ancestors 'none'; form-action 'none'";

const PAGE: &str = r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Rekey API</title>
<link rel="stylesheet" href="/docs/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="/docs/swagger-ui-bundle.js"></script>
<script src="/docs/init.js"></script>
</body>
</html>
"#;

/// Starts the UI on Rekey's document; `validatorUrl: null` keeps it from calling the public
/// validator.
const INIT: &str = r##"window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    url: "/openapi.json",
    dom_id: "#swagger-ui",
    validatorUrl: null,
    deepLinking: true
  });
});
"##;

/// The files under `/docs`, besides the page itself.
pub const ASSETS: &[&str] = &[
    "/docs/swagger-ui.css",
    "/docs/swagger-ui-bundle.js",
    "/docs/init.js",
];

pub fn routes() -> Router<AppState> {
    // Only the crate's two assets are exposed; its own index page (inline script) is not.
    let assets = swagger_ui_dist::generate_routes(ApiDefinition {
        uri_prefix: "/docs",
        api_definition: OpenApiSource::Uri("/openapi.json"),
        title: Some("Rekey API"),
    });
    Router::new()
        .route("/docs", get(page))
        .route("/docs/init.js", get(init))
        .route_service("/docs/swagger-ui.css", assets.clone())
        .route_service("/docs/swagger-ui-bundle.js", assets)
        .layer(middleware::from_fn(secure))
}

async fn page() -> Response {
    with_type(PAGE, "text/html; charset=utf-8")
}

async fn init() -> Response {
    with_type(INIT, "text/javascript; charset=utf-8")
}

fn with_type(body: &'static str, content_type: &'static str) -> Response {
    let mut response = body.into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

async fn secure(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}
