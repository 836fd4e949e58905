//! `GET /metrics`, scraped with a Prometheus exposition-format parser while traffic flows.

#![allow(clippy::unwrap_used)]

use crate::common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::{DEADLINE, Node, join, message, next_where};
use skat_broker::MemoryBroker;
use skat_protocol::{ErrorCode, ServerFrame};
use skat_server::{Limits, ServerConfig};
use skat_testkit::RedisServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The metric names the shipped Grafana dashboard queries.
fn dashboard_metrics() -> Vec<String> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../deploy/grafana/skat-dashboard.json");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut names = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            for (start, _) in expr.match_indices("skat_") {
                let name: String = expr[start..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                names.push(name);
            }
        }
    }
    names
}

/// One scrape: `GET /metrics` on `addr`, parsed. `None` if the status is not 200.
async fn scrape(addr: SocketAddr) -> Option<prometheus_parse::Scrape> {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    if !head.starts_with("HTTP/1.1 200") {
        return None;
    }
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/openmetrics-text"),
        "{head}"
    );
    let lines = body.lines().map(|line| Ok(line.to_owned()));
    Some(prometheus_parse::Scrape::parse(lines).unwrap())
}

/// The value of sample `metric` whose labels include `label` (if given); 0 if there is none
/// (a labelled family shows only the label values it has seen).
fn value(scrape: &prometheus_parse::Scrape, metric: &str, label: Option<(&str, &str)>) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == metric)
        .filter(|s| label.is_none_or(|(k, v)| s.labels.get(k) == Some(v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => panic!("{metric} is not a plain value: {:?}", s.value),
        })
        .sum()
}

/// Scrapes until `check` holds, failing after the deadline with the last scrape.
async fn eventually(
    addr: SocketAddr,
    what: &str,
    check: impl Fn(&prometheus_parse::Scrape) -> bool,
) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let scrape = scrape(addr).await.unwrap();
        if check(&scrape) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: {:?}",
            scrape.samples
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn counters_follow_the_traffic() {
    let config = ServerConfig {
        limits: Limits {
            typing_per_sec: 1,
            messages_per_sec: 0,
            ..Default::default()
        },
        ..ServerConfig::default()
    };
    let node = Node::start_with(Arc::new(MemoryBroker::default()), config).await;
    let before = scrape(node.addr).await.unwrap();
    assert_eq!(value(&before, "skat_connections_opened_total", None), 0.0);
    assert_eq!(value(&before, "skat_broker_ready", None), 1.0);

    let mut alice = node.client("alice").await;
    let mut bob = node.client("bob").await;
    join(&mut alice, "general").await;
    join(&mut bob, "general").await;
    alice.send_message("general", "hi", None).await.unwrap();
    let sent = message(&mut bob).await;
    message(&mut alice).await;
    // A refused request, by code.
    alice.send_message("general", " ", None).await.unwrap();
    next_where(&mut alice, "invalid_body", |f| match f {
        ServerFrame::Error {
            code: ErrorCode::InvalidBody,
            ..
        } => Ok(()),
        other => Err(Box::new(other)),
    })
    .await;
    // Rate limiting: one typing notification a second, bursts of two.
    for _ in 0..3 {
        alice.typing("general").await.unwrap();
    }
    next_where(&mut alice, "rate_limited", |f| match f {
        ServerFrame::Error {
            code: ErrorCode::RateLimited,
            ..
        } => Ok(()),
        other => Err(Box::new(other)),
    })
    .await;
    // A recovery.
    let mut carol = node.client("carol").await;
    carol.join_since("general", sent.id).await.unwrap();

    eventually(node.addr, "after the traffic", |m| {
        value(m, "skat_recoveries_total", Some(("recovered", "true"))) == 1.0
    })
    .await;
    let m = scrape(node.addr).await.unwrap();
    assert_eq!(value(&m, "skat_connections_opened_total", None), 3.0);
    assert_eq!(value(&m, "skat_connections_open", None), 3.0);
    assert_eq!(value(&m, "skat_rooms", None), 1.0);
    let accepted = |source| value(&m, "skat_messages_accepted_total", Some(("source", source)));
    assert_eq!((accepted("ws"), accepted("api")), (1.0, 0.0));
    let refused = |code| value(&m, "skat_requests_refused_total", Some(("code", code)));
    assert_eq!(refused("invalid_body"), 1.0);
    assert!(refused("rate_limited") >= 1.0);
    let limited = value(&m, "skat_rate_limited_total", Some(("request", "typing")));
    assert!(limited >= 1.0, "{limited}");
    // The message reached Alice and Bob; presence and typing frames are deliveries too.
    assert!(value(&m, "skat_deliveries_total", None) >= 2.0);
    let calls = |call| {
        value(
            &m,
            "skat_broker_call_duration_seconds_count",
            Some(("call", call)),
        )
    };
    assert_eq!(calls("publish"), 1.0);
    assert_eq!(calls("join"), 3.0);

    bob.close().await.unwrap();
    eventually(node.addr, "bob's close", |m| {
        let closed = value(
            m,
            "skat_connections_closed_total",
            Some(("reason", "client_closed")),
        );
        closed == 1.0 && value(m, "skat_connections_open", None) == 2.0
    })
    .await;

    // Every metric the Grafana dashboard queries exists (each family has samples by now).
    let m = scrape(node.addr).await.unwrap();
    let queried = dashboard_metrics();
    assert!(queried.len() >= 12, "{queried:?}");
    for name in queried {
        let exported = m.samples.iter().any(|s| {
            s.metric == name || name.strip_suffix("_bucket").is_some_and(|h| s.metric == h)
        });
        assert!(
            exported,
            "the dashboard queries {name}, which the node does not export"
        );
    }
    node.stop().await.unwrap();
}

