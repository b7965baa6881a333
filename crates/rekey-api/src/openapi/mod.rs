//! `GET /openapi.json`: an OpenAPI 3.1 document made once, at the first request, from the
//! table of operations ([`crate::operations`]) and the proto descriptors ([`schema`]); and
//! `GET /docs`, Swagger UI on that document with every asset served by Rekey itself.

pub mod docs;
pub mod schema;

use std::sync::LazyLock;

use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use http::{header, HeaderValue};
use serde_json::{json, Map, Value};

use crate::error::ERROR_DETAIL_TYPE;
use crate::faces::operations_api::RouteDoc;
use crate::operations::{self, RouteKind};
use crate::AppState;
use schema::{Descriptors, Flavor, Generator};

/// The statuses a ZITADEL or F5 call can answer with besides success (SPEC §4, §6).
const ERROR_STATUSES: &[(u16, &str)] = &[
    (400, "Invalid argument or failed precondition"),
    (401, "No or unknown token"),
    (403, "The token lacks the right"),
    (404, "Not found"),
    (409, "Conflict: already exists, or aborted"),
    (413, "Request body too large"),
    (429, "Rate limited; see Retry-After"),
    (500, "Internal error; details only in the log"),
    (501, "Unimplemented"),
    (503, "Database unavailable"),
    (504, "Deadline exceeded"),
];

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/openapi.json", get(serve_document))
        .merge(docs::routes())
}

async fn serve_document() -> Response {
    let mut response = document_text().to_owned().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// The serialized document, made once.
pub fn document_text() -> &'static str {
    static TEXT: LazyLock<String> = LazyLock::new(|| document().to_string());
    &TEXT
}

/// The document as JSON.
pub fn document() -> Value {
    let descriptors = match Descriptors::decode(rekey_proto::FILE_DESCRIPTOR_SET) {
        Ok(descriptors) => descriptors,
        Err(err) => {
            tracing::error!(%err, "the compiled proto descriptors do not decode");
            return json!({ "openapi": "3.1.0", "info": info(), "paths": {} });
        }
    };
    let mut generator = Generator::new(&descriptors);
    let mut paths = Map::new();
    let ops = operations::operations();
    // Answers first, so a message used both ways gets its `.input` flavor name.
    let mut answers = Vec::new();
    for op in ops {
        let Some((_, response)) = descriptors.method(&op.service, op.method) else {
            answers.push(json!({ "type": "object" }));
            continue;
        };
        answers.push(generator.reference(&response, Flavor::Output));
    }
    for (op, answer) in ops.iter().zip(answers) {
        let (Some(rest), Some((request, _))) =
            (&op.rest, descriptors.method(&op.service, op.method))
        else {
            continue;
        };
        let params = rest.params();
        let mut operation = json!({
            "operationId": format!("{}.{}", op.service, op.method),
            "tags": [op.service],
            "summary": op.method,
            "description": format!(
                "`{}` over REST (grpc-gateway mapping). Also served as Connect and gRPC at `{}`.",
                op.method,
                op.rpc_path()
            ),
            "security": [{ "bearer": [] }],
            "responses": zitadel_responses(rest.success, answer),
        });
        if !params.is_empty() {
            operation["parameters"] = params
                .iter()
                .map(|name| {
                    json!({
                        "name": name,
                        "in": "path",
                        "required": true,
                        "description": "Taken from the path; the same field in the body is ignored.",
                        "schema": { "type": "string", "minLength": 1 },
                    })
                })
                .collect();
        }
        if rest.has_body() {
            let body = generator.message_schema(&request, Flavor::Input, &params);
            operation["requestBody"] = json!({
                "required": false,
                "content": { "application/json": { "schema": body } },
            });
        }
        add(&mut paths, &rest.path, rest.method.as_str(), operation);
    }
    for (path, route) in operations::http_routes() {
        let operation = match route.kind {
            RouteKind::F5 {
                authenticated,
                body,
            } => f5_operation(&path, route.summary, authenticated, body),
            RouteKind::Health => health_operation(route.summary),
            RouteKind::Admin { doc } => admin_operation(route.summary, doc()),
            RouteKind::Metrics => metrics_operation(route.summary),
        };
        add(&mut paths, &path, route.method.as_str(), operation);
    }
    add(
        &mut paths,
        "/openapi.json",
        "GET",
        json!({
            "summary": "This document",
            "security": [],
            "responses": { "200": {
                "description": "The OpenAPI 3.1 document",
                "content": { "application/json": { "schema": { "type": "object" } } },
            } },
        }),
    );
    let mut schemas: Map<String, Value> = generator.into_components().into_iter().collect();
    schemas.insert("rekey.RestError".into(), rest_error_schema());
    schemas.insert("rekey.F5Error".into(), f5_error_schema());
    json!({
        "openapi": "3.1.0",
        "info": info(),
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "`Authorization: Bearer <token>`: a Rekey token (`rekey token create`).",
                },
                "apiToken": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "Authorization",
                    "description": "F5's form of the same token: `Authorization: APIToken <token>` (F5 routes only).",
                },
            },
        },
    })
}

