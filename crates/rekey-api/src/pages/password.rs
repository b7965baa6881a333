//! The password form: set a password with a code (`/ui/password/reset`, and
//! `/ui/password/set` for onboarding).

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request, State};
use axum::response::Response;
use http::StatusCode;
use rekey_core::domain::{Cname, UserId};
use rekey_core::error::ErrorHint;
use rekey_core::policy::password::PasswordPolicy;
use rekey_core::{Error, ErrorKind};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use crate::error::with_retry_after;
use crate::{auth, AppState};

use super::{
    csrf, csrf_origin, csrf_refused, href, i18n, language, page, param, query_pairs, read_form,
    refused, tenant_view, FieldErrors, Flavor, Frame, Language, Message, RuleText, SummaryItem,
    TenantView, FORGOT_PATH,
};

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
pub(super) async fn password_form(
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
pub(super) async fn password_submit(
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
