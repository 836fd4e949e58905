//! Simulated nodes: how Redis's load grows with the number of nodes, for a fixed traffic mix,
//! beyond what one box can run as real nodes.
//!
//! Each simulated node is a real `RedisBroker` (its own command and pub/sub connections to every
//! shard, its own claim, heartbeat and presence), without WebSockets: its users are presence
//! entries, and its room subscriptions count the messages they receive. For each node count the
//! bench starts a fresh Redis Cluster, spreads the same users over the nodes (each user in one
//! room, on a node picked by a hash of its name), measures an idle window (heartbeats only),
//! then publishes at a fixed rate through nodes holding each room and measures Redis: CPU per
//! shard, commands and bytes per second.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde::Serialize;
use skat_broker::{Broker, NewMessage, RedisBroker, RedisConfig, RoomEvent, RoomSink};
use skat_testkit::{RedisCluster, RedisOptions, RedisServer};

use crate::measure::procfs::{clock_ticks, read_cpu};
use crate::measure::redis_stats::{Counters, counters};

/// What one simulated fleet is and does.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Mix {
    /// Users, each online in one room.
    pub(crate) users: usize,
    /// Rooms.
    pub(crate) rooms: usize,
    /// Messages per second, over all rooms.
    pub(crate) rate: u64,
    /// Seconds of each window (idle, then traffic).
    pub(crate) seconds: u64,
    /// Cluster masters.
    pub(crate) shards: usize,
    /// Body bytes of each message.
    pub(crate) body_bytes: usize,
}

/// Redis's work over one window.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Window {
    /// Redis CPU, in cores, summed over the shards.
    pub(crate) cpu_cores: f64,
    /// The busiest shard's CPU, in cores.
    pub(crate) busiest_shard_cores: f64,
    /// Commands per second, all shards.
    pub(crate) commands_per_sec: f64,
    /// Bytes per second Redis sent (replies and pub/sub), all shards.
    pub(crate) out_bytes_per_sec: f64,
}

/// One node count's outcome.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct SimResult {
    /// Simulated nodes.
    pub(crate) nodes: usize,
    /// Room subscriptions over all nodes (a room counts once per node holding users in it).
    pub(crate) subscriptions: usize,
    /// Heartbeats only.
    pub(crate) idle: Window,
    /// Publishing at the mix's rate.
    pub(crate) traffic: Window,
    /// Messages published per second.
    pub(crate) published_per_sec: f64,
    /// Messages the nodes' subscriptions received per second.
    pub(crate) node_deliveries_per_sec: f64,
}

/// Counts the messages a subscription receives.
#[derive(Debug, Default)]
struct Count(AtomicU64);

impl RoomSink for Count {
    fn deliver(&self, event: RoomEvent) {
        if matches!(event, RoomEvent::Message(_)) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn closed(&self) {}
}

/// The node holding user `u` of `nodes`: a multiplicative hash, so rooms' users spread.
fn node_of(user: usize, nodes: usize) -> usize {
    (user.wrapping_mul(2_654_435_761) >> 7) % nodes
}

/// Runs the mix on `nodes` simulated nodes against a fresh cluster of `mix.shards` masters.
pub(crate) async fn run(
    redis_bin: &std::path::Path,
    cpus: Option<&str>,
    nodes: usize,
    mix: &Mix,
) -> anyhow::Result<SimResult> {
    let options = RedisOptions::default()
        .bin(redis_bin)
        .pinned(cpus)
        .without_persistence();
    let redis = RedisCluster::launch_masters(mix.shards, &options)
        .await?
        .into_nodes();
    let pids: Vec<u32> = redis.iter().filter_map(RedisServer::pid).collect();
    let ports: Vec<u16> = redis.iter().map(RedisServer::port).collect();
    let seeds: Vec<String> = redis.iter().map(RedisServer::url).collect();
    let mut brokers = Vec::with_capacity(nodes);
    for n in 0..nodes {
        let config = RedisConfig {
            cluster: true,
            ..RedisConfig::new(seeds.join(","), format!("sim-{n}"))
        };
        let broker = RedisBroker::connect(config)
            .await
            .with_context(|| format!("simulated node {n}"))?;
        brokers.push(Arc::new(broker));
    }
    // Each node subscribes to the rooms of its users, then holds their presence.
    let count = Arc::new(Count::default());
    let mut held: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); nodes];
    for user in 0..mix.users {
        held[node_of(user, nodes)].insert(user % mix.rooms);
    }
    let mut subscriptions = Vec::new();
    let mut publisher_of = vec![None; mix.rooms];
    for (n, rooms) in held.iter().enumerate() {
        for &room in rooms {
            let sink: Arc<dyn RoomSink> = Arc::clone(&count) as Arc<dyn RoomSink>;
            subscriptions.push(brokers[n].subscribe(&format!("r{room}"), sink).await?);
            publisher_of[room].get_or_insert(n);
        }
    }
    for chunk in (0..mix.users).collect::<Vec<_>>().chunks(200) {
        let joins = chunk.iter().map(|&user| {
            let broker = Arc::clone(&brokers[node_of(user, nodes)]);
            async move {
                let room = format!("r{}", user % mix.rooms);
                broker.presence_join(&room, &format!("u{user}")).await
            }
        });
        futures_util::future::try_join_all(joins).await?;
    }

    let window = Duration::from_secs(mix.seconds);
    let idle = measure(&pids, &ports, window, async { Ok(0) }).await?.0;
    let body = "x".repeat(mix.body_bytes);
    let before = count.0.load(Ordering::Relaxed);
    let (traffic, published) = measure(&pids, &ports, window, async {
        publish(&brokers, &publisher_of, mix, &body, window).await
    })
    .await?;
    let delivered = count.0.load(Ordering::Relaxed) - before;
    let subscribed = subscriptions.len();
    drop(subscriptions);
    drop(brokers);
    drop(redis);
    Ok(SimResult {
        nodes,
        subscriptions: subscribed,
        idle,
        traffic,
        published_per_sec: published as f64 / window.as_secs_f64(),
        node_deliveries_per_sec: delivered as f64 / window.as_secs_f64(),
    })
}

