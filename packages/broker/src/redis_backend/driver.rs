//! The live-event connections: one RESP3 connection per shard (the one server, or one master
//! of a Redis Cluster), whose pushes carry the rooms' events.
//!
//! Every connection is a plain single-server connection, also in a cluster: each shard's is
//! made, lost and made again on its own, so one shard's outage touches only its rooms (see
//! `shard`). On one server rooms use classic channels (`SUBSCRIBE`); in a cluster, sharded
//! ones (`SSUBSCRIBE`), which only the shard owning the channel's slot carries.
//!
//! Subscribing thousands of channels after a reconnection is one pipeline of single-channel
//! commands per batch (a cluster refuses an `SSUBSCRIBE` whose channels span slots, and one
//! command per channel keeps replies and channels in step even when some are refused). Each
//! confirmation is a push the connection also hands over as the command's reply; the replies
//! are checked against the channels, so a connection that got out of step is made again
//! rather than trusted.

use std::collections::HashMap;
use std::time::Duration;

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::{
    AsyncConnectionConfig, ConnectionAddr, ConnectionInfo, IntoConnectionInfo, ProtocolVersion,
    PushInfo, PushKind, Value,
};
use tokio::sync::mpsc;

use super::config::RedisConfig;
use super::link::{certificates, seeds, tcp_settings};

/// The address of one Redis server: host and port.
pub(super) type Addr = (String, u16);

/// Makes the live-event connections, to any server of the deployment, with the configured
/// credentials and TLS.
pub(super) struct PubSubSource {
    /// The first configured server's settings, speaking RESP3 (pushes); others differ only in
    /// their address.
    base: ConnectionInfo,
    certificates: Option<redis::TlsCertificates>,
    /// The configured servers: the one server, or the cluster's seeds.
    pub(super) seeds: Vec<Addr>,
    pub(super) cluster: bool,
    timeout: Duration,
}

impl PubSubSource {
    pub(super) fn new(config: &RedisConfig) -> redis::RedisResult<Self> {
        let infos: Vec<ConnectionInfo> = if config.cluster {
            seeds(config)?
        } else {
            vec![config.url.as_str().into_connection_info()?]
        };
        let Some(first) = infos.first() else {
            return Err(redis::RedisError::from((
                redis::ErrorKind::InvalidClientConfig,
                "no Redis URL",
            )));
        };
        let redis = first
            .redis_settings()
            .clone()
            .set_protocol(ProtocolVersion::RESP3);
        let base = first
            .clone()
            .set_tcp_settings(tcp_settings())
            .set_redis_settings(redis);
        Ok(Self {
            base,
            certificates: certificates(config),
            seeds: infos.iter().filter_map(|info| addr(info.addr())).collect(),
            cluster: config.cluster,
            timeout: config.command_timeout,
        })
    }

    /// Whether the configured servers speak TLS (a cluster then names its nodes' TLS ports).
    pub(super) fn tls(&self) -> bool {
        matches!(self.base.addr(), ConnectionAddr::TcpTls { .. })
    }

    /// A client for the server at `to` (`None`: the configured one).
    fn client(&self, to: Option<&Addr>) -> redis::RedisResult<redis::Client> {
        let mut info = self.base.clone();
        if let Some((host, port)) = to {
            let (host, port) = (host.clone(), *port);
            let addr = match info.addr() {
                ConnectionAddr::TcpTls { insecure, .. } => ConnectionAddr::TcpTls {
                    host,
                    port,
                    insecure: *insecure,
                    tls_params: None,
                },
                _ => ConnectionAddr::Tcp(host, port),
            };
            info = info.set_addr(addr);
        }
        match &self.certificates {
            Some(certificates) => redis::Client::build_with_tls(info, certificates.clone()),
            None => redis::Client::open(info),
        }
    }

