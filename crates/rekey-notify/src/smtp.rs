//! SMTP connections: lettre's SMTP client over sockets we open ourselves with `TCP_NODELAY`,
//! kept in a small pool.
//!
//! **Why not `lettre::AsyncSmtpTransport`.** lettre writes a message's body and the end-of-data
//! marker (`\r\n.\r\n`) as two separate writes. On a socket with Nagle's algorithm on (lettre's
//! own sockets; it offers no way to turn it off) the small second write waits until the server
//! acknowledges the body — and the server, which has nothing to answer until it sees the
//! marker, delays that ACK (40 ms on Linux). Measured against a local aiosmtpd: 45 ms and
//! ~22 messages/s per connection with `AsyncSmtpTransport`, against ~1-2 ms with the same
//! client code on a `TCP_NODELAY` socket. So we connect the socket, set `TCP_NODELAY`, and hand
//! it to lettre's [`AsyncSmtpConnection::connect_with_transport`]; lettre still speaks SMTP
//! (EHLO, STARTTLS, AUTH, dot-stuffing), and the pool below replaces lettre's (which only
//! works on lettre's own sockets).

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use lettre::address::Envelope;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, AsyncTokioStream, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

use crate::SendError;

/// How the connection to the SMTP server is secured; deserialized from the names of
/// `REKEY_SMTP__TLS` (`none`, `starttls`, `tls`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Plain text (local sinks and relays on the same host only).
    None,
    /// Plain connection upgraded with `STARTTLS`, which the server must offer.
    StartTls,
    /// TLS from the first byte ("implicit TLS", SMTPS).
    Tls,
}

impl SmtpTls {
    /// The configuration name, as `/readyz` shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::StartTls => "starttls",
            Self::Tls => "tls",
        }
    }

    /// The port used when none is configured.
    pub fn default_port(self) -> u16 {
        match self {
            Self::None => 25,
            Self::StartTls => 587,
            Self::Tls => 465,
        }
    }
}

/// Where and how to connect.
#[derive(Clone)]
pub struct SmtpConfig {
    pub host: String,
    /// Default: [`SmtpTls::default_port`].
    pub port: Option<u16>,
    pub tls: SmtpTls,
    pub username: Option<String>,
    pub password: Option<SecretString>,
    /// Tests only: accept any server certificate, for any name.
    pub accept_invalid_certs: bool,
    /// Connections open at once (also the number of messages in flight).
    pub max_connections: usize,
    /// Limit for connecting (TCP, TLS, greeting, EHLO, AUTH) and, separately, for one message.
    pub timeout: Duration,
    /// Idle connections older than this are closed instead of reused.
    pub idle_timeout: Duration,
}

impl std::fmt::Debug for SmtpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("auth", &self.username.is_some())
            .finish_non_exhaustive()
    }
}

impl SmtpConfig {
    pub fn new(host: impl Into<String>, tls: SmtpTls) -> Self {
        Self {
            host: host.into(),
            port: None,
            tls,
            username: None,
            password: None,
            accept_invalid_certs: false,
            max_connections: 4,
            timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(30),
        }
    }

    pub fn port(&self) -> u16 {
        self.port.unwrap_or_else(|| self.tls.default_port())
    }
}

/// Why the SMTP settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SmtpConfigError {
    #[error("smtp: TLS parameters for {host}: {reason}")]
    Tls { host: String, reason: String },
    #[error("smtp: a username needs a password (and a password a username)")]
    HalfCredentials,
}

/// Longest wait for a server's reply to `QUIT`.
const QUIT_TIMEOUT: Duration = Duration::from_secs(2);

struct Idle {
    conn: AsyncSmtpConnection,
    since: Instant,
}

/// A pool of SMTP connections to one server.
pub struct SmtpMailer {
    config: SmtpConfig,
    tls: Option<TlsParameters>,
    credentials: Option<Credentials>,
    hello: ClientId,
    idle: Mutex<Vec<Idle>>,
    slots: Semaphore,
}

