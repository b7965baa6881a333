//! Email: the rendered message as a multipart/alternative (plain text + HTML) mail, sent through
//! the pooled [`SmtpMailer`].

use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use lettre::message::{Mailbox, MultiPart};
use lettre::{Address, Message};
use rekey_core::ports::Clock;

use crate::smtp::SmtpMailer;
use crate::{Outgoing, SendError, Transport};

/// Who the mails come from, and how their `Message-ID`s are formed.
#[derive(Debug, Clone)]
pub struct Sender {
    /// `From` (address and optional display name).
    pub from: Mailbox,
    pub reply_to: Option<Mailbox>,
    /// The right-hand side of every `Message-ID`: the host of the public URL, or `rekey`.
    pub message_id_domain: String,
}

/// Why the sender settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SenderError {
    #[error("smtp.from is not an email address")]
    From,
    #[error("smtp.reply_to is not an email address")]
    ReplyTo,
}

impl Sender {
    /// From the settings: `from` address, optional `from_name` and `reply_to`, and the public
    /// URL whose host names the messages.
    pub fn new(
        from: &str,
        from_name: Option<&str>,
        reply_to: Option<&str>,
        public_url: &str,
    ) -> Result<Self, SenderError> {
        let address: Address = from.trim().parse().map_err(|_| SenderError::From)?;
        let name = from_name
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(str::to_owned);
        let reply_to = reply_to
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .map(|r| r.parse::<Mailbox>().map_err(|_| SenderError::ReplyTo))
            .transpose()?;
        Ok(Self {
            from: Mailbox::new(name, address),
            reply_to,
            message_id_domain: message_id_domain(public_url),
        })
    }

    /// `<{idempotency_key}@{domain}>`: the same for every attempt at one outbox message, so a
    /// message delivered twice (a crash between the server's accept and our commit) is one
    /// message to the reader's client.
    pub fn message_id(&self, idempotency_key: &str) -> String {
        format!("<{idempotency_key}@{}>", self.message_id_domain)
    }

    /// The mail for one outgoing message, dated `date`: multipart/alternative (plain text and
    /// HTML) from this sender, its `Message-ID` from the message's idempotency key.
    pub fn compose(&self, outgoing: &Outgoing<'_>, date: SystemTime) -> Result<Message, SendError> {
        // The address was checked when the user was stored; one that lettre refuses still
        // cannot succeed later. The address itself is not put in the (stored) reason.
        let to: Address = outgoing
            .recipient
            .parse()
            .map_err(|_| SendError::permanent("email: the recipient is not a valid address"))?;
        let display_name = outgoing.payload.display_name.trim();
        let to = Mailbox::new(
            (!display_name.is_empty()).then(|| display_name.to_owned()),
            to,
        );
        let mut builder = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(outgoing.rendered.subject.clone())
            .message_id(Some(self.message_id(&outgoing.message.idempotency_key)))
            .date(date);
        if let Some(reply_to) = &self.reply_to {
            builder = builder.reply_to(reply_to.clone());
        }
        builder
            .multipart(MultiPart::alternative_plain_html(
                outgoing.rendered.text.clone(),
                outgoing.rendered.html.clone(),
            ))
            .map_err(|_| SendError::permanent("email: the message cannot be built"))
    }
}

/// The host of `public_url` (an IPv6 address in brackets, RFC 5322's domain literal), or
/// `rekey` when it has none.
pub fn message_id_domain(public_url: &str) -> String {
    url::Url::parse(public_url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "rekey".to_owned())
}

/// The email channel.
pub struct SmtpEmail {
    mailer: Arc<SmtpMailer>,
    sender: Sender,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for SmtpEmail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpEmail")
            .field("mailer", &self.mailer)
            .finish_non_exhaustive()
    }
}

impl SmtpEmail {
    pub fn new(mailer: Arc<SmtpMailer>, sender: Sender, clock: Arc<dyn Clock>) -> Self {
        Self {
            mailer,
            sender,
            clock,
        }
    }

    /// The mail for one outgoing message.
    pub fn message(&self, outgoing: &Outgoing<'_>) -> Result<Message, SendError> {
        self.sender
            .compose(outgoing, SystemTime::from(self.clock.now()))
    }
}