    /// A connection for one-off commands (reading the cluster's topology) to `to`.
    pub(super) async fn command_connection(
        &self,
        to: &Addr,
    ) -> redis::RedisResult<MultiplexedConnection> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout));
        self.client(Some(to))?
            .get_multiplexed_async_connection_with_config(&config)
            .await
    }

    /// A live-event connection to the server at `to` (`None`: the configured one).
    pub(super) async fn connect(&self, to: Option<&Addr>) -> redis::RedisResult<Driver> {
        let (pushes_tx, pushes) = mpsc::unbounded_channel();
        // Each call is given its own timeout by the caller: a batch of subscriptions may take
        // longer than one command.
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(None)
            .set_push_sender(pushes_tx);
        let conn = self
            .client(to)?
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        Ok(Driver {
            conn,
            pushes,
            sharded: self.cluster,
            leaving: HashMap::new(),
            held: None,
        })
    }
}

/// The host and port of a TCP address.
fn addr(addr: &ConnectionAddr) -> Option<Addr> {
    match addr {
        ConnectionAddr::Tcp(host, port) | ConnectionAddr::TcpTls { host, port, .. } => {
            Some((host.clone(), *port))
        }
        _ => None,
    }
}

/// What a live-event connection yields.
pub(super) enum Incoming {
    /// A message on a subscribed channel.
    Message(redis::Msg),
    /// The connection is gone: make it again and catch up.
    Lost(&'static str),
    /// The server dropped a channel this node did not ask to leave: its slot moved to another
    /// shard.
    Moved(String),
}

/// Why a batch of subscriptions failed.
#[derive(Debug, thiserror::Error)]
pub(super) enum DriverError {
    #[error(transparent)]
    Redis(#[from] redis::RedisError),
    /// A reply that is not the confirmation of the command it answers: the connection's
    /// replies are out of step (the server pushed something the client took for a reply).
    #[error("pub/sub replies out of step: {0}")]
    OutOfStep(String),
}

/// A live-event connection: subscribe, unsubscribe, check, read.
pub(super) struct Driver {
    conn: MultiplexedConnection,
    pushes: mpsc::UnboundedReceiver<PushInfo>,
    /// Sharded channels (a cluster) or classic ones.
    sharded: bool,
    /// Channels this node unsubscribed whose confirmation has not been read from the pushes
    /// yet: their confirmation is not news of a moved slot, even if the room was joined again
    /// meanwhile.
    leaving: HashMap<String, u32>,
    /// What [`Driver::try_message`] read that was not a message: [`Driver::next`]'s next answer.
    held: Option<Incoming>,
}

impl Driver {
    fn commands(&self) -> (&'static str, &'static str) {
        if self.sharded {
            ("SSUBSCRIBE", "SUNSUBSCRIBE")
        } else {
            ("SUBSCRIBE", "UNSUBSCRIBE")
        }
    }

    /// Sends `command` for each channel, pipelined, and checks each reply; returns the
    /// channels the server refused because their slot is elsewhere (`MOVED`).
    async fn each(
        &mut self,
        command: &str,
        kind: PushKind,
        channels: &[&str],
    ) -> Result<Vec<String>, DriverError> {
        // One command per channel, pipelined, each reply checked: the connection's
        // `subscribe` methods send one channel per round trip and keep no such check.
        let mut pipe = redis::pipe();
        for channel in channels {
            pipe.cmd(command).arg(channel);
        }
        let replies = self
            .conn
            .req_packed_commands(&pipe, 0, channels.len())
            .await?;
        if replies.len() != channels.len() {
            return Err(DriverError::OutOfStep(format!(
                "{} replies to {} {command}",
                replies.len(),
                channels.len()
            )));
        }
        let mut moved = Vec::new();
        for (channel, reply) in channels.iter().zip(replies) {
            match reply {
                Value::Push { kind: got, data }
                    if got == kind
                        && data.first().is_some_and(|c| {
                            redis::from_redis_value_ref::<String>(c).is_ok_and(|c| c == *channel)
                        }) => {}
                Value::ServerError(err) if err.code() == "MOVED" => {
                    moved.push((*channel).to_owned());
                }
                Value::ServerError(err) => {
                    return Err(redis::RedisError::from(err).into());
                }
                other => {
                    return Err(DriverError::OutOfStep(format!(
                        "{command} {channel} answered {other:?}"
                    )));
                }
            }
        }
        Ok(moved)
    }