impl std::fmt::Debug for SmtpMailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpMailer")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl SmtpMailer {
    pub fn new(config: SmtpConfig) -> Result<Self, SmtpConfigError> {
        let tls = match config.tls {
            SmtpTls::None => None,
            SmtpTls::StartTls | SmtpTls::Tls => Some(
                TlsParameters::builder(config.host.clone())
                    .dangerous_accept_invalid_certs(config.accept_invalid_certs)
                    .dangerous_accept_invalid_hostnames(config.accept_invalid_certs)
                    .build_rustls()
                    .map_err(|e| SmtpConfigError::Tls {
                        host: config.host.clone(),
                        reason: e.to_string(),
                    })?,
            ),
        };
        let credentials = match (&config.username, &config.password) {
            (Some(user), Some(password)) => Some(Credentials::new(
                user.clone(),
                password.expose_secret().to_owned(),
            )),
            (None, None) => None,
            _ => return Err(SmtpConfigError::HalfCredentials),
        };
        Ok(Self {
            slots: Semaphore::new(config.max_connections.max(1)),
            config,
            tls,
            credentials,
            hello: ClientId::default(),
            idle: Mutex::new(Vec::new()),
        })
    }

    /// Sends one message (already formatted for SMTP) to the envelope's recipients.
    ///
    /// A pooled connection that turns out dead (the server closed it while idle, or
    /// restarted) is replaced by a fresh one, once, and the other idle ones are dropped with
    /// it; a reply from the server (4xx, 5xx) is final for this attempt.
    pub async fn send(&self, envelope: &Envelope, message: &[u8]) -> Result<(), SendError> {
        let _slot = self
            .slots
            .acquire()
            .await
            .map_err(|_| SendError::transient("smtp: mailer closed"))?;
        // One budget for the whole attempt — connecting, sending, a reconnect and the QUITs
        // after failures — so that an attempt always ends well inside the worker's lease.
        let deadline = Instant::now() + self.config.timeout;
        let (mut conn, mut reused) = match self.take_idle() {
            Some(conn) => (conn, true),
            None => (self.connect(deadline).await?, false),
        };
        loop {
            let sent = tokio::time::timeout_at(deadline.into(), conn.send(envelope, message)).await;
            match sent {
                Ok(Ok(_)) => {
                    self.put_idle(conn);
                    return Ok(());
                }
                Ok(Err(err)) => {
                    quit_within(conn, deadline).await;
                    if reused && err.status().is_none() && !err.is_client() {
                        tracing::debug!(error = %err, "pooled SMTP connection is dead; reconnecting");
                        self.drop_idle();
                        conn = self.connect(deadline).await?;
                        reused = false;
                        continue;
                    }
                    return Err(smtp_error(&err));
                }
                Err(_) => {
                    // The server went silent mid-conversation: a QUIT would wait on it again.
                    // Dropping the connection closes the socket.
                    drop(conn);
                    return Err(SendError::transient("smtp: timed out sending the message"));
                }
            }
        }
    }

    fn drop_idle(&self) {
        if let Ok(mut idle) = self.idle.lock() {
            idle.clear();
        }
    }

    /// Closes the idle connections (politely, with `QUIT`).
    pub async fn close(&self) {
        let idle = match self.idle.lock() {
            Ok(mut idle) => std::mem::take(&mut *idle),
            Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
        };
        let deadline = Instant::now() + QUIT_TIMEOUT;
        for mut idle in idle {
            let _ = tokio::time::timeout_at(deadline.into(), idle.conn.quit()).await;
        }
    }

    fn take_idle(&self) -> Option<AsyncSmtpConnection> {
        let mut idle = self.idle.lock().ok()?;
        while let Some(entry) = idle.pop() {
            if entry.since.elapsed() < self.config.idle_timeout && !entry.conn.has_broken() {
                return Some(entry.conn);
            }
            // Too old: servers drop idle clients (RFC 5321 suggests 5 min); not worth a QUIT.
        }
        None
    }

    fn put_idle(&self, conn: AsyncSmtpConnection) {
        if conn.has_broken() {
            return;
        }
        if let Ok(mut idle) = self.idle.lock() {
            idle.push(Idle {
                conn,
                since: Instant::now(),
            });
        }
    }

    async fn connect(&self, deadline: Instant) -> Result<AsyncSmtpConnection, SendError> {
        match tokio::time::timeout_at(deadline.into(), self.open()).await {
            Ok(result) => result.map_err(|err| match err {
                OpenError::Io(e) => {
                    SendError::transient(format!("smtp: cannot connect ({})", e.kind()))
                }
                OpenError::Smtp(e) => smtp_error(&e),
                OpenError::NoStartTls => {
                    SendError::transient("smtp: the server does not offer STARTTLS")
                }
            }),
            Err(_) => Err(SendError::transient("smtp: timed out connecting")),
        }
    }

    async fn open(&self) -> Result<AsyncSmtpConnection, OpenError> {
        let tcp = TcpStream::connect((self.config.host.as_str(), self.config.port())).await?;
        // The point of this module: see the module documentation.
        tcp.set_nodelay(true)?;
        // A server (or a middlebox) that vanishes without a FIN is noticed on pooled idle
        // connections too, not only by the next send's timeout.
        socket2::SockRef::from(&tcp).set_tcp_keepalive(
            &socket2::TcpKeepalive::new()
                .with_time(Duration::from_secs(30))
                .with_interval(Duration::from_secs(10)),
        )?;
        let mut conn = match (&self.config.tls, &self.tls) {
            (SmtpTls::Tls, Some(tls)) => {
                let stream = implicit_tls(tcp, tls.clone()).await?;
                AsyncSmtpConnection::connect_with_transport(Box::new(stream), &self.hello).await?
            }
            (SmtpTls::StartTls, Some(tls)) => {
                let mut conn =
                    AsyncSmtpConnection::connect_with_transport(Box::new(tcp), &self.hello).await?;
                if !conn.can_starttls() {
                    conn.abort().await;
                    return Err(OpenError::NoStartTls);
                }
                conn.starttls(tls.clone(), &self.hello).await?;
                conn
            }
            _ => AsyncSmtpConnection::connect_with_transport(Box::new(tcp), &self.hello).await?,
        };
        if let Some(credentials) = &self.credentials {
            conn.auth(&[Mechanism::Plain, Mechanism::Login], credentials)
                .await?;
        }
        Ok(conn)
    }
}

