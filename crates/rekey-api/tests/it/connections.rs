//! Connection hygiene on the real serving loop (SPEC §5): raw sockets that send nothing, half a
//! preface, or go quiet after a request are closed; the connection cap makes new connections
//! wait without breaking the accept loop; shutdown is bounded however the clients behave.
//!
//! The router here is a stand-in with a fast and a sleeping route: what is under test is the
//! loop around it, and a handler that sleeps on command is what makes "in flight" observable.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::extract::Path;
use axum::routing::get;
use axum::Router;
use rekey_api::serve::{serve, ServeOptions, TlsConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::timeout;

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Short enough for a quick test, far enough apart that a close tells which timer fired.
fn short() -> ServeOptions {
    ServeOptions {
        header_timeout: Duration::from_millis(300),
        idle_timeout: Duration::from_millis(2500),
        max_connections: 64,
        shutdown_timeout: Duration::from_millis(1000),
        ..ServeOptions::default()
    }
}

fn router() -> Router {
    Router::new().route("/fast", get(|| async { "ok" })).route(
        "/sleep/{ms}",
        get(|Path(ms): Path<u64>| async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            "slept"
        }),
    )
}

struct Server {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<std::io::Result<()>>,
}

async fn start(options: ServeOptions, tls: Option<TlsConfig>) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(serve(listener, router(), tls, options, async {
        let _ = stopped.await;
    }));
    Server { addr, stop, task }
}

impl Server {
    async fn connect(&self) -> TcpStream {
        TcpStream::connect(self.addr).await.unwrap()
    }

    /// Triggers shutdown and returns how long `serve` took to return (at most `within`).
    async fn shut_down(self, within: Duration) -> Duration {
        let started = Instant::now();
        self.stop.send(()).unwrap();
        timeout(within, self.task)
            .await
            .unwrap_or_else(|_| panic!("serve did not return within {within:?} of shutdown"))
            .unwrap()
            .unwrap();
        started.elapsed()
    }
}

/// Reads (and discards: SETTINGS, GOAWAY, PINGs) until the peer closes; returns how long that
/// took from `since`. Panics when the socket is still open after `within`.
async fn closed_within<S>(stream: &mut S, since: Instant, within: Duration) -> Duration
where
    S: tokio::io::AsyncRead + Unpin,
{
    let mut buf = [0u8; 4096];
    let waited = timeout(within, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(
        waited.is_ok(),
        "connection still open {within:?} after it should have been closed"
    );
    since.elapsed()
}

/// Sends one HTTP/1.1 request and reads its response head and `ok`/`slept` body.
async fn http1_get(stream: &mut TcpStream, path: &str) -> String {
    let request = format!("GET {path} HTTP/1.1\r\nHost: rekey.test\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    let mut buf = [0u8; 1024];
    timeout(Duration::from_secs(5), async {
        loop {
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed before a full response: {response:?}");
            response.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&response);
            if text.contains("\r\n\r\n") && (text.ends_with("ok") || text.ends_with("slept")) {
                return;
            }
        }
    })
    .await
    .expect("a response");
    String::from_utf8(response).unwrap()
}

// ------------------------------------------------------------------ a hand-made h2c client
// Frames written by hand so the client does exactly what the test says and nothing more: it
// never answers a PING and never closes on its own.

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap();
    let mut out = len.to_be_bytes()[1..].to_vec();
    out.extend([kind, flags]);
    out.extend(stream.to_be_bytes());
    out.extend(payload);
    out
}

const SETTINGS: u8 = 4;
const HEADERS: u8 = 1;
const END_STREAM: u8 = 1;
const END_HEADERS: u8 = 4;
const ACK: u8 = 1;

