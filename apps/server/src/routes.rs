//! The node's HTTP handlers, which [`crate::app`] routes: the WebSocket upgrade at `/ws` (its
//! checks, and the connection's task once upgraded), liveness, readiness and the metrics scrape,
//! on the main address or on `--metrics-bind`'s.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};

use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::FutureExt as _;
use futures_util::future::Either;
use skat_broker::Broker;
use tokio::net::TcpListener;

use crate::conn;
use crate::metrics;
use crate::proxy;
use crate::quota::{IpSlot, PerIp};
use crate::refusals::Refusal;
use crate::state::AppState;
use crate::ws;

/// `GET /metrics`: the Prometheus text format (see `metrics`).
pub(crate) async fn scrape<B: Broker>(State(state): State<AppState<B>>) -> Response {
    let text = state.scrape();
    ([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], text).into_response()
}

/// Serves `/metrics` alone on `addr` until the node shuts down.
pub(crate) async fn serve_metrics<B: Broker>(
    state: &AppState<B>,
    addr: SocketAddr,
) -> std::io::Result<()> {
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
pub(crate) async fn healthz() -> &'static str {
    "ok"
}

/// Readiness: the broker is reachable and the node is not shutting down. Load balancers should
/// route new connections only to ready nodes.
pub(crate) async fn readyz<B: Broker>(State(state): State<AppState<B>>) -> Response {
    if state.is_shutting_down() {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down").into_response()
    } else if !state.broker().is_ready() {
        (StatusCode::SERVICE_UNAVAILABLE, "broker unavailable").into_response()
    } else {
        "ready".into_response()
    }
}

/// `GET /ws`: checks the upgrade (shutdown, origin, the handshake, the client address's
/// connections), answers it, and spawns the connection's task.
pub(crate) async fn ws_upgrade<B: Broker>(
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
    let Some(slot) = PerIp::acquire(state.per_ip(), client, max_per_ip) else {
        state.refusals().record(Refusal::PerIp, &client);
        return (
            StatusCode::TOO_MANY_REQUESTS,
            "too many connections from this address",
        )
            .into_response();
    };
    let upgrade = hyper::upgrade::on(&mut request);
    state.spawn_connection(connection_task(upgrade, state.clone(), slot, client));
    response
}

/// The task of one WebSocket: waits for hyper to finish the upgrade, then serves it.
///
/// `then`, not an `async` block: the block would keep what it captured (state, slot, peer) for
/// the connection's whole life, next to the connection that owns them by then.
fn connection_task<B: Broker>(
    upgrade: hyper::upgrade::OnUpgrade,
    state: AppState<B>,
    slot: IpSlot,
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
    slot: IpSlot,
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::config::ServerConfig;

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
        let slot = PerIp::acquire(&Arc::default(), ip, 0).unwrap();
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
