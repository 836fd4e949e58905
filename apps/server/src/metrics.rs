//! `GET /metrics`: what an operator watches, in the Prometheus text format, encoded by
//! `prometheus-client` (the Prometheus project's Rust client).
//!
//! Two kinds of figures:
//! - events, counted where they happen ([`Metrics`]): connections opened and closed (by reason),
//!   messages accepted and replayed (by source: a WebSocket `send` or the server API), requests refused (by error code), rate limiting, deliveries, slow
//!   consumers, recoveries, and the time each broker call takes;
//! - state: open connections, frames waiting in outbound queues and queues more than half
//!   full, kept as running figures; rooms, and what the broker has repaired (pub/sub
//!   reconnections, catch-ups), read when scraped ([`Live`]).
//!
//! A scrape costs the same whatever the node holds: it reads figures and takes no room's lock,
//! since `/metrics` may be on the public port. Keeping the figures costs a delivery nothing per
//! frame: one relaxed atomic add per room event (`deliveries`), one per batch a connection
//! takes, one when a queue crosses half its bounds (see `outbox::QueueStats`).

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use skat_broker::BrokerStats;
use skat_protocol::ErrorCode;

use std::sync::Arc;

use crate::outbox::QueueStats;

/// A label set of one `&'static str` label named `$label`.
macro_rules! label {
    ($name:ident, $label:ident) => {
        #[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
        struct $name {
            $label: &'static str,
        }
    };
}

label!(Reason, reason);
label!(Code, code);
label!(Request, request);
label!(Recovered, recovered);
label!(Call, call);
label!(SourceLabel, source);

/// Where a message was published from: the `source` label of `messages_accepted` and
/// `messages_replayed`, so that the API's traffic (system notices, backend posts) shows apart
/// from the users'.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// A `send` frame on a WebSocket.
    WebSocket,
    /// `POST /api/v1/rooms/{room}/messages`.
    Api,
}

/// A counter per [`Source`], each series made up front: counting is one atomic add (no lookup
/// in the family), and both series are scraped from the start, at 0.
#[derive(Debug, Clone)]
struct BySource {
    family: Family<SourceLabel, Counter>,
    ws: Counter,
    api: Counter,
}

impl Default for BySource {
    fn default() -> Self {
        let family = Family::<SourceLabel, Counter>::default();
        let series = |source| family.get_or_create(&SourceLabel { source }).clone();
        let (ws, api) = (series("ws"), series("api"));
        Self { family, ws, api }
    }
}

impl BySource {
    fn inc(&self, source: Source) {
        match source {
            Source::WebSocket => self.ws.inc(),
            Source::Api => self.api.inc(),
        };
    }
}

/// A broker call timed by [`Metrics::timed`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BrokerCall {
    /// `send`: `Broker::publish`.
    Publish,
    /// `join`: subscribing the node if needed, then `Broker::join_snapshot`.
    Join,
    /// `history`: `Broker::history`.
    History,
    /// `members` (and the API's members page): `Broker::members`.
    Members,
    /// `typing`: `Broker::typing`.
    Typing,
    /// Leaving a room: `Broker::presence_leave` with the node's last connection of the user.
    Leave,
    /// The API's rooms page: `Broker::rooms`.
    Rooms,
    /// The API's disconnect: `Broker::disconnect`.
    Disconnect,
    /// `edit` (and the API's): `Broker::change`.
    Edit,
    /// `delete` (and the API's): `Broker::change`.
    Delete,
    /// `react` (and the API's): `Broker::change`.
    React,
    /// `read`: `Broker::read`.
    Read,
    /// `search` (and the API's): `Broker::search`.
    Search,
}

impl BrokerCall {
    fn label(self) -> &'static str {
        match self {
            Self::Publish => "publish",
            Self::Join => "join",
            Self::History => "history",
            Self::Members => "members",
            Self::Typing => "typing",
            Self::Leave => "leave",
            Self::Rooms => "rooms",
            Self::Disconnect => "disconnect",
            Self::Edit => "edit",
            Self::Delete => "delete",
            Self::React => "react",
            Self::Read => "read",
            Self::Search => "search",
        }
    }
}

fn broker_histogram() -> Histogram {
    // 100 µs to ~3.3 s, doubling.
    Histogram::new(exponential_buckets(0.0001, 2.0, 16))
}

/// The node's event counters. Cheap handles: every clone counts into the same figures.
#[derive(Debug, Clone)]
pub(crate) struct Metrics {
    opened: Counter,
    open: Gauge,
    closed: Family<Reason, Counter>,
    accepted: BySource,
    replayed: BySource,
    refused: Family<Code, Counter>,
    rate_limited: Family<Request, Counter>,
    /// Frames queued to connections by room fan-out; rooms hold a clone.
    pub(crate) deliveries: Counter,
    /// What left the queues, and how many are half full; every connection's outbox holds it.
    pub(crate) queues: Arc<QueueStats>,
    evictions: Counter,
    recoveries: Family<Recovered, Counter>,
    broker_calls: Family<Call, Histogram, fn() -> Histogram>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            opened: Counter::default(),
            open: Gauge::default(),
            closed: Family::default(),
            accepted: BySource::default(),
            replayed: BySource::default(),
            refused: Family::default(),
            rate_limited: Family::default(),
            deliveries: Counter::default(),
            queues: Arc::default(),
            evictions: Counter::default(),
            recoveries: Family::default(),
            broker_calls: Family::new_with_constructor(broker_histogram),
        }
    }
}

impl Metrics {
    /// A WebSocket connection started.
    pub(crate) fn connection_opened(&self) {
        self.opened.inc();
        self.open.inc();
    }

