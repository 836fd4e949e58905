//! The listening socket, the accept loop and the HTTP/1 connections in front of the router.
//!
//! axum's `serve` would do for a web app; a chat node needs three things it does not give:
//!
//! - **An explicit listen backlog.** In a connection storm (a node restart, a deploy) every SYN
//!   dropped by a full backlog costs its client a one-second retransmission; the backlog is
//!   `--listen-backlog` (4096 by default; the kernel caps it at `net.core.somaxconn`).
//! - **An accept loop that never stalls.** It only accepts and spawns; each connection's setup
//!   runs in its own task. Accept errors (out of file descriptors, say) are logged at most once
//!   a second and retried after a short pause instead of spinning or giving up.
//! - **The TCP socket back after a WebSocket upgrade.** Plain HTTP/1 hands the upgraded socket
//!   over as the `TcpStream` it accepted (axum's protocol auto-detection wraps it in a private
//!   type), so a WebSocket keeps nothing of the HTTP stack (see `ws`).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ConnectInfo;
use futures_util::FutureExt as _;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_service::Service as _;

/// Default `listen(2)` backlog: enough for thousands of simultaneous connects.
pub const DEFAULT_BACKLOG: u32 = 4096;

/// Connections accepted in one go, when more are waiting, before other tasks get to run.
const ACCEPT_BATCH: usize = 256;

/// How long a client may take to send its request headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Binds `addr` with the given listen backlog (and `SO_REUSEADDR`, so a restarted node can
/// listen again at once).
pub fn bind(addr: SocketAddr, backlog: u32) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(backlog)
}

/// Accepts connections until `shutdown` resolves, then lets open HTTP requests finish for up to
/// `grace`. Upgraded WebSockets are not waited for here (the caller closes them).
///
/// At most `max_handshakes` connections (0: no limit) are held before their upgrade. At the
/// limit the loop accepts nothing until one of them leaves its HTTP stage: new connections wait
/// in the kernel's backlog (a storm of real clients only slows down), and half-sent requests,
/// each bounded by the header timeout, cannot take every file descriptor. `held_back` is told
/// each time the limit stops the loop.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
    max_handshakes: usize,
    held_back: impl Fn(),
) {
    let slots = Arc::new(Slots {
        taken: AtomicUsize::new(0),
        freed: Notify::new(),
        max: max_handshakes,
    });
    let closing = CancellationToken::new();
    let connections = TaskTracker::new();
    let mut shutdown = pin!(shutdown);
    let mut last_logged: Option<Instant> = None;
    'accepting: loop {
        if slots.full() {
            held_back();
            while slots.full() {
                let freed = slots.freed.notified();
                let mut freed = pin!(freed);
                // Registered before the second look, so a slot freed in between is not missed.
                freed.as_mut().enable();
                if !slots.full() {
                    break;
                }
                tokio::select! {
                    biased;
                    () = &mut shutdown => break 'accepting,
                    () = freed => {}
                }
            }
        }
        let accepted = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((tcp, peer)) => {
                // In a storm, empty the kernel's queue before the new connections' tasks run:
                // a full queue drops SYNs, and each drop costs a client a one-second retry.
                let more = std::iter::from_fn(|| {
                    if slots.full() {
                        return None;
                    }
                    listener.accept().now_or_never()?.ok()
                });
                for (tcp, peer) in std::iter::once((tcp, peer)).chain(more.take(ACCEPT_BATCH)) {
                    let slot = Slot::take(&slots);
                    let serving = serve_connection(tcp, peer, router.clone(), closing.clone());
                    connections.spawn(serving.map(move |()| drop(slot)));
                }
            }
            // The peer gave up before we accepted: nothing to do.
            Err(err) if is_per_connection(&err) => {}
            Err(err) => {
                if last_logged.is_none_or(|at| at.elapsed() >= Duration::from_secs(1)) {
                    tracing::warn!(error = %err, "accept failed; retrying");
                    last_logged = Some(Instant::now());
                }
                // Typically out of file descriptors: let some connections close.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    drop(listener);
    closing.cancel();
    connections.close();
    if tokio::time::timeout(grace, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            left = connections.len(),
            "shutdown deadline passed with HTTP requests still open"
        );
    }
}

/// The connections in their HTTP stage, and how many may be.
struct Slots {
    taken: AtomicUsize,
    freed: Notify,
    /// 0: no limit.
    max: usize,
}

impl Slots {
    fn full(&self) -> bool {
        self.max > 0 && self.taken.load(Ordering::Relaxed) >= self.max
    }
}

/// One connection's slot, held until its HTTP stage ends (closed, or upgraded to a WebSocket).
struct Slot(Arc<Slots>);

impl Slot {
    fn take(slots: &Arc<Slots>) -> Self {
        slots.taken.fetch_add(1, Ordering::Relaxed);
        Self(Arc::clone(slots))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.taken.fetch_sub(1, Ordering::Relaxed);
        self.0.freed.notify_one();
    }
}

/// Errors of one connection that `accept` may report; the listener itself is fine.
fn is_per_connection(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::Interrupted
    )
}

/// Serves HTTP/1 on one accepted socket, with WebSocket upgrades, until it closes or (between
/// requests) the node shuts down.
async fn serve_connection(
    tcp: TcpStream,
    peer: SocketAddr,
    router: Router,
    closing: CancellationToken,
) {
    // Chat frames are small and latency-bound: Nagle's algorithm would hold a frame back until
    // the previous one is acknowledged, and delayed ACKs make that up to 40 ms.
    if let Err(err) = tcp.set_nodelay(true) {
        tracing::debug!(error = %err, "cannot set TCP_NODELAY");
    }
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        router.clone().call(request)
    });
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    let connection = http
        .serve_connection(TokioIo::new(tcp), service)
        .with_upgrades();
    let mut connection = pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(err) = result {
                tracing::debug!(%peer, error = %err, "http connection failed");
            }
            return;
        }
        () = closing.cancelled() => connection.as_mut().graceful_shutdown(),
    }
    let _ = connection.await;
}
