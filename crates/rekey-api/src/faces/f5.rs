//! F5 Distributed Cloud's password routes (SPEC §4): `admin_reset`, the namespaced
//! `send_password_email`, `no_auth/send_password_email` and the self-service
//! `password/reset`, at the root and under the seed pages' documentation prefix.
//! Errors are grpc-gateway JSON `{"code":n,"message":"…","details":[]}`. The routes are
//! registered (and documented) from [`crate::operations::HTTP_ROUTES`].

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Path, Request};
use axum::response::{IntoResponse, Response};
use axum::{Json, RequestExt};
use http::StatusCode;
use rekey_core::domain::{cname, EmailAddress};
use rekey_core::flows::Caller;
use rekey_core::{Error, ErrorKind};
use serde::Deserialize;
use serde_json::json;
use tokio::time::Instant;

use crate::error::with_retry_after;
use crate::json::read_body;
use crate::{auth, AppState};

/// The seed pages' URL prefix, accepted as an alias of the root.
pub const SEED_PREFIX: &str = "/api/v1/api/production/us-east-1/namespaces/default";

/// Whether a path belongs to the F5 face (for errors raised outside a handler).
pub fn is_f5_path(path: &str) -> bool {
    let path = path.strip_prefix(SEED_PREFIX).unwrap_or(path);
    path.starts_with("/api/") || path.starts_with("/no_auth/")
}

/// A domain error in F5's shape and status.
pub struct F5Error(pub Error);

impl F5Error {
    fn status_and_code(err: &Error) -> (StatusCode, i32) {
        match err.kind {
            ErrorKind::InvalidArgument => (StatusCode::BAD_REQUEST, 3),
            ErrorKind::Unauthenticated => (StatusCode::UNAUTHORIZED, 16),
            ErrorKind::PermissionDenied => (StatusCode::FORBIDDEN, 7),
            ErrorKind::NotFound => (StatusCode::NOT_FOUND, 5),
            // The user's state conflicts with a reset, or the email is ambiguous: 409, ABORTED.
            ErrorKind::FailedPrecondition | ErrorKind::Aborted | ErrorKind::AlreadyExists => {
                (StatusCode::CONFLICT, 10)
            }
            ErrorKind::ResourceExhausted => (StatusCode::TOO_MANY_REQUESTS, 8),
            ErrorKind::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, 14),
            ErrorKind::DeadlineExceeded => (StatusCode::GATEWAY_TIMEOUT, 4),
            ErrorKind::Unimplemented => (StatusCode::NOT_IMPLEMENTED, 12),
            ErrorKind::Internal => (StatusCode::INTERNAL_SERVER_ERROR, 13),
        }
    }
}

impl IntoResponse for F5Error {
    fn into_response(self) -> Response {
        let err = self.0;
        let (status, code) = Self::status_and_code(&err);
        let status = crate::json::status_override(&err).unwrap_or(status);
        let body = json!({ "code": code, "message": err.message(), "details": [] });
        with_retry_after((status, Json(body)).into_response(), &err)
    }
}

/// F5 request bodies; unknown fields are ignored.
#[derive(Debug, Default, Deserialize)]
struct EmailBody {
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    cname: Option<String>,
}

async fn decode(
    state: &AppState,
    request: Request,
) -> Result<(Caller, http::HeaderMap, EmailBody), Error> {
    let (parts, body) = request.into_parts();
    let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>();
    let caller = auth::anonymous(state, peer, &parts.headers);
    let bytes = read_body(body, state.settings.body_limit_bytes).await?;
    let body: EmailBody = if bytes.iter().all(u8::is_ascii_whitespace) {
        EmailBody::default()
    } else {
        serde_json::from_slice(&bytes).map_err(|err| {
            // Never echo the input: say only where the body went wrong.
            Error::invalid(
                "REKEY-Json1",
                format!(
                    "Request body is not a valid JSON object of strings (line {}, column {})",
                    err.line(),
                    err.column()
                ),
            )
        })?
    };
    Ok((caller, parts.headers, body))
}

fn email_of(body: &EmailBody) -> Result<EmailAddress, Error> {
    EmailAddress::parse(body.email.as_deref().unwrap_or(""))
}

async fn authenticated(
    state: &AppState,
    mut caller: Caller,
    headers: &http::HeaderMap,
) -> Result<Caller, Error> {
    caller.principal = Some(auth::principal(state, headers).await?);
    Ok(caller)
}

