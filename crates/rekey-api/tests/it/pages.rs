//! The hosted pages (SPEC §9): the set-password form (reset and onboarding) and the forgot
//! form, driven as a browser without script would: GET the form (cookie + hidden token), POST
//! it form-encoded. Every error state is checked against the stable markup contract and
//! against the rows ("changes nothing", attempts counted or not).

use std::time::{Duration as StdDuration, Instant};

use chrono::Duration;
use rekey_core::domain::{MessageKind, TenantSettings, UserState};
use rekey_core::policy::Config;
use rekey_testkit::DbKind;
use reqwest::StatusCode;

use crate::helpers::{
    both_dbs, spawn_app, spawn_app_with, Resp, TestApp, NEW_PASSWORD, START_PASSWORD,
};

both_dbs!(
    get_reveals_nothing_about_user_or_code,
    post_sets_the_password_and_links_to_login,
    wrong_code_mismatch_and_policy_change_nothing,
    five_wrong_codes_use_the_code_up,
    expired_and_missing_codes_offer_a_new_link,
    too_many_tries_from_one_address_is_429,
    csrf_refusals_change_nothing,
    language_from_header_query_and_field,
    onboarding_set_page,
    forgot_page_never_tells_accounts_apart,
    forgot_page_input_errors_and_rate_limit,
);

const WRONG: &str = "ZZZZ2222";

fn wrong_for(right: &str) -> &'static str {
    if right.eq_ignore_ascii_case(WRONG) {
        "YYYY3333"
    } else {
        WRONG
    }
}

/// A browser's cookie and the form's hidden token, from a GET of a form.
struct Csrf {
    cookie: String,
    token: String,
}

fn csrf_of(resp: &Resp) -> Csrf {
    let set_cookie = resp
        .headers
        .get("set-cookie")
        .expect("the form sets the CSRF cookie")
        .to_str()
        .unwrap();
    let cookie = set_cookie.split(';').next().unwrap().to_owned();
    let token = field_value(&resp.text, "csrf").expect("hidden csrf field");
    assert_eq!(cookie, format!("rekey_csrf={token}"));
    Csrf { cookie, token }
}

/// The `value` of the input named `name`.
fn field_value(html: &str, name: &str) -> Option<String> {
    let at = html.find(&format!("name=\"{name}\""))?;
    let rest = &html[at..];
    let value = rest.find("value=\"")? + "value=\"".len();
    let end = rest[value..].find('"')?;
    Some(rest[value..value + end].to_owned())
}

/// `data-state` and `data-error` of `<main>`.
fn state_of(resp: &Resp) -> (String, Option<String>) {
    let html = &resp.text;
    let main = html.find("<main id=\"main\"").expect("a <main id=main>");
    let tag = &html[main..main + html[main..].find('>').unwrap()];
    let attr = |name: &str| {
        let at = tag.find(&format!("{name}=\""))? + name.len() + 2;
        Some(tag[at..at + tag[at..].find('"')?].to_owned())
    };
    (attr("data-state").expect("data-state"), attr("data-error"))
}

#[track_caller]
fn assert_page(resp: &Resp, status: u16, state: &str, error: Option<&str>) {
    assert_eq!(resp.status.as_u16(), status, "{}", resp.text);
    let (s, e) = state_of(resp);
    assert_eq!(s, state, "{}", resp.text);
    assert_eq!(e.as_deref(), error, "{}", resp.text);
    assert_security_headers(resp);
}

