//! The operations API (SPEC §11) under `/rekey/v1/`: the outbox and its retry, the audit
//! trail, and a tenant's settings by the CLI's names. Admin tokens (`Authorization: Bearer` or
//! `APIToken`); which token sees what is decided by the flows (`rekey_core::flows`, file
//! `operations.rs`), not here. Errors are grpc-gateway JSON as on the F5 routes,
//! `{"code":n,"message":"… (ID)","details":[]}`, with the status of SPEC §6. The routes are
//! registered (and documented) from [`crate::operations::HTTP_ROUTES`], with the
//! [`RouteDoc`]s below.
//!
//! Listings are oldest first with keyset paging: an answer carries `next_cursor` when more
//! rows exist, and the next page is asked for with `cursor=` that value. New rows land after
//! the last page, so paging through never skips nor repeats one.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts, Path, Request};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, SecondsFormat, Utc};
use http::request::Parts;
use http::StatusCode;
use rekey_core::domain::{Event, OutboxMessage, OutboxState};
use rekey_core::flows::{Caller, EventQuery, OutboxListing, Retried, DEFAULT_PAGE, MAX_PAGE};
use rekey_core::policy::TENANT_SETTINGS;
use rekey_core::Error;
use serde_json::{json, Map, Value};

use crate::error::{status_of, with_retry_after};
use crate::json::{read_body, status_override};
use crate::{auth, AppState};

/// The operations API's path prefix.
pub const PREFIX: &str = "/rekey/v1/";

/// A domain error in the operations API's shape: status and gRPC code of SPEC §6, no details.
pub struct OpsError(pub Error);

impl IntoResponse for OpsError {
    fn into_response(self) -> Response {
        let err = self.0;
        let status = status_override(&err).unwrap_or_else(|| status_of(&err));
        let body = json!({ "code": err.kind.grpc_code(), "message": err.message(), "details": [] });
        with_retry_after((status, Json(body)).into_response(), &err)
    }
}

fn answer(result: Result<Value, Error>) -> Response {
    match result {
        Ok(body) => (StatusCode::OK, Json(body)).into_response(),
        Err(err) => OpsError(err).into_response(),
    }
}

/// The authenticated caller of a request (401 without a known token), with its address.
async fn caller(state: &AppState, parts: &Parts) -> Result<Caller, Error> {
    let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>();
    let mut caller = auth::anonymous(state, peer, &parts.headers);
    caller.principal = Some(auth::principal(state, &parts.headers).await?);
    Ok(caller)
}

fn bad_query(text: String) -> Error {
    Error::invalid("REKEY-Query", text)
}

/// The query string as (name, value) pairs, each name at most once and one of `known`; an
/// empty value is no value. Unknown names are refused rather than ignored, so a misspelt
/// filter never widens a listing silently.
fn query<'k>(parts: &Parts, known: &[&'k str]) -> Result<Vec<(&'k str, String)>, Error> {
    let raw = parts.uri.query().unwrap_or("");
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw)
        .map_err(|_| bad_query("The query string is not URL-encoded".to_owned()))?;
    let mut seen: Vec<(&'k str, String)> = Vec::new();
    for (name, value) in pairs {
        let Some(known) = known.iter().find(|k| **k == name) else {
            return Err(bad_query(format!(
                "Unknown query parameter; known: {}",
                known.join(", ")
            )));
        };
        if seen.iter().any(|(k, _)| k == known) {
            return Err(bad_query(format!("{known} is given more than once")));
        }
        if !value.is_empty() {
            seen.push((known, value));
        }
    }
    Ok(seen)
}

fn param(pairs: &[(&str, String)], name: &str) -> Option<String> {
    pairs
        .iter()
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.clone())
}

fn limit_param(pairs: &[(&str, String)]) -> Result<Option<u32>, Error> {
    param(pairs, "limit")
        .map(|v| {
            v.parse::<u32>()
                .map_err(|_| bad_query(format!("limit must be a number from 1 to {MAX_PAGE}")))
        })
        .transpose()
}

