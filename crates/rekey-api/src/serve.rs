//! The one listener for every face and form (SPEC §5): HTTP/1.1 and HTTP/2 on the same port,
//! told apart by the connection preface, so gRPC clients that speak HTTP/2 with prior knowledge
//! (h2c, they never upgrade) and HTTP/1.1 clients (REST, Connect, gRPC-Web) share it. With TLS,
//! ALPN offers `h2` and `http/1.1`, and the same detection runs inside the TLS stream.
//!
//! Why a loop of our own instead of `axum::serve`: axum's serve has no TLS, and `axum-server`
//! would bring a second server stack with its own shutdown handle. hyper-util's auto builder
//! is what `axum::serve` runs inside anyway; driving it here gives plain and TLS one code path
//! (same HTTP/2 settings, same `ConnectInfo`, same graceful shutdown) with tokio-rustls on the
//! ring provider the rest of the workspace already uses.

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{self, ServerConfig};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

/// A client that opens a connection and never finishes the TLS handshake must not hold a task
/// (and a graceful-shutdown slot) forever.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Server certificate and key, with ALPN `h2` and `http/1.1`.
#[derive(Clone)]
pub struct TlsConfig {
    config: Arc<ServerConfig>,
}

impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConfig")
            .field("alpn", &["h2", "http/1.1"])
            .finish_non_exhaustive()
    }
}

/// Why a certificate or key could not be used.
#[derive(Debug)]
pub struct TlsError(String);

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TlsError {}

impl TlsConfig {
    /// Reads a PEM certificate chain (leaf first) and a PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let cert_pem = std::fs::read(cert)
            .map_err(|e| TlsError(format!("reading TLS certificate {}: {e}", cert.display())))?;
        let key_pem = std::fs::read(key)
            .map_err(|e| TlsError(format!("reading TLS key {}: {e}", key.display())))?;
        Self::from_pem(&cert_pem, &key_pem)
    }

    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<Self, TlsError> {
        let chain = CertificateDer::pem_slice_iter(cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| TlsError(format!("TLS certificate is not valid PEM: {e}")))?;
        if chain.is_empty() {
            return Err(TlsError("TLS certificate file holds no certificate".into()));
        }
        // The error of a key parse names the PEM problem, never the key material.
        let key = PrivateKeyDer::from_pem_slice(key_pem)
            .map_err(|e| TlsError(format!("TLS key is not a valid PEM private key: {e}")))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError(format!("TLS protocol versions: {e}")))?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|e| TlsError(format!("TLS certificate and key do not fit: {e}")))?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Self {
            config: Arc::new(config),
        })
    }
}

/// Serves `router` on `listener` until `shutdown` completes, then stops accepting and waits for
/// the open connections to finish their in-flight requests. Handlers see the peer address as
/// `ConnectInfo<SocketAddr>`, as with `into_make_service_with_connect_info`.
pub async fn serve<F>(
    listener: TcpListener,
    router: Router,
    tls: Option<TlsConfig>,
    shutdown: F,
) -> std::io::Result<()>
where
    F: Future<Output = ()> + Send,
{
    let acceptor = tls.map(|tls| TlsAcceptor::from(tls.config));
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // The timer drives hyper's header-read timeout (HTTP/1.1) and keep-alive pings (HTTP/2).
    builder.http1().timer(TokioTimer::new());
    builder.http2().timer(TokioTimer::new());
    let builder = Arc::new(builder);
    tokio::pin!(shutdown);
    loop {
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(err) => {
                    accept_error(err).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Small gRPC frames and HTTP/1.1 answers must not wait for the peer's delayed ACK.
        if let Err(err) = stream.set_nodelay(true) {
            tracing::debug!(%err, "TCP_NODELAY not set");
        }
        let watcher = graceful.watcher();
        let connection = Connection {
            builder: builder.clone(),
            router: router.clone(),
            remote,
            watcher,
        };
        match &acceptor {
            None => {
                tokio::spawn(connection.serve(stream));
            }
            Some(acceptor) => {
                tokio::spawn(connection.serve_tls(acceptor.clone(), stream));
            }
        }
    }
    drop(listener);
    tracing::debug!(
        open = graceful.count(),
        "listener closed; waiting for open connections"
    );
    graceful.shutdown().await;
    Ok(())
}

/// Accept errors are about one connection (reset before accept) or about resources (too many
/// open files); in the second case back off a little instead of spinning.
async fn accept_error(err: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        err.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::error!(%err, "accept failed");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

struct Connection {
    builder: Arc<auto::Builder<TokioExecutor>>,
    router: Router,
    remote: SocketAddr,
    watcher: Watcher,
}

impl Connection {
    async fn serve_tls(self, acceptor: TlsAcceptor, stream: TcpStream) {
        match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
            Ok(Ok(stream)) => self.serve(stream).await,
            Ok(Err(err)) => tracing::debug!(%err, peer = %self.remote, "TLS handshake failed"),
            Err(_) => tracing::debug!(peer = %self.remote, "TLS handshake timed out"),
        }
    }

    async fn serve<S>(self, stream: S)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Connection {
            builder,
            router,
            remote,
            watcher,
        } = self;
        let service = tower::service_fn(move |mut request: http::Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(remote));
            let router = router.clone();
            async move { router.oneshot(request.map(Body::new)).await }
        });
        let service = TowerToHyperService::new(service);
        let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
        if let Err(err) = watcher.watch(connection.into_owned()).await {
            tracing::debug!(err = %err, peer = %remote, "connection ended with an error");
        }
    }
}
