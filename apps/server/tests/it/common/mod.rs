//! Helpers shared by the server's integration tests: in-process nodes on port 0 and clients that
//! await frames with a deadline instead of sleeping.

#![allow(clippy::result_large_err, clippy::unwrap_used)]

pub(crate) mod http;
pub(crate) mod process;
pub(crate) mod scenarios;

use std::sync::Arc;
use std::time::Duration;

use skat_broker::{Broker, MemoryBroker, MemoryBrokerConfig, RedisBroker, RedisConfig};
use skat_client::{Client, ClientError};
use skat_protocol::{ErrorCode, Message, ServerFrame};
use skat_server::ServerConfig;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How long any single expected event may take before the test fails.
pub(crate) const DEADLINE: Duration = Duration::from_secs(10);

/// A server node running in this process.
pub(crate) struct Node {
    pub addr: std::net::SocketAddr,
    pub url: String,
    pub node_id: String,
    shutdown: Option<oneshot::Sender<()>>,
    handle: JoinHandle<std::io::Result<()>>,
}

impl Node {
    /// Starts a node with its own embedded broker and default settings.
    pub(crate) async fn start() -> Node {
        Self::start_with(Arc::new(MemoryBroker::default()), test_config()).await
    }

    /// Starts a node whose broker keeps `history_len` messages per room.
    pub(crate) async fn with_history(history_len: usize) -> Node {
        let broker = MemoryBroker::new(MemoryBrokerConfig {
            history_len,
            ..Default::default()
        });
        Self::start_with(Arc::new(broker), test_config()).await
    }

    /// Starts a node whose embedded broker keeps its rooms in `dir` (a journal, as a data dir
    /// gives it), with `config`.
    pub(crate) async fn durable(dir: &std::path::Path, config: ServerConfig) -> Node {
        let broker = MemoryBroker::open(MemoryBrokerConfig::default(), dir).unwrap();
        Self::start_with(Arc::new(broker), config).await
    }

    /// Starts a node on `broker` (which other nodes may share) with `config`.
    pub(crate) async fn start_with<B: Broker>(broker: Arc<B>, config: ServerConfig) -> Node {
        Self::start_on("127.0.0.1:0".parse().unwrap(), broker, config).await
    }

    /// Starts a node listening on `addr` (to restart one on the port it had).
    pub(crate) async fn start_on<B: Broker>(
        addr: std::net::SocketAddr,
        broker: Arc<B>,
        config: ServerConfig,
    ) -> Node {
        let listener = TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let node_id = config.node_id.clone();
        let handle = tokio::spawn(skat_server::run(listener, broker, config, async move {
            let _ = rx.await;
        }));
        Node {
            addr,
            url: format!("ws://{addr}/ws"),
            node_id,
            shutdown: Some(tx),
            handle,
        }
    }

    /// Starts a node named `node_id` on the Redis at `url`, with fast presence heartbeats and
    /// keys under `prefix` (so tests sharing a server stay apart).
    pub(crate) async fn redis(url: &str, prefix: &str, node_id: &str, stream_len: usize) -> Node {
        let config = ServerConfig {
            node_id: node_id.to_owned(),
            ..test_config()
        };
        Self::redis_with(url, prefix, config, stream_len).await
    }

    /// Like [`Node::redis`], with a full server config (its node id names the node).
    pub(crate) async fn redis_with(
        url: &str,
        prefix: &str,
        config: ServerConfig,
        stream_len: usize,
    ) -> Node {
        let broker = RedisBroker::connect(redis_config(url, prefix, &config.node_id, stream_len))
            .await
            .unwrap();
        Self::start_with(Arc::new(broker), config).await
    }

    /// `GET path` on this node; returns the status code.
    pub(crate) async fn http_status(&self, path: &str) -> u16 {
        http::request(self.addr, "GET", path, "", "").await.status()
    }

    /// A client connected and welcomed as `name`.
    pub(crate) async fn client(&self, name: &str) -> Client {
        tokio::time::timeout(DEADLINE, Client::connect(&self.url, name))
            .await
            .expect("connect timed out")
            .unwrap()
    }

    /// A client connected without `hello`.
    pub(crate) async fn raw_client(&self) -> Client {
        Client::connect_raw(&self.url).await.unwrap()
    }

    /// Triggers shutdown and waits for `run` to return.
    pub(crate) async fn stop(mut self) -> std::io::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        tokio::time::timeout(DEADLINE * 2, &mut self.handle)
            .await
            .expect("shutdown timed out")
            .unwrap()
    }
}