#[track_caller]
fn assert_security_headers(resp: &Resp) {
    let h = |name: &str| {
        resp.headers
            .get(name)
            .unwrap_or_else(|| panic!("{name} missing"))
            .to_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(h("referrer-policy"), "no-referrer");
    assert_eq!(h("x-frame-options"), "DENY");
    assert_eq!(h("x-content-type-options"), "nosniff");
    let csp = h("content-security-policy");
    for part in [
        "default-src 'none'",
        "style-src 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    ] {
        assert!(csp.contains(part), "{csp}");
    }
    assert!(!csp.contains("script-src"), "{csp}");
    if h("content-type").starts_with("text/html") {
        assert_eq!(h("cache-control"), "no-store");
        assert!(!resp.text.contains("<script"), "no script at all");
        assert!(!resp.text.contains("style=\""), "no inline style");
    }
}

impl TestApp {
    async fn page(&self, path: &str, headers: &[(&str, &str)]) -> Resp {
        self.tick();
        let mut request = self.client.get(self.url(path));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        read(request.send().await.unwrap()).await
    }

    async fn submit(
        &self,
        path: &str,
        csrf: Option<&Csrf>,
        headers: &[(&str, &str)],
        fields: &[(&str, &str)],
    ) -> Resp {
        self.tick();
        let mut fields: Vec<(&str, &str)> = fields.to_vec();
        let mut request = self
            .client
            .post(self.url(path))
            .header("content-type", "application/x-www-form-urlencoded");
        if let Some(csrf) = csrf {
            request = request.header("cookie", &csrf.cookie);
            fields.push(("csrf", &csrf.token));
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let body = serde_urlencoded::to_string(&fields).unwrap();
        read(request.body(body).send().await.unwrap()).await
    }

    /// GETs the reset form for `user` and posts it with `code`, `password` and `confirm`.
    async fn reset_with(&self, user_id: &str, code: &str, password: &str, confirm: &str) -> Resp {
        let form = self
            .page(
                &format!("/ui/password/reset?userID={user_id}&orgID={}", self.t1.id),
                &[],
            )
            .await;
        let csrf = csrf_of(&form);
        self.submit(
            "/ui/password/reset",
            Some(&csrf),
            &[("origin", "null")],
            &[
                ("userID", user_id),
                ("orgID", self.t1.id.as_str()),
                ("code", code),
                ("password", password),
                ("confirm", confirm),
            ],
        )
        .await
    }
}

async fn read(response: reqwest::Response) -> Resp {
    let status = response.status();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap();
    Resp {
        status,
        headers,
        text,
        json: serde_json::Value::Null,
    }
}

async fn get_reveals_nothing_about_user_or_code(db: DbKind) {
    let app = spawn_app(db).await;
    let user = app.add_user(&app.t1, "known@acme.test").await;
    let code = app.return_code(&user).await;

    let first = app
        .page(
            &format!(
                "/ui/password/reset?userID={}&code={code}&orgID={}",
                user.id, app.t1.id
            ),
            &[],
        )
        .await;
    assert_page(&first, 200, "reset-form", None);
    let csrf = csrf_of(&first);
    let set_cookie = first.headers["set-cookie"].to_str().unwrap();
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/ui"] {
        assert!(set_cookie.contains(attr), "{set_cookie}");
    }
    assert!(!set_cookie.contains("Secure"), "http public URL: no Secure");
    let html = &first.text;
    assert!(html.contains("<html lang=\"en\">"));
    assert!(html.contains("<title>Reset your password</title>"));
    assert!(html.contains("<h1>Reset your password</h1>"));
    assert!(html.contains("Acme"), "the tenant's name");
    assert!(html.contains("12 to 128 characters"), "the rules");
    assert!(html.contains("commonly used password"));
    assert_eq!(field_value(html, "code").as_deref(), Some(code.as_str()));
    assert_eq!(field_value(html, "password").as_deref(), Some(""));
    for needle in [
        "<label for=\"code\">",
        "<label for=\"password\">",
        "<label for=\"confirm\">",
        "autocomplete=\"one-time-code\"",
        "autocomplete=\"new-password\"",
        "name=\"viewport\" content=\"width=device-width, initial-scale=1\"",
        "<button type=\"submit\">",
        "hreflang=\"de\"",
    ] {
        assert!(html.contains(needle), "{needle}");
    }

    // The same cookie makes the same token: a known user with a live code, an unknown user
    // with a made-up code and a deleted user's id get the same page, byte for byte.
    let page_for = |user_id: String, code: String| {
        let app = &app;
        let cookie = csrf.cookie.clone();
        async move {
            app.page(
                &format!(
                    "/ui/password/reset?userID={user_id}&code={code}&orgID={}",
                    app.t1.id
                ),
                &[("cookie", &cookie)],
            )
            .await
        }
    };
    let known = page_for(user.id.to_string(), "ABCD2345".to_owned()).await;
    let unknown = page_for("69629023906488334".to_owned(), "ABCD2345".to_owned()).await;
    assert_eq!(
        known.text.replace(user.id.as_str(), "ID"),
        unknown.text.replace("69629023906488334", "ID")
    );
    assert_eq!(known.status, unknown.status);
    assert_eq!(field_value(&known.text, "csrf").unwrap(), csrf.token);

    // An unknown or absent orgID: instance rules, no name.
    for org in ["nope", ""] {
        let resp = app
            .page(
                &format!("/ui/password/reset?userID=1&code=X&orgID={org}"),
                &[],
            )
            .await;
        assert_page(&resp, 200, "reset-form", None);
        assert!(!resp.text.contains("Acme") && !resp.text.contains("Globex"));
        assert!(resp.text.contains("12 to 128 characters"));
    }
    // A tenant's own rules.
    app.rekey
        .set_tenant_settings(
            "test",
            &app.t2.id,
            TenantSettings {
                password_min_length: Some(9),
                password_require_symbol: Some(true),
                ..TenantSettings::default()
            },
        )
        .await
        .unwrap();
    let resp = app
        .page(&format!("/ui/password/reset?orgID={}", app.t2.id), &[])
        .await;
    assert!(resp.text.contains("Globex"));
    assert!(resp.text.contains("9 to 128 characters"));
    assert!(resp.text.contains("contain a symbol"));

    // The stylesheet: cacheable, still with the security headers.
    let css = app.page("/ui/static/rekey.css", &[]).await;
    assert_eq!(css.status, StatusCode::OK);
    assert!(css.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/css"));
    assert!(css.headers["cache-control"]
        .to_str()
        .unwrap()
        .contains("max-age"));
    assert_security_headers(&css);
    // Nothing was written by any GET.
    assert_eq!(app.attempts(&user).await, 0);
}

async fn post_sets_the_password_and_links_to_login(db: DbKind) {
    let app = spawn_app(db).await;
    let user = app.add_user(&app.t1, "happy@acme.test").await;
    app.rekey
        .set_tenant_settings(
            "test",
            &app.t1.id,
            TenantSettings {
                ui_login_url: Some("https://login.acme.test/start?x=1&y=2".to_owned()),
                ..TenantSettings::default()
            },
        )
        .await
        .unwrap();
    let code = app.return_code(&user).await;
    let resp = app
        .reset_with(user.id.as_str(), &code, NEW_PASSWORD, NEW_PASSWORD)
        .await;
    assert_page(&resp, 200, "success", None);
    assert!(resp
        .text
        .contains("<h1>Your password has been changed</h1>"));
    assert!(resp.text.contains(
        "id=\"login-link\" class=\"button\" href=\"https://login.acme.test/start?x=1&amp;y=2\""
    ));
    assert!(!resp.text.contains(NEW_PASSWORD));
    assert!(app.has_password(&user, NEW_PASSWORD).await);
    assert_eq!(
        app.messages(&user, MessageKind::PasswordChanged)
            .await
            .len(),
        1
    );
    // The code is consumed: a second post says "not found".
    let again = app
        .reset_with(user.id.as_str(), &code, NEW_PASSWORD, NEW_PASSWORD)
        .await;
    assert_page(&again, 400, "reset-form", Some("code-not-found"));

    // Another tenant without a login URL: no link.
    let other = app.add_user(&app.t2, "happy@globex.test").await;
    let code = app.return_code(&other).await;
    let resp = app
        .reset_with(other.id.as_str(), &code, NEW_PASSWORD, NEW_PASSWORD)
        .await;
    assert_page(&resp, 200, "success", None);
    assert!(!resp.text.contains("login-link"));
}

async fn wrong_code_mismatch_and_policy_change_nothing(db: DbKind) {
    let app = spawn_app(db).await;
    let user = app.add_user(&app.t1, "errors@acme.test").await;
    let code = app.return_code(&user).await;

    // Mismatch: checked first, no attempt counted, nothing written.
    let before = app.snapshot().await;
    let resp = app
        .reset_with(
            user.id.as_str(),
            &code,
            NEW_PASSWORD,
            "something else entirely",
        )
        .await;
    assert_page(&resp, 400, "reset-form", Some("mismatch"));
    assert!(resp.text.contains("id=\"confirm-error\""));
    assert!(resp
        .text
        .contains("aria-describedby=\"confirm-error\" aria-invalid=\"true\""));
    assert!(resp.text.contains("role=\"alert\""));
    assert_eq!(
        field_value(&resp.text, "code").as_deref(),
        Some(code.as_str())
    );
    assert_eq!(field_value(&resp.text, "password").as_deref(), Some(""));
    assert_eq!(field_value(&resp.text, "confirm").as_deref(), Some(""));
    assert!(
        !resp.text.contains(NEW_PASSWORD),
        "the password is never echoed"
    );
    assert_eq!(app.snapshot().await, before);

    // Wrong code: "Code is invalid", one attempt, nothing else.
    let resp = app
        .reset_with(
            user.id.as_str(),
            wrong_for(&code),
            NEW_PASSWORD,
            NEW_PASSWORD,
        )
        .await;
    assert_page(&resp, 400, "reset-form", Some("code-invalid"));
    assert!(resp.text.contains("id=\"code-error\""));
    assert!(resp.text.contains("Code is invalid"));
    assert!(resp.text.contains("aria-invalid=\"true\""));
    assert_eq!(app.attempts(&user).await, 1);
    assert_eq!(
        app.snapshot().await.without_attempts(),
        before.clone().without_attempts()
    );

    // Policy: every broken rule named, the attempt given back.
    let resp = app
        .reset_with(user.id.as_str(), &code, "password", "password")
        .await;
    assert_page(&resp, 400, "reset-form", Some("policy"));
    assert!(resp.text.contains("id=\"password-error\""));
    assert!(resp.text.contains("<li data-rule=\"min_length\">"));
    assert!(resp.text.contains("<li data-rule=\"common\">"));
    assert!(!resp.text.contains("data-rule=\"max_length\""));
    assert_eq!(
        app.attempts(&user).await,
        1,
        "a refused password is not an attempt"
    );
    assert_eq!(app.snapshot().await, {
        let mut b = before.clone();
        b.users[0].pending_code.as_mut().unwrap().1 = 1;
        b
    });
    assert!(app.has_password(&user, START_PASSWORD).await);

    // Too long a code: a format error on the code, not counted.
    let resp = app
        .reset_with(
            user.id.as_str(),
            &"A".repeat(21),
            NEW_PASSWORD,
            NEW_PASSWORD,
        )
        .await;
    assert_page(&resp, 400, "reset-form", Some("invalid-input"));
    assert_eq!(app.attempts(&user).await, 1);

    // Mismatches never count: three more of them, then the right code still works after
    // three more wrong ones (1 + 3 = 4 < 5).
    for _ in 0..3 {
        app.reset_with(user.id.as_str(), &code, NEW_PASSWORD, "x")
            .await;
    }
    for _ in 0..3 {
        app.reset_with(
            user.id.as_str(),
            wrong_for(&code),
            NEW_PASSWORD,
            NEW_PASSWORD,
        )
        .await;
    }
    assert_eq!(app.attempts(&user).await, 4);
    let resp = app
        .reset_with(user.id.as_str(), &code, NEW_PASSWORD, NEW_PASSWORD)
        .await;
    assert_page(&resp, 200, "success", None);
}

async fn five_wrong_codes_use_the_code_up(db: DbKind) {
    let app = spawn_app(db).await;
    let user = app.add_user(&app.t1, "five@acme.test").await;
    let code = app.return_code(&user).await;
    for _ in 1..=5 {
        let resp = app
            .reset_with(
                user.id.as_str(),
                wrong_for(&code),
                NEW_PASSWORD,
                NEW_PASSWORD,
            )
            .await;
        assert_page(&resp, 400, "reset-form", Some("code-invalid"));
        assert!(
            !resp.text.contains("attempts left"),
            "attempts left are not told"
        );
    }
    let snapshot = app.snapshot().await;
    let resp = app
        .reset_with(user.id.as_str(), &code, NEW_PASSWORD, NEW_PASSWORD)
        .await;
    assert_page(&resp, 400, "reset-form", Some("code-used-up"));
    assert!(resp
        .text
        .contains("id=\"new-link\" href=\"/ui/password/forgot?cname=acme.test\""));
    assert_eq!(app.snapshot().await, snapshot);
    // The API keeps saying "Code is invalid" for the dead code.
    let api = app
        .set_with_code(user.id.as_str(), &code, NEW_PASSWORD)
        .await;
    crate::helpers::assert_error(&api, 400, 3, "CODE-woT0xc", Some("Code is invalid"));
    assert_eq!(api.json["details"].as_array().unwrap().len(), 1);
    assert!(app.has_password(&user, START_PASSWORD).await);
}

async fn expired_and_missing_codes_offer_a_new_link(db: DbKind) {
    let app = spawn_app(db).await;
    let user = app.add_user(&app.t1, "late@acme.test").await;
    let code = app.return_code(&user).await;
    app.advance(Duration::hours(1) + Duration::seconds(1));
    let snapshot = app.snapshot().await;
    let resp = app
        .reset_with(user.id.as_str(), &code, NEW_PASSWORD, NEW_PASSWORD)
        .await;
    assert_page(&resp, 400, "reset-form", Some("code-expired"));
    assert!(resp.text.contains("id=\"new-link\""));
    assert_eq!(app.snapshot().await, snapshot);

    // An unknown user and a user without a pending code: the same "not found".
    let other = app.add_user(&app.t1, "nocode@acme.test").await;
    let snapshot = app.snapshot().await;
    let mut pages = Vec::new();
    for id in ["69629023906488334", other.id.as_str()] {
        let resp = app
            .reset_with(id, "ABCD2345", NEW_PASSWORD, NEW_PASSWORD)
            .await;
        assert_page(&resp, 400, "reset-form", Some("code-not-found"));
        assert!(resp.text.contains("id=\"new-link\""));
        let token = field_value(&resp.text, "csrf").unwrap();
        pages.push(resp.text.replace(id, "ID").replace(&token, "TOKEN"));
    }
    assert_eq!(
        pages[0], pages[1],
        "unknown users look like users without a code"
    );
    assert_eq!(app.snapshot().await, snapshot);
}

async fn too_many_tries_from_one_address_is_429(db: DbKind) {
    let mut config = Config::default();
    config.limits.code_tries_per_ip_per_minute = 2;
    let app = spawn_app_with(db, config).await;
    let user = app.add_user(&app.t1, "busy@acme.test").await;
    let code = app.return_code(&user).await;
    for _ in 0..2 {
        app.reset_with(
            user.id.as_str(),
            wrong_for(&code),
            NEW_PASSWORD,
            NEW_PASSWORD,
        )
        .await;
    }
    let snapshot = app.snapshot().await;
    let resp = app
        .reset_with(user.id.as_str(), &code, NEW_PASSWORD, NEW_PASSWORD)
        .await;
    assert_page(&resp, 429, "reset-form", Some("rate-limited"));
    let retry: u64 = resp.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    assert!(resp.text.contains(&format!("{retry} seconds")));
    assert_eq!(app.snapshot().await, snapshot);
    assert!(app.has_password(&user, START_PASSWORD).await);
}

async fn csrf_refusals_change_nothing(db: DbKind) {
    let app = spawn_app(db).await;
    let user = app.add_user(&app.t1, "csrf@acme.test").await;
    let code = app.return_code(&user).await;
    let form = app
        .page(&format!("/ui/password/reset?userID={}", user.id), &[])
        .await;
    let csrf = csrf_of(&form);
    let other = Csrf {
        cookie: csrf.cookie.clone(),
        token: "B".repeat(43),
    };
    let no_cookie = Csrf {
        cookie: String::new(),
        token: csrf.token.clone(),
    };
    let fields = [
        ("userID", user.id.as_str()),
        ("code", code.as_str()),
        ("password", NEW_PASSWORD),
        ("confirm", NEW_PASSWORD),
    ];
    let snapshot = app.snapshot().await;
    type Headers<'a> = Vec<(&'a str, &'a str)>;
    let cases: Vec<(Option<&Csrf>, Headers<'_>)> = vec![
        (None, vec![]),
        (Some(&no_cookie), vec![]),
        (Some(&other), vec![]),
        (Some(&csrf), vec![("origin", "https://evil.example")]),
        (Some(&csrf), vec![("origin", "http://127.0.0.1:9999")]),
        (Some(&csrf), vec![("sec-fetch-site", "cross-site")]),
    ];
    for (token, headers) in cases {
        let resp = app
            .submit("/ui/password/reset", token, &headers, &fields)
            .await;
        assert_page(&resp, 403, "error", Some("csrf"));
        assert!(resp.text.contains("id=\"reload-link\""));
        assert!(
            !resp.text.contains(&code),
            "the code is not put into a link"
        );
    }
    // The forgot form too.
    let resp = app
        .submit(
            "/ui/password/forgot",
            Some(&other),
            &[],
            &[("cname", "acme.test"), ("email", "csrf@acme.test")],
        )
        .await;
    assert_page(&resp, 403, "error", Some("csrf"));
    assert_eq!(
        app.snapshot().await,
        snapshot,
        "nothing written, no attempt"
    );
    assert!(app
        .outbox()
        .await
        .iter()
        .all(|m| m.kind != MessageKind::PasswordReset));

    // Origin null (what no-referrer makes browsers send), our own origin, same-origin fetch.
    let resp = app
        .submit(
            "/ui/password/reset",
            Some(&csrf),
            &[("origin", "null"), ("sec-fetch-site", "same-origin")],
            &fields,
        )
        .await;
    assert_page(&resp, 200, "success", None);
    let code = app.return_code(&user).await;
    let fields = [
        ("userID", user.id.as_str()),
        ("code", code.as_str()),
        ("password", START_PASSWORD),
        ("confirm", START_PASSWORD),
    ];
    let resp = app
        .submit(
            "/ui/password/reset",
            Some(&csrf),
            &[("origin", "http://127.0.0.1:8080")],
            &fields,
        )
        .await;
    assert_page(&resp, 200, "success", None);
}

async fn language_from_header_query_and_field(db: DbKind) {
    let app = spawn_app(db).await;
    let de = app
        .page(
            &format!("/ui/password/reset?userID=1&code=AB&orgID={}", app.t1.id),
            &[("accept-language", "fr;q=0.9, de-DE;q=0.8, en;q=0.5")],
        )
        .await;
    assert_page(&de, 200, "reset-form", None);
    assert!(de.text.contains("<html lang=\"de\">"));
    assert!(de.text.contains("<h1>Passwort zurücksetzen</h1>"));
    assert!(de.text.contains("<title>Passwort zurücksetzen</title>"));
    // The switch keeps the other parameters.
    let expected = format!(
        "href=\"/ui/password/reset?userID=1&amp;code=AB&amp;orgID={}&amp;lang=en\" hreflang=\"en\"",
        app.t1.id
    );
    assert!(de.text.contains(&expected), "{}", de.text);

    let en = app
        .page("/ui/password/reset?lang=en", &[("accept-language", "de")])
        .await;
    assert!(en.text.contains("<html lang=\"en\">"));
    assert!(en.text.contains("hreflang=\"de\""));
    let q = app
        .page(
            "/ui/password/reset",
            &[("accept-language", "de;q=0.1, en;q=0.9")],
        )
        .await;
    assert!(q.text.contains("<html lang=\"en\">"));
    let query_de = app.page("/ui/password/forgot?lang=de", &[]).await;
    assert!(query_de.text.contains("<h1>Passwort vergessen?</h1>"));
    assert!(query_de.text.contains("name=\"lang\" value=\"de\""));

    // The hidden field carries the choice through the POST.
    let csrf = csrf_of(&query_de);
    let resp = app
        .submit(
            "/ui/password/reset",
            Some(&csrf),
            &[],
            &[
                ("userID", "1"),
                ("code", "AB"),
                ("password", "eins"),
                ("confirm", "zwei"),
                ("lang", "de"),
            ],
        )
        .await;
    assert_page(&resp, 400, "reset-form", Some("mismatch"));
    assert!(resp.text.contains("<html lang=\"de\">"));
    assert!(resp.text.contains("Die Passwörter stimmen nicht überein."));
}

async fn onboarding_set_page(db: DbKind) {
    let app = spawn_app(db).await;
    let user = app.add_initial_user(&app.t1, "new@acme.test").await;
    let code = app.return_code(&user).await;
    let path = format!(
        "/ui/password/set?userID={}&code={code}&orgID={}",
        user.id, app.t1.id
    );
    let form = app.page(&path, &[]).await;
    assert_page(&form, 200, "set-form", None);
    assert!(form.text.contains("<h1>Set your password</h1>"));
    assert!(form.text.contains("action=\"/ui/password/set\""));
    let de = app.page(&format!("{path}&lang=de"), &[]).await;
    assert!(de.text.contains("<h1>Passwort festlegen</h1>"));
    let csrf = csrf_of(&form);
    let resp = app
        .submit(
            "/ui/password/set",
            Some(&csrf),
            &[("origin", "null")],
            &[
                ("userID", user.id.as_str()),
                ("orgID", app.t1.id.as_str()),
                ("code", &code),
                ("password", NEW_PASSWORD),
                ("confirm", NEW_PASSWORD),
                ("lang", "de"),
            ],
        )
        .await;
    assert_page(&resp, 200, "success", None);
    assert!(resp.text.contains("<h1>Ihr Passwort wurde festgelegt</h1>"));
    let stored = app.user(&user).await;
    assert_eq!(stored.state, UserState::Active);
    assert!(app.has_password(&user, NEW_PASSWORD).await);
    // English title of the same page.
    let code = app.return_code(&user).await;
    let form = app.page(&path, &[]).await;
    let resp = app
        .submit(
            "/ui/password/set",
            Some(&csrf_of(&form)),
            &[],
            &[
                ("userID", user.id.as_str()),
                ("code", &code),
                ("password", START_PASSWORD),
                ("confirm", START_PASSWORD),
            ],
        )
        .await;
    assert!(resp.text.contains("<h1>Your password has been set</h1>"));
}

async fn forgot_page_never_tells_accounts_apart(db: DbKind) {
    let app = spawn_app(db).await;
    let user = app.add_user(&app.t1, "forgot@acme.test").await;
    let form = app.page("/ui/password/forgot?cname=acme.test", &[]).await;
    assert_page(&form, 200, "forgot-form", None);
    assert!(form.text.contains("<h1>Forgot your password?</h1>"));
    assert_eq!(
        field_value(&form.text, "cname").as_deref(),
        Some("acme.test")
    );
    assert!(form.text.contains("autocomplete=\"email\""));
    assert!(form.text.contains("<label for=\"cname\">"));
    assert!(form.text.contains("<label for=\"email\">"));
    let csrf = csrf_of(&form);

    let mut answers = Vec::new();
    for (cname, email) in [
        ("acme.test", "forgot@acme.test"),
        ("acme.test", "nobody@acme.test"),
        ("no-such-tenant", "forgot@acme.test"),
    ] {
        let started = Instant::now();
        let resp = app
            .submit(
                "/ui/password/forgot",
                Some(&csrf),
                &[("origin", "null")],
                &[("cname", cname), ("email", email)],
            )
            .await;
        assert!(
            started.elapsed() >= StdDuration::from_millis(400),
            "padded deadline: {:?}",
            started.elapsed()
        );
        assert_page(&resp, 200, "forgot-sent", None);
        assert!(resp.text.contains("<h1>Check your email</h1>"));
        assert!(resp
            .text
            .contains("If an account exists for this address, we sent a link"));
        let mut headers: Vec<_> = resp
            .headers
            .iter()
            // Both differ on every answer, whatever the account.
            .filter(|(k, _)| *k != "date" && *k != "x-request-id")
            .map(|(k, v)| format!("{k}: {v:?}"))
            .collect();
        headers.sort();
        answers.push((resp.text.clone(), headers));
    }
    assert_eq!(answers[0], answers[1]);
    assert_eq!(answers[0], answers[2]);
    assert_eq!(
        app.messages(&user, MessageKind::PasswordReset).await.len(),
        1,
        "mail queued for the existing account only"
    );
    assert_eq!(app.outbox().await.len(), 1);
}

async fn forgot_page_input_errors_and_rate_limit(db: DbKind) {
    let mut config = Config::default();
    config.limits.unauth_per_cname_email_per_hour = 1;
    let app = spawn_app_with(db, config).await;
    app.add_user(&app.t1, "limit@acme.test").await;
    let form = app.page("/ui/password/forgot", &[]).await;
    let csrf = csrf_of(&form);

    let resp = app
        .submit(
            "/ui/password/forgot",
            Some(&csrf),
            &[],
            &[("cname", ""), ("email", "not an email")],
        )
        .await;
    assert_page(&resp, 400, "forgot-form", Some("invalid-input"));
    assert!(resp.text.contains("id=\"email-error\""));
    assert!(resp.text.contains("id=\"cname-error\""));
    assert!(resp
        .text
        .contains("aria-describedby=\"email-error\" aria-invalid=\"true\""));
    assert_eq!(
        field_value(&resp.text, "email").as_deref(),
        Some("not an email")
    );
    assert!(app.outbox().await.is_empty());

    let fields = [("cname", "acme.test"), ("email", "limit@acme.test")];
    let resp = app
        .submit("/ui/password/forgot", Some(&csrf), &[], &fields)
        .await;
    assert_page(&resp, 200, "forgot-sent", None);
    let resp = app
        .submit("/ui/password/forgot", Some(&csrf), &[], &fields)
        .await;
    assert_page(&resp, 429, "forgot-form", Some("rate-limited"));
    assert!(resp.headers.contains_key("retry-after"));
    assert_eq!(app.outbox().await.len(), 1);
}
