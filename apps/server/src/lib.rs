//! A Skat server node: WebSocket connections on one side, a [`Broker`] on the other.
//!
//! The binary (`src/main.rs`) only parses configuration and calls [`run`]; everything else lives
//! here so tests can start a node on port 0 in-process.
//!
//! - [`app`] builds the axum router: `GET /ws` (WebSocket upgrade), `GET /healthz` (liveness),
//!   `GET /readyz` (readiness: broker reachable), and the static web app at `/` when configured.
//! - `rooms` keeps this node's room registry: one broker subscription per room with local members,
//!   and the fan-out of each room event (encoded once) to those members' bounded queues.
//! - `conn` runs one connection: the protocol state machine, its batched output, slow-consumer
//!   eviction and the close on shutdown; `outbox` is the queue room frames reach it through.
//! - `ws` is the server side of the WebSocket protocol, built for many cheap connections.
//! - `listen` binds the listening socket (explicit backlog) and runs the accept loop and the
//!   HTTP/1 connections in front of the router.

pub mod access;
pub mod api;
mod assets;
pub mod auth;
#[doc(hidden)]
pub mod autobahn;
#[doc(hidden)]
pub mod bench;
mod config;
mod conn;
mod limits;
mod listen;
mod metrics;
mod ops;
mod outbox;
mod proxy;
mod refusals;
mod rooms;
mod sessions;
mod ws;

/// Locks `m`, ignoring poisoning: a poisoned lock only follows a panic inside one of this crate's
/// short critical sections, which finish their writes before anything can panic. The one lock
/// helper of the crate.
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

pub use config::{ServerConfig, random_node_id, yes_or_no};
pub use limits::Limits;
pub use listen::{DEFAULT_BACKLOG, bind};

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::FutureExt as _;
use futures_util::future::Either;
use skat_broker::Broker;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::metrics::Metrics;
use crate::refusals::{Refusal, Refusals};
use crate::rooms::Rooms;

/// Shared state of a node, cheap to clone.
pub struct AppState<B: Broker> {
    inner: Arc<Shared<B>>,
}

impl<B: Broker> Clone for AppState<B> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

struct Shared<B: Broker> {
    broker: Arc<B>,
    config: ServerConfig,
    /// Signed mode's token checks, built once from `config`.
    verifier: Option<auth::Verifier>,
    rooms: Rooms<B>,
    /// Each user's connections on this node, and the sink of node-wide notices.
    sessions: Arc<sessions::Sessions>,
    /// Cancelled when the node shuts down; every connection watches it.
    shutdown: CancellationToken,
    /// Tracks connection tasks so shutdown can wait for them.
    connections: TaskTracker,
    next_conn_id: AtomicU64,
    /// Clients refused, counted and logged at a bounded rate.
    refusals: Refusals,
    per_ip: Arc<limits::PerIp>,
    metrics: Metrics,
}

impl<B: Broker> AppState<B> {
    /// State for a node using `broker`.
    pub fn new(broker: Arc<B>, config: ServerConfig) -> Self {
        let metrics = Metrics::default();
        let rooms = Rooms::new(Arc::clone(&broker), metrics.clone());
        Self {
            inner: Arc::new(Shared {
                broker,
                verifier: config.verifier(),
                config,
                rooms,
                sessions: Arc::default(),
                shutdown: CancellationToken::new(),
                connections: TaskTracker::new(),
                next_conn_id: AtomicU64::new(1),
                refusals: Refusals::default(),
                per_ip: Arc::default(),
                metrics,
            }),
        }
    }

    /// The node's configuration.
    pub fn config(&self) -> &ServerConfig {
        &self.inner.config
    }

    /// Signed mode's token checks; `None` in anonymous mode.
    pub(crate) fn verifier(&self) -> Option<&auth::Verifier> {
        self.inner.verifier.as_ref()
    }

    pub(crate) fn broker(&self) -> &B {
        &self.inner.broker
    }

    pub(crate) fn refusals(&self) -> &Refusals {
        &self.inner.refusals
    }

    pub(crate) fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// The text of a `/metrics` scrape: figures kept as they change, never a walk of the
    /// rooms (see `metrics`).
    fn scrape(&self) -> String {
        let live = metrics::Live {
            rooms: self.rooms().len(),
            broker: self.broker().stats(),
            broker_ready: self.broker().is_ready(),
        };
        metrics::render(self.metrics(), live)
    }

    pub(crate) fn rooms(&self) -> &Rooms<B> {
        &self.inner.rooms
    }

    pub(crate) fn sessions(&self) -> &sessions::Sessions {
        &self.inner.sessions
    }

    pub(crate) fn shutdown_token(&self) -> CancellationToken {
        self.inner.shutdown.clone()
    }

    /// Whether the node is shutting down (it accepts nothing new then).
    pub(crate) fn is_shutting_down(&self) -> bool {
        self.inner.shutdown.is_cancelled()
    }

    /// The connections held per client address.
    pub(crate) fn per_ip(&self) -> &Arc<limits::PerIp> {
        &self.inner.per_ip
    }

