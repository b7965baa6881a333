//! A real SMTP server for the tests: `smtp_sink.py` (aiosmtpd) in a child process, on a
//! loopback port, writing each accepted message to a temporary directory. Shared by the
//! delivery tests of `rekey-notify` and the black-box tests of the `rekey` binary.
//!
//! aiosmtpd is installed with pip when missing; when that fails too the test fails with a
//! message saying so (never skips).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One message as the server received it.
#[derive(Debug, Clone)]
pub struct Received {
    pub mail_from: String,
    pub rcpt_tos: Vec<String>,
    /// The DATA as received.
    pub raw: Vec<u8>,
}

impl Received {
    pub fn parsed(&self) -> mailparse::ParsedMail<'_> {
        mailparse::parse_mail(&self.raw).expect("a parseable message")
    }

    pub fn header(&self, name: &str) -> String {
        use mailparse::MailHeaderMap;
        self.parsed()
            .headers
            .get_first_value(name)
            .unwrap_or_else(|| panic!("no {name} header"))
    }

    /// The decoded body of the first part of this MIME type.
    pub fn part(&self, mimetype: &str) -> String {
        fn find(mail: &mailparse::ParsedMail<'_>, mimetype: &str) -> Option<String> {
            if mail.ctype.mimetype == mimetype {
                return mail.get_body().ok();
            }
            mail.subparts.iter().find_map(|p| find(p, mimetype))
        }
        find(&self.parsed(), mimetype).unwrap_or_else(|| panic!("no {mimetype} part"))
    }
}

/// How the sink secures its connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkTls {
    None,
    StartTls,
    Implicit,
}

pub struct SmtpSink {
    child: Child,
    pub port: u16,
    dir: tempfile::TempDir,
    _certs: Option<tempfile::TempDir>,
}

static AIOSMTPD: Mutex<bool> = Mutex::new(false);

/// Makes sure `python3 -m aiosmtpd` can be imported, installing it with pip if needed.
fn ensure_aiosmtpd() {
    let mut ready = AIOSMTPD.lock().unwrap_or_else(|p| p.into_inner());
    if *ready {
        return;
    }
    let importable = || {
        Command::new("python3")
            .args(["-c", "import aiosmtpd"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !importable() {
        let installed = Command::new("python3")
            .args(["-m", "pip", "install", "--quiet", "aiosmtpd"])
            .status();
        assert!(
            installed.is_ok_and(|s| s.success()) && importable(),
            "the SMTP tests need python3 with aiosmtpd (a real SMTP server); \
             `python3 -m pip install aiosmtpd` failed"
        );
    }
    *ready = true;
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("smtp_sink.py")
}

/// A self-signed certificate for `localhost` / 127.0.0.1 (the mailer under test accepts
/// invalid certificates, as `REKEY_SMTP__ACCEPT_INVALID_CERTS` does).
fn self_signed() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let status = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=localhost"])
        .arg("-keyout")
        .arg(dir.path().join("key.pem"))
        .arg("-out")
        .arg(dir.path().join("cert.pem"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    assert!(
        status.is_ok_and(|s| s.success()),
        "the TLS tests need the openssl command to make a test certificate"
    );
    dir
}

impl SmtpSink {
    pub fn start() -> Self {
        Self::start_with(0, SinkTls::None, None)
    }

    /// A sink on `port` (0: any free port), with the given TLS mode and required credentials.
    pub fn start_with(port: u16, tls: SinkTls, auth: Option<&str>) -> Self {
        ensure_aiosmtpd();
        let dir = tempfile::tempdir().expect("temp dir");
        let mut command = Command::new("python3");
        command
            .arg(script())
            .arg(dir.path())
            .args(["--port", &port.to_string()]);
        let certs = (tls != SinkTls::None).then(self_signed);
        if let Some(certs) = &certs {
            command
                .args([
                    "--tls",
                    if tls == SinkTls::StartTls {
                        "starttls"
                    } else {
                        "implicit"
                    },
                ])
                .arg("--cert")
                .arg(certs.path().join("cert.pem"))
                .arg("--key")
                .arg(certs.path().join("key.pem"));
        }
        if let Some(auth) = auth {
            command.args(["--auth", auth]);
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start python3 smtp_sink.py");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("sink stdout");
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the sink's port");
        let port = line
            .trim()
            .strip_prefix("PORT ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("the SMTP sink did not start: {line:?}"));
        Self {
            child,
            port,
            dir,
            _certs: certs,
        }
    }

    /// The messages received so far, in order.
    pub fn received(&self) -> Vec<Received> {
        let mut out = Vec::new();
        for n in 1.. {
            let base = self.dir.path().join(n.to_string());
            let Ok(raw) = std::fs::read(base.with_extension("eml")) else {
                break;
            };
            let meta: serde_json::Value = serde_json::from_slice(
                &std::fs::read(base.with_extension("json")).expect("envelope file"),
            )
            .expect("envelope JSON");
            out.push(Received {
                mail_from: meta["mail_from"].as_str().unwrap_or_default().to_owned(),
                rcpt_tos: meta["rcpt_tos"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect(),
                raw,
            });
        }
        out
    }

    /// Waits (up to 10 s) until at least `n` messages have arrived.
    pub async fn wait_for(&self, n: usize) -> Vec<Received> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let got = self.received();
            if got.len() >= n || Instant::now() > deadline {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