    /// Subscribes to `channels`; returns those the server refused because their slot is
    /// served by another shard.
    pub(super) async fn subscribe(
        &mut self,
        channels: &[&str],
    ) -> Result<Vec<String>, DriverError> {
        let (subscribe, _) = self.commands();
        let kind = if self.sharded {
            PushKind::SSubscribe
        } else {
            PushKind::Subscribe
        };
        self.each(subscribe, kind, channels).await
    }

    /// Unsubscribes from `channels` (a channel whose slot moved away is gone already).
    pub(super) async fn unsubscribe(&mut self, channels: &[&str]) -> Result<(), DriverError> {
        let (_, unsubscribe) = self.commands();
        let kind = if self.sharded {
            PushKind::SUnsubscribe
        } else {
            PushKind::Unsubscribe
        };
        for channel in channels {
            *self.leaving.entry((*channel).to_owned()).or_default() += 1;
        }
        // A refused one sends no confirmation to wait for.
        for channel in self.each(unsubscribe, kind, channels).await? {
            self.left(&channel);
        }
        Ok(())
    }

    /// Reads one of our own unsubscriptions' confirmations; whether it was one.
    fn left(&mut self, channel: &str) -> bool {
        let Some(count) = self.leaving.get_mut(channel) else {
            return false;
        };
        *count -= 1;
        if *count == 0 {
            self.leaving.remove(channel);
            crate::sparse::ShrinkWhenSparse::shrink_when_sparse(&mut self.leaving);
        }
        true
    }

    /// Checks the connection answers, and in step.
    pub(super) async fn ping(&mut self) -> Result<(), DriverError> {
        match redis::Cmd::ping()
            .query_async::<Value>(&mut self.conn)
            .await?
        {
            Value::SimpleString(pong) if pong == "PONG" => Ok(()),
            other => Err(DriverError::OutOfStep(format!("PING answered {other:?}"))),
        }
    }

    /// The next message, or news of the connection or of a channel. Cancel-safe.
    pub(super) async fn next(&mut self) -> Incoming {
        if let Some(held) = self.held.take() {
            return held;
        }
        loop {
            let Some(push) = self.pushes.recv().await else {
                return Incoming::Lost("connection closed");
            };
            if let Some(incoming) = self.incoming(push) {
                return incoming;
            }
        }
    }

    /// A message already received, if the next thing received is one (anything else waits for
    /// [`Driver::next`]): so that the messages of one read from the server are routed in one go,
    /// not one wakeup of the shard's task (and one poll of all its other concerns) each.
    pub(super) fn try_message(&mut self) -> Option<redis::Msg> {
        while self.held.is_none() {
            let push = self.pushes.try_recv().ok()?;
            match self.incoming(push)? {
                Incoming::Message(message) => return Some(message),
                other => self.held = Some(other),
            }
        }
        None
    }

    /// What a push means to the shard, if anything.
    fn incoming(&mut self, push: PushInfo) -> Option<Incoming> {
        match push.kind {
            PushKind::Message | PushKind::SMessage => {
                redis::Msg::from_push_info(push).map(Incoming::Message)
            }
            PushKind::Disconnection => Some(Incoming::Lost("connection closed")),
            PushKind::Unsubscribe | PushKind::SUnsubscribe => {
                match push.data.first().map(redis::from_redis_value_ref::<String>) {
                    Some(Ok(channel)) if !self.left(&channel) => Some(Incoming::Moved(channel)),
                    _ => None,
                }
            }
            _ => None,
        }
    }
}