    pub(crate) fn next_conn_id(&self) -> rooms::ConnId {
        self.inner.next_conn_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Closes every connection with 1012 "service restart" and waits (up to the configured timeout) for
    /// them to finish. New upgrades are refused from now on.
    pub async fn shutdown(&self) {
        self.inner.shutdown.cancel();
        self.inner.connections.close();
        let open = self.inner.connections.len();
        if open > 0 {
            tracing::info!(open, "closing connections");
        }
        if tokio::time::timeout(
            self.inner.config.shutdown_timeout,
            self.inner.connections.wait(),
        )
        .await
        .is_err()
        {
            tracing::warn!(
                left = self.inner.connections.len(),
                "shutdown deadline passed with connections still open"
            );
        }
    }
}

/// The HTTP router of a node.
pub fn app<B: Broker>(state: AppState<B>) -> Router {
    let router = Router::new()
        .route("/ws", get(ws_upgrade::<B>))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz::<B>));
    // On its own address if one is configured (see `run`), else here.
    let router = if state.config().metrics_bind.is_none() {
        router.route("/metrics", get(scrape::<B>))
    } else {
        router
    };
    let router = if state.config().api_key.is_some() {
        router.nest("/api/v1", api::router::<B>())
    } else {
        router
    };
    let router = match &state.config().static_dir {
        Some(dir) => router.fallback_service(assets::router(dir)),
        None => router,
    };
    router.with_state(state)
}

/// `GET /metrics`: the Prometheus text format (see `metrics`).
async fn scrape<B: Broker>(State(state): State<AppState<B>>) -> Response {
    let text = state.scrape();
    ([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], text).into_response()
}

/// Serves `/metrics` alone on `addr` until the node shuts down.
async fn serve_metrics<B: Broker>(state: &AppState<B>, addr: SocketAddr) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "metrics listening");
    let token = state.shutdown_token();
    let serving = axum::serve(listener, metrics_app(state.clone()))
        .with_graceful_shutdown(async move { token.cancelled().await });
    tokio::spawn(async move {
        if let Err(err) = serving.await {
            tracing::warn!(error = %err, "metrics listener failed");
        }
    });
    Ok(())
}

/// The router of `--metrics-bind`: `/metrics` alone.
fn metrics_app<B: Broker>(state: AppState<B>) -> Router {
    Router::new()
        .route("/metrics", get(scrape::<B>))
        .with_state(state)
}

/// Liveness: the process serves HTTP.
async fn healthz() -> &'static str {
    "ok"
}

/// Readiness: the broker is reachable and the node is not shutting down. Load balancers should
/// route new connections only to ready nodes.
async fn readyz<B: Broker>(State(state): State<AppState<B>>) -> Response {
    if state.is_shutting_down() {
        (axum::http::StatusCode::SERVICE_UNAVAILABLE, "shutting down").into_response()
    } else if !state.broker().is_ready() {
        (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "broker unavailable",
        )
            .into_response()
    } else {
        "ready".into_response()
    }
}

async fn ws_upgrade<B: Broker>(
    State(state): State<AppState<B>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    mut request: Request,
) -> Response {
    if state.is_shutting_down() {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down").into_response();
    }
    let headers = request.headers();
    let client = proxy::client_ip(peer.ip(), headers, &state.config().trusted_proxies);
    if !origin_allowed(headers, state.config().allowed_origins.as_deref()) {
        let origin = format!("{client} from origin {:?}", headers.get(header::ORIGIN));
        state.refusals().record(Refusal::Origin, &origin);
        return (StatusCode::FORBIDDEN, "origin not allowed").into_response();
    }
    let response = match ws::accept(request.method(), headers) {
        Ok(response) => response,
        Err(rejection) => return rejection.response(),
    };
    let max_per_ip = state.config().limits.max_conns_per_ip;
    let Some(slot) = limits::PerIp::acquire(state.per_ip(), client, max_per_ip) else {
        state.refusals().record(Refusal::PerIp, &client);
        return (
            StatusCode::TOO_MANY_REQUESTS,
            "too many connections from this address",
        )
            .into_response();
    };
    let upgrade = hyper::upgrade::on(&mut request);
    state
        .inner
        .connections
        .spawn(connection_task(upgrade, state.clone(), slot, client));
    response
}

/// The task of one WebSocket: waits for hyper to finish the upgrade, then serves it.
///
/// `then`, not an `async` block: the block would keep what it captured (state, slot, peer) for
/// the connection's whole life, next to the connection that owns them by then.
fn connection_task<B: Broker>(
    upgrade: hyper::upgrade::OnUpgrade,
    state: AppState<B>,
    slot: limits::IpSlot,
    client: IpAddr,
) -> impl Future<Output = ()> + Send {
    upgrade.then(move |upgraded| match upgraded {
        Ok(upgraded) => Either::Left(serve_upgraded(upgraded, state, slot, client)),
        Err(err) => {
            tracing::debug!(%client, error = %err, "upgrade failed");
            Either::Right(std::future::ready(()))
        }
    })
}

