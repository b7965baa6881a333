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
//!
//! Connection hygiene (SPEC §5) is also ours: hyper's header-read timeout starts only once the
//! auto builder has read the preface and covers neither HTTP/2 nor a socket that never sends a
//! byte, so each connection task keeps one deadline of its own, armed while no request is in
//! flight — the header timeout from opening, then after each request the idle timeout — and
//! closes the connection when it passes. A semaphore slot per connection is both the connection
//! cap and the way shutdown knows when every connection is gone.

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::ConnectInfo;
use axum::Router;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{self, ServerConfig};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

/// How long a connection being closed (GOAWAY sent, keep-alive switched off) gets to finish
/// that politely before it is dropped: a client that never answers the GOAWAY's PING, or sits
/// on half a request head, would otherwise keep it open.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// HTTP/2 keep-alive (SPEC §5): a peer that vanished without a FIN is found within 20 s.
const H2_PING_INTERVAL: Duration = Duration::from_secs(10);
const H2_PING_TIMEOUT: Duration = Duration::from_secs(10);

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

/// Connection hygiene and shutdown bounds (SPEC §5, §12).
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// From opening (TLS handshake and HTTP/2 preface included), and for HTTP/1.1 from each
    /// response, to a complete request head.
    pub header_timeout: Duration,
    /// A connection with no request in flight is closed after this long.
    pub idle_timeout: Duration,
    /// Connections open at once; clamped below the open-file limit less `reserved_fds`.
    pub max_connections: usize,
    /// After the shutdown signal, how long requests in flight may still run.
    pub shutdown_timeout: Duration,
    /// File descriptors the connection cap leaves to the database pool, SMTP and files.
    pub reserved_fds: u64,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_millis(10_000),
            idle_timeout: Duration::from_millis(75_000),
            max_connections: 4096,
            shutdown_timeout: Duration::from_millis(10_000),
            // 64 for files, SMTP and the process itself, plus the PostgreSQL pool (16).
            reserved_fds: 64 + 16,
        }
    }
}

/// What the serving loop tells its connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Running,
    /// Finish the requests in flight, take no more, close.
    Drain,
    /// The shutdown timeout passed: drop the connection now.
    Cut,
}

/// Serves `router` on `listener` until `shutdown` completes, then stops accepting, closes idle
/// connections and gives requests in flight `shutdown_timeout` to finish before cutting them.
/// Handlers see the peer address as `ConnectInfo<SocketAddr>`, as with
/// `into_make_service_with_connect_info`.
pub async fn serve<F>(
    listener: TcpListener,
    router: Router,
    tls: Option<TlsConfig>,
    options: ServeOptions,
    shutdown: F,
) -> std::io::Result<()>
where
    F: Future<Output = ()> + Send,
{
    let acceptor = tls.map(|tls| TlsAcceptor::from(tls.config));
    let cap = connection_cap(&options);
    let slots = Arc::new(Semaphore::new(cap as usize));
    let (stop, stop_rx) = watch::channel(Stop::Running);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // Our own deadline covers the head too (it also has to cover the preface and h2); hyper's
    // is kept as a second line for HTTP/1.1.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(H2_PING_INTERVAL)
        .keep_alive_timeout(H2_PING_TIMEOUT);
    let shared = Arc::new(Shared {
        builder,
        router,
        options,
    });
    tokio::pin!(shutdown);
    loop {
        // The slot comes before the accept: at the cap, new connections wait in the kernel's
        // backlog rather than being accepted only to be dropped.
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
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
        let connection = Connection {
            shared: shared.clone(),
            remote,
            opened: Instant::now(),
            stop: stop_rx.clone(),
            _slot: slot,
        };
        tokio::spawn(connection.run(stream, acceptor.clone()));
    }
    drop(listener);
    let _ = stop.send(Stop::Drain);
    let open = cap as usize - slots.available_permits();
    tracing::debug!(
        open,
        "listener closed; closing idle connections, draining the rest"
    );
    // Every connection holds a slot until its task ends: all slots back = all connections gone.
    let drained = tokio::time::timeout(shared.options.shutdown_timeout, slots.acquire_many(cap));
    if drained.await.is_err() {
        let open = cap as usize - slots.available_permits();
        tracing::warn!(
            open,
            "shutdown timeout passed; cutting the connections still open"
        );
        let _ = stop.send(Stop::Cut);
        // Cut connections end at their next poll; this only lets their sockets close first.
        let _ = tokio::time::timeout(CLOSE_GRACE, slots.acquire_many(cap)).await;
    }
    Ok(())
}

/// Raises the soft open-file limit to the hard one and fits the connection cap under it, leaving
/// room for the database pool, SMTP and files: a server out of descriptors fails at everything,
/// not only at accepting.
fn connection_cap(options: &ServeOptions) -> u32 {
    let wanted = u32::try_from(options.max_connections)
        .unwrap_or(u32::MAX)
        .max(1);
    let cap = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => {
            let room = limit.saturating_sub(options.reserved_fds).max(1);
            let cap = u32::try_from(room).unwrap_or(u32::MAX).min(wanted);
            if cap < wanted {
                tracing::warn!(
                    max_connections = wanted,
                    open_files = limit,
                    reserved = options.reserved_fds,
                    "max_connections lowered to fit the open-file limit"
                );
            }
            cap
        }
        Err(err) => {
            tracing::warn!(%err, "open-file limit not readable; connection cap left as set");
            wanted
        }
    };
    tracing::info!(max_connections = cap, "connection cap");
    cap
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

