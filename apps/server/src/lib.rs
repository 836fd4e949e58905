//! A Skat server node: WebSocket connections on one side, a [`Broker`] on the other.
//!
//! The binary (`src/main.rs`) only parses configuration and calls [`run`]; everything else lives
//! here so tests can start a node on port 0 in-process. This file is the table of contents and
//! the two entry points: [`app`] (the axum router: `GET /ws`, `GET /healthz`, `GET /readyz`,
//! `/metrics`, the API under `/api/v1` with `--api-key`, the static web app at `/` when
//! configured) and [`run`] (serve a listener until shutdown). From the outside in:
//!
//! - `listen` binds the listening socket (explicit backlog) and runs the accept loop and the
//!   HTTP/1 connections in front of the router; `routes` holds the router's handlers (the `/ws`
//!   upgrade, health, readiness, the scrape).
//! - `ws` is the server side of the WebSocket protocol, built for many cheap connections;
//!   `conn` runs one connection: the protocol state machine, its batched output, slow-consumer
//!   eviction and the close on shutdown. `api` is the server API.
//! - `ops` holds each operation once (publish, history, members, join, ...), whichever of the
//!   two transports, `conn` or `api`, asks for it.
//! - `rooms` keeps this node's room registry: one broker subscription per room with local
//!   members, and the fan-out of each room event (encoded once) to those members' bounded
//!   queues, the `outbox`es; `sessions` keeps each user's connections.
//! - `state` is what they all share ([`AppState`]); `config` the node's settings.
//!
//! The public surface is what the binary, the tests and the benchmarks use, and no more: the
//! settings ([`ServerConfig`], [`Limits`], [`yes_or_no`] and its [`ConfigError`]), [`bind`],
//! [`app`], [`run`] and, for tests that drive a connection over a pipe, [`AppState`] and
//! [`serve_socket`]; [`auth`] for the keys and tokens of signed mode and the API; [`backup`] for
//! the `export` and `import` commands (a data dir's rooms as JSON lines). Two hidden
//! modules serve the targets that are crates of their own and see only public items: `bench`
//! (the criterion benchmark and `examples/room_cost.rs` drive the fan-out and the registry
//! without sockets) and `autobahn` (`examples/autobahn_echo.rs` puts the WebSocket layer in
//! front of Autobahn|Testsuite).

mod access;
mod api;
mod assets;
pub mod auth;
#[doc(hidden)]
pub mod autobahn;
pub mod backup;
#[doc(hidden)]
pub mod bench;
mod config;
mod conn;
mod listen;
mod metrics;
mod ops;
mod outbox;
mod proxy;
mod quota;
mod refusals;
mod rooms;
mod routes;
mod sessions;
mod state;
mod ws;

/// Locks `m`, ignoring poisoning: a poisoned lock only follows a panic inside one of this crate's
/// short critical sections, which finish their writes before anything can panic. The one lock
/// helper of the crate.
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

pub use config::{ConfigError, Limits, ServerConfig, yes_or_no};
pub use listen::{DEFAULT_BACKLOG, bind};
pub use state::AppState;

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use skat_broker::Broker;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;

/// The HTTP router of a node.
pub fn app<B: Broker>(state: AppState<B>) -> Router {
    let router = Router::new()
        .route("/ws", get(routes::ws_upgrade::<B>))
        .route("/healthz", get(routes::healthz))
        .route("/readyz", get(routes::readyz::<B>));
    // On its own address if one is configured (see `run`), else here.
    let router = if state.config().metrics_bind.is_none() {
        router.route("/metrics", get(routes::scrape::<B>))
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
        routes::serve_metrics(&state, metrics_addr).await?;
    }
    state.keep_notices().await;
    let token = state.shutdown_token();
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
