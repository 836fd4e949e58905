//! Which shard carries which rooms' live events, and the task that keeps one pub/sub driver
//! (`shard`) per shard in step with it.
//!
//! On one server there is one shard, serving every slot. In a Redis Cluster the map comes from
//! `CLUSTER SHARDS`, asked of any node that answers (the seeds, then every node seen since): it
//! is read at start, again when a shard's connection drops (its master may have failed over to
//! a replica at another address) or a channel's slot moved (Redis dropped the subscription, or
//! refused it with `MOVED`), and every few seconds while some shard is down. A shard whose
//! master the cluster itself reports failed is marked so: its rooms are down for every node,
//! and the node stays ready for the others (see `Shards::is_ready`).

use std::time::Duration;

use redis::Value;
use redis::aio::MultiplexedConnection;

use super::backoff::Backoff;
use super::driver::{Addr, PubSubSource};
use super::reply::{field, int, text};
use super::shard::{self, PubSub};
use super::slots::SlotSet;

/// One shard as the cluster reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Shard {
    /// Its master's address.
    pub(super) master: Addr,
    pub(super) slots: Vec<(u16, u16)>,
    /// The cluster reports its master failed.
    pub(super) failed: bool,
}

/// The shards with slots, and every node's address (replicas too: the next place to ask).
#[derive(Debug, Default)]
struct Topology {
    shards: Vec<Shard>,
    nodes: Vec<Addr>,
}

