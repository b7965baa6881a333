//! SMS delivery: (a) an HTTP webhook receiving ZITADEL's webhook-provider JSON, signed with
//! [`crate::signature`]; (b) Twilio's Messages API. When both are configured the webhook wins
//! (the caller decides; see `rekey`'s wiring).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rekey_core::domain::MessageKind;
use rekey_core::ports::Clock;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Value};

use crate::{signature, Outgoing, SendError, Transport};

/// The longest one HTTP delivery may take before it counts as failed (and is retried).
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// A client for the SMS providers: rustls, a request timeout (at most [`HTTP_TIMEOUT`]), no
/// redirects (a provider that redirects a POST is misconfigured, and following it would send
/// the code elsewhere).
pub fn http_client(timeout: Duration) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .timeout(timeout.min(HTTP_TIMEOUT))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("rekey/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// The webhook's `contextInfo.eventType` for a message kind.
pub fn event_type(kind: MessageKind) -> &'static str {
    match kind {
        MessageKind::PasswordReset | MessageKind::PasswordInit => "user.human.password.code.added",
        MessageKind::PasswordChanged => "user.human.password.changed",
        // Events never go out by SMS (they have their own channel).
        MessageKind::Event => "rekey.event",
    }
}

/// POSTs each message as JSON to a URL, with `X-Rekey-Signature` when a secret is configured.
pub struct WebhookSms {
    client: reqwest::Client,
    url: String,
    secret: Option<SecretString>,
    clock: Arc<dyn Clock>,
}

impl WebhookSms {
    pub fn new(
        client: reqwest::Client,
        url: String,
        secret: Option<SecretString>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            client,
            url,
            secret,
            clock,
        }
    }

    /// The JSON body for one message (ZITADEL's webhook SMS provider shape).
    pub fn body(outgoing: &Outgoing<'_>) -> Value {
        let payload = outgoing.payload;
        let mut args = json!({
            "userID": payload.user_id,
            "displayName": payload.display_name,
            "orgID": payload.tenant_id,
        });
        if let Some(code) = &payload.code {
            args["code"] = json!(code);
        }
        json!({
            "contextInfo": {
                "recipientPhoneNumber": outgoing.recipient,
                "eventType": event_type(outgoing.message.kind),
                "provider": { "id": "rekey", "description": "Rekey webhook" },
            },
            "templateData": {
                "subject": outgoing.rendered.subject,
                "text": outgoing.rendered.sms,
                "url": payload.link,
                "language": outgoing.rendered.language,
                "expiresAt": payload.expires_at.map(|at| at.to_rfc3339()),
            },
            "args": args,
        })
    }
}

impl std::fmt::Debug for WebhookSms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookSms")
            .field("signed", &self.secret.is_some())
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl Transport for WebhookSms {
    async fn send(&self, outgoing: Outgoing<'_>) -> Result<(), SendError> {
        let body = serde_json::to_vec(&Self::body(&outgoing))
            .map_err(|_| SendError::permanent("sms webhook: cannot encode the body"))?;
        let mut request = self
            .client
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json");
        if let Some(secret) = &self.secret {
            let header = signature::sign(
                secret.expose_secret().as_bytes(),
                self.clock.now().timestamp(),
                &body,
            );
            request = request.header(signature::HEADER, header);
        }
        let response = request
            .body(body)
            .send()
            .await
            .map_err(|e| request_error("sms webhook", &e))?;
        check_status("sms webhook", response.status(), None)
    }
}

/// Twilio's Messages API: `POST {base}/2010-04-01/Accounts/{sid}/Messages.json`, form `To`,
/// `From`, `Body`, basic auth `sid:token`.
pub struct TwilioSms {
    client: reqwest::Client,
    endpoint: String,
    account_sid: String,
    auth_token: SecretString,
    from: String,
}

/// Twilio's public API, used when no base URL is configured.
pub const TWILIO_BASE_URL: &str = "https://api.twilio.com";

