//! The hosted pages (SPEC §9): set a password with a code (`/ui/password/reset`, and
//! `/ui/password/set` for onboarding) and ask for a link (`/ui/password/forgot`). Plain
//! server-rendered HTML, no script, English and German. The pages are one more face: the
//! POSTs run exactly the flows the API runs (`set_password_with_code`, the no_auth request),
//! so attempts, limits and padded deadlines are the API's.
//!
//! Nothing secret is logged: request logging omits query strings and form bodies are never
//! logged; the code only ever travels in the reset link itself and the form.

mod csrf;
mod forgot;
mod i18n;
mod password;
mod view;

use axum::extract::{Request, State};
use axum::middleware;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use http::request::Parts;
use http::{HeaderMap, StatusCode};
use rekey_core::domain::Cname;
use rekey_core::domain::TenantId;
use rekey_core::domain::TenantSettings;
use rekey_core::policy::password::PasswordPolicy;
use rekey_core::{Error, ErrorKind};
use serde::{Deserialize, Serialize};

use crate::error::with_retry_after;
use crate::json::read_body;
use crate::AppState;

use forgot::{forgot_form, forgot_submit};
use i18n::{Lang, RuleText};
use password::{password_form, password_submit};

const FORGOT_PATH: &str = "/ui/password/forgot";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            Flavor::Reset.path(),
            get(|s: State<AppState>, r: Request| password_form(s, Flavor::Reset, r))
                .post(|s: State<AppState>, r: Request| password_submit(s, Flavor::Reset, r)),
        )
        .route(
            Flavor::Set.path(),
            get(|s: State<AppState>, r: Request| password_form(s, Flavor::Set, r))
                .post(|s: State<AppState>, r: Request| password_submit(s, Flavor::Set, r)),
        )
        .route(FORGOT_PATH, get(forgot_form).post(forgot_submit))
        .route("/ui/static/rekey.css", get(view::stylesheet))
        .layer(middleware::map_response(view::security_headers))
}

/// The two faces of the password form: a reset, or a first password (onboarding).
#[derive(Debug, Clone, Copy)]
enum Flavor {
    Reset,
    Set,
}

impl Flavor {
    fn path(self) -> &'static str {
        match self {
            Flavor::Reset => "/ui/password/reset",
            Flavor::Set => "/ui/password/set",
        }
    }

    fn form_state(self) -> &'static str {
        match self {
            Flavor::Reset => "reset-form",
            Flavor::Set => "set-form",
        }
    }
}

// ---------------------------------------------------------------------- request context

/// The page's language, and whether it was chosen explicitly (`?lang=` / the `lang` field),
/// which the page then carries on through its form and links.
#[derive(Debug, Clone, Copy)]
struct Language {
    lang: Lang,
    chosen: bool,
}

fn language(explicit: Option<&str>, headers: &HeaderMap) -> Language {
    if let Some(lang) = explicit.and_then(Lang::parse) {
        return Language { lang, chosen: true };
    }
    let accepted = headers
        .get(http::header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok())
        .and_then(Lang::from_accept_language);
    Language {
        lang: accepted.unwrap_or(Lang::En),
        chosen: false,
    }
}

fn query_pairs(parts: &Parts) -> Vec<(String, String)> {
    parts
        .uri
        .query()
        .and_then(|q| serde_urlencoded::from_str(q).ok())
        .unwrap_or_default()
}

fn param<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// `path?k=v&…` (no `?` when there are no parameters).
fn href(path: &str, pairs: &[(&str, &str)]) -> String {
    let pairs: Vec<_> = pairs.iter().filter(|(_, v)| !v.is_empty()).collect();
    if pairs.is_empty() {
        return path.to_owned();
    }
    match serde_urlencoded::to_string(&pairs) {
        Ok(query) => format!("{path}?{query}"),
        Err(_) => path.to_owned(),
    }
}

/// What a page shows of a tenant: name and cname when the id names one, and the effective
/// password rules (the instance default otherwise).
struct TenantView {
    name: Option<String>,
    cname: Option<Cname>,
    policy: PasswordPolicy,
    login_url: Option<String>,
}

async fn tenant_view(state: &AppState, id: Option<&str>) -> TenantView {
    let config = state.rekey.config();
    let tenant = match id.map(TenantId::parse) {
        Some(Ok(id)) => match state.rekey.tenant(&id).await {
            Ok(tenant) => tenant,
            Err(err) => {
                tracing::warn!(error = %err, "tenant lookup for a page failed");
                None
            }
        },
        _ => None,
    };
    match tenant {
        Some(t) => TenantView {
            policy: config.password_policy(&t.settings),
            login_url: t.settings.ui_login_url.clone(),
            name: Some(t.name),
            cname: Some(t.cname),
        },
        None => TenantView {
            name: None,
            cname: None,
            policy: config.password_policy(&TenantSettings::default()),
            login_url: None,
        },
    }
}

