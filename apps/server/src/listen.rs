//! The listening socket, the accept loop and the HTTP/1 connections in front of the router.
//!
//! axum's `serve` would do for a web app; a chat node needs what it does not give:
//!
//! - **An explicit listen backlog.** In a connection storm (a node restart, a deploy) every SYN
//!   dropped by a full backlog costs its client a one-second retransmission; the backlog is
//!   `--listen-backlog` (4096 by default; the kernel caps it at `net.core.somaxconn`).
//! - **An accept loop that never stalls.** It only accepts and spawns; each connection's setup
//!   runs in its own task. Accept errors (out of file descriptors, say) are logged at most once
//!   a second and retried after a short pause instead of spinning or giving up.
//! - **Bounded connections before the upgrade**, in number (`admission`: the node's handshake
//!   slots, and each address's share of them) and in what each may cost (`http`: a total
//!   deadline, bounded keep-alive and pipelining).
//! - **The TCP socket back after a WebSocket upgrade.** Plain HTTP/1 hands the upgraded socket
//!   over as the `TcpStream` it accepted (axum's protocol auto-detection wraps it in a private
//!   type), so a WebSocket keeps nothing of the HTTP stack (see `ws`).
//!
//! Peers are canonical from here on (`::ffff:a.b.c.d` is `a.b.c.d`): the limits, the trusted
//! proxies and the logs all see an IPv4 client of a dual-stack listener as IPv4.

mod admission;
mod http;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::pin;
use std::time::{Duration, Instant};

use axum::Router;
use futures_util::FutureExt as _;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::ServerConfig;
use crate::refusals::{Refusal, Refusals};
use admission::{Admission, Slot};

/// Default `listen(2)` backlog: enough for thousands of simultaneous connects.
pub const DEFAULT_BACKLOG: u32 = 4096;

/// Connections accepted in one go, when more are waiting, before other tasks get to run.
const ACCEPT_BATCH: usize = 256;

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
/// the shutdown timeout. Upgraded WebSockets are not waited for here (the caller closes them).
///
/// At most `--max-handshakes` connections (0: no limit) are held before their upgrade. At the
/// limit the loop accepts nothing until one of them leaves its HTTP stage: new connections wait
/// in the kernel's backlog (a storm of real clients only slows down), and half-sent requests,
/// each bounded by the HTTP deadline, cannot take every file descriptor. A connection from an
/// address holding its share already is closed at once (see `admission`). Both are counted in
/// `refusals`.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()>,
    config: &ServerConfig,
    refusals: &Refusals,
) {
    let admission = Admission::new(&config.limits, &config.trusted_proxies);
    let accepting = Accepting {
        admission: &admission,
        refusals,
        router: &router,
        closing: CancellationToken::new(),
        connections: TaskTracker::new(),
        deadline: config.limits.http_timeout,
    };
    let mut shutdown = pin!(shutdown);
    let mut last_logged: Option<Instant> = None;
    loop {
        let slot = match admission.try_slot() {
            Some(slot) => slot,
            None => {
                let detail = "accepting paused: too many connections before their upgrade";
                refusals.record(Refusal::Handshakes, &detail);
                tokio::select! {
                    biased;
                    () = &mut shutdown => break,
                    slot = admission.slot() => slot,
                }
            }
        };
        let accepted = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((tcp, peer)) => {
                accepting.start(tcp, peer, slot);
                // In a storm, empty the kernel's queue before the new connections' tasks run:
                // a full queue drops SYNs, and each drop costs a client a one-second retry.
                for _ in 0..ACCEPT_BATCH {
                    let Some(slot) = admission.try_slot() else {
                        break;
                    };
                    let Some(Ok((tcp, peer))) = listener.accept().now_or_never() else {
                        break;
                    };
                    accepting.start(tcp, peer, slot);
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
    let Accepting {
        closing,
        connections,
        ..
    } = accepting;
    closing.cancel();
    connections.close();
    if tokio::time::timeout(config.shutdown_timeout, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            left = connections.len(),
            "shutdown deadline passed with HTTP requests still open"
        );
    }
}

/// What the accept loop starts connections with.
struct Accepting<'a> {
    admission: &'a Admission,
    refusals: &'a Refusals,
    router: &'a Router,
    /// Cancelled at shutdown: connections finish their current request and close.
    closing: CancellationToken,
    connections: TaskTracker,
    /// The HTTP stage's total deadline.
    deadline: Duration,
}

impl Accepting<'_> {
    /// Serves a connection from `peer` in its own task with `slot`, or closes it at once if its
    /// address holds its share.
    fn start(&self, tcp: TcpStream, peer: SocketAddr, slot: Slot) {
        let peer = SocketAddr::new(peer.ip().to_canonical(), peer.port());
        let Some(ticket) = self.admission.admit(peer, slot) else {
            self.refusals.record(Refusal::HandshakesPerIp, &peer.ip());
            return;
        };
        let serving = http::serve_connection(
            tcp,
            peer,
            self.router.clone(),
            self.closing.clone(),
            self.deadline,
        );
        self.connections.spawn(serving.map(move |()| drop(ticket)));
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
