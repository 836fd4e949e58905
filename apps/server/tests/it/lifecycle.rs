//! Connection lifecycle: slow consumers, graceful shutdown, HTTP endpoints.

#![allow(clippy::unwrap_used, clippy::result_large_err)]

use crate::common;

use std::sync::Arc;

use common::{DEADLINE, Node, closed, join, message};
use futures_util::{SinkExt, StreamExt};
use skat_broker::MemoryBroker;
use skat_client::Client;
use skat_protocol::{ClientFrame, encode_client};
use skat_server::ServerConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;

#[tokio::test]
async fn slow_consumer_is_disconnected_without_affecting_others() {
    let config = ServerConfig {
        outbound_queue: 64,
        ..common::test_config()
    };
    let node = Node::start_with(Arc::new(MemoryBroker::default()), config).await;

    // The slow client joins, then never reads again. A small receive buffer makes its side of
    // the TCP connection fill up sooner.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(node.addr).await.unwrap();
    let (mut slow, _) = tokio_tungstenite::client_async(node.url.as_str(), stream)
        .await
        .unwrap();
    let hello = ClientFrame::Hello {
        name: "slow".into(),
        token: None,
    };
    let join_frame = ClientFrame::Join {
        room: "flood".into(),
        since: None,
        epoch: None,
    };
    slow.send(WsMessage::text(encode_client(&hello)))
        .await
        .unwrap();
    slow.send(WsMessage::text(encode_client(&join_frame)))
        .await
        .unwrap();
    let mut reader = node.client("reader").await;
    join(&mut reader, "flood").await;
    // The reader's join is answered after the slow client's, so the slow client is a member.

    // The flooder sends ~12 MiB, more than the kernel buffers between the node and the slow
    // client hold (the node's send buffer grows to 4 MiB), in windows of 16 so that clients that
    // do read are never far behind.
    const TOTAL: usize = 3000;
    const WINDOW: usize = 16;
    let body = "x".repeat(4000);
    let mut flooder = node.client("flooder").await;
    join(&mut flooder, "flood").await;
    let reader_task = tokio::spawn(async move {
        let mut ids = Vec::with_capacity(TOTAL);
        while ids.len() < TOTAL {
            ids.push(message(&mut reader).await.id);
        }
        ids
    });
    let mut echoed = Vec::with_capacity(TOTAL);
    for start in (0..TOTAL).step_by(WINDOW) {
        for i in start..start + WINDOW {
            flooder
                .send_message("flood", &body, Some(&i.to_string()))
                .await
                .unwrap();
        }
        for _ in 0..WINDOW {
            echoed.push(message(&mut flooder).await.id);
        }
    }
    let read = tokio::time::timeout(DEADLINE, reader_task)
        .await
        .unwrap()
        .unwrap();
    let first_diff = read.iter().zip(&echoed).position(|(r, e)| r != e);
    assert_eq!(
        (read.len(), first_diff),
        (TOTAL, None),
        "the reader got every message, in order, once"
    );

    // The slow client was cut off: it finds fewer messages than were sent, then the end.
    let mut received = 0;
    let ending = loop {
        match tokio::time::timeout(DEADLINE, slow.next())
            .await
            .expect("slow client never cut off")
        {
            Some(Ok(WsMessage::Text(text))) if text.contains("\"type\":\"message\"") => {
                received += 1;
            }
            Some(Ok(WsMessage::Close(frame))) => {
                break frame.map(|f| (u16::from(f.code), f.reason.to_string()));
            }
            Some(Ok(_)) => {}
            Some(Err(_)) | None => break None,
        }
    };
    eprintln!("slow client received {received} of {TOTAL} messages before being cut off");
    assert!(
        received < TOTAL,
        "slow client received all {received} messages: it was never disconnected"
    );
    if let Some((code, reason)) = ending {
        assert_eq!(
            (code, reason.as_str()),
            (1008, "slow consumer: outbound queue full")
        );
    }

    // The node still serves everyone else.
    flooder.send_message("flood", "after", None).await.unwrap();
    assert_eq!(message(&mut flooder).await.body, "after");
    // And counts the eviction (the connection is closed by now: the flooder's message came
    // after the eviction, and the close follows it).
    let (_, metrics) = http_get(node.addr, "/metrics").await;
    assert!(
        metrics.contains("skat_slow_consumer_evictions_total 1\n")
            && metrics.contains("skat_connections_closed_total{reason=\"slow_consumer\"} 1\n"),
        "{metrics}"
    );
}