/// Preface and an empty SETTINGS, then an ACK of the server's SETTINGS: a complete handshake.
async fn h2c_handshake(stream: &mut TcpStream) {
    let mut hello = H2_PREFACE.to_vec();
    hello.extend(frame(SETTINGS, 0, 0, &[]));
    stream.write_all(&hello).await.unwrap();
    let (kind, flags, _, _) = read_frame(stream).await;
    assert_eq!(
        (kind, flags),
        (SETTINGS, 0),
        "the server opens with SETTINGS"
    );
    stream
        .write_all(&frame(SETTINGS, ACK, 0, &[]))
        .await
        .unwrap();
}

/// `GET /fast` on stream `id`; returns once the response ends.
async fn h2c_get_fast(stream: &mut TcpStream, id: u32) {
    // HPACK: :method GET (2), :scheme http (6), :path (4) as a literal, :authority (1) literal.
    let mut block = vec![0x82, 0x86, 0x04, 5];
    block.extend(b"/fast");
    block.extend([0x01, 10]);
    block.extend(b"rekey.test");
    stream
        .write_all(&frame(HEADERS, END_STREAM | END_HEADERS, id, &block))
        .await
        .unwrap();
    timeout(Duration::from_secs(5), async {
        loop {
            let (_, flags, on, _) = read_frame(stream).await;
            if on == id && flags & END_STREAM != 0 {
                return;
            }
        }
    })
    .await
    .expect("an h2 response");
}

async fn read_frame(stream: &mut TcpStream) -> (u8, u8, u32, Vec<u8>) {
    let mut head = [0u8; 9];
    timeout(Duration::from_secs(5), stream.read_exact(&mut head))
        .await
        .expect("a frame")
        .expect("a frame, not a close");
    let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
    let mut payload = vec![0u8; len];
    stream.read_exact(&mut payload).await.unwrap();
    let id = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
    (head[3], head[4], id, payload)
}

// ------------------------------------------------------------------------------ the tests

#[tokio::test]
async fn a_silent_socket_is_closed_after_the_header_timeout() {
    let server = start(short(), None).await;
    let opened = Instant::now();
    let mut socket = server.connect().await;
    let took = closed_within(&mut socket, opened, Duration::from_secs(3)).await;
    assert!(
        took >= Duration::from_millis(250),
        "closed too early: {took:?}"
    );
    server.shut_down(Duration::from_secs(3)).await;
}

#[tokio::test]
async fn half_an_h2_preface_then_silence_is_closed() {
    let server = start(short(), None).await;
    let opened = Instant::now();
    let mut socket = server.connect().await;
    socket.write_all(&H2_PREFACE[..12]).await.unwrap();
    closed_within(&mut socket, opened, Duration::from_secs(3)).await;
    server.shut_down(Duration::from_secs(3)).await;
}

#[tokio::test]
async fn a_partial_http1_head_is_closed_after_the_header_timeout() {
    let server = start(short(), None).await;
    let opened = Instant::now();
    let mut socket = server.connect().await;
    socket
        .write_all(b"GET /fast HTTP/1.1\r\nHost: rekey.test\r\n")
        .await
        .unwrap();
    closed_within(&mut socket, opened, Duration::from_secs(3)).await;
    server.shut_down(Duration::from_secs(3)).await;
}

#[tokio::test]
async fn an_h2c_handshake_without_a_request_is_closed_after_the_header_timeout() {
    let server = start(short(), None).await;
    let opened = Instant::now();
    let mut socket = server.connect().await;
    h2c_handshake(&mut socket).await;
    let took = closed_within(&mut socket, opened, Duration::from_secs(3)).await;
    // Well before the idle timeout: no request ever came. (An h2 close may take the server's
    // 1 s grace for its GOAWAY, whose PING this client never answers.)
    assert!(took < Duration::from_millis(2200), "took {took:?}");
    server.shut_down(Duration::from_secs(3)).await;
}