/// Messages published through the server API count as accepted (and retries as replayed), apart
/// from the WebSocket's, by their `source` label.
#[tokio::test]
async fn api_messages_are_counted_by_source() {
    const KEY: &str = "an-api-key-for-the-tests";
    let config = ServerConfig {
        api_key: Some(skat_server::auth::ApiKey::new(KEY).unwrap()),
        ..common::test_config()
    };
    let node = Node::start_with(Arc::new(MemoryBroker::default()), config).await;
    let post = |body: serde_json::Value| async move {
        let auth = format!("Authorization: Bearer {KEY}\r\n");
        let path = "/api/v1/rooms/general/messages";
        common::http::request(node.addr, "POST", path, &auth, &body.to_string())
            .await
            .status()
    };
    let notice = serde_json::json!({"body": "maintenance at noon", "nonce": "n1"});
    assert_eq!(post(notice.clone()).await, 201);
    assert_eq!(post(notice).await, 200, "a retry: the original");
    let mut alice = node.client("alice").await;
    join(&mut alice, "general").await;
    alice.send_message("general", "hi", None).await.unwrap();
    assert_eq!(message(&mut alice).await.body, "hi");

    let m = scrape(node.addr).await.unwrap();
    let count = |metric, source| value(&m, metric, Some(("source", source)));
    let accepted = "skat_messages_accepted_total";
    let replayed = "skat_messages_replayed_total";
    assert_eq!((count(accepted, "api"), count(accepted, "ws")), (1.0, 1.0));
    assert_eq!((count(replayed, "api"), count(replayed, "ws")), (1.0, 0.0));
    node.stop().await.unwrap();
}

#[tokio::test]
async fn a_backlog_of_big_frames_evicts_by_bytes_and_the_queue_gauges_follow() {
    // Queues of 1024 frames but 64 KiB: about two and a half frames of the messages below.
    let config = ServerConfig {
        outbound_queue_bytes: 64 * 1024,
        ..common::test_config()
    };
    let node = Node::start_with(Arc::new(MemoryBroker::default()), config).await;
    // A reader that stops reading once it is in the room.
    let mut stalled = node.client("stalled").await;
    join(&mut stalled, "big").await;
    let mut alice = node.client("alice").await;
    join(&mut alice, "big").await;
    // 4000 control characters: a 24 KB frame once JSON-escaped.
    let body = "\u{1}".repeat(4000);
    let (mut half_full_seen, mut sent) = (false, 0);
    // Far fewer than 1024 frames, even with what the sockets' buffers take first.
    while sent < 600 {
        alice.send_message("big", &body, None).await.unwrap();
        message(&mut alice).await;
        sent += 1;
        let m = scrape(node.addr).await.unwrap();
        if value(&m, "skat_outbound_queues_half_full", None) == 1.0 {
            half_full_seen = true;
            assert!(value(&m, "skat_outbound_queued_frames", None) >= 2.0);
        }
        if value(&m, "skat_slow_consumer_evictions_total", None) == 1.0 {
            break;
        }
    }
    assert!(sent < 600, "a reader that never reads was not evicted");
    assert!(half_full_seen, "its queue never showed as half full");
    // Nothing is left queued once it is gone (Alice takes her frames as they come).
    eventually(node.addr, "the queues drained", |m| {
        value(m, "skat_outbound_queued_frames", None) == 0.0
            && value(m, "skat_outbound_queues_half_full", None) == 0.0
            && value(
                m,
                "skat_connections_closed_total",
                Some(("reason", "slow_consumer")),
            ) == 1.0
    })
    .await;
    drop(stalled);
}

#[tokio::test]
async fn metrics_can_have_their_own_address() {
    let metrics_addr = common::free_addr();
    let config = ServerConfig {
        metrics_bind: Some(metrics_addr),
        ..ServerConfig::default()
    };
    let node = Node::start_with(Arc::new(MemoryBroker::default()), config).await;
    assert!(scrape(node.addr).await.is_none(), "not on the public port");
    let m = scrape(metrics_addr).await.unwrap();
    assert_eq!(value(&m, "skat_connections_open", None), 0.0);
    node.stop().await.unwrap();
}

#[tokio::test]
async fn pubsub_reconnects_and_gap_repairs_are_counted() {
    let redis = RedisServer::start().await;
    let a = Node::redis(&redis.url(), "metrics:", "node-a", 100).await;
    let b = Node::redis(&redis.url(), "metrics:", "node-b", 100).await;
    let mut alice = a.client("alice").await;
    join(&mut alice, "general").await;
    let mut bob = b.client("bob").await;
    join(&mut bob, "general").await;

    // Both nodes' pub/sub connections drop; they reconnect and catch their rooms up.
    let killed = redis.command(&["CLIENT", "KILL", "TYPE", "pubsub"]).await;
    assert!(
        killed.as_deref().is_some_and(|k| k.starts_with(':')),
        "{killed:?}"
    );
    bob.send_message("general", "during the repair", None)
        .await
        .unwrap();
    assert_eq!(message(&mut alice).await.body, "during the repair");
    eventually(a.addr, "node A's repair", |m| {
        value(m, "skat_pubsub_reconnects_total", None) >= 1.0
            && value(m, "skat_gap_repairs_total", None) >= 1.0
    })
    .await;
}