fn info() -> Value {
    json!({
        "title": "Rekey",
        "version": env!("CARGO_PKG_VERSION"),
        "description": "Password reset service speaking ZITADEL's and F5 Distributed Cloud's \
            password-reset APIs. The ZITADEL operations are documented here in their REST \
            (grpc-gateway) form; the same RPCs are served at `POST /{package}.{Service}/{Method}` \
            as Connect (`application/json`, `application/proto`), gRPC and gRPC-Web on the same \
            port. JSON follows protojson: answers use lowerCamelCase names, 64-bit integers as \
            strings and enums by name; requests also accept the proto field names (`user_id`), \
            64-bit integers as numbers, enum numbers, and ignore unknown fields.",
    })
}

fn add(paths: &mut Map<String, Value>, path: &str, method: &str, operation: Value) {
    let item = paths.entry(path.to_owned()).or_insert_with(|| json!({}));
    item[method.to_ascii_lowercase()] = operation;
}

fn error_responses(schema: &str, only: impl Fn(u16) -> bool) -> Map<String, Value> {
    let mut responses = Map::new();
    for &(status, description) in ERROR_STATUSES.iter().filter(|(s, _)| only(*s)) {
        let mut response = json!({
            "description": description,
            "content": { "application/json": { "schema": {
                "$ref": format!("#/components/schemas/{schema}")
            } } },
        });
        if status == 429 {
            response["headers"] = json!({ "Retry-After": {
                "description": "Seconds until a retry can succeed",
                "schema": { "type": "integer", "minimum": 0 },
            } });
        }
        responses.insert(status.to_string(), response);
    }
    responses
}

fn zitadel_responses(success: u16, answer: Value) -> Value {
    let mut responses = error_responses("rekey.RestError", |_| true);
    responses.insert(
        success.to_string(),
        json!({
            "description": "Success",
            "content": { "application/json": { "schema": answer } },
        }),
    );
    Value::Object(responses)
}

fn f5_operation(path: &str, summary: &str, authenticated: bool, body: &[&str]) -> Value {
    // SPEC §4's input rules: every member named is required (the namespace in the body is
    // optional: the path's wins), email by the seed pages' pattern, at most 1024 characters.
    let properties: Map<String, Value> = body
        .iter()
        .map(|name| {
            let schema = match *name {
                "email" => json!({
                    "type": "string",
                    "maxLength": 1024,
                    "pattern": "^[a-zA-Z0-9._%+-]+@[a-zA-Z0-9.-]+\\.[a-zA-Z]{2,}$",
                }),
                "cname" => json!({ "type": "string", "minLength": 1, "maxLength": 1024 }),
                _ => json!({ "type": "string" }),
            };
            ((*name).to_owned(), schema)
        })
        .collect();
    let required: Vec<&str> = body.iter().copied().filter(|n| *n != "namespace").collect();
    let mut responses = error_responses("rekey.F5Error", |s| authenticated || s != 404);
    responses.insert(
        "200".into(),
        json!({
            "description": "Done: `{}`",
            "content": { "application/json": { "schema": {
                "type": "object", "maxProperties": 0,
            } } },
        }),
    );
    let security = if authenticated {
        json!([{ "bearer": [] }, { "apiToken": [] }])
    } else {
        json!([])
    };
    let mut operation = json!({
        "operationId": format!("f5{}", path.replace(['/', '{', '}'], "_")),
        "tags": ["F5 Distributed Cloud"],
        "summary": summary,
        "security": security,
        "requestBody": {
            "required": !required.is_empty(),
            "content": { "application/json": { "schema": {
                "type": "object",
                "properties": properties,
                "required": required,
            } } },
        },
        "responses": responses,
    });
    if path.contains("{namespace}") {
        operation["parameters"] = json!([{
            "name": "namespace",
            "in": "path",
            "required": true,
            "description": "Must be `system`.",
            "schema": { "type": "string", "minLength": 1 },
        }]);
    }
    operation
}

