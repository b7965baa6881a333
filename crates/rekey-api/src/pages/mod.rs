//! The hosted pages (SPEC §9): set a password with a code (`/ui/password/reset`, and
//! `/ui/password/set` for onboarding) and ask for a link (`/ui/password/forgot`). Plain
//! server-rendered HTML, no script, English and German. The pages are one more face: the
//! POSTs run exactly the flows the API runs (`set_password_with_code`, the no_auth request),
//! so attempts, limits and padded deadlines are the API's.
//!
//! Nothing secret is logged: request logging omits query strings and form bodies are never
//! logged; the code only ever travels in the reset link itself and the form.

mod csrf;
mod i18n;
mod view;

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use http::request::Parts;
use http::{HeaderMap, StatusCode};
use rekey_core::domain::TenantSettings;
use rekey_core::domain::{Cname, EmailAddress, MAX_CNAME_LEN};
use rekey_core::domain::{TenantId, UserId};
use rekey_core::error::ErrorHint;
use rekey_core::policy::password::PasswordPolicy;
use rekey_core::{Error, ErrorKind};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use tokio::time::Instant;

use crate::error::with_retry_after;
use crate::json::read_body;
use crate::{auth, AppState};

use i18n::{Lang, RuleText};

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

// ---------------------------------------------------------------------- set a password

/// The password form's own fields (the frame has the rest).
#[derive(Serialize, Default)]
struct PasswordBody {
    intro: &'static str,
    submit: &'static str,
    action: &'static str,
    csrf: String,
    user_id: String,
    org_id: String,
    code: String,
    rules: Vec<RuleText>,
    errors: FieldErrors,
    failed_rules: Vec<RuleText>,
    new_link: Option<String>,
}

#[derive(Serialize, Default)]
struct FieldErrors {
    code: Option<String>,
    password: Option<String>,
    confirm: Option<String>,
    cname: Option<String>,
    email: Option<String>,
}

struct PasswordPage {
    flavor: Flavor,
    language: Language,
    tenant: TenantView,
    user_id: String,
    org_id: String,
    code: String,
    csrf: String,
}

impl PasswordPage {
    fn new_link(&self) -> String {
        let lang = if self.language.chosen {
            self.language.lang.tag()
        } else {
            ""
        };
        href(
            FORGOT_PATH,
            &[
                (
                    "cname",
                    self.tenant.cname.as_ref().map_or("", Cname::as_str),
                ),
                ("lang", lang),
            ],
        )
    }