#[tokio::test]
async fn shutdown_closes_clients_with_service_restart() {
    let node = Node::start().await;
    let url = node.url.clone();
    let mut alice = node.client("alice").await;
    let mut bob = node.client("bob").await;
    join(&mut alice, "general").await;
    join(&mut bob, "general").await;

    let stopping = tokio::spawn(node.stop());
    for client in [&mut alice, &mut bob] {
        match tokio::time::timeout(DEADLINE, client.next_event())
            .await
            .unwrap()
        {
            Err(skat_client::ClientError::Closed { code, reason }) => {
                assert_eq!((code, reason.as_str()), (Some(1012), "service restart"));
            }
            // Presence events may precede the close.
            Ok(_) => assert_eq!(closed(client).await, Some(1012)),
            Err(other) => panic!("expected a close frame, got {other}"),
        }
    }
    stopping.await.unwrap().unwrap();
    assert!(
        Client::connect(&url, "late").await.is_err(),
        "no longer accepting"
    );
}

/// A minimal HTTP/1.1 GET returning (status line, body).
async fn http_get(addr: std::net::SocketAddr, path: &str) -> (String, String) {
    let (status, _, body) = http_get_with(addr, path, "").await;
    (status, String::from_utf8(body).unwrap())
}

#[tokio::test]
async fn healthz_and_static_files() {
    let dir = std::env::temp_dir().join(format!("skat-static-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("index.html"), "<h1>skat</h1>").unwrap();
    let config = ServerConfig {
        static_dir: Some(dir.clone()),
        ..common::test_config()
    };
    let node = Node::start_with(Arc::new(MemoryBroker::default()), config).await;

    let (status, body) = http_get(node.addr, "/healthz").await;
    assert!(status.contains("200"), "{status}");
    assert_eq!(body, "ok");
    let (status, body) = http_get(node.addr, "/").await;
    assert!(status.contains("200"), "{status}");
    assert_eq!(body, "<h1>skat</h1>");
    let (status, _) = http_get(node.addr, "/missing.js").await;
    assert!(status.contains("404"), "{status}");
    let (status, _) = http_get(node.addr, "/ws").await;
    assert!(
        status.starts_with("HTTP/1.1 4"),
        "a plain GET on /ws is refused: {status}"
    );

    node.stop().await.unwrap();
    std::fs::remove_dir_all(dir).unwrap();
}

/// A GET with extra request headers, returning (status line, lowercased response headers, body).
async fn http_get_with(
    addr: std::net::SocketAddr,
    path: &str,
    headers: &str,
) -> (String, std::collections::HashMap<String, String>, Vec<u8>) {
    let response = common::http::request(addr, "GET", path, headers, "").await;
    (response.status_line, response.headers, response.body)
}

#[tokio::test]
async fn web_files_go_out_precompressed_with_cache_headers_by_name() {
    let dir = std::env::temp_dir().join(format!("skat-assets-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // The server sends precompressed copies as they are: their bytes only need to differ.
    for (name, body) in [
        ("index.html", "<h1>skat</h1>"),
        ("index.html.br", "brotli index"),
        ("index.html.gz", "gzip index"),
        ("web-0123456789.js", "export default 1;"),
        ("web-0123456789.js.br", "brotli js"),
    ] {
        std::fs::write(dir.join(name), body).unwrap();
    }
    let config = ServerConfig {
        static_dir: Some(dir.clone()),
        ..common::test_config()
    };
    let node = Node::start_with(Arc::new(MemoryBroker::default()), config).await;
    let get = |path: &'static str, headers: &'static str| http_get_with(node.addr, path, headers);

    let (status, headers, body) = get("/", "Accept-Encoding: gzip, br\r\n").await;
    assert!(status.contains("200"), "{status}");
    assert_eq!(body, b"brotli index", "brotli preferred");
    assert_eq!(headers["content-encoding"], "br");
    assert!(
        headers["content-type"].starts_with("text/html"),
        "{headers:?}"
    );
    assert_eq!(
        headers["cache-control"], "no-cache",
        "index.html is revalidated"
    );

    let (_, headers, body) = get("/index.html", "Accept-Encoding: gzip\r\n").await;
    assert_eq!(body, b"gzip index");
    assert_eq!(headers["content-encoding"], "gzip");

    let (_, headers, body) = get("/", "").await;
    assert_eq!(
        body, b"<h1>skat</h1>",
        "no Accept-Encoding: the file itself"
    );
    assert!(!headers.contains_key("content-encoding"));

    let (status, headers, body) = get("/web-0123456789.js", "Accept-Encoding: br\r\n").await;
    assert!(status.contains("200"), "{status}");
    assert_eq!(body, b"brotli js");
    assert_eq!(headers["content-encoding"], "br");
    assert!(
        headers["content-type"].contains("javascript"),
        "{headers:?}"
    );
    assert_eq!(
        headers["cache-control"], "public, max-age=31536000, immutable",
        "a content-hashed name never changes its content"
    );
    let (_, headers, body) = get("/web-0123456789.js", "Accept-Encoding: gzip\r\n").await;
    assert_eq!(body, b"export default 1;", "no gzip copy: the file itself");
    assert!(!headers.contains_key("content-encoding"));

    let (status, headers, _) = get("/missing.js", "").await;
    assert!(status.contains("404"), "{status}");
    assert!(
        !headers.contains_key("cache-control"),
        "errors are not cached"
    );

    node.stop().await.unwrap();
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn half_sent_requests_are_capped_new_ones_wait_and_shutdown_is_not_held_up() {
    let node = Node::start_with(
        Arc::new(MemoryBroker::default()),
        ServerConfig {
            limits: skat_server::Limits {
                max_handshakes: 2,
                // The total alone: every client here has one address (see admission.rs for
                // the share of one).
                max_handshakes_per_ip: Some(0),
                ..Default::default()
            },
            shutdown_timeout: std::time::Duration::from_secs(1),
            ..common::test_config()
        },
    )
    .await;
    // Two requests that never finish their headers hold both handshake slots...
    let mut stalled = Vec::new();
    for _ in 0..2 {
        let mut tcp = TcpStream::connect(node.addr).await.unwrap();
        tcp.write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        stalled.push(tcp);
    }
    // ...so a third connection is not served: it waits in the kernel's backlog.
    let mut third = TcpStream::connect(node.addr).await.unwrap();
    third
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let waited = tokio::time::timeout(
        std::time::Duration::from_millis(300),
        third.read_to_end(&mut answer),
    )
    .await;
    assert!(waited.is_err(), "served past the limit: {answer:?}");

    // A slot given back (that client went away) lets it through, and the next client too.
    drop(stalled.pop());
    tokio::time::timeout(DEADLINE, third.read_to_end(&mut answer))
        .await
        .unwrap()
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let mut alice = node.client("alice").await;
    join(&mut alice, "general").await;

    // The stalled request left does not keep shutdown past its timeout.
    let started = std::time::Instant::now();
    node.stop().await.unwrap();
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "shutdown took {:?}",
        started.elapsed()
    );
    drop(stalled);
}
