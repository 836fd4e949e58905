//! The node's command connection to one Redis server, watched: made again when it stops
//! answering or lands on a replica, and saying whether it works, for readiness.
//!
//! The `redis` crate's `ConnectionManager` reconnects only when a command finds its connection
//! dropped (a reset, an end of stream). A path that goes silent (a firewall or NAT forgetting the
//! flow) drops nothing: every command times out on the same connection until TCP gives up, many
//! seconds later. A server demoted to a replica (a failover behind the same address, an
//! operator's `REPLICAOF`) refuses every write with READONLY for good. Meanwhile the node would
//! fail every write and still say it is ready. So here:
//!
//! - a command that times out, or is refused with READONLY, replaces the manager with a new one:
//!   a new connection (a new flow, and a new look-up of the address, which may lead to the
//!   promoted master), unless a failure on the same connection replaced it already;
//! - any failure of the connection itself (those two, a drop, a connect that fails) starts a
//!   probe, which asks `ROLE` at once (on the new connection, within the command timeout) and
//!   then every [`Watched::connect`]'s `probe_every` until a master answers: only then is the
//!   link up again. Other commands that succeed meanwhile do not count, since a replica answers
//!   reads. The node's heartbeat sends commands every beat, so a link that fails is noticed
//!   within a beat and a command timeout even when nothing else is sent;
//! - the link is marked down (unready) by a READONLY at once, as that is certain, but by a
//!   timeout or a drop only when the probe's first check fails too: one slow moment of Redis
//!   (a slow script, an fsync stall) times out the commands of every node at once, and if it
//!   ends within a command timeout, no node says it is unready for it. A path gone silent fails
//!   the check as well: unready within about two command timeouts.
//!
//! Commands in flight on a replaced connection finish there (it closes with its last user).

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Cmd, Pipeline, RedisError, RedisResult, ServerErrorKind, Value};

use super::replicas::master_replicas;
use crate::lock;

/// The watched command connection; clones share it.
#[derive(Clone)]
pub(super) struct Watched(Arc<Inner>);

struct Inner {
    client: redis::Client,
    config: ConnectionManagerConfig,
    current: Mutex<Current>,
    health: Mutex<Health>,
    probe_every: Duration,
}

/// The manager commands go to now, and which one it is.
#[derive(Clone)]
struct Current {
    manager: ConnectionManager,
    /// Counts replacements, so that several failures on one connection replace it once.
    generation: u64,
}

#[derive(Debug, Clone, Copy)]
struct Health {
    up: bool,
    /// Whether a probe runs (at most one does).
    probing: bool,
}

impl Watched {
    /// Connects to `client`'s server; `probe_every`: how often a link that is down is checked.
    pub(super) async fn connect(
        client: redis::Client,
        config: ConnectionManagerConfig,
        probe_every: Duration,
    ) -> RedisResult<Self> {
        let manager = ConnectionManager::new_with_config(client.clone(), config.clone()).await?;
        Ok(Self(Arc::new(Inner {
            client,
            config,
            current: Mutex::new(Current {
                manager,
                generation: 0,
            }),
            health: Mutex::new(Health {
                up: true,
                probing: false,
            }),
            probe_every,
        })))
    }

    /// Whether commands get through to a master: false from a failure of the connection until a
    /// probe finds a master answering again.
    pub(super) fn is_up(&self) -> bool {
        lock(&self.0.health).up
    }

    pub(super) fn get_db(&self) -> i64 {
        use redis::aio::ConnectionLike as _;
        lock(&self.0.current).manager.get_db()
    }

    fn current(&self) -> Current {
        lock(&self.0.current).clone()
    }

    /// Sends one command, watching how it ends.
    pub(super) async fn send(&self, cmd: &Cmd) -> RedisResult<Value> {
        let Current {
            mut manager,
            generation,
        } = self.current();
        let result = manager.send_packed_command(cmd).await;
        if let Some(fault) = result
            .as_ref()
            .map_or_else(Fault::of_error, Fault::of_reply)
        {
            self.failed(generation, fault);
        }
        result
    }

