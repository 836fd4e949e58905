//! One connection's HTTP stage: the requests before its WebSocket upgrade, or instead of one.
//!
//! The stage holds a handshake slot (see `admission`), so everything in it is bounded, not
//! only the time to send request headers:
//!
//! - **A total deadline** (`--http-timeout`). After half of it every answer says
//!   `Connection: close`, so the connection takes no new request; at it, the connection is
//!   closed whatever it is doing. Without it, a client that pipelines requests and never reads
//!   the responses holds its slot for ever, hyper blocked writing to it.
//! - **Keep-alive**: at most [`MAX_REQUESTS`] requests per connection (the last answer says
//!   `Connection: close`), and at most [`HEADER_READ_TIMEOUT`] idle between requests. A browser
//!   needs one request per WebSocket and a handful for the web app's files.
//! - **Pipelining**: hyper answers pipelined requests one at a time and reads the next only
//!   when it needs it, and never holds more than [`MAX_BUFFER`] of them.

use std::cell::Cell;
use std::net::SocketAddr;
use std::pin::pin;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::http::{HeaderValue, StatusCode, header};
use futures_util::FutureExt as _;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tower_service::Service as _;

/// How long a client may take to send its request headers, and stay idle between requests.
pub(crate) const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Requests one connection may make: the web app's files take a handful.
pub(crate) const MAX_REQUESTS: u32 = 100;

/// The most hyper buffers of a connection's input (request headers and pipelined requests)
/// and output: 64 KiB rather than its 400 KiB, since every held connection may fill it.
const MAX_BUFFER: usize = 64 * 1024;

/// Serves HTTP/1 on one accepted socket, with WebSocket upgrades, until it closes, upgrades,
/// or reaches its `deadline` (see the module docs); the node shutting down (`closing`) ends it
/// after the current request.
pub(crate) async fn serve_connection(
    tcp: TcpStream,
    peer: SocketAddr,
    router: Router,
    closing: CancellationToken,
    deadline: Duration,
) {
    let started = Instant::now();
    // Chat frames are small and latency-bound: Nagle's algorithm would hold a frame back until
    // the previous one is acknowledged, and delayed ACKs make that up to 40 ms.
    if let Err(err) = tcp.set_nodelay(true) {
        tracing::debug!(error = %err, "cannot set TCP_NODELAY");
    }
    // The answer that ends keep-alive: the last request a connection may make, or any after
    // half its deadline. Saying so, rather than closing an idle connection, spares a client
    // (or a proxy's pool) sending a request just as the connection goes.
    let last_call = started + deadline / 2;
    let served = Cell::new(0u32);
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        served.set(served.get() + 1);
        let last = served.get() >= MAX_REQUESTS || Instant::now() >= last_call;
        router.clone().call(request).map(move |response| {
            response.map(|mut response| {
                // An upgrade's answer already names what the connection becomes.
                if last && response.status() != StatusCode::SWITCHING_PROTOCOLS {
                    let close = HeaderValue::from_static("close");
                    response.headers_mut().insert(header::CONNECTION, close);
                }
                response
            })
        })
    });
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_BUFFER);
    let connection = http
        .serve_connection(TokioIo::new(tcp), service)
        .with_upgrades();
    let mut connection = pin!(connection);
    let mut deadline = pin!(tokio::time::sleep_until(started + deadline));
    let mut draining = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(err) = result {
                    tracing::debug!(%peer, error = %err, "http connection failed");
                }
                return;
            }
            () = closing.cancelled(), if !draining => {
                connection.as_mut().graceful_shutdown();
                draining = true;
            }
            () = deadline.as_mut() => {
                tracing::debug!(%peer, "http connection closed at its deadline");
                return;
            }
        }
    }
}
