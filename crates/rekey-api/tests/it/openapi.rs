//! `/openapi.json` and `/docs`: every documented route is served, every served route is
//! documented, and the Swagger UI page loads from Rekey's own origin only.

use std::collections::BTreeSet;

use rekey_api::operations::{self, HTTP_ROUTES};
use rekey_testkit::DbKind;
use serde_json::Value;

use crate::helpers::{both_dbs, spawn_app};

both_dbs!(
    every_documented_route_is_served,
    docs_load_from_our_own_origin
);

/// (METHOD, path) of every operation in a document.
fn documented(doc: &Value) -> BTreeSet<(String, String)> {
    let mut all = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            all.insert((method.to_ascii_uppercase(), path.clone()));
        }
    }
    all
}

async fn every_documented_route_is_served(db: DbKind) {
    let app = spawn_app(db).await;
    let resp = app.get("/openapi.json").await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.headers["content-type"], "application/json");
    let doc = resp.json;
    assert_eq!(doc["openapi"], "3.1.0");
    let documented = documented(&doc);

    // Every table and F5/health route is documented ...
    let mut served = BTreeSet::new();
    for op in operations::operations() {
        let rest = op.rest.as_ref().unwrap();
        served.insert((rest.method.to_string(), rest.path.clone()));
    }
    for (path, route) in operations::http_routes() {
        served.insert((route.method.to_string(), path));
    }
    assert_eq!(HTTP_ROUTES.len(), 12);
    served.insert(("GET".into(), "/openapi.json".into()));
    assert_eq!(served, documented);

    // ... and every documented route answers (an auth or validation error is fine; no route
    // or method error).
    for (method, path) in &documented {
        let concrete = path
            .replace("{user_id}", "1")
            .replace("{namespace}", "system")
            .replace("{id}", "1");
        let request = app
            .client
            .request(method.parse().unwrap(), app.url(&concrete))
            .header("content-type", "application/json")
            .body("{}");
        let resp = request.send().await.unwrap();
        let status = resp.status().as_u16();
        let body = resp.text().await.unwrap();
        assert_ne!(status, 405, "{method} {path}: {body}");
        assert!(
            !body.contains("REKEY-Route"),
            "{method} {path} is documented but not served: {status} {body}"
        );
        // Every answer's status is one the document lists for that operation.
        let responses = &doc["paths"][path][method.to_ascii_lowercase()]["responses"];
        assert!(
            responses.get(status.to_string()).is_some(),
            "{method} {path} answered {status}, not documented: {body}"
        );
    }
}

async fn docs_load_from_our_own_origin(db: DbKind) {
    let app = spawn_app(db).await;
    let page = app.client.get(app.url("/docs")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let csp = page.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'self'"), "{csp}");
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-eval"),
        "{csp}"
    );
    let html = page.text().await.unwrap();
    // No other origin, and no inline script: every src/href is a path on this server.
    assert!(
        !html.contains("http:") && !html.contains("https:") && !html.contains("//"),
        "{html}"
    );
    let mut referenced = Vec::new();
    for attr in ["src=\"", "href=\""] {
        for part in html.split(attr).skip(1) {
            let target = part.split('"').next().unwrap();
            assert!(
                target.starts_with('/') && !target.starts_with("//"),
                "{target}"
            );
            referenced.push(target.to_owned());
        }
    }
    assert_eq!(
        html.matches("<script").count(),
        html.matches("<script src=").count()
    );
    for asset in rekey_api::openapi::docs::ASSETS {
        assert!(referenced.iter().any(|r| r == asset), "{asset} not used");
    }
    for (asset, kind) in [
        ("/docs/swagger-ui.css", "text/css"),
        ("/docs/swagger-ui-bundle.js", "text/javascript"),
        ("/docs/init.js", "text/javascript"),
    ] {
        let resp = app.client.get(app.url(asset)).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{asset}");
        let content_type = resp.headers()["content-type"].to_str().unwrap().to_owned();
        assert!(content_type.starts_with(kind), "{asset}: {content_type}");
        assert!(resp.headers().contains_key("content-security-policy"));
        let body = resp.text().await.unwrap();
        assert!(body.len() > 100, "{asset}");
    }
    let init = app.get("/docs/init.js").await.text;
    assert!(init.contains("\"/openapi.json\"") && init.contains("validatorUrl: null"));
}
