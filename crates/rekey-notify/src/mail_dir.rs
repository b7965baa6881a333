//! Development mail (`REKEY_MAIL__DIR`): the email channel writes each message as an `.eml`
//! file into a directory instead of sending it, so the reset link can be followed without an
//! SMTP server. Nothing is delivered; the server warns about it at every start.
//!
//! The mail is exactly what SMTP would have carried ([`Sender::compose`]). Its file is named
//! after the message's idempotency key — the left-hand side of its `Message-ID` — so another
//! attempt at the same outbox message replaces the file instead of adding a second one. Each
//! file is written under a temporary name and renamed, so a reader never sees half a mail.
//! The directory (0700) and the files (0600) are private: they hold live codes.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use rekey_core::ports::Clock;

use crate::email::Sender;
use crate::{Outgoing, SendError, Transport};

/// The email channel that writes `.eml` files.
pub struct MailDir {
    dir: PathBuf,
    sender: Sender,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for MailDir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MailDir")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl MailDir {
    /// Writes into `dir`, which is created (0700) when missing.
    pub fn new(dir: &Path, sender: Sender, clock: Arc<dyn Clock>) -> std::io::Result<Self> {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            builder.mode(0o700);
        }
        builder.create(dir)?;
        Ok(Self {
            dir: dir.to_owned(),
            sender,
            clock,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the message with this idempotency key is written.
    pub fn path_of(&self, idempotency_key: &str) -> PathBuf {
        self.dir.join(file_name(idempotency_key))
    }
}

/// `<key>.eml`, with every character a file name should not hold replaced by `_` (ids are
/// opaque strings; the generated ones are digits) and a leading dot avoided.
fn file_name(idempotency_key: &str) -> String {
    let mut name: String = idempotency_key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if name.is_empty() || name.starts_with('.') {
        name.insert(0, '_');
    }
    name.push_str(".eml");
    name
}

fn write_private(path: &Path, content: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(content)?;
    file.flush()
}

#[async_trait]
impl Transport for MailDir {
    async fn send(&self, outgoing: Outgoing<'_>) -> Result<(), SendError> {
        let mail = self
            .sender
            .compose(&outgoing, SystemTime::from(self.clock.now()))?
            .formatted();
        let path = self.path_of(&outgoing.message.idempotency_key);
        let temporary = self.dir.join(format!(
            ".{}.tmp",
            file_name(&outgoing.message.idempotency_key)
        ));
        let written = tokio::task::spawn_blocking(move || {
            write_private(&temporary, &mail)
                .and_then(|()| std::fs::rename(&temporary, &path))
                .inspect_err(|_| {
                    let _ = std::fs::remove_file(&temporary);
                })
        })
        .await
        .map_err(|_| SendError::transient("mail dir: the write task failed"))?;
        written.map_err(|err| {
            SendError::transient(format!("mail dir: cannot write the file ({})", err.kind()))
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use chrono::TimeZone;
    use rekey_core::ports::ManualClock;
    use rekey_testkit::fixtures;

    use super::*;
    use crate::Rendered;

    #[test]
    fn file_names_are_safe_and_stable() {
        assert_eq!(
            file_name("315271233000001.315270000000001"),
            "315271233000001.315270000000001.eml"
        );
        assert_eq!(file_name("../etc/pw d"), "_.._etc_pw_d.eml");
        assert_eq!(file_name(""), "_.eml");
    }

    #[tokio::test]
    async fn writes_one_private_file_per_message_and_a_retry_replaces_it() {
        let at = chrono::Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap();
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("mail");
        let sender =
            Sender::new("rekey@example.com", Some("Rekey"), None, "https://id.test").unwrap();
        let mail_dir = MailDir::new(&dir, sender, Arc::new(ManualClock::new(at))).unwrap();
        let message = fixtures::message("m1").attempts(1).at(at).build();
        let payload = fixtures::reset_payload(None, None);
        let first = Rendered {
            language: "en",
            subject: "Reset password".to_owned(),
            text: "first attempt\n".to_owned(),
            html: "<p>first attempt</p>".to_owned(),
            sms: String::new(),
        };
        let outgoing = |rendered| Outgoing {
            message: &message,
            recipient: "ada@example.com",
            payload: &payload,
            rendered,
        };
        let second = Rendered {
            text: "second attempt\n".to_owned(),
            html: "<p>second attempt</p>".to_owned(),
            ..first.clone()
        };
        mail_dir.send(outgoing(&first)).await.unwrap();
        mail_dir.send(outgoing(&second)).await.unwrap();

        let files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(files, ["m1.t1.eml"]);
        let path = mail_dir.path_of(&message.idempotency_key);
        let mail = std::fs::read_to_string(&path).unwrap();
        assert!(mail.contains("Message-ID: <m1.t1@id.test>\r\n"), "{mail}");
        assert!(mail.contains("To: \"Ada Lovelace\" <ada@example.com>\r\n"));
        assert!(mail.contains("second attempt") && !mail.contains("first attempt"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&path), 0o600);
            assert_eq!(mode(&dir), 0o700);
        }

        // A directory that cannot be written: a transient failure, retried like an SMTP outage.
        std::fs::remove_dir_all(&dir).unwrap();
        let err = mail_dir.send(outgoing(&second)).await.unwrap_err();
        assert!(
            !err.permanent && err.reason.starts_with("mail dir:"),
            "{err}"
        );
    }
}