fn time(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

async fn path_id(parts: &mut Parts) -> Result<String, Error> {
    Path::<String>::from_request_parts(parts, &())
        .await
        .map(|Path(id)| id)
        .map_err(|_| bad_query("The path is not valid".to_owned()))
}

/// An outbox message as listed: no body, no code, no link. The recipient is shown in full:
/// the admins who may list a message may also read the user's address (GetUserByID), and a
/// bounce cannot be diagnosed from half an address.
fn outbox_json(m: &OutboxMessage) -> Value {
    json!({
        "id": m.id.as_str(),
        "tenant_id": m.tenant_id.as_str(),
        "user_id": m.user_id.as_str(),
        "channel": m.channel.as_str(),
        "recipient": m.recipient,
        "kind": m.kind.as_str(),
        "state": m.state.as_str(),
        "attempts": m.attempts,
        "next_attempt_at": time(m.next_attempt_at),
        "last_error": m.last_error,
        "created_at": time(m.created_at),
        "sent_at": m.sent_at.map(time),
    })
}

fn event_json(e: &Event) -> Value {
    json!({
        "tenant_id": e.tenant_id.as_str(),
        "aggregate_id": e.aggregate_id,
        "sequence": e.sequence,
        "kind": e.kind,
        "actor": e.actor,
        "ip": e.ip,
        "at": time(e.at),
        "payload": e.payload,
    })
}

fn with_cursor(mut body: Value, next_cursor: Option<String>) -> Value {
    if let Some(cursor) = next_cursor {
        body["next_cursor"] = Value::String(cursor);
    }
    body
}

/// `GET /rekey/v1/outbox[?state=pending|sent|failed][&limit=][&cursor=]`.
pub async fn list_outbox(state: AppState, request: Request) -> Response {
    let (parts, _body) = request.into_parts();
    answer(
        async {
            let caller = caller(&state, &parts).await?;
            let pairs = query(&parts, &["state", "limit", "cursor"])?;
            let listing = OutboxListing {
                state: param(&pairs, "state")
                    .map(|s| {
                        s.parse::<OutboxState>().map_err(|_| {
                            bad_query("state must be pending, sent or failed".to_owned())
                        })
                    })
                    .transpose()?,
                limit: limit_param(&pairs)?,
                cursor: param(&pairs, "cursor"),
            };
            let page = state.rekey.outbox_for(&caller, &listing).await?;
            let messages: Vec<Value> = page.items.iter().map(outbox_json).collect();
            Ok(with_cursor(
                json!({ "messages": messages }),
                page.next_cursor,
            ))
        }
        .await,
    )
}

/// `POST /rekey/v1/outbox/{id}/retry`: `{"id": <the message now pending>, "outcome":
/// "requeued" | "reissued", "retried": <the id asked for>}`. A reissued message is a new one
/// with a fresh code; the old one stays failed.
pub async fn retry_outbox(state: AppState, request: Request) -> Response {
    let (mut parts, _body) = request.into_parts();
    answer(
        async {
            let id = path_id(&mut parts).await?;
            let caller = caller(&state, &parts).await?;
            let (now_pending, outcome) = match state.rekey.retry_outbox_for(&caller, &id).await? {
                Retried::Requeued { id } => (id, "requeued"),
                Retried::Reissued { id } => (id, "reissued"),
            };
            Ok(json!({ "id": now_pending.as_str(), "outcome": outcome, "retried": id }))
        }
        .await,
    )
}

/// `GET /rekey/v1/events?tenant=&user=&since=&limit=&cursor=`.
pub async fn list_events(state: AppState, request: Request) -> Response {
    let (parts, _body) = request.into_parts();
    answer(
        async {
            let caller = caller(&state, &parts).await?;
            let pairs = query(&parts, &["tenant", "user", "since", "limit", "cursor"])?;
            let since = param(&pairs, "since")
                .map(|s| {
                    DateTime::parse_from_rfc3339(&s)
                        .map(|t| t.with_timezone(&Utc))
                        .map_err(|_| bad_query("since must be an RFC 3339 time".to_owned()))
                })
                .transpose()?;
            let events_query = EventQuery {
                tenant: param(&pairs, "tenant"),
                user: param(&pairs, "user"),
                since,
                limit: limit_param(&pairs)?,
                cursor: param(&pairs, "cursor"),
            };
            let page = state.rekey.events_for(&caller, &events_query).await?;
            let events: Vec<Value> = page.items.iter().map(event_json).collect();
            Ok(with_cursor(json!({ "events": events }), page.next_cursor))
        }
        .await,
    )
}

/// `GET /rekey/v1/tenants/{id}/settings`: every setting by its CLI name, `null` when unset.
pub async fn get_settings(state: AppState, request: Request) -> Response {
    let (mut parts, _body) = request.into_parts();
    answer(
        async {
            let reference = path_id(&mut parts).await?;
            let caller = caller(&state, &parts).await?;
            let tenant = state.rekey.tenant_for(&caller, &reference).await?;
            Ok(Value::Object(tenant.settings.named()))
        }
        .await,
    )
}

/// `PATCH /rekey/v1/tenants/{id}/settings` `{"code.length": 8, "language": null, …}`: sets the
/// keys given (`null` unsets) through the CLI's mapping; answers the whole settings object.
/// A JSON value is handed over as the text the CLI would take (`8`, `true`, `"de"`).
pub async fn patch_settings(state: AppState, request: Request) -> Response {
    let (mut parts, body) = request.into_parts();
    answer(
        async {
            let reference = path_id(&mut parts).await?;
            let caller = caller(&state, &parts).await?;
            let body = read_body(body, state.settings.body_limit_bytes).await?;
            let changes = setting_changes(&body)?;
            let tenant = state
                .rekey
                .change_tenant_settings_for(&caller, &reference, &changes)
                .await?;
            Ok(Value::Object(tenant.settings.named()))
        }
        .await,
    )
}

fn setting_changes(body: &[u8]) -> Result<Vec<(String, Option<String>)>, Error> {
    let value: Value = serde_json::from_slice(body).map_err(|err| {
        // Never echo the input: say only where the body went wrong.
        Error::invalid(
            "REKEY-Json1",
            format!(
                "Request body is not valid JSON (line {}, column {})",
                err.line(),
                err.column()
            ),
        )
    })?;
    let Value::Object(object) = value else {
        return Err(Error::invalid(
            "REKEY-SetOb",
            "Request body must be a JSON object of settings",
        ));
    };
    object
        .into_iter()
        .map(|(key, value)| {
            let text = match value {
                Value::Null => None,
                Value::String(s) => Some(s),
                Value::Bool(b) => Some(b.to_string()),
                Value::Number(n) => Some(n.to_string()),
                Value::Array(_) | Value::Object(_) => {
                    return Err(Error::invalid(
                        "REKEY-SetVl",
                        "A setting's value is a string, number, boolean or null",
                    ))
                }
            };
            Ok((key, text))
        })
        .collect()
}

// ------------------------------------------------------------------ documentation

/// What the OpenAPI document says of a route beyond the table's line: its parameters (path
/// and query, as OpenAPI parameter objects), its body and answer schemas, and the error
/// statuses it can answer besides 400, 401, 403, 404, 500, 503 and 504.
pub struct RouteDoc {
    pub operation_id: &'static str,
    pub parameters: Vec<Value>,
    pub body: Option<Value>,
    pub answer: Value,
    pub more_errors: &'static [u16],
}

fn path_param(name: &str, description: &str) -> Value {
    json!({
        "name": name, "in": "path", "required": true, "description": description,
        "schema": { "type": "string", "minLength": 1 },
    })
}

fn query_param(name: &str, description: &str, schema: Value) -> Value {
    json!({ "name": name, "in": "query", "required": false, "description": description, "schema": schema })
}

fn paging_params() -> Vec<Value> {
    vec![
        query_param(
            "limit",
            &format!("Rows in the page, 1 to {MAX_PAGE}; default {DEFAULT_PAGE}."),
            json!({ "type": "integer", "minimum": 1, "maximum": MAX_PAGE }),
        ),
        query_param(
            "cursor",
            "The `next_cursor` of the previous page (opaque).",
            json!({ "type": "string" }),
        ),
    ]
}

fn nullable(kind: &str) -> Value {
    json!({ "type": [kind, "null"] })
}

fn settings_schema(all_required: bool) -> Value {
    let properties: Map<String, Value> = TENANT_SETTINGS
        .iter()
        .map(|s| (s.name.to_owned(), nullable(s.json_type())))
        .collect();
    let mut schema = json!({
        "type": "object",
        "description": "Tenant settings by the names of `rekey tenant set`; `null`: unset (the instance default applies).",
        "properties": properties,
        "additionalProperties": false,
    });
    if all_required {
        schema["required"] = TENANT_SETTINGS.iter().map(|s| s.name).collect();
    }
    schema
}

fn page_schema(member: &str, item: Value) -> Value {
    json!({
        "type": "object",
        "required": [member],
        "properties": {
            member: { "type": "array", "items": item },
            "next_cursor": { "type": "string", "description": "Present when more rows exist: pass it as `cursor`." },
        },
    })
}

fn date_time() -> Value {
    json!({ "type": "string", "format": "date-time" })
}

pub fn outbox_doc() -> RouteDoc {
    let item = json!({
        "type": "object",
        "required": ["id", "tenant_id", "user_id", "channel", "recipient", "kind", "state",
            "attempts", "next_attempt_at", "last_error", "created_at", "sent_at"],
        "properties": {
            "id": { "type": "string" },
            "tenant_id": { "type": "string" },
            "user_id": { "type": "string" },
            "channel": { "type": "string", "enum": ["email", "sms"] },
            "recipient": nullable("string"),
            "kind": { "type": "string", "enum": ["password_reset", "password_init", "password_changed"] },
            "state": { "type": "string", "enum": ["pending", "sent", "failed"] },
            "attempts": { "type": "integer", "minimum": 0 },
            "next_attempt_at": date_time(),
            "last_error": nullable("string"),
            "created_at": date_time(),
            "sent_at": { "type": ["string", "null"], "format": "date-time" },
        },
    });
    let mut parameters = vec![query_param(
        "state",
        "Only messages in this state.",
        json!({ "type": "string", "enum": ["pending", "sent", "failed"] }),
    )];
    parameters.extend(paging_params());
    RouteDoc {
        operation_id: "rekey.ListOutbox",
        parameters,
        body: None,
        answer: page_schema("messages", item),
        more_errors: &[],
    }
}

pub fn retry_doc() -> RouteDoc {
    RouteDoc {
        operation_id: "rekey.RetryOutboxMessage",
        parameters: vec![path_param("id", "A failed message's id.")],
        body: None,
        answer: json!({
            "type": "object",
            "required": ["id", "outcome", "retried"],
            "properties": {
                "id": { "type": "string", "description": "The message now pending: the same one when requeued, a new one with a fresh code when reissued." },
                "outcome": { "type": "string", "enum": ["requeued", "reissued"] },
                "retried": { "type": "string", "description": "The failed message asked for." },
            },
        }),
        more_errors: &[429],
    }
}

pub fn events_doc() -> RouteDoc {
    let item = json!({
        "type": "object",
        "required": ["tenant_id", "aggregate_id", "sequence", "kind", "actor", "ip", "at", "payload"],
        "properties": {
            "tenant_id": { "type": "string" },
            "aggregate_id": { "type": "string", "description": "The user or tenant the event belongs to." },
            "sequence": { "type": "integer", "minimum": 1 },
            "kind": { "type": "string" },
            "actor": { "type": "string", "description": "`token:<id>`, `cli` or `anonymous`." },
            "ip": nullable("string"),
            "at": date_time(),
            "payload": { "type": "object" },
        },
    });
    let mut parameters = vec![
        query_param(
            "tenant",
            "Only this tenant's events (a tenant id). A tenant admin may name only its own.",
            json!({ "type": "string" }),
        ),
        query_param(
            "user",
            "Only the events of this user (or tenant): their aggregate id.",
            json!({ "type": "string" }),
        ),
        query_param(
            "since",
            "Only events at or after this time (RFC 3339).",
            date_time(),
        ),
    ];
    parameters.extend(paging_params());
    RouteDoc {
        operation_id: "rekey.ListEvents",
        parameters,
        body: None,
        answer: page_schema("events", item),
        more_errors: &[],
    }
}

fn tenant_param() -> Value {
    path_param("id", "A tenant id or cname.")
}

pub fn get_settings_doc() -> RouteDoc {
    RouteDoc {
        operation_id: "rekey.GetTenantSettings",
        parameters: vec![tenant_param()],
        body: None,
        answer: settings_schema(true),
        more_errors: &[],
    }
}

pub fn patch_settings_doc() -> RouteDoc {
    RouteDoc {
        operation_id: "rekey.PatchTenantSettings",
        parameters: vec![tenant_param()],
        body: Some(settings_schema(false)),
        answer: settings_schema(true),
        more_errors: &[413],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setting_changes_take_json_values_as_the_cli_takes_text() {
        let mut changes =
            setting_changes(br#"{"code.length": 10, "password.require_upper": true, "language": null, "code.alphabet": "zitadel"}"#)
                .unwrap();
        changes.sort();
        assert_eq!(
            changes,
            [
                ("code.alphabet".to_owned(), Some("zitadel".to_owned())),
                ("code.length".to_owned(), Some("10".to_owned())),
                ("language".to_owned(), None),
                ("password.require_upper".to_owned(), Some("true".to_owned())),
            ]
        );
        assert_eq!(setting_changes(b"[1]").unwrap_err().id, "REKEY-SetOb");
        assert_eq!(
            setting_changes(br#"{"code.length": [1]}"#).unwrap_err().id,
            "REKEY-SetVl"
        );
        let err = setting_changes(br#"{"code.length": "hunter2"#).unwrap_err();
        assert!(!err.message().contains("hunter2"));
    }
}