impl TwilioSms {
    pub fn new(
        client: reqwest::Client,
        base_url: Option<&str>,
        account_sid: String,
        auth_token: SecretString,
        from: String,
    ) -> Self {
        let base = base_url.unwrap_or(TWILIO_BASE_URL).trim_end_matches('/');
        let endpoint = format!("{base}/2010-04-01/Accounts/{account_sid}/Messages.json");
        Self {
            client,
            endpoint,
            account_sid,
            auth_token,
            from,
        }
    }
}

impl std::fmt::Debug for TwilioSms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TwilioSms")
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl Transport for TwilioSms {
    async fn send(&self, outgoing: Outgoing<'_>) -> Result<(), SendError> {
        let form = [
            ("To", outgoing.recipient),
            ("From", self.from.as_str()),
            ("Body", outgoing.rendered.sms.as_str()),
        ];
        let response = self
            .client
            .post(&self.endpoint)
            .basic_auth(&self.account_sid, Some(self.auth_token.expose_secret()))
            .form(&form)
            .send()
            .await
            .map_err(|e| request_error("twilio", &e))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        // Twilio's error body names its error code (e.g. 21211, an invalid `To`); its message
        // may quote the phone number, so only the number is kept.
        let code = response
            .json::<Value>()
            .await
            .ok()
            .and_then(|v| v.get("code").and_then(Value::as_u64));
        check_status("twilio", status, code)
    }
}

/// Success for 2xx. A 4xx other than 408/429 will not change on retry: permanent.
pub(crate) fn check_status(
    service: &str,
    status: reqwest::StatusCode,
    provider_code: Option<u64>,
) -> Result<(), SendError> {
    if status.is_success() {
        return Ok(());
    }
    let mut reason = format!("{service}: HTTP {}", status.as_u16());
    if let Some(code) = provider_code {
        reason.push_str(&format!(" (error {code})"));
    }
    let retryable = status.is_server_error()
        || status == reqwest::StatusCode::REQUEST_TIMEOUT
        || status == reqwest::StatusCode::TOO_MANY_REQUESTS;
    Err(if retryable {
        SendError::transient(reason)
    } else {
        SendError::permanent(reason)
    })
}

/// A request that got no response. reqwest's own text names the URL (which may carry a
/// token), so only the kind of failure is kept.
pub(crate) fn request_error(service: &str, err: &reqwest::Error) -> SendError {
    let what = if err.is_timeout() {
        "timed out"
    } else if err.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    SendError::transient(format!("{service}: {what}"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn statuses_map_to_retry_or_park() {
        use reqwest::StatusCode as S;
        assert_eq!(check_status("x", S::OK, None), Ok(()));
        assert_eq!(check_status("x", S::CREATED, None), Ok(()));
        assert_eq!(
            check_status("twilio", S::BAD_REQUEST, Some(21211)),
            Err(SendError::permanent("twilio: HTTP 400 (error 21211)"))
        );
        for s in [
            S::INTERNAL_SERVER_ERROR,
            S::BAD_GATEWAY,
            S::TOO_MANY_REQUESTS,
        ] {
            assert!(!check_status("x", s, None).unwrap_err().permanent, "{s}");
        }
        for s in [S::UNAUTHORIZED, S::NOT_FOUND, S::UNPROCESSABLE_ENTITY] {
            assert!(check_status("x", s, None).unwrap_err().permanent, "{s}");
        }
    }

    #[test]
    fn twilio_endpoint_from_base_url() {
        let client = reqwest::Client::new();
        let t = TwilioSms::new(
            client.clone(),
            Some("http://127.0.0.1:9/"),
            "AC123".to_owned(),
            SecretString::from("tok"),
            "+15550000".to_owned(),
        );
        assert_eq!(
            t.endpoint,
            "http://127.0.0.1:9/2010-04-01/Accounts/AC123/Messages.json"
        );
        let t = TwilioSms::new(
            client,
            None,
            "AC1".to_owned(),
            SecretString::from("tok"),
            "+1".to_owned(),
        );
        assert!(t.endpoint.starts_with("https://api.twilio.com/2010-04-01/"));
        assert!(!format!("{t:?}").contains("tok"));
    }
}
