//! The forgot-password form (`/ui/password/forgot`): the no_auth request.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request, State};
use axum::response::Response;
use http::StatusCode;
use rekey_core::domain::{EmailAddress, MAX_CNAME_LEN};
use rekey_core::ErrorKind;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::error::with_retry_after;
use crate::{auth, AppState};

use super::{
    csrf, csrf_origin, csrf_refused, href, i18n, language, page, param, query_pairs, read_form,
    refused, FieldErrors, Frame, Language, Message, SummaryItem, FORGOT_PATH,
};

#[derive(Serialize, Default)]
struct ForgotBody {
    csrf: String,
    cname: String,
    email: String,
    errors: FieldErrors,
}

fn forgot_page(
    language: Language,
    status: StatusCode,
    body: ForgotBody,
    error: Option<(&'static str, Vec<SummaryItem>)>,
    cookie: Option<String>,
) -> Response {
    let t = language.lang.texts();
    let mut frame = Frame::new(language, t.title_forgot, "forgot-form")
        .switch(FORGOT_PATH, &[("cname", body.cname.as_str())]);
    if let Some((tag, summary)) = error {
        frame.error = Some(tag);
        frame.summary = summary;
    }
    page(status, "forgot.html", frame, body, cookie)
}

/// `GET /ui/password/forgot[?cname=…]`.
pub(super) async fn forgot_form(State(state): State<AppState>, request: Request) -> Response {
    let (parts, _body) = request.into_parts();
    let pairs = query_pairs(&parts);
    let language = language(param(&pairs, "lang"), &parts.headers);
    let csrf = csrf::token_for(&parts.headers);
    let cookie = csrf::set_cookie(&csrf, csrf_origin(&state).secure);
    let body = ForgotBody {
        csrf,
        cname: param(&pairs, "cname").unwrap_or("").to_owned(),
        ..ForgotBody::default()
    };
    forgot_page(language, StatusCode::OK, body, None, Some(cookie))
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ForgotForm {
    csrf: Option<String>,
    cname: String,
    email: String,
    lang: Option<String>,
}

/// `POST /ui/password/forgot`: the no_auth request (SPEC §4), answered with the same page
/// after the same padded deadline whether or not the tenant or the address exists.
pub(super) async fn forgot_submit(State(state): State<AppState>, request: Request) -> Response {
    let started = Instant::now();
    let (parts, body) = request.into_parts();
    let form: ForgotForm = read_form(&state, body).await;
    let language = language(form.lang.as_deref(), &parts.headers);
    let t = language.lang.texts();
    let chosen_lang = if language.chosen {
        language.lang.tag()
    } else {
        ""
    };
    if !csrf::check(&parts.headers, form.csrf.as_deref(), &csrf_origin(&state)) {
        return csrf_refused(language, href(FORGOT_PATH, &[("lang", chosen_lang)]));
    }
    let cname = form.cname.trim().to_owned();
    let email = EmailAddress::parse(form.email.trim());
    let mut body = ForgotBody {
        csrf: form.csrf.unwrap_or_default(),
        cname: cname.clone(),
        email: form.email.clone(),
        errors: FieldErrors::default(),
    };
    let mut summary = Vec::new();
    if cname.is_empty() || cname.chars().count() > MAX_CNAME_LEN {
        body.errors.cname = Some(t.err_cname.to_owned());
        summary.push(SummaryItem {
            field: Some("cname"),
            text: t.err_cname.to_owned(),
        });
    }
    if email.is_err() {
        body.errors.email = Some(t.err_email.to_owned());
        summary.push(SummaryItem {
            field: Some("email"),
            text: t.err_email.to_owned(),
        });
    }
    let email = match email {
        Ok(email) if summary.is_empty() => email,
        _ => {
            return forgot_page(
                language,
                StatusCode::BAD_REQUEST,
                body,
                Some(("invalid-input", summary)),
                None,
            )
        }
    };
    let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>();
    let caller = auth::anonymous(&state, peer, &parts.headers);
    let deadline = started + state.settings.unauth_deadline;
    match crate::faces::f5::unauthenticated_reset(&state, caller, cname, email, deadline).await {
        Ok(()) => {
            let frame = Frame::new(language, t.title_sent, "forgot-sent").switch(FORGOT_PATH, &[]);
            page(
                StatusCode::OK,
                "message.html",
                frame,
                Message {
                    message: Some(t.sent_body.to_owned()),
                    again_link: Some(href(FORGOT_PATH, &[("lang", chosen_lang)])),
                    ..Message::default()
                },
                None,
            )
        }
        Err(err) if err.kind == ErrorKind::ResourceExhausted => {
            let text = i18n::rate_limited(language.lang, err.retry_after.unwrap_or(1));
            let response = forgot_page(
                language,
                StatusCode::TOO_MANY_REQUESTS,
                body,
                Some(("rate-limited", vec![SummaryItem { field: None, text }])),
                None,
            );
            with_retry_after(response, &err)
        }
        Err(err) => refused(language, err, href(FORGOT_PATH, &[("lang", chosen_lang)])),
    }
}