enum OpenError {
    Io(io::Error),
    Smtp(lettre::transport::smtp::Error),
    NoStartTls,
}

impl From<io::Error> for OpenError {
    fn from(err: io::Error) -> Self {
        Self::Io(err)
    }
}

impl From<lettre::transport::smtp::Error> for OpenError {
    fn from(err: lettre::transport::smtp::Error) -> Self {
        Self::Smtp(err)
    }
}

/// The polite close after a failed command, bounded: `QUIT` waits for the server's reply,
/// and a server that stopped answering would hold the attempt forever.
async fn quit_within(mut conn: AsyncSmtpConnection, deadline: Instant) {
    let limit = deadline
        .saturating_duration_since(Instant::now())
        .min(QUIT_TIMEOUT);
    let _ = tokio::time::timeout(limit, conn.abort()).await;
}

/// An SMTP failure in storable words: the reply code (whose class says whether to retry), or
/// for a failure below SMTP its innermost cause (an I/O or TLS error, e.g. "connection reset by
/// peer" or a certificate problem). The server's reply text is left out: it may quote the
/// recipient.
fn smtp_error(err: &lettre::transport::smtp::Error) -> SendError {
    if let Some(code) = err.status() {
        let reason = format!("smtp: server replied {code}");
        return if err.is_permanent() {
            SendError::permanent(reason)
        } else {
            SendError::transient(reason)
        };
    }
    let reason = if err.is_timeout() {
        "smtp: timed out".to_owned()
    } else if err.is_response() {
        "smtp: unexpected response from the server".to_owned()
    } else if err.is_client() {
        "smtp: client error".to_owned()
    } else {
        let mut cause: &dyn std::error::Error = err;
        while let Some(inner) = cause.source() {
            cause = inner;
        }
        format!("smtp: connection failed ({cause})")
    };
    SendError::transient(reason)
}

/// TLS from the first byte on our `TCP_NODELAY` socket, using lettre's own TLS setup (the
/// configured roots and `accept_invalid_certs`). lettre can upgrade a stream only through its
/// `AsyncNetworkStream` (public, though deprecated as "not meant to be public"); once upgraded,
/// it is handed back to lettre as an ordinary stream.
#[allow(deprecated)]
async fn implicit_tls(tcp: TcpStream, tls: TlsParameters) -> Result<ImplicitTls, OpenError> {
    use lettre::transport::smtp::client::AsyncNetworkStream;
    use tokio_util::compat::FuturesAsyncReadCompatExt;
    let mut stream = AsyncNetworkStream::use_existing_tokio1(Box::new(tcp));
    stream.upgrade_tls(tls).await?;
    let peer = stream.peer_addr()?;
    Ok(ImplicitTls {
        inner: stream.compat(),
        peer,
    })
}

/// An implicit-TLS stream in the shape lettre accepts for `connect_with_transport`.
#[allow(deprecated)]
#[derive(Debug)]
struct ImplicitTls {
    inner: tokio_util::compat::Compat<lettre::transport::smtp::client::AsyncNetworkStream>,
    peer: SocketAddr,
}

impl AsyncRead for ImplicitTls {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for ImplicitTls {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl AsyncTokioStream for ImplicitTls {
    fn peer_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.peer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_modes_and_default_ports() {
        let parse = |name: &str| serde_json::from_value::<SmtpTls>(name.into()).ok();
        for tls in [SmtpTls::None, SmtpTls::StartTls, SmtpTls::Tls] {
            assert_eq!(parse(tls.as_str()), Some(tls));
        }
        assert_eq!(parse("starttls"), Some(SmtpTls::StartTls));
        assert_eq!(parse("ssl"), None);
        let mut config = SmtpConfig::new("mail.example", SmtpTls::Tls);
        assert_eq!(config.port(), 465);
        config.port = Some(2465);
        assert_eq!(config.port(), 2465);
        assert_eq!(SmtpTls::StartTls.default_port(), 587);
        assert_eq!(SmtpTls::None.default_port(), 25);
    }

    #[test]
    fn credentials_come_in_pairs_and_never_show() {
        let mut config = SmtpConfig::new("mail.example", SmtpTls::None);
        config.username = Some("rekey".to_owned());
        assert!(matches!(
            SmtpMailer::new(config.clone()),
            Err(SmtpConfigError::HalfCredentials)
        ));
        config.password = Some(SecretString::from("pw-secret"));
        let mailer = SmtpMailer::new(config);
        assert!(mailer.is_ok());
        let shown = format!("{mailer:?}");
        assert!(!shown.contains("pw-secret"), "{shown}");
    }
}