    /// The form again (or for the first time), with `error` tied to its field.
    fn render(
        self,
        status: StatusCode,
        error: Option<FormError>,
        cookie: Option<String>,
        keep_code_in_switch: bool,
    ) -> Response {
        let t = self.language.lang.texts();
        let lang = self.language.lang;
        let title = match self.flavor {
            Flavor::Reset => t.title_reset,
            Flavor::Set => t.title_set,
        };
        let mut frame = Frame::new(self.language, title, self.flavor.form_state());
        frame.tenant_name = self.tenant.name.clone();
        let code_in_switch = if keep_code_in_switch {
            self.code.as_str()
        } else {
            ""
        };
        frame = frame.switch(
            self.flavor.path(),
            &[
                ("userID", self.user_id.as_str()),
                ("code", code_in_switch),
                ("orgID", self.org_id.as_str()),
            ],
        );
        let mut body = PasswordBody {
            intro: match self.flavor {
                Flavor::Reset => t.intro_reset,
                Flavor::Set => t.intro_set,
            },
            submit: match self.flavor {
                Flavor::Reset => t.submit_reset,
                Flavor::Set => t.submit_set,
            },
            action: self.flavor.path(),
            rules: i18n::policy_rules(lang, &self.tenant.policy),
            ..PasswordBody::default()
        };
        let mut retry: Option<Error> = None;
        if let Some(error) = error {
            let (tag, field, text): (&'static str, Option<&'static str>, String) = match error {
                FormError::CodeInvalid => ("code-invalid", Some("code"), t.err_code_invalid.into()),
                FormError::CodeUsedUp => ("code-used-up", Some("code"), t.err_code_used_up.into()),
                FormError::CodeExpired => ("code-expired", Some("code"), t.err_code_expired.into()),
                FormError::CodeNotFound => {
                    ("code-not-found", Some("code"), t.err_code_not_found.into())
                }
                FormError::CodeFormat => ("invalid-input", Some("code"), t.err_code_format.into()),
                FormError::Mismatch => ("mismatch", Some("confirm"), t.err_mismatch.into()),
                FormError::Policy(policy, ref broken) => {
                    body.failed_rules = broken
                        .iter()
                        .map(|rule| i18n::failed_rule(lang, &policy, *rule))
                        .collect();
                    body.rules = i18n::policy_rules(lang, &policy);
                    ("policy", Some("password"), t.err_policy.into())
                }
                FormError::RateLimited(ref err) => {
                    retry = Some(err.clone());
                    (
                        "rate-limited",
                        None,
                        i18n::rate_limited(lang, err.retry_after.unwrap_or(1)),
                    )
                }
            };
            frame.error = Some(tag);
            let summary_text = match &error {
                FormError::Policy(..) => {
                    let rules: Vec<&str> =
                        body.failed_rules.iter().map(|r| r.text.as_str()).collect();
                    format!("{} {}", text, rules.join(" "))
                }
                _ => text.clone(),
            };
            frame.summary.push(SummaryItem {
                field,
                text: summary_text,
            });
            match field {
                Some("code") => body.errors.code = Some(text),
                Some("password") => body.errors.password = Some(text),
                Some("confirm") => body.errors.confirm = Some(text),
                _ => {}
            }
            if matches!(
                error,
                FormError::CodeUsedUp | FormError::CodeExpired | FormError::CodeNotFound
            ) {
                body.new_link = Some(self.new_link());
            }
        }
        body.csrf = self.csrf;
        body.user_id = self.user_id;
        body.org_id = self.org_id;
        body.code = self.code;
        let response = page(status, "password.html", frame, body, cookie);
        match retry {
            Some(err) => with_retry_after(response, &err),
            None => response,
        }
    }
}

enum FormError {
    CodeInvalid,
    CodeUsedUp,
    CodeExpired,
    CodeNotFound,
    CodeFormat,
    Mismatch,
    Policy(
        PasswordPolicy,
        Vec<rekey_core::policy::password::PasswordRule>,
    ),
    RateLimited(Error),
}

/// `GET /ui/password/reset|set?userID=…&code=…&orgID=…`: the form. It looks up nothing but
/// the tenant named by `orgID`, so it cannot tell whether the user or the code exists.
async fn password_form(
    State(state): State<AppState>,
    flavor: Flavor,
    request: Request,
) -> Response {
    let (parts, _body) = request.into_parts();
    let pairs = query_pairs(&parts);
    let language = language(param(&pairs, "lang"), &parts.headers);
    let org_id = param(&pairs, "orgID").unwrap_or("").to_owned();
    let tenant = tenant_view(&state, Some(org_id.as_str()).filter(|s| !s.is_empty())).await;
    let csrf = csrf::token_for(&parts.headers);
    let cookie = csrf::set_cookie(&csrf, csrf_origin(&state).secure);
    PasswordPage {
        flavor,
        language,
        tenant,
        user_id: param(&pairs, "userID").unwrap_or("").to_owned(),
        org_id,
        code: param(&pairs, "code").unwrap_or("").to_owned(),
        csrf,
    }
    .render(StatusCode::OK, None, Some(cookie), true)
}

/// The password form's fields; never `Debug`, it holds the password.
#[derive(Deserialize, Default)]
#[serde(default)]
struct PasswordForm {
    csrf: Option<String>,
    #[serde(rename = "userID")]
    user_id: String,
    #[serde(rename = "orgID")]
    org_id: String,
    code: String,
    password: String,
    confirm: String,
    lang: Option<String>,
}

