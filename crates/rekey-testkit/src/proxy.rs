//! A TCP proxy for tests that need a slow or vanishing database: every chunk read from either
//! side is forwarded after a fixed delay (a slow network), [`Proxy::cut`] closes every
//! connection and refuses new ones (an outage), and [`Proxy::stall`] keeps every connection
//! open but silent (a network partition: no reset, no answer), until [`Proxy::restore`].

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub struct Proxy {
    addr: SocketAddr,
    up: Arc<AtomicBool>,
    stalled: Arc<AtomicBool>,
    cut: watch::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Listens on a free loopback port and forwards to `target`, delaying each chunk by
    /// `delay` in each direction.
    pub async fn start(target: SocketAddr, delay: Duration) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("proxy bind");
        let addr = listener.local_addr().expect("proxy address");
        let up = Arc::new(AtomicBool::new(true));
        let stalled = Arc::new(AtomicBool::new(false));
        let (cut, _) = watch::channel(0u64);
        let task = {
            let up = up.clone();
            let stalled = stalled.clone();
            let cut = cut.clone();
            tokio::spawn(async move {
                while let Ok((client, _)) = listener.accept().await {
                    if !up.load(Ordering::SeqCst) {
                        drop(client);
                        continue;
                    }
                    let cut = cut.subscribe();
                    let stalled = stalled.clone();
                    tokio::spawn(async move {
                        // Accepted but not forwarded while the network is silent.
                        wait_while_stalled(&stalled).await;
                        let Ok(server) = TcpStream::connect(target).await else {
                            return;
                        };
                        let _ = client.set_nodelay(true);
                        let _ = server.set_nodelay(true);
                        let (cr, cw) = client.into_split();
                        let (sr, sw) = server.into_split();
                        let mut cut_a = cut.clone();
                        let mut cut_b = cut;
                        tokio::select! {
                            () = pipe(cr, sw, delay, &stalled) => {}
                            () = pipe(sr, cw, delay, &stalled) => {}
                            _ = cut_a.changed() => {}
                            _ = cut_b.changed() => {}
                        }
                    });
                }
            })
        };
        Self {
            addr,
            up,
            stalled,
            cut,
            task,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Closes every open connection and refuses new ones.
    pub fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.cut.send_modify(|n| *n += 1);
    }

    /// Keeps every connection open but forwards nothing, and accepts new connections without
    /// forwarding them either: a partition, where the database neither answers nor resets.
    /// What was held back is forwarded after [`Proxy::restore`].
    pub fn stall(&self) {
        self.stalled.store(true, Ordering::SeqCst);
    }

    /// Accepts connections again and forwards on every open one.
    pub fn restore(&self) {
        self.stalled.store(false, Ordering::SeqCst);
        self.up.store(true, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
        self.cut.send_modify(|n| *n += 1);
    }
}

async fn wait_while_stalled(stalled: &AtomicBool) {
    while stalled.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    delay: Duration,
    stalled: &AtomicBool,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        wait_while_stalled(stalled).await;
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
