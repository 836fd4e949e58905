//! Connections before their WebSocket upgrade, over real sockets: one address cannot take the
//! node's handshake slots, every HTTP connection has a deadline, keep-alive is bounded, and
//! addresses are counted as the hosts they are (IPv4 on a dual-stack listener, IPv6 per /64,
//! forwarded addresses from trusted proxies).
//!
//! Loopback is 127.0.0.0/8: a test is several hosts by binding its sockets to 127.0.0.2 and so on.

#![allow(clippy::unwrap_used)]

use crate::common;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use common::http::{connect_from, upgrade};
use common::{DEADLINE, Node, test_config};
use skat_broker::MemoryBroker;
use skat_server::{Limits, ServerConfig};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::time::Instant;

const ATTACKER: &str = "127.0.0.1";
const NEIGHBOUR: &str = "127.0.0.2";

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

/// A static directory holding `files` (name, size in bytes), removed on drop.
struct StaticDir(PathBuf);

impl StaticDir {
    fn new(tag: &str, files: &[(&str, usize)]) -> StaticDir {
        let dir = std::env::temp_dir().join(format!("skat-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (name, size) in files {
            std::fs::write(dir.join(name), vec![b'x'; *size]).unwrap();
        }
        StaticDir(dir)
    }
}

impl Drop for StaticDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn node(config: ServerConfig) -> Node {
    Node::start_with(Arc::new(MemoryBroker::default()), config).await
}

/// Sends `request` (ignoring a refused connection's errors) and waits for the first bytes of
/// an answer: `true` if some came, `false` if the node closed the connection without one.
async fn answered(stream: &mut TcpStream, request: &[u8]) -> bool {
    let _ = stream.write_all(request).await;
    let mut first = [0u8; 12];
    match tokio::time::timeout(DEADLINE, stream.read(&mut first)).await {
        Ok(Ok(n)) => n > 0,
        Ok(Err(_)) => false,
        Err(_) => panic!("neither answered nor closed within {DEADLINE:?}"),
    }
}

/// One `GET /healthz` from `from` on a new connection: whether it got `200`.
async fn healthy_from(from: &str, addr: SocketAddr) -> bool {
    let Ok(mut stream) = connect_from(ip(from), addr, None).await else {
        return false;
    };
    let request = "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let _ = stream.write_all(request.as_bytes()).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(DEADLINE, stream.read_to_end(&mut answer)).await;
    answer.starts_with(b"HTTP/1.1 200")
}

/// The reproduction: one address opens as many connections as the node has handshake
/// slots, each pipelining large responses and thousands of `/healthz` and never reading.
#[tokio::test]
async fn one_address_cannot_take_every_handshake_slot() {
    let files = StaticDir::new("admission", &[("big.bin", 3 << 20)]);
    let limits = Limits {
        max_handshakes: 50,
        http_timeout: Duration::from_secs(4),
        ..test_config().limits
    };
    let share = limits.handshakes_per_ip();
    assert!(share > 1 && share < 50, "{share}");
    let deadline = limits.http_timeout;
    let node = node(ServerConfig {
        static_dir: Some(files.0.clone()),
        limits,
        ..test_config()
    })
    .await;
    let big = "GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n".repeat(4);
    let request = big + &"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n".repeat(2000);

    let started = Instant::now();
    let mut held = Vec::new();
    let mut refused = 0;
    for _ in 0..50 {
        let mut stream = connect_from(ip(ATTACKER), node.addr, Some(4096))
            .await
            .unwrap();
        if answered(&mut stream, request.as_bytes()).await {
            held.push(stream);
        } else {
            refused += 1;
        }
    }
    assert_eq!(held.len(), share, "the attacker's connections served");
    assert_eq!(refused, 50 - share, "closed without a slot");

    // Meanwhile another address is served at once: plain HTTP and a WebSocket.
    assert!(healthy_from(NEIGHBOUR, node.addr).await, "/healthz");
    let (status, _ws) = upgrade(node.addr, NEIGHBOUR, "").await;
    assert_eq!(status, 101, "a WebSocket");
    assert!(
        started.elapsed() < deadline,
        "served before the attacker's connections reached their deadline"
    );

    // The held connections are closed at their deadline, though the node is still blocked
    // writing to them: their slots come back, and the attacker's address is served again.
    let mut after = None;
    while Instant::now() < started + deadline + DEADLINE {
        if healthy_from(ATTACKER, node.addr).await {
            after = Some(started.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let after = after.expect("the held connections were never closed");
    assert!(
        after >= deadline,
        "freed after {after:?}, before the deadline"
    );
    drop(held);
}

#[tokio::test]
async fn trusted_proxies_are_not_held_to_one_address_share() {
    let node = node(ServerConfig {
        trusted_proxies: vec!["127.0.0.1/32".parse().unwrap()],
        limits: Limits {
            max_handshakes_per_ip: Some(2),
            ..test_config().limits
        },
        ..test_config()
    })
    .await;
    // Keep-alive connections that made a request each hold their slot, idle.
    let keep_alive = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut proxy = Vec::new();
    for _ in 0..5 {
        let mut stream = connect_from(ip("127.0.0.1"), node.addr, None)
            .await
            .unwrap();
        assert!(
            answered(&mut stream, keep_alive).await,
            "the proxy is exempt"
        );
        proxy.push(stream);
    }
    let mut client = Vec::new();
    for _ in 0..2 {
        let mut stream = connect_from(ip(NEIGHBOUR), node.addr, None).await.unwrap();
        assert!(answered(&mut stream, keep_alive).await);
        client.push(stream);
    }
    let mut third = connect_from(ip(NEIGHBOUR), node.addr, None).await.unwrap();
    assert!(
        !answered(&mut third, keep_alive).await,
        "anyone else gets two"
    );
}

/// Reads one response with a `Content-Length` body: (head, body length).
async fn response(stream: &mut TcpStream) -> (String, usize) {
    let mut data = Vec::new();
    let mut byte = [0u8; 1];
    while !data.ends_with(b"\r\n\r\n") {
        let n = stream.read(&mut byte).await.unwrap();
        assert_eq!(n, 1, "closed in the middle of a head: {data:?}");
        data.push(byte[0]);
    }
    let head = String::from_utf8(data).unwrap().to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length: "))
        .unwrap()
        .parse()
        .unwrap();
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).await.unwrap();
    (head, length)
}

#[tokio::test]
async fn keep_alive_serves_a_page_load_and_is_bounded() {
    let files = [
        ("index.html", 500),
        ("web-0123456789.js", 40_000),
        ("web-0123456789_bg.wasm", 600_000),
        ("style-0123456789.css", 3000),
    ];
    let dir = StaticDir::new("keep-alive", &files);
    let node = node(ServerConfig {
        static_dir: Some(dir.0.clone()),
        ..test_config()
    })
    .await;
    // A browser loading the web app over one keep-alive connection.
    let mut browser = TcpStream::connect(node.addr).await.unwrap();
    for (name, size) in files {
        let get = format!("GET /{name} HTTP/1.1\r\nHost: x\r\n\r\n");
        browser.write_all(get.as_bytes()).await.unwrap();
        let (head, length) = tokio::time::timeout(DEADLINE, response(&mut browser))
            .await
            .unwrap();
        assert!(head.starts_with("http/1.1 200"), "{head}");
        assert!(!head.contains("connection: close"), "{head}");
        assert_eq!(length, size, "{name}");
    }

    // A client pipelining many requests: answered up to the bound, then closed.
    let mut flood = TcpStream::connect(node.addr).await.unwrap();
    let requests = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n".repeat(150);
    flood.write_all(requests.as_bytes()).await.unwrap();
    let mut answers = Vec::new();
    tokio::time::timeout(DEADLINE, flood.read_to_end(&mut answers))
        .await
        .expect("the connection stayed open")
        .unwrap();
    let answers = String::from_utf8(answers).unwrap().to_ascii_lowercase();
    assert_eq!(answers.matches("http/1.1 200").count(), 100);
    assert_eq!(
        answers.matches("connection: close").count(),
        1,
        "the last answer says so"
    );
}

#[tokio::test]
async fn after_half_its_deadline_a_connection_takes_no_new_request() {
    let node = node(ServerConfig {
        limits: Limits {
            http_timeout: Duration::from_secs(1),
            ..test_config().limits
        },
        ..test_config()
    })
    .await;
    let started = Instant::now();
    let mut stream = TcpStream::connect(node.addr).await.unwrap();
    let get = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    stream.write_all(get).await.unwrap();
    let (head, _) = response(&mut stream).await;
    assert!(!head.contains("connection: close"), "{head}");
    tokio::time::sleep_until(started + Duration::from_millis(600)).await;
    stream.write_all(get).await.unwrap();
    let (head, _) = response(&mut stream).await;
    assert!(head.contains("connection: close"), "the last: {head}");
    let mut rest = Vec::new();
    let ended = tokio::time::timeout(DEADLINE, stream.read_to_end(&mut rest)).await;
    assert!(matches!(ended, Ok(Ok(0))), "then closed: {ended:?}");
}

/// A node on `[::]` (dual-stack) behind a proxy at 127.0.0.1, one WebSocket per address.
#[tokio::test]
async fn a_dual_stack_node_counts_clients_as_the_hosts_they_are() {
    let node = Node::start_on(
        "[::]:0".parse().unwrap(),
        Arc::new(MemoryBroker::default()),
        ServerConfig {
            trusted_proxies: vec!["127.0.0.1/32".parse().unwrap()],
            limits: Limits {
                max_conns_per_ip: 1,
                ..test_config().limits
            },
            ..test_config()
        },
    )
    .await;
    let v4 = SocketAddr::new(ip("127.0.0.1"), node.addr.port());
    let mut open = Vec::new();
    let mut status = async |from: &str, forwarded: &str| {
        let header = format!("X-Forwarded-For: {forwarded}\r\n");
        let (status, stream) = upgrade(v4, from, &header).await;
        open.push(stream);
        status
    };
    // The proxy's IPv4 address arrives as ::ffff:127.0.0.1 and is still trusted: two
    // forwarded clients do not share one budget.
    assert_eq!(status("127.0.0.1", "1.2.3.4").await, 101);
    assert_eq!(status("127.0.0.1", "5.6.7.8").await, 101, "another client");
    assert_eq!(status("127.0.0.1", "1.2.3.4").await, 429, "the same client");
    assert_eq!(
        status("127.0.0.1", "::ffff:1.2.3.4").await,
        429,
        "the same client, written as IPv6"
    );
    // IPv6 clients count per /64.
    assert_eq!(status("127.0.0.1", "2001:db8::1").await, 101);
    assert_eq!(status("127.0.0.1", "2001:db8::2").await, 429, "same /64");
    assert_eq!(status("127.0.0.1", "2001:db8:0:1::1").await, 101);
    // Anyone else is its own address, whatever it forwards: 127.0.0.2, over IPv4.
    assert_eq!(status("127.0.0.2", "9.9.9.9").await, 101);
    assert_eq!(status("127.0.0.2", "9.9.9.10").await, 429);
}