    /// A WebSocket connection ended for `reason`; `slow` if it was evicted as a slow consumer.
    pub(crate) fn connection_closed(&self, reason: &'static str, slow: bool) {
        self.open.dec();
        self.closed.get_or_create(&Reason { reason }).inc();
        if slow {
            self.evictions.inc();
        }
    }

    /// A message from `source` was stored (`new`) or answered with the original of a retried
    /// nonce.
    pub(crate) fn message_accepted(&self, source: Source, new: bool) {
        if new {
            self.accepted.inc(source);
        } else {
            self.replayed.inc(source);
        }
    }

    /// A request was answered with an `error` frame of `code`.
    pub(crate) fn refused(&self, code: ErrorCode) {
        self.refused
            .get_or_create(&Code {
                code: code.as_str(),
            })
            .inc();
    }

    /// A `request` (`send`, `typing`, `join`/`history`) hit its rate limit.
    pub(crate) fn rate_limited(&self, request: &'static str) {
        self.rate_limited.get_or_create(&Request { request }).inc();
    }

    /// A join with `since` recovered exactly what was missed, or got the latest page instead.
    pub(crate) fn recovery(&self, recovered: bool) {
        let recovered = if recovered { "true" } else { "false" };
        self.recoveries
            .get_or_create(&Recovered { recovered })
            .inc();
    }

    /// Awaits the broker call `call`, recording how long it took: the one place calls are
    /// timed, whichever transport made them.
    pub(crate) async fn timed<T>(&self, call: BrokerCall, pending: impl Future<Output = T>) -> T {
        let started = std::time::Instant::now();
        let outcome = pending.await;
        self.broker_calls
            .get_or_create(&Call { call: call.label() })
            .observe(started.elapsed().as_secs_f64());
        outcome
    }

    /// Frames waiting in outbound queues: what fan-out queued less what left the queues.
    /// Briefly off either way, never for long: a batch taken between the two reads makes it
    /// high, and a member that takes a frame before the fan-out that queued it has counted it
    /// (`deliveries` grows after each room event's pushes) makes it low, at worst 0.
    pub(crate) fn queued_frames(&self) -> u64 {
        let drained = self.queues.drained();
        self.deliveries.get().saturating_sub(drained)
    }

    fn register(&self, registry: &mut Registry) {
        registry.register(
            "connections_opened",
            "WebSocket connections opened",
            self.opened.clone(),
        );
        registry.register(
            "connections_open",
            "WebSocket connections open now",
            self.open.clone(),
        );
        registry.register(
            "connections_closed",
            "WebSocket connections closed, by reason",
            self.closed.clone(),
        );
        registry.register(
            "messages_accepted",
            "Messages stored and delivered, by source (ws, api)",
            self.accepted.family.clone(),
        );
        registry.register(
            "messages_replayed",
            "Sends answered with the original of a retried nonce (not stored again), by source",
            self.replayed.family.clone(),
        );
        registry.register(
            "requests_refused",
            "Requests answered with an error frame, by error code",
            self.refused.clone(),
        );
        registry.register(
            "rate_limited",
            "Requests over their rate limit, by request (also counted as refused)",
            self.rate_limited.clone(),
        );
        registry.register(
            "deliveries",
            "Room frames queued to connections",
            self.deliveries.clone(),
        );
        registry.register(
            "outbound_queued_frames",
            "Frames waiting in connections' outbound queues",
            ConstGauge::new(i64::try_from(self.queued_frames()).unwrap_or(i64::MAX)),
        );
        registry.register(
            "outbound_queues_half_full",
            "Connections whose outbound queue holds more than half its frames or bytes",
            ConstGauge::new(self.queues.half_full().max(0)),
        );
        registry.register(
            "slow_consumer_evictions",
            "Connections closed because their outbound queue was full",
            self.evictions.clone(),
        );
        registry.register(
            "recoveries",
            "Joins with `since`: whether exactly the missed messages came back",
            self.recoveries.clone(),
        );
        registry.register(
            "broker_call_duration_seconds",
            "Time of broker calls, by call",
            self.broker_calls.clone(),
        );
    }
}

/// The node's state when scraped.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Live {
    /// Rooms with local members.
    pub(crate) rooms: usize,
    /// The broker's repairs.
    pub(crate) broker: BrokerStats,
    /// Whether the broker can serve calls now.
    pub(crate) broker_ready: bool,
}

impl Collector for Live {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let gauges = [
            ("rooms", "Rooms with members on this node", self.rooms),
            (
                "broker_ready",
                "1 if the broker can serve calls, 0 while it cannot",
                usize::from(self.broker_ready),
            ),
        ];
        for (name, help, value) in gauges {
            let gauge = ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX));
            gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)?;
        }
        let counters = [
            (
                "pubsub_reconnects",
                "Times the broker's live-event connection was made again",
                self.broker.reconnects,
            ),
            (
                "gap_repairs",
                "Room catch-ups from the stored history after such a reconnection",
                self.broker.catch_ups,
            ),
            (
                "caught_up_messages",
                "Messages those catch-ups delivered that live delivery had missed",
                self.broker.caught_up,
            ),
        ];
        for (name, help, value) in counters {
            let counter = ConstCounter::new(value);
            counter.encode(encoder.encode_descriptor(
                name,
                help,
                None,
                counter.metric_type(),
            )?)?;
        }
        Ok(())
    }
}

/// The text of a scrape: `metrics`' counters and the `live` state.
pub(crate) fn render(metrics: &Metrics, live: Live) -> String {
    let mut registry = Registry::with_prefix("skat");
    metrics.register(&mut registry);
    registry.register_collector(Box::new(live));
    let mut text = String::new();
    // Writing to a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut text, &registry);
    text
}

/// The content type of [`render`]'s text.
pub(crate) const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