fn csrf_origin(state: &AppState) -> csrf::Origin {
    csrf::Origin::of_public_url(&state.rekey.config().public_url)
}

/// The common frame of every page (base.html).
#[derive(Serialize)]
struct Frame {
    lang: &'static str,
    other_lang: &'static str,
    other_lang_name: &'static str,
    switch_href: String,
    t: &'static i18n::Texts,
    title: &'static str,
    state: &'static str,
    error: Option<&'static str>,
    tenant_name: Option<String>,
    summary: Vec<SummaryItem>,
    lang_field: bool,
}

#[derive(Serialize)]
struct SummaryItem {
    field: Option<&'static str>,
    text: String,
}

impl Frame {
    fn new(language: Language, title: &'static str, state: &'static str) -> Self {
        let other = language.lang.other();
        Frame {
            lang: language.lang.tag(),
            other_lang: other.tag(),
            other_lang_name: other.texts().lang_name,
            switch_href: String::new(),
            t: language.lang.texts(),
            title,
            state,
            error: None,
            tenant_name: None,
            summary: Vec::new(),
            lang_field: language.chosen,
        }
    }

    /// The language switch: this page's path and parameters in the other language.
    fn switch(mut self, path: &str, pairs: &[(&str, &str)]) -> Self {
        let other = self.other_lang;
        let mut pairs: Vec<(&str, &str)> = pairs
            .iter()
            .copied()
            .filter(|(k, _)| *k != "lang")
            .collect();
        pairs.push(("lang", other));
        self.switch_href = href(path, &pairs);
        self
    }
}

#[derive(Serialize)]
struct Page<T: Serialize> {
    #[serde(flatten)]
    frame: Frame,
    #[serde(flatten)]
    body: T,
}

fn page(
    status: StatusCode,
    template: &str,
    frame: Frame,
    body: impl Serialize,
    cookie: Option<String>,
) -> Response {
    view::render(status, template, Page { frame, body }, cookie)
}

/// A page with a message and links (success, "check your email", refusals).
#[derive(Serialize, Default)]
struct Message {
    message: Option<String>,
    alert: bool,
    login_link: Option<String>,
    reload_link: Option<String>,
    again_link: Option<String>,
}

fn refused(language: Language, error: Error, reload: String) -> Response {
    let t = language.lang.texts();
    let (status, title, tag, message) = match error.kind {
        ErrorKind::ResourceExhausted => (
            StatusCode::TOO_MANY_REQUESTS,
            t.title_rate_limited,
            Some("rate-limited"),
            i18n::rate_limited(language.lang, error.retry_after.unwrap_or(1)),
        ),
        ErrorKind::PermissionDenied => (
            StatusCode::FORBIDDEN,
            t.title_csrf,
            Some("csrf"),
            t.err_csrf.to_owned(),
        ),
        ErrorKind::Unavailable | ErrorKind::DeadlineExceeded => (
            StatusCode::SERVICE_UNAVAILABLE,
            t.title_error,
            None,
            t.err_unavailable.to_owned(),
        ),
        _ => (
            StatusCode::INTERNAL_SERVER_ERROR,
            t.title_error,
            None,
            t.err_internal.to_owned(),
        ),
    };
    let mut frame = Frame::new(language, title, "error");
    frame.error = tag;
    let (path, _) = reload.split_once('?').unwrap_or((&reload, ""));
    let lang_pairs = [("lang", language.lang.other().tag())];
    frame.switch_href = href(path, &lang_pairs);
    let response = page(
        status,
        "message.html",
        frame,
        Message {
            message: Some(message),
            alert: true,
            reload_link: Some(reload),
            ..Message::default()
        },
        None,
    );
    with_retry_after(response, &error)
}

fn csrf_refused(language: Language, reload: String) -> Response {
    refused(
        language,
        Error::new(
            ErrorKind::PermissionDenied,
            "REKEY-Csrf1",
            "Form check failed",
        ),
        reload,
    )
}

async fn read_form<T: for<'de> Deserialize<'de> + Default>(
    state: &AppState,
    body: axum::body::Body,
) -> T {
    match read_body(body, state.settings.body_limit_bytes).await {
        // A body that does not decode is an empty form: its CSRF check fails.
        Ok(bytes) => serde_urlencoded::from_bytes(&bytes).unwrap_or_default(),
        Err(_) => T::default(),
    }
}

/// The error text shown under each field of a form (the password and the forgot forms).
#[derive(Serialize, Default)]
struct FieldErrors {
    code: Option<String>,
    password: Option<String>,
    confirm: Option<String>,
    cname: Option<String>,
    email: Option<String>,
}