#[tokio::test]
async fn an_h2c_connection_idle_after_a_request_is_closed_after_the_idle_timeout() {
    let server = start(short(), None).await;
    let mut socket = server.connect().await;
    h2c_handshake(&mut socket).await;
    h2c_get_fast(&mut socket, 1).await;
    let answered = Instant::now();
    // A second request well after the header timeout is still served: after the first request
    // only the idle timeout applies to HTTP/2.
    tokio::time::sleep(Duration::from_millis(600)).await;
    h2c_get_fast(&mut socket, 3).await;
    assert!(answered.elapsed() < Duration::from_millis(2300));
    let answered = Instant::now();
    let took = closed_within(&mut socket, answered, Duration::from_secs(5)).await;
    assert!(
        took >= Duration::from_millis(2300),
        "closed too early: {took:?}"
    );
    server.shut_down(Duration::from_secs(3)).await;
}

#[tokio::test]
async fn an_http1_keep_alive_connection_is_closed_the_header_timeout_after_its_response() {
    let server = start(short(), None).await;
    let mut socket = server.connect().await;
    let response = http1_get(&mut socket, "/fast").await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let answered = Instant::now();
    let took = closed_within(&mut socket, answered, Duration::from_secs(3)).await;
    assert!(
        took >= Duration::from_millis(250),
        "closed too early: {took:?}"
    );
    assert!(
        took < Duration::from_millis(2200),
        "header, not idle, timeout: {took:?}"
    );
    server.shut_down(Duration::from_secs(3)).await;
}

#[tokio::test]
async fn a_request_once_received_outlives_the_connection_timeouts() {
    let server = start(short(), None).await;
    let mut socket = server.connect().await;
    // Longer than the header timeout and the idle timeout together.
    let response = http1_get(&mut socket, "/sleep/3000").await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.ends_with("slept"));
    // And on HTTP/2.
    let mut socket = server.connect().await;
    h2c_handshake(&mut socket).await;
    let mut block = vec![0x82, 0x86, 0x04, 11];
    block.extend(b"/sleep/3000");
    socket
        .write_all(&frame(HEADERS, END_STREAM | END_HEADERS, 1, &block))
        .await
        .unwrap();
    let finished = timeout(Duration::from_secs(5), async {
        loop {
            let (_, flags, on, _) = read_frame(&mut socket).await;
            if on == 1 && flags & END_STREAM != 0 {
                return;
            }
        }
    })
    .await;
    assert!(finished.is_ok(), "the slow h2 request was answered");
    server.shut_down(Duration::from_secs(3)).await;
}

#[tokio::test]
async fn at_the_connection_cap_new_connections_wait_and_the_loop_survives() {
    let options = ServeOptions {
        header_timeout: Duration::from_secs(20),
        idle_timeout: Duration::from_secs(20),
        max_connections: 3,
        ..short()
    };
    let server = start(options, None).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut socket = server.connect().await;
        // Each held connection is really being served (so it holds a slot).
        let response = http1_get(&mut socket, "/fast").await;
        assert!(response.starts_with("HTTP/1.1 200"));
        held.push(socket);
    }
    // The kernel completes the handshake (backlog), but the loop must not take the connection.
    let mut waiting = server.connect().await;
    waiting
        .write_all(b"GET /fast HTTP/1.1\r\nHost: rekey.test\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 256];
    let early = timeout(Duration::from_millis(700), waiting.read(&mut buf)).await;
    assert!(early.is_err(), "served beyond the cap: {early:?}");

    drop(held.pop());
    let n = timeout(Duration::from_secs(3), waiting.read(&mut buf))
        .await
        .expect("served once a slot is free")
        .unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));

    // Still accepting after the wait: free a slot and call again.
    drop(waiting);
    let mut again = timeout(Duration::from_secs(3), server.connect())
        .await
        .unwrap();
    let response = http1_get(&mut again, "/fast").await;
    assert!(response.starts_with("HTTP/1.1 200"));
    drop(held);
    drop(again);
    server.shut_down(Duration::from_secs(3)).await;
}