/// Server settings for tests: default limits, except that sending is not rate-limited (tests
/// send bursts; the rate limit has its own test).
pub(crate) fn test_config() -> ServerConfig {
    ServerConfig {
        limits: skat_server::Limits {
            messages_per_sec: 0,
            ..Default::default()
        },
        ..Default::default()
    }
}

/// A loopback address nobody listens on right now (for a process or listener started later).
pub(crate) fn free_addr() -> std::net::SocketAddr {
    std::net::SocketAddr::from(([127, 0, 0, 1], skat_testkit::free_port().unwrap()))
}

/// Redis broker settings for tests: short presence TTL and heartbeat.
pub(crate) fn redis_config(
    url: &str,
    prefix: &str,
    node_id: &str,
    stream_len: usize,
) -> RedisConfig {
    RedisConfig {
        prefix: prefix.to_owned(),
        stream_len,
        presence_ttl: Duration::from_millis(1500),
        heartbeat: Duration::from_millis(200),
        command_timeout: Duration::from_millis(500),
        ..RedisConfig::new(url, node_id)
    }
}

/// The next frame, failing the test after [`DEADLINE`].
pub(crate) async fn next(client: &mut Client) -> ServerFrame {
    match tokio::time::timeout(DEADLINE, client.next_event()).await {
        Ok(Ok(frame)) => frame,
        Ok(Err(err)) => panic!("connection failed while waiting for a frame: {err}"),
        Err(_) => panic!("no frame within {DEADLINE:?}"),
    }
}

/// The next frame that `pick` accepts, skipping presence and typing frames only. `pick` hands
/// back a frame it does not want boxed: a `ServerFrame` is too large for an error variant.
pub(crate) async fn next_where<T>(
    client: &mut Client,
    what: &str,
    pick: impl Fn(ServerFrame) -> Result<T, Box<ServerFrame>>,
) -> T {
    loop {
        match pick(next(client).await).map_err(|other| *other) {
            Ok(value) => return value,
            Err(ServerFrame::Presence { .. } | ServerFrame::Typing { .. }) => continue,
            Err(other) => panic!("expected {what}, got {other:?}"),
        }
    }
}

/// Waits for `joined`; returns (members, messages, recovered).
pub(crate) async fn joined(client: &mut Client, room: &str) -> (Vec<String>, Vec<Message>, bool) {
    let (r, members, messages, recovered) = next_where(client, "joined", |f| match f {
        ServerFrame::Joined {
            room,
            members,
            messages,
            recovered,
            ..
        } => Ok((room, members, messages, recovered)),
        other => Err(Box::new(other)),
    })
    .await;
    assert_eq!(r, room);
    (members, messages, recovered)
}

/// Joins `room` and waits for `joined`.
pub(crate) async fn join(client: &mut Client, room: &str) -> (Vec<String>, Vec<Message>, bool) {
    client.join(room).await.unwrap();
    joined(client, room).await
}

/// Waits for the next chat message, skipping presence and typing.
pub(crate) async fn message(client: &mut Client) -> Message {
    next_where(client, "message", |f| match f {
        ServerFrame::Message(m) => Ok(m),
        other => Err(Box::new(other)),
    })
    .await
}

/// Waits for an error frame; returns (code, nonce).
pub(crate) async fn error(client: &mut Client) -> (ErrorCode, Option<String>) {
    next_where(client, "error", |f| match f {
        ServerFrame::Error { code, nonce, .. } => Ok((code, nonce)),
        other => Err(Box::new(other)),
    })
    .await
}

/// Reads until the server closes the connection; returns the close code, if a close frame came.
pub(crate) async fn closed(client: &mut Client) -> Option<u16> {
    loop {
        match tokio::time::timeout(DEADLINE, client.next_event())
            .await
            .expect("connection not closed in time")
        {
            Ok(_) => continue,
            Err(ClientError::Closed { code, .. }) => return code,
            Err(_) => return None,
        }
    }
}

/// Reads until the server closes the connection; returns the close code and reason.
pub(crate) async fn close_of(client: &mut Client) -> (Option<u16>, String) {
    loop {
        match tokio::time::timeout(DEADLINE, client.next_event())
            .await
            .expect("connection not closed in time")
        {
            Ok(_) => continue,
            Err(ClientError::Closed { code, reason }) => return (code, reason),
            Err(err) => panic!("{err}"),
        }
    }
}
