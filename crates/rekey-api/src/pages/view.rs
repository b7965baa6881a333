//! The templates (embedded at compile time, HTML auto-escaped by their `.html` names), the
//! stylesheet, and the headers every `/ui` response carries (SPEC §9).

use std::sync::LazyLock;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, REFERRER_POLICY, SET_COOKIE,
    X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use http::{HeaderValue, StatusCode};
use minijinja::{AutoEscape, Environment};
use serde::Serialize;

pub const STYLESHEET: &str = include_str!("../../templates/ui/rekey.css");

const TEMPLATES: [(&str, &str); 4] = [
    ("base.html", include_str!("../../templates/ui/base.html")),
    (
        "password.html",
        include_str!("../../templates/ui/password.html"),
    ),
    (
        "forgot.html",
        include_str!("../../templates/ui/forgot.html"),
    ),
    (
        "message.html",
        include_str!("../../templates/ui/message.html"),
    ),
];

/// No script, no other origin, no framing; forms post only to us.
const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
                   base-uri 'none'; frame-ancestors 'none'";

static ENV: LazyLock<Result<Environment<'static>, String>> = LazyLock::new(|| {
    let mut env = Environment::new();
    env.set_formatter(
        |out, state, value| match (state.auto_escape(), value.as_str()) {
            (AutoEscape::Html, Some(text)) if !value.is_safe() => Ok(out.write_str(&escape(text))?),
            _ => minijinja::escape_formatter(out, state, value),
        },
    );
    for (name, source) in TEMPLATES {
        env.add_template(name, source)
            .map_err(|err| format!("template {name}: {err}"))?;
    }
    Ok(env)
});

/// HTML escaping of text and attribute values. Unlike minijinja's own it leaves `/` alone,
/// so links read as written (`href="/ui/password/forgot"`).
fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            c => escaped.push(c),
        }
    }
    escaped
}

/// Renders a page as an HTML answer, optionally setting a cookie. A template fault is a bug:
/// logged here and answered with a bare 500.
pub fn render(
    status: StatusCode,
    name: &str,
    context: impl Serialize,
    cookie: Option<String>,
) -> Response {
    let rendered = match ENV.as_ref() {
        Ok(env) => env
            .get_template(name)
            .and_then(|template| template.render(minijinja::value::Serde(&context)))
            .map_err(|err| err.to_string()),
        Err(err) => Err(err.clone()),
    };
    let body = match rendered {
        Ok(body) => body,
        Err(err) => {
            tracing::error!(error = %err, template = name, "page template failed");
            return (StatusCode::INTERNAL_SERVER_ERROR, "Internal error").into_response();
        }
    };
    let mut response = (status, Body::from(body)).into_response();
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    if let Some(value) = cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        headers.insert(SET_COOKIE, value);
    }
    response
}

/// `GET /ui/static/rekey.css`: the one stylesheet, cacheable for a day.
pub async fn stylesheet() -> Response {
    let mut response = STYLESHEET.into_response();
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/css; charset=utf-8"),
    );
    headers.insert(
        CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=86400"),
    );
    response
}

/// The headers of every `/ui` response; only the stylesheet chooses its own caching.
pub async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers
        .entry(CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    #[test]
    fn templates_compile() {
        assert!(
            super::ENV.as_ref().is_ok(),
            "{:?}",
            super::ENV.as_ref().err()
        );
    }

    #[test]
    fn escaping_covers_html_specials() {
        assert_eq!(
            super::escape(r#"<a href="/x?a=1&b='2'">"#),
            "&lt;a href=&quot;/x?a=1&amp;b=&#39;2&#39;&quot;&gt;"
        );
    }
}