#[async_trait]
impl Transport for SmtpEmail {
    async fn send(&self, outgoing: Outgoing<'_>) -> Result<(), SendError> {
        let message = self.message(&outgoing)?;
        self.mailer
            .send(message.envelope(), &message.formatted())
            .await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use chrono::TimeZone;
    use rekey_core::ports::ManualClock;
    use rekey_testkit::fixtures;

    use super::*;
    use crate::smtp::{SmtpConfig, SmtpTls};
    use crate::Rendered;

    #[test]
    fn message_id_domain_from_the_public_url() {
        assert_eq!(
            message_id_domain("https://id.example.com/rekey"),
            "id.example.com"
        );
        assert_eq!(message_id_domain("http://127.0.0.1:8080"), "127.0.0.1");
        assert_eq!(message_id_domain("http://[::1]:8080"), "[::1]");
        assert_eq!(message_id_domain("not a url"), "rekey");
    }

    #[test]
    fn sender_settings_are_checked() {
        let s = Sender::new(
            "rekey@example.com",
            Some("Example IT"),
            Some("help@example.com"),
            "https://id.example.com",
        )
        .unwrap();
        assert_eq!(s.from.to_string(), "Example IT <rekey@example.com>");
        assert_eq!(s.message_id("k1.t1"), "<k1.t1@id.example.com>");
        assert!(matches!(
            Sender::new("not-an-address", None, None, "https://x"),
            Err(SenderError::From)
        ));
        assert!(matches!(
            Sender::new("a@example.com", None, Some("nope"), "https://x"),
            Err(SenderError::ReplyTo)
        ));
        let plain = Sender::new("a@example.com", Some("  "), Some(""), "https://x").unwrap();
        assert_eq!(plain.from.to_string(), "a@example.com");
        assert!(plain.reply_to.is_none());
    }

    #[test]
    fn the_mail_has_both_parts_headers_and_a_stable_message_id() {
        let at = chrono::Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap();
        let mailer = SmtpMailer::new(SmtpConfig::new("127.0.0.1", SmtpTls::None)).unwrap();
        let email = SmtpEmail::new(
            Arc::new(mailer),
            Sender::new(
                "rekey@example.com",
                Some("Rekey"),
                Some("help@example.com"),
                "https://id.example.com",
            )
            .unwrap(),
            Arc::new(ManualClock::new(at)),
        );
        let message = fixtures::message("m1")
            .sealed("k", Vec::new())
            .attempts(1)
            .at(at)
            .build();
        let payload = fixtures::reset_payload(None, None);
        let rendered = Rendered {
            language: "en",
            subject: "Reset password".to_owned(),
            text: "plain part\n".to_owned(),
            html: "<p>html part</p>".to_owned(),
            sms: String::new(),
        };
        let outgoing = Outgoing {
            message: &message,
            recipient: "ada@example.com",
            payload: &payload,
            rendered: &rendered,
        };
        let mail = String::from_utf8(email.message(&outgoing).unwrap().formatted()).unwrap();
        for header in [
            "From: Rekey <rekey@example.com>\r\n",
            "Reply-To: help@example.com\r\n",
            "To: \"Ada Lovelace\" <ada@example.com>\r\n",
            "Subject: Reset password\r\n",
            "Message-ID: <m1.t1@id.example.com>\r\n",
            "Date: Sun, 01 Mar 2026 12:00:00 +0000\r\n",
            "Content-Type: multipart/alternative;",
        ] {
            assert!(mail.contains(header), "{header:?} in\n{mail}");
        }
        assert!(mail.contains("Content-Type: text/plain; charset=utf-8"));
        assert!(mail.contains("Content-Type: text/html; charset=utf-8"));
        assert!(mail.find("plain part").unwrap() < mail.find("html part").unwrap());
        let again = String::from_utf8(email.message(&outgoing).unwrap().formatted()).unwrap();
        assert!(again.contains("Message-ID: <m1.t1@id.example.com>\r\n"));

        let bad = Outgoing {
            recipient: "not an address",
            ..outgoing
        };
        let err = email.message(&bad).unwrap_err();
        assert!(err.permanent);
        assert!(!err.reason.contains("not an address"));
    }
}
