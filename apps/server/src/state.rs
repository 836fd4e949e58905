//! [`AppState`]: what every part of a node shares, cheap to clone, and the accessors that are
//! the only way in (no caller reaches inside).
//!
//! It holds the broker and the configuration, and what the node keeps while it runs: the room
//! registry, each user's sessions, the connections (tracked, so shutdown can close them and
//! wait), the per-address connection counts, refusals and metrics.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use skat_broker::Broker;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::Verifier;
use crate::config::ServerConfig;
use crate::metrics::{self, Metrics};
use crate::outbox::ConnId;
use crate::quota::PerIp;
use crate::refusals::Refusals;
use crate::rooms::Rooms;
use crate::sessions::{self, Sessions};

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
    verifier: Option<Verifier>,
    rooms: Rooms<B>,
    /// Each user's connections on this node, and the sink of node-wide notices.
    sessions: Arc<Sessions>,
    /// Cancelled when the node shuts down; every connection watches it.
    shutdown: CancellationToken,
    /// Tracks connection tasks so shutdown can wait for them.
    connections: TaskTracker,
    next_conn_id: AtomicU64,
    /// Clients refused, counted and logged at a bounded rate.
    refusals: Refusals,
    per_ip: Arc<PerIp>,
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
                sessions: Arc::new(Sessions::new(metrics.deliveries.clone())),
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
    pub(crate) fn verifier(&self) -> Option<&Verifier> {
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
    pub(crate) fn scrape(&self) -> String {
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

    pub(crate) fn sessions(&self) -> &Sessions {
        &self.inner.sessions
    }

    /// Keeps the node subscribed to the broker's node-wide notices until it shuts down (see
    /// `sessions`).
    pub(crate) async fn keep_notices(&self) {
        sessions::keep_notices(
            Arc::clone(&self.inner.broker),
            Arc::clone(&self.inner.sessions),
            self.shutdown_token(),
        )
        .await;
    }

    pub(crate) fn shutdown_token(&self) -> CancellationToken {
        self.inner.shutdown.clone()
    }

    /// Whether the node is shutting down (it accepts nothing new then).
    pub(crate) fn is_shutting_down(&self) -> bool {
        self.inner.shutdown.is_cancelled()
    }

    /// The connections held per client address.
    pub(crate) fn per_ip(&self) -> &Arc<PerIp> {
        &self.inner.per_ip
    }

    pub(crate) fn next_conn_id(&self) -> ConnId {
        self.inner.next_conn_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Runs a connection's task, tracked so that [`AppState::shutdown`] waits for it.
    pub(crate) fn spawn_connection(&self, task: impl Future<Output = ()> + Send + 'static) {
        self.inner.connections.spawn(task);
    }

    /// Closes every connection with 1012 "service restart" and waits (up to the configured timeout) for
    /// them to finish. New upgrades are refused from now on.
    pub async fn shutdown(&self) {
        self.inner.shutdown.cancel();
        let connections = &self.inner.connections;
        connections.close();
        let open = connections.len();
        if open > 0 {
            tracing::info!(open, "closing connections");
        }
        if tokio::time::timeout(self.config().shutdown_timeout, connections.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                left = connections.len(),
                "shutdown deadline passed with connections still open"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use skat_broker::{MemoryBroker, Resume};

    use super::AppState;
    use crate::config::ServerConfig;
    use crate::outbox::{Bounds, Outbox};

    /// `/metrics` may be on the public port: a scrape must not wait on, or hold up, fan-out.
    #[tokio::test]
    async fn a_scrape_takes_no_rooms_lock() {
        let state = AppState::new(Arc::new(MemoryBroker::default()), ServerConfig::default());
        let queues = Arc::clone(&state.metrics().queues);
        let outbox = Arc::new(Outbox::new(Bounds::frames(8), queues));
        let user: Arc<str> = Arc::from("alice");
        let resume = Resume::latest(0);
        let rooms = state.rooms();
        rooms
            .join("general", 1, &user, &outbox, resume)
            .await
            .unwrap();
        let scraped = rooms.with_members_locked("general", || {
            let (tx, rx) = std::sync::mpsc::channel();
            let scraper = state.clone();
            std::thread::spawn(move || tx.send(scraper.scrape()));
            rx.recv_timeout(Duration::from_secs(2))
        });
        let text = scraped.expect("the scrape waited for a room's lock");
        assert!(text.contains("\nskat_rooms 1\n"), "{text}");
        // Alice's own `online` event waits in her queue.
        assert!(text.contains("\nskat_outbound_queued_frames 1\n"), "{text}");
    }
}