/// The connection on the stream an upgrade produced. Not an `async fn`, for the same reason.
fn serve_upgraded<B: Broker>(
    upgraded: hyper::upgrade::Upgraded,
    state: AppState<B>,
    slot: limits::IpSlot,
    client: IpAddr,
) -> impl Future<Output = ()> + Send {
    let max = state.config().max_message_bytes;
    match ws::Upgraded::from_hyper(upgraded) {
        ws::Upgraded::Tcp(tcp, read) => {
            // `read` is a view of hyper's whole 8 KiB request buffer: copied out, it goes.
            let stream = ws::WsStream::new(tcp, &read, max);
            Either::Left(conn::serve(stream, state, Some(slot), Some(client)))
        }
        ws::Upgraded::Other(io) => Either::Right(conn::serve(
            ws::WsStream::new(io, &[], max),
            state,
            Some(slot),
            Some(client),
        )),
    }
}

/// Whether a WebSocket upgrade may proceed given its `Origin` header. Requests without one come
/// from non-browser clients, which cross-site hijacking does not concern.
fn origin_allowed(headers: &HeaderMap, allowed: Option<&[String]>) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    match allowed {
        Some(list) => list
            .iter()
            .any(|a| a == "*" || a.eq_ignore_ascii_case(origin)),
        None => {
            let authority = origin.split_once("://").map_or("", |(_, rest)| rest);
            headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .is_some_and(|host| !host.is_empty() && host.eq_ignore_ascii_case(authority))
        }
    }
}

/// Runs the protocol over `io`, a byte stream right after the WebSocket handshake, until it
/// closes: what `/ws` does after the upgrade. Tests and fuzzers drive it over in-memory pipes.
pub async fn serve_socket<B, IO>(io: IO, state: AppState<B>)
where
    B: Broker,
    IO: AsyncRead + AsyncWrite + Unpin + Send,
{
    let max = state.config().max_message_bytes;
    conn::serve(ws::WsStream::new(io, &[], max), state, None, None).await;
}

/// The span of every log line of node `node_id`: the binary enters it on each of its threads,
/// so that a line says which node wrote it; connections' spans are its children.
pub fn node_span(node_id: &str) -> tracing::Span {
    tracing::info_span!("node", id = %node_id)
}

/// Serves `listener` until `shutdown` resolves, then stops accepting, closes every WebSocket with
/// 1012 "service restart" and returns once they are closed or the shutdown timeout has passed.
pub async fn run<B: Broker>(
    listener: TcpListener,
    broker: Arc<B>,
    config: ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let addr = listener.local_addr()?;
    let state = AppState::new(broker, config);
    let router = app(state.clone());
    tracing::info!(%addr, node = %state.config().node_id, "listening");
    if let Some(metrics_addr) = state.config().metrics_bind {
        serve_metrics(&state, metrics_addr).await?;
    }
    let token = state.shutdown_token();
    sessions::keep_notices(
        Arc::clone(&state.inner.broker),
        Arc::clone(&state.inner.sessions),
        token.clone(),
    )
    .await;
    let stop = async move {
        shutdown.await;
        // Upgraded WebSockets are no longer HTTP connections: close them too.
        token.cancel();
    };
    listen::serve(listener, router, stop, state.config(), state.refusals()).await;
    state.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(origin: Option<&str>, host: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, host.parse().unwrap());
        if let Some(origin) = origin {
            h.insert(header::ORIGIN, origin.parse().unwrap());
        }
        h
    }

    /// Every connection is one task holding this future: its size is most of what an idle
    /// connection costs (see `conn`'s test of the part it owns).
    #[test]
    fn a_connection_task_stays_small() {
        let state = AppState::new(
            Arc::new(skat_broker::MemoryBroker::default()),
            ServerConfig::default(),
        );
        let ip = std::net::Ipv4Addr::LOCALHOST.into();
        let slot = limits::PerIp::acquire(&Arc::default(), ip, 0).unwrap();
        let upgrade = hyper::upgrade::on(axum::http::Request::new(()));
        let task = connection_task(upgrade, state, slot, ip);
        let size = std::mem::size_of_val(&task);
        // 768 bytes with the client's address for the logs (the connection keeps no span).
        assert!(size <= 768, "a connection's task is {size} bytes");
    }

    #[test]
    fn origins() {
        let same = headers(Some("http://chat.example:3000"), "chat.example:3000");
        let cross = headers(Some("https://evil.example"), "chat.example:3000");
        let none = headers(None, "chat.example:3000");
        assert!(origin_allowed(&same, None));
        assert!(!origin_allowed(&cross, None));
        assert!(
            origin_allowed(&none, None),
            "non-browser clients send no Origin"
        );
        let list = ["https://evil.example".to_owned()];
        assert!(origin_allowed(&cross, Some(&list)));
        assert!(!origin_allowed(&same, Some(&list)));
        assert!(origin_allowed(&cross, Some(&["*".to_owned()])));
    }
}