#[tokio::test]
async fn an_idle_h2c_connection_does_not_hold_up_shutdown() {
    let options = ServeOptions {
        header_timeout: Duration::from_secs(20),
        idle_timeout: Duration::from_secs(20),
        shutdown_timeout: Duration::from_secs(10),
        ..short()
    };
    let server = start(options, None).await;
    let mut idle = server.connect().await;
    h2c_handshake(&mut idle).await;
    h2c_get_fast(&mut idle, 1).await;
    let mut keep_alive = server.connect().await;
    http1_get(&mut keep_alive, "/fast").await;
    // Idle connections are closed at once; far less than the 10 s allowed for requests.
    let took = server.shut_down(Duration::from_secs(3)).await;
    assert!(took < Duration::from_millis(2500), "took {took:?}");
    closed_within(&mut idle, Instant::now(), Duration::from_secs(1)).await;
    closed_within(&mut keep_alive, Instant::now(), Duration::from_secs(1)).await;
}

#[tokio::test]
async fn shutdown_waits_for_a_request_in_flight() {
    let options = ServeOptions {
        shutdown_timeout: Duration::from_secs(5),
        ..short()
    };
    let server = start(options, None).await;
    let mut socket = server.connect().await;
    let request = tokio::spawn(async move { http1_get(&mut socket, "/sleep/800").await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let took = server.shut_down(Duration::from_secs(4)).await;
    assert!(took >= Duration::from_millis(400), "took {took:?}");
    let response = timeout(Duration::from_secs(1), request)
        .await
        .unwrap()
        .unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
}

#[tokio::test]
async fn a_slow_request_is_cut_at_the_shutdown_timeout() {
    let server = start(short(), None).await;
    let mut socket = server.connect().await;
    socket
        .write_all(b"GET /sleep/30000 HTTP/1.1\r\nHost: rekey.test\r\n\r\n")
        .await
        .unwrap();
    let mut h2 = server.connect().await;
    h2c_handshake(&mut h2).await;
    let mut block = vec![0x82, 0x86, 0x04, 12];
    block.extend(b"/sleep/30000");
    h2.write_all(&frame(HEADERS, END_STREAM | END_HEADERS, 1, &block))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let took = server.shut_down(Duration::from_secs(4)).await;
    assert!(took >= Duration::from_millis(900), "took {took:?}");
    assert!(took < Duration::from_millis(2500), "took {took:?}");
    let mut buf = Vec::new();
    let read = timeout(Duration::from_secs(1), socket.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "the cut connection is closed");
    assert!(
        !String::from_utf8_lossy(&buf).contains("slept"),
        "no full response"
    );
    closed_within(&mut h2, Instant::now(), Duration::from_secs(1)).await;
}

#[tokio::test]
async fn tls_silent_socket_and_silent_handshake_are_closed() {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let tls = TlsConfig::from_pem(
        cert.cert.pem().as_bytes(),
        cert.key_pair.serialize_pem().as_bytes(),
    )
    .unwrap();
    let server = start(short(), Some(tls)).await;

    // No ClientHello at all.
    let opened = Instant::now();
    let mut socket = server.connect().await;
    closed_within(&mut socket, opened, Duration::from_secs(3)).await;

    // A finished handshake, then no request.
    let mut roots = tokio_rustls::rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).unwrap();
    let provider = std::sync::Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = tokio_rustls::rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let opened = Instant::now();
    let socket = server.connect().await;
    let name = tokio_rustls::rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut stream = timeout(Duration::from_secs(3), connector.connect(name, socket))
        .await
        .unwrap()
        .expect("TLS handshake");
    let took = closed_within(&mut stream, opened, Duration::from_secs(3)).await;
    assert!(
        took >= Duration::from_millis(250),
        "closed too early: {took:?}"
    );
    server.shut_down(Duration::from_secs(3)).await;
}