/// Publishes at the mix's rate for `window`, each room's messages through a node holding it;
/// returns how many were published.
async fn publish(
    brokers: &[Arc<RedisBroker>],
    publisher_of: &[Option<usize>],
    mix: &Mix,
    body: &str,
    window: Duration,
) -> anyhow::Result<u64> {
    let tick = Duration::from_millis(10);
    let per_tick = (mix.rate as f64 * tick.as_secs_f64()).max(1.0) as u64;
    let mut interval = tokio::time::interval(tick);
    let start = Instant::now();
    let mut sent = 0u64;
    while start.elapsed() < window {
        interval.tick().await;
        let batch = (0..per_tick).filter_map(|i| {
            let room = ((sent + i) as usize) % mix.rooms;
            let node = publisher_of[room]?;
            let message = NewMessage {
                room: format!("r{room}"),
                from: "sim".to_owned(),
                body: body.to_owned(),
                nonce: None,
                reply_to: None,
            };
            Some(brokers[node].publish(message))
        });
        futures_util::future::try_join_all(batch).await?;
        sent += per_tick;
    }
    Ok(sent)
}

/// Runs `work` and measures Redis over `window` (the work's own length, or at least `window`).
async fn measure<T>(
    pids: &[u32],
    ports: &[u16],
    window: Duration,
    work: impl Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<(Window, T)> {
    let cpu = |pid: &u32| read_cpu(*pid).map(|t| t.user + t.system);
    let cpu_before = pids.iter().map(cpu).collect::<anyhow::Result<Vec<_>>>()?;
    let counters_before = counters(ports).await?;
    let start = Instant::now();
    let (output, ()) = tokio::join!(work, tokio::time::sleep(window));
    let output = output?;
    let elapsed = start.elapsed().as_secs_f64();
    let cpu_after = pids.iter().map(cpu).collect::<anyhow::Result<Vec<_>>>()?;
    let Counters {
        commands, net_out, ..
    } = counters_before.until(counters(ports).await?);
    let cores: Vec<f64> = cpu_before
        .iter()
        .zip(&cpu_after)
        .map(|(b, a)| (a - b) as f64 / clock_ticks() as f64 / elapsed)
        .collect();
    let window = Window {
        cpu_cores: cores.iter().sum(),
        busiest_shard_cores: cores.iter().copied().fold(0.0, f64::max),
        commands_per_sec: commands as f64 / elapsed,
        out_bytes_per_sec: net_out as f64 / elapsed,
    };
    Ok((window, output))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_spread_over_nodes() {
        let mut per_node = [0usize; 10];
        for user in 0..10_000 {
            per_node[node_of(user, 10)] += 1;
        }
        assert!(
            per_node.iter().all(|&n| (800..1200).contains(&n)),
            "{per_node:?}"
        );
    }
}