/// Keeps the node's shard drivers in step with the deployment's shards, for as long as the
/// broker lives.
pub(super) async fn pubsub_task(pubsub: PubSub) {
    let PubSub { source, shards, .. } = &pubsub;
    if !source.cluster {
        let driver = shard::spawn(&pubsub, None, SlotSet::all(), true);
        shards.with_drivers(|drivers| drivers.push(driver));
        return;
    }
    let mut known = source.seeds.clone();
    let mut conn = None;
    let mut started = false;
    let mut backoff = Backoff::default();
    loop {
        let read = read(source, &known, &mut conn).await;
        let settled = match read {
            Ok(topology) => {
                known = source.seeds.clone();
                for node in topology.nodes {
                    if !known.contains(&node) {
                        known.push(node);
                    }
                }
                apply(&pubsub, topology.shards, !started);
                started = true;
                shards.all_up()
            }
            Err(err) => {
                tracing::warn!(error = %err, "could not read the Redis Cluster's shards; retrying");
                false
            }
        };
        // Read again when asked (a shard lost its connection, or a slot moved), and while some
        // shard is down, every few seconds (a failover may have replaced its master).
        if settled {
            backoff = Backoff::default();
            shards.refresh.notified().await;
        } else {
            tokio::select! {
                () = shards.refresh.notified() => {}
                () = tokio::time::sleep(backoff.next()) => {}
            }
        }
        // A burst of moved slots is one read.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Gives each shard's slots to its driver: a new master gets a new driver (its rooms are
/// subscribed there and caught up), a master gone stops its.
fn apply(pubsub: &PubSub, shards: Vec<Shard>, first: bool) {
    pubsub.shards.with_drivers(|drivers| {
        let mut kept = Vec::with_capacity(shards.len());
        for shard in shards {
            let slots = SlotSet::from_ranges(&shard.slots);
            let existing = drivers
                .iter()
                .position(|(handle, _)| handle.addr.as_ref() == Some(&shard.master));
            let driver = match existing {
                Some(at) => drivers.swap_remove(at),
                None => shard::spawn(pubsub, Some(shard.master), slots.clone(), first),
            };
            driver.0.assign(slots, shard.failed);
            kept.push(driver);
        }
        for (handle, task) in drivers.drain(..) {
            tracing::info!(master = ?handle.addr, "a Redis Cluster master serves no slots any more");
            task.abort();
        }
        *drivers = kept;
    });
}

/// Reads the cluster's shards on `conn` (the connection that answered last time), or else
/// from the first of `known` that answers (whose connection is kept for next time).
async fn read(
    source: &PubSubSource,
    known: &[Addr],
    conn: &mut Option<MultiplexedConnection>,
) -> redis::RedisResult<Topology> {
    async fn ask(conn: &mut MultiplexedConnection, tls: bool) -> redis::RedisResult<Topology> {
        let reply: Value = redis::cmd("CLUSTER")
            .arg("SHARDS")
            .query_async(conn)
            .await?;
        parse(&reply, tls)
    }
    if let Some(open) = conn {
        match ask(open, source.tls()).await {
            Ok(topology) => return Ok(topology),
            Err(_) => *conn = None,
        }
    }
    let asks = known.iter().map(|addr| {
        Box::pin(async move {
            let mut conn = source.command_connection(addr).await?;
            let topology = ask(&mut conn, source.tls()).await?;
            Ok::<_, redis::RedisError>((topology, conn))
        })
    });
    let ((topology, answered), _) = futures_util::future::select_ok(asks).await?;
    *conn = Some(answered);
    Ok(topology)
}

/// Parses a `CLUSTER SHARDS` reply; `tls`: take the nodes' TLS ports.
fn parse(reply: &Value, tls: bool) -> redis::RedisResult<Topology> {
    let malformed =
        || redis::RedisError::from((redis::ErrorKind::Parse, "malformed CLUSTER SHARDS reply"));
    let Value::Array(shards) = reply else {
        return Err(malformed());
    };
    let mut topology = Topology::default();
    for shard in shards {
        let Some(Value::Array(bounds)) = field(shard, "slots") else {
            return Err(malformed());
        };
        let bounds: Vec<u16> = bounds
            .iter()
            .filter_map(|b| int(b).and_then(|b| u16::try_from(b).ok()))
            .collect();
        let slots: Vec<(u16, u16)> = bounds.chunks_exact(2).map(|b| (b[0], b[1])).collect();
        let Some(Value::Array(nodes)) = field(shard, "nodes") else {
            return Err(malformed());
        };
        let mut master = None;
        for node in nodes {
            let named = |name| field(node, name).and_then(text);
            let host = named("endpoint")
                .filter(|e| !e.is_empty() && *e != "?")
                .or_else(|| named("ip"));
            let port = field(node, if tls { "tls-port" } else { "port" }).and_then(int);
            let (Some(host), Some(port)) = (host, port.and_then(|p| u16::try_from(p).ok())) else {
                continue;
            };
            // "fail" on Redis 7.0, "failed" in its documentation.
            let failed = named("health").is_some_and(|h| h.starts_with("fail"));
            let addr = (host.to_owned(), port);
            topology.nodes.push(addr.clone());
            let is_master = named("role") == Some("master");
            // A failed master may still be listed beside the replica that replaced it.
            if is_master && master.as_ref().is_none_or(|(_, failed)| *failed) {
                master = Some((addr, failed));
            }
        }
        if let (false, Some((master, failed))) = (slots.is_empty(), master) {
            topology.shards.push(Shard {
                master,
                slots,
                failed,
            });
        }
    }
    Ok(topology)
}

#[cfg(test)]
mod tests {
    use super::super::reply::fake::{shard, shard_node};
    use super::*;

    #[test]
    fn a_shards_reply_names_each_master_and_whether_it_failed() {
        let node = shard_node;
        let reply = Value::Array(vec![
            shard(
                vec![0, 100, 200, 300],
                vec![
                    node(7000, "master", "online"),
                    node(7001, "replica", "online"),
                ],
            ),
            shard(
                vec![101, 199],
                vec![node(7002, "master", "fail"), node(7003, "master", "online")],
            ),
            shard(vec![400, 500], vec![node(7004, "master", "failed")]),
            shard(vec![], vec![node(7005, "master", "online")]),
        ]);
        let topology = parse(&reply, false).unwrap();
        let addr = |port| ("127.0.0.1".to_owned(), port);
        assert_eq!(
            topology.shards,
            [
                Shard {
                    master: addr(7000),
                    slots: vec![(0, 100), (200, 300)],
                    failed: false
                },
                Shard {
                    master: addr(7003),
                    slots: vec![(101, 199)],
                    failed: false
                },
                Shard {
                    master: addr(7004),
                    slots: vec![(400, 500)],
                    failed: true
                },
            ]
        );
        assert_eq!(topology.nodes.len(), 6);
    }
}