/// `POST /ui/password/reset|set`: CSRF, then password = confirmation (no attempt counted),
/// then exactly the API's `set_password_with_code`.
async fn password_submit(
    State(state): State<AppState>,
    flavor: Flavor,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let form: PasswordForm = read_form(&state, body).await;
    let language = language(form.lang.as_deref(), &parts.headers);
    let chosen_lang = if language.chosen {
        language.lang.tag()
    } else {
        ""
    };
    if !csrf::check(&parts.headers, form.csrf.as_deref(), &csrf_origin(&state)) {
        let reload = href(
            flavor.path(),
            &[
                ("userID", form.user_id.as_str()),
                ("orgID", form.org_id.as_str()),
                ("lang", chosen_lang),
            ],
        );
        return csrf_refused(language, reload);
    }
    let tenant = tenant_view(&state, Some(form.org_id.as_str()).filter(|s| !s.is_empty())).await;
    let PasswordForm {
        csrf,
        user_id,
        org_id,
        code,
        password,
        confirm,
        ..
    } = form;
    let password = SecretString::from(password);
    let same = bool::from(
        secrecy::ExposeSecret::expose_secret(&password)
            .as_bytes()
            .ct_eq(confirm.as_bytes()),
    );
    drop(confirm);
    let form_page = PasswordPage {
        flavor,
        language,
        tenant,
        user_id: user_id.clone(),
        org_id,
        code: code.clone(),
        csrf: csrf.unwrap_or_default(),
    };
    if !same {
        return form_page.render(
            StatusCode::BAD_REQUEST,
            Some(FormError::Mismatch),
            None,
            false,
        );
    }
    // An id that cannot name a user is answered like one that names none.
    let Ok(user_id) = UserId::parse(user_id) else {
        return form_page.render(
            StatusCode::BAD_REQUEST,
            Some(FormError::CodeNotFound),
            None,
            false,
        );
    };
    let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>();
    let caller = auth::anonymous(&state, peer, &parts.headers);
    let outcome = state
        .rekey
        .set_password_with_code(&caller, &user_id, SecretString::from(code), password, false)
        .await;
    let details = match outcome {
        Ok(details) => details,
        Err(err) => {
            let error = match (&err.kind, err.id, &err.hint) {
                (ErrorKind::ResourceExhausted, _, _) => FormError::RateLimited(err.clone()),
                (_, _, Some(ErrorHint::CodeUsedUp)) => FormError::CodeUsedUp,
                (_, _, Some(ErrorHint::PasswordRules { policy, broken })) => {
                    FormError::Policy(*policy, broken.clone())
                }
                (_, "CODE-woT0xc", _) => FormError::CodeInvalid,
                (_, "CODE-QvUQ4P", _) => FormError::CodeExpired,
                (_, "REKEY-CoLen", _) => FormError::CodeFormat,
                (
                    ErrorKind::Unavailable | ErrorKind::DeadlineExceeded | ErrorKind::Internal,
                    _,
                    _,
                ) => {
                    let reload = href(
                        flavor.path(),
                        &[
                            ("userID", user_id.as_str()),
                            ("orgID", form_page.org_id.as_str()),
                            ("lang", chosen_lang),
                        ],
                    );
                    return refused(language, err, reload);
                }
                // No pending code, a used one, an unknown user, or a user who may not reset
                // (inactive, locked): all "ask for a new link".
                _ => FormError::CodeNotFound,
            };
            let status = match error {
                FormError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
                _ => StatusCode::BAD_REQUEST,
            };
            return form_page.render(status, Some(error), None, false);
        }
    };
    // The login link of the user's own tenant, whatever orgID the link named.
    let owner = tenant_view(&state, Some(details.resource_owner.as_str())).await;
    let t = language.lang.texts();
    let (title, message) = match flavor {
        Flavor::Reset => (t.title_changed, t.success_reset),
        Flavor::Set => (t.title_set_done, t.success_set),
    };
    let mut frame = Frame::new(language, title, "success");
    frame.tenant_name = owner.name.clone();
    frame = frame.switch(flavor.path(), &[]);
    page(
        StatusCode::OK,
        "message.html",
        frame,
        Message {
            message: Some(message.to_owned()),
            login_link: owner.login_url,
            ..Message::default()
        },
        None,
    )
}

// ---------------------------------------------------------------------- forgot password

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
async fn forgot_form(State(state): State<AppState>, request: Request) -> Response {
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
async fn forgot_submit(State(state): State<AppState>, request: Request) -> Response {
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