    /// Sends a pipeline, watching how it ends.
    pub(super) async fn send_pipeline(
        &self,
        pipeline: &Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisResult<Vec<Value>> {
        let Current {
            mut manager,
            generation,
        } = self.current();
        let result = manager.send_packed_commands(pipeline, offset, count).await;
        let fault = match &result {
            Ok(replies) => replies.iter().find_map(Fault::of_reply),
            Err(err) => Fault::of_error(err),
        };
        if let Some(fault) = fault {
            self.failed(generation, fault);
        }
        result
    }

    /// A command on connection `generation` met `fault`: a silent or demoted connection is
    /// replaced, and a probe checks the link (a demoted one is down at once, see the module
    /// docs).
    fn failed(&self, generation: u64, fault: Fault) {
        if matches!(fault, Fault::Silent | Fault::Demoted) {
            self.replace(generation);
        }
        if fault == Fault::Demoted {
            self.down(fault);
        }
        let mut health = lock(&self.0.health);
        if !health.probing {
            health.probing = true;
            tracing::debug!(?fault, "redis command failed; checking the connection");
            tokio::spawn(probe(Arc::downgrade(&self.0)));
        }
    }

    /// Marks the link down (until a probe finds a master), after `fault`.
    fn down(&self, fault: Fault) {
        let mut health = lock(&self.0.health);
        if health.up {
            tracing::warn!(
                ?fault,
                "redis command connection failed; checking it until a master answers"
            );
        }
        health.up = false;
    }

    /// Makes a new connection in place of connection `generation`, unless that was done already.
    fn replace(&self, generation: u64) {
        let mut current = lock(&self.0.current);
        if current.generation != generation {
            return;
        }
        // Connects on its first command (the next one, or the probe's).
        match ConnectionManager::new_lazy_with_config(self.0.client.clone(), self.0.config.clone())
        {
            Ok(manager) => {
                tracing::debug!("redis command connection replaced");
                *current = Current {
                    manager,
                    generation: generation + 1,
                };
            }
            Err(err) => tracing::warn!(error = %err, "cannot make a new redis command connection"),
        }
    }
}

/// Asks `ROLE` at once, then every `probe_every` until a master answers, marking the link down
/// while none does, and up when one does. Ends with the link.
async fn probe(inner: Weak<Inner>) {
    let mut first = true;
    loop {
        let Some(every) = inner.upgrade().map(|inner| inner.probe_every) else {
            return;
        };
        if !std::mem::take(&mut first) {
            tokio::time::sleep(every).await;
        }
        let Some(link) = inner.upgrade().map(Watched) else {
            return;
        };
        let generation = link.current().generation;
        match link.send(&redis::cmd("ROLE")).await {
            Ok(role) if master_replicas(&role).is_some() => {
                let mut health = lock(&link.0.health);
                if !health.up {
                    tracing::info!("redis command connection works again");
                }
                *health = Health {
                    up: true,
                    probing: false,
                };
                return;
            }
            // A replica: another connection may reach the master (a name whose address moved).
            Ok(_) => {
                link.down(Fault::Demoted);
                link.replace(generation);
            }
            // `send` replaced a silent connection.
            Err(err) => link.down(Fault::of_error(&err).unwrap_or(Fault::Broken)),
        }
    }
}

/// What went wrong with the connection (not with a command).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// No answer in time.
    Silent,
    /// A write refused: the server is a replica now.
    Demoted,
    /// Dropped, refused, or not understood: the manager reconnects by itself.
    Broken,
}

impl Fault {
    fn of_error(err: &RedisError) -> Option<Self> {
        if err.is_timeout() {
            Some(Self::Silent)
        } else if err.kind() == redis::ErrorKind::Server(ServerErrorKind::ReadOnly) {
            Some(Self::Demoted)
        } else if err.is_io_error() || err.is_unrecoverable_error() {
            Some(Self::Broken)
        } else {
            None
        }
    }

    /// A reply can be an error too (commands turn it into one when they read it).
    fn of_reply(reply: &Value) -> Option<Self> {
        match reply {
            Value::ServerError(err) if err.kind() == Some(ServerErrorKind::ReadOnly) => {
                Some(Self::Demoted)
            }
            _ => None,
        }
    }
}