struct Shared {
    builder: auto::Builder<TokioExecutor>,
    router: Router,
    options: ServeOptions,
}

struct Connection {
    shared: Arc<Shared>,
    remote: SocketAddr,
    opened: Instant,
    stop: watch::Receiver<Stop>,
    /// Held for the connection's life: the connection cap.
    _slot: OwnedSemaphorePermit,
}

impl Connection {
    async fn run(self, stream: TcpStream, acceptor: Option<TlsAcceptor>) {
        let Some(acceptor) = acceptor else {
            return self.serve(stream).await;
        };
        let deadline = self.opened + self.shared.options.header_timeout;
        let mut stop = self.stop.clone();
        tokio::select! {
            handshake = tokio::time::timeout_at(deadline, acceptor.accept(stream)) => {
                match handshake {
                    Ok(Ok(stream)) => self.serve(stream).await,
                    Ok(Err(err)) => {
                        tracing::debug!(%err, peer = %self.remote, "TLS handshake failed");
                    }
                    Err(_) => tracing::debug!(peer = %self.remote, "TLS handshake timed out"),
                }
            }
            // A handshake carries no request, so shutdown has nothing to wait for.
            () = async {
                // The `Ref` it returns is not `Send`: drop it here, not in the select.
                let _ = stop.wait_for(|stop| *stop != Stop::Running).await;
            } => {}
        }
    }

    async fn serve<S>(self, stream: S)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Connection {
            shared,
            remote,
            opened,
            mut stop,
            _slot,
        } = self;
        let activity = Arc::new(Activity::default());
        let service = {
            let activity = activity.clone();
            let router = shared.router.clone();
            tower::service_fn(move |mut request: http::Request<Incoming>| {
                // Counted from the moment the head is in: from here the request's own deadline
                // (504) applies, not the connection's.
                let guard = InFlight::begin(&activity, request.version());
                request.extensions_mut().insert(ConnectInfo(remote));
                let router = router.clone();
                async move {
                    let response = router.oneshot(request.map(Body::new)).await;
                    response.map(|response| {
                        response.map(|body| TrackedBody {
                            inner: body,
                            guard: Some(guard),
                        })
                    })
                }
            })
        };
        let service = TowerToHyperService::new(service);
        let options = &shared.options;
        let connection = shared
            .builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service);
        tokio::pin!(connection);
        // Armed only while no request is in flight: first the header deadline, then after each
        // request the idle one (for HTTP/1.1 the header one, when shorter).
        let deadline = tokio::time::sleep_until(opened + options.header_timeout);
        tokio::pin!(deadline);
        let mut closing = false;
        loop {
            let idle = activity.in_flight.load(Ordering::Acquire) == 0;
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(err) = result {
                        tracing::debug!(%err, peer = %remote, "connection ended with an error");
                    }
                    return;
                }
                () = activity.changed.notified() => {
                    if activity.in_flight.load(Ordering::Acquire) == 0 {
                        let wait = if closing {
                            CLOSE_GRACE
                        } else if activity.http1.load(Ordering::Relaxed) {
                            options.header_timeout.min(options.idle_timeout)
                        } else {
                            options.idle_timeout
                        };
                        deadline.as_mut().reset(Instant::now() + wait);
                    }
                }
                () = deadline.as_mut(), if idle => {
                    if closing {
                        tracing::debug!(peer = %remote, "connection dropped: close not finished");
                        return;
                    }
                    tracing::debug!(peer = %remote, "closing a quiet connection");
                    connection.as_mut().graceful_shutdown();
                    closing = true;
                    deadline.as_mut().reset(Instant::now() + CLOSE_GRACE);
                }
                changed = stop.changed() => {
                    // The loop gone (sender dropped) means it has stopped waiting for us.
                    let now = match changed {
                        Ok(()) => *stop.borrow_and_update(),
                        Err(_) => Stop::Cut,
                    };
                    match now {
                        Stop::Running => {}
                        Stop::Drain if !closing => {
                            connection.as_mut().graceful_shutdown();
                            closing = true;
                            deadline.as_mut().reset(Instant::now() + CLOSE_GRACE);
                        }
                        Stop::Drain => {}
                        Stop::Cut => {
                            tracing::debug!(peer = %remote, "connection cut at shutdown");
                            return;
                        }
                    }
                }
            }
        }
    }
}

/// Requests in flight on one connection, and the connection task's wake-up when that count
/// reaches or leaves zero.
#[derive(Default)]
struct Activity {
    in_flight: AtomicUsize,
    /// Set by the first HTTP/1.x request: its keep-alive waits fall under the header timeout.
    http1: AtomicBool,
    changed: Notify,
}

/// One request in flight, from its head until its response body ends or is dropped (the
/// handler finished, failed, or the connection went away).
struct InFlight(Arc<Activity>);

impl InFlight {
    fn begin(activity: &Arc<Activity>, version: http::Version) -> Self {
        if version < http::Version::HTTP_2 {
            activity.http1.store(true, Ordering::Relaxed);
        }
        if activity.in_flight.fetch_add(1, Ordering::AcqRel) == 0 {
            activity.changed.notify_one();
        }
        Self(activity.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.changed.notify_one();
        }
    }
}

/// A response body that ends its request's [`InFlight`] when it ends, so a connection streaming
/// a long response is not idle.
struct TrackedBody {
    inner: Body,
    guard: Option<InFlight>,
}

impl http_body::Body for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None | Some(Err(_)))) {
            this.guard = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