/// An operations-API route: admin tokens in either scheme, F5-style errors.
fn admin_operation(summary: &str, doc: RouteDoc) -> Value {
    let always = [400, 401, 403, 404, 500, 503, 504];
    let mut responses = error_responses("rekey.F5Error", |s| {
        always.contains(&s) || doc.more_errors.contains(&s)
    });
    responses.insert(
        "200".into(),
        json!({
            "description": "Success",
            "content": { "application/json": { "schema": doc.answer } },
        }),
    );
    let mut operation = json!({
        "operationId": doc.operation_id,
        "tags": ["Operations API"],
        "summary": summary,
        "description": "Admin tokens: `system` sees every tenant, `tenant_admin` only its own \
            (another tenant's message or tenant answers 404, as a missing one); a `user` token \
            gets 403. Errors: `{\"code\":n,\"message\":\"…\",\"details\":[]}`.",
        "security": [{ "bearer": [] }, { "apiToken": [] }],
        "responses": responses,
    });
    if !doc.parameters.is_empty() {
        operation["parameters"] = Value::Array(doc.parameters);
    }
    if let Some(body) = doc.body {
        operation["requestBody"] = json!({
            "required": true,
            "content": { "application/json": { "schema": body } },
        });
    }
    operation
}

fn metrics_operation(summary: &str) -> Value {
    json!({
        "tags": ["Operations"],
        "summary": summary,
        "security": [],
        "responses": {
            "200": {
                "description": "Every metric, in the Prometheus text exposition format",
                "content": { "text/plain": { "schema": { "type": "string" } } },
            },
            "404": { "description": "Served on the separate metrics listener instead" },
        },
    })
}

fn health_operation(summary: &str) -> Value {
    let body = json!({ "application/json": { "schema": {
        "type": "object",
        "required": ["status"],
        "properties": {
            "status": { "type": "string" },
            "database": { "type": "string" },
            "channels": { "type": "object", "additionalProperties": { "type": "string" } },
        },
    } } });
    json!({
        "tags": ["Operations"],
        "summary": summary,
        "security": [],
        "responses": {
            "200": { "description": "Up / ready", "content": body },
            "503": { "description": "Not ready", "content": body },
        },
    })
}

fn rest_error_schema() -> Value {
    json!({
        "type": "object",
        "description": "ZITADEL's REST error (SPEC §6): gRPC code, `<text> (<ID>)`, one ErrorDetail.",
        "required": ["code", "message", "details"],
        "properties": {
            "code": { "type": "integer", "description": "gRPC status code" },
            "message": { "type": "string" },
            "details": { "type": "array", "items": {
                "type": "object",
                "required": ["@type", "id", "message"],
                "properties": {
                    "@type": { "type": "string", "const": ERROR_DETAIL_TYPE },
                    "id": { "type": "string", "description": "Stable error id, e.g. COMMAND-SAF4f" },
                    "message": { "type": "string" },
                },
            } },
        },
    })
}