fn answer(result: Result<(), Error>) -> Response {
    match result {
        Ok(()) => Json(json!({})).into_response(),
        Err(err) => F5Error(err).into_response(),
    }
}

/// `POST /api/web/custom/password/admin_reset` `{"email"}`.
pub async fn admin_reset(state: AppState, request: Request) -> Response {
    answer(
        async {
            let (caller, headers, body) = decode(&state, request).await?;
            let email = email_of(&body)?;
            let caller = authenticated(&state, caller, &headers).await?;
            state.rekey.admin_reset_by_email(&caller, &email).await?;
            Ok(())
        }
        .await,
    )
}

/// `POST /api/web/custom/namespaces/{namespace}/send_password_email` `{"email","namespace"}`:
/// the deprecated twin of admin_reset; the namespace is always `system`.
pub async fn send_password_email(state: AppState, mut request: Request) -> Response {
    let namespace = match request.extract_parts::<Path<String>>().await {
        Ok(Path(namespace)) => namespace,
        Err(rejection) => return rejection.into_response(),
    };
    answer(
        async {
            let (caller, headers, body) = decode(&state, request).await?;
            if namespace != "system" {
                return Err(Error::invalid(
                    "REKEY-NsSys",
                    "namespace must be \"system\"",
                ));
            }
            if body
                .namespace
                .as_deref()
                .is_some_and(|ns| !ns.is_empty() && ns != namespace)
            {
                return Err(Error::invalid(
                    "REKEY-NsAgr",
                    "namespace in the body must agree with the path",
                ));
            }
            let email = email_of(&body)?;
            let caller = authenticated(&state, caller, &headers).await?;
            state.rekey.admin_reset_by_email(&caller, &email).await?;
            Ok(())
        }
        .await,
    )
}

/// `POST /api/web/custom/password/reset` `{}`: the calling user is emailed a reset link.
pub async fn self_service_reset(state: AppState, request: Request) -> Response {
    answer(
        async {
            let (caller, headers, _body) = decode(&state, request).await?;
            let caller = authenticated(&state, caller, &headers).await?;
            state.rekey.self_service_reset(&caller).await?;
            Ok(())
        }
        .await,
    )
}

/// `POST /no_auth/send_password_email` `{"cname","email"}`: no authentication (any
/// `Authorization` header is ignored), and the same answer after the same padded deadline
/// whether or not the tenant or the email exists.
pub async fn no_auth_send_password_email(state: AppState, request: Request) -> Response {
    let started = Instant::now();
    let result = async {
        let (caller, _headers, body) = decode(&state, request).await?;
        let email = email_of(&body)?;
        let cname = body.cname.as_deref().unwrap_or("");
        cname::check_lookup(cname)?;
        Ok((caller, cname.to_owned(), email))
    }
    .await;
    // Input errors say nothing about accounts and are answered at once.
    let (caller, cname, email) = match result {
        Ok(input) => input,
        Err(err) => return F5Error(err).into_response(),
    };
    let outcome = unauthenticated_reset(
        &state,
        caller,
        cname,
        email,
        started + state.settings.unauth_deadline,
    )
    .await;
    answer(outcome)
}

/// The no_auth flow answered at `deadline` whatever the database does (SPEC §10): the work
/// runs in a task of its own, and what it has not finished by then — a slow write for an
/// existing account — completes after the answer, which is then that of a sent message.
/// Only the input-keyed rate limits (429) or a database that fails the very first step can
/// change the answer, and those do not depend on whether the account exists.
pub async fn unauthenticated_reset(
    state: &AppState,
    caller: Caller,
    cname: String,
    email: EmailAddress,
    deadline: Instant,
) -> Result<(), Error> {
    let rekey = state.rekey.clone();
    // The task keeps the request's span: its lines carry the request id.
    let work = tokio::spawn(tracing::Instrument::in_current_span(async move {
        rekey
            .request_reset_unauthenticated(&caller, &cname, &email)
            .await
    }));
    let outcome = match tokio::time::timeout_at(deadline, work).await {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(err)) => {
            tracing::error!(error = %err, "unauthenticated reset task failed");
            Err(Error::internal())
        }
        Err(_) => Ok(()),
    };
    tokio::time::sleep_until(deadline).await;
    outcome
}