fn f5_error_schema() -> Value {
    json!({
        "type": "object",
        "description": "F5's grpc-gateway error (SPEC §4), also the operations API's (SPEC §11).",
        "required": ["code", "message", "details"],
        "properties": {
            "code": { "type": "integer", "description": "gRPC status code" },
            "message": { "type": "string" },
            "details": { "type": "array", "maxItems": 0 },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema<'a>(doc: &'a Value, name: &str) -> &'a Value {
        &doc["components"]["schemas"][name]
    }

    #[test]
    fn the_document_follows_protojson_and_the_table() {
        let doc = document();
        assert_eq!(doc["openapi"], "3.1.0");
        let op = &doc["paths"]["/v2/users/{user_id}/password_reset"]["post"];
        assert_eq!(
            op["operationId"],
            "zitadel.user.v2.UserService.PasswordReset"
        );
        assert_eq!(op["parameters"][0]["name"], "user_id");
        let body = &op["requestBody"]["content"]["application/json"]["schema"];
        // The path field is not in the body; the oneof allows one member.
        assert!(body["properties"].get("userId").is_none(), "{body}");
        assert!(body["properties"].get("sendLink").is_some(), "{body}");
        assert_eq!(
            body["allOf"][0],
            json!({ "not": { "required": ["sendLink", "returnCode"] } })
        );
        assert!(op["responses"]["200"].is_object());
        assert_eq!(
            op["responses"]["429"]["headers"]["Retry-After"]["schema"]["type"],
            "integer"
        );
        // 64-bit integers: strings in answers; strings or numbers in requests.
        let details = schema(&doc, "zitadel.object.v2.Details");
        assert_eq!(details["properties"]["sequence"]["type"], "string");
        assert_eq!(details["properties"]["changeDate"]["format"], "date-time");
        let list = &doc["paths"]["/v2/users"]["post"]["requestBody"]["content"]["application/json"]
            ["schema"];
        let query = list["properties"]["query"]["$ref"].as_str().unwrap();
        let query = schema(&doc, query.trim_start_matches("#/components/schemas/"));
        assert_eq!(
            query["properties"]["offset"]["type"],
            json!(["string", "integer"])
        );
        // GET and DELETE have no body; creating RPCs answer 201.
        assert!(doc["paths"]["/v2/users/{user_id}"]["get"]["requestBody"].is_null());
        assert!(doc["paths"]["/v2/organizations"]["post"]["responses"]["201"].is_object());
        // F5 routes, with the seed alias; no_auth has no security.
        let no_auth = &doc["paths"]["/no_auth/send_password_email"]["post"];
        assert_eq!(no_auth["security"], json!([]));
        assert!(doc["paths"][format!(
            "{}/api/web/custom/password/admin_reset",
            crate::faces::f5::SEED_PREFIX
        )]["post"]
            .is_object());
        // The operations API: parameters, body, answers and F5-style errors from its table line.
        let outbox = &doc["paths"]["/rekey/v1/outbox"]["get"];
        let params: Vec<&str> = outbox["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert_eq!(params, ["state", "limit", "cursor"]);
        assert_eq!(
            outbox["responses"]["403"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/rekey.F5Error"
        );
        let events = &doc["paths"]["/rekey/v1/events"]["get"];
        assert_eq!(events["parameters"].as_array().unwrap().len(), 5);
        let patch = &doc["paths"]["/rekey/v1/tenants/{id}/settings"]["patch"];
        let body = &patch["requestBody"]["content"]["application/json"]["schema"];
        assert_eq!(
            body["properties"]["code.length"]["type"],
            json!(["integer", "null"])
        );
        assert_eq!(body["additionalProperties"], false);
        assert!(patch["responses"]["413"].is_object());
        assert!(
            doc["paths"]["/rekey/v1/outbox/{id}/retry"]["post"]["responses"]["429"].is_object()
        );
        // Every $ref resolves.
        let text = doc.to_string();
        for part in text.split("\"#/components/schemas/").skip(1) {
            let name = part.split('"').next().unwrap();
            assert!(schema(&doc, name).is_object(), "{name}");
        }
    }
}
