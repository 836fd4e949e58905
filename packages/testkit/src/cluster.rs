//! [`RedisCluster`]: a Redis Cluster of [`RedisServer`]s: masters with replicas for tests of
//! cluster mode, failover and resharding, or masters alone for the benchmark.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::{Error, RedisOptions, RedisServer};

/// How long a cluster may take to serve every slot.
const HEALTHY_TIMEOUT: Duration = Duration::from_secs(30);

/// A Redis Cluster of `redis-server` processes on free loopback ports.
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
    masters: usize,
}

/// Starts `count` cluster-enabled servers as `options` say, with `extra` arguments.
async fn cluster_nodes(
    count: usize,
    options: &RedisOptions,
    extra: &[&str],
) -> Result<Vec<RedisServer>, Error> {
    let mut nodes = Vec::new();
    for _ in 0..count {
        let mut node = RedisServer::prepare(options.clone())?;
        node.extra = [
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
        ]
        .iter()
        .chain(extra)
        .map(|arg| (*arg).to_owned())
        .collect();
        node.spawn_and_wait().await?;
        nodes.push(node);
    }
    Ok(nodes)
}

impl RedisCluster {
    /// Starts `masters` masters with `replicas` replicas each, made a cluster with `redis-cli
    /// --cluster create` (so at least 3 masters), and waits until it is healthy (every slot
    /// served, seen by every node) and every replica is in sync. A node down for a second is
    /// failed over.
    ///
    /// # Panics
    ///
    /// If `redis-server` or `redis-cli` is missing, or the cluster does not come up in 30 s.
    pub async fn start(masters: usize, replicas: usize) -> RedisCluster {
        let extra = [
            "--cluster-node-timeout",
            "1000",
            // Replicas sync at once instead of after the default 5 s.
            "--repl-diskless-sync-delay",
            "0",
        ];
        let nodes = cluster_nodes(masters * (1 + replicas), &RedisOptions::default(), &extra)
            .await
            .unwrap_or_else(|err| panic!("{err}\n(is redis-server installed? run `just setup`)"));
        let addresses: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let out = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("cannot run redis-cli: is redis-tools installed? run `just setup`");
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let cluster = RedisCluster { nodes, masters };
        cluster.wait_healthy(None).await;
        cluster.wait_replicated(masters * replicas).await;
        cluster
    }

    /// Starts `masters` masters (any number, one included) as `options` say, without replicas
    /// and with Redis's default timeouts, gives each an even share of the slots (`CLUSTER
    /// ADDSLOTSRANGE`), introduces them (`CLUSTER MEET`) and waits until every one says the
    /// cluster serves.
    ///
    /// # Errors
    ///
    /// If a server cannot start, refuses a step, or the cluster does not serve within 30 s.
    pub async fn launch_masters(
        masters: usize,
        options: &RedisOptions,
    ) -> Result<RedisCluster, Error> {
        let nodes = cluster_nodes(masters, options, &[]).await?;
        let count = nodes.len() as u32;
        for (i, node) in (0u32..).zip(&nodes) {
            let (first, last) = (16384 * i / count, 16384 * (i + 1) / count - 1);
            let (first, last) = (first.to_string(), last.to_string());
            node.command_ok(&["CLUSTER", "ADDSLOTSRANGE", &first, &last])
                .await?;
            if i > 0 {
                let seed = nodes[0].port.to_string();
                node.command_ok(&["CLUSTER", "MEET", "127.0.0.1", &seed])
                    .await?;
            }
        }
        let cluster = RedisCluster { nodes, masters };
        cluster.healthy(None).await?;
        Ok(cluster)
    }

    /// Its servers, to own apart from the cluster (their pids and ports, say).
    pub fn into_nodes(self) -> Vec<RedisServer> {
        self.nodes
    }

    /// Waits until `replicas` replicas are in sync with their masters, in total.
    async fn wait_replicated(&self, replicas: usize) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let mut online = 0;
            for node in &self.nodes {
                let info = node
                    .command(&["INFO", "replication"])
                    .await
                    .unwrap_or_default();
                online += info.matches("state=online").count();
            }
            if online >= replicas {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{online} of {replicas} replicas in sync after 30 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The seed URLs, comma-separated, as `--redis-url` takes them with `--redis-cluster`.
    pub fn urls(&self) -> String {
        self.nodes
            .iter()
            .map(RedisServer::url)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The nodes, masters and replicas alike (roles change with failovers).
    pub fn nodes(&mut self) -> &mut [RedisServer] {
        &mut self.nodes
    }

    /// Room names (`room-0`, `room-1`, ...), one on each master's shard: a room's keys are
    /// tagged with its name, so its slot is the name's.
    pub async fn a_room_per_shard(&self) -> Vec<String> {
        let mut shards = std::collections::BTreeSet::new();
        let mut rooms = Vec::new();
        for i in 0.. {
            if shards.len() == self.masters {
                break;
            }
            let room = format!("room-{i}");
            if shards.insert(self.master_of(&room).await) {
                rooms.push(room);
            }
        }
        rooms
    }

    /// The cluster slot of `key`, as Redis computes it.
    async fn slot_of(&self, key: &str) -> u16 {
        self.nodes[0]
            .command(&["CLUSTER", "KEYSLOT", key])
            .await
            .and_then(|r| r.trim().trim_start_matches(':').parse::<u16>().ok())
            .expect("CLUSTER KEYSLOT answered")
    }

    /// The index of the node that is now the master of `key`'s slot.
    pub async fn master_of(&self, key: &str) -> usize {
        let slot = self.slot_of(key).await;
        for (i, node) in self.nodes.iter().enumerate() {
            let Some(reply) = node.command(&["CLUSTER", "NODES"]).await else {
                continue;
            };
            // Each line: id addr flags master ping pong epoch state slot-ranges...
            for line in reply.lines() {
                let fields: Vec<&str> = line.split(' ').collect();
                if fields.len() < 9
                    || !fields[2].contains("myself")
                    || !fields[2].contains("master")
                {
                    continue;
                }
                let owns = fields[8..].iter().any(|range| {
                    let (start, end) = range.split_once('-').unwrap_or((range, range));
                    matches!((start.parse::<u16>(), end.parse::<u16>()), (Ok(a), Ok(b)) if a <= slot && slot <= b)
                });
                if owns {
                    return i;
                }
            }
        }
        panic!("no master owns slot {slot}");
    }

    /// Moves the slot of `key` (with its keys) from its master to node `to` (another master),
    /// as a resharding does; nodes subscribed to its sharded channels are told it moved.
    ///
    /// # Panics
    ///
    /// If a step of the migration fails.
    pub async fn move_slot_of(&self, key: &str, to: usize) {
        let from = self.master_of(key).await;
        let slot = self.slot_of(key).await.to_string();
        let id = |i: usize| async move {
            let reply = self.nodes[i]
                .command(&["CLUSTER", "MYID"])
                .await
                .unwrap_or_default();
            reply.lines().nth(1).unwrap_or_default().to_owned()
        };
        let (from_id, to_id) = (id(from).await, id(to).await);
        let ok = |reply: Option<String>, what: &str| {
            assert!(
                reply.as_deref().is_some_and(|r| r.starts_with("+OK")),
                "{what}: {reply:?}"
            );
        };
        let to_node = &self.nodes[to];
        let from_node = &self.nodes[from];
        ok(
            to_node
                .command(&["CLUSTER", "SETSLOT", &slot, "IMPORTING", &from_id])
                .await,
            "importing",
        );
        ok(
            from_node
                .command(&["CLUSTER", "SETSLOT", &slot, "MIGRATING", &to_id])
                .await,
            "migrating",
        );
        let keys = from_node
            .command(&["CLUSTER", "GETKEYSINSLOT", &slot, "1000"])
            .await
            .unwrap_or_default();
        let keys = bulk_strings(&keys);
        if !keys.is_empty() {
            let port = to_node.port.to_string();
            let mut migrate = vec!["MIGRATE", "127.0.0.1", &port, "", "0", "5000", "KEYS"];
            migrate.extend(keys.iter().map(String::as_str));
            ok(from_node.command(&migrate).await, "migrate");
        }
        for node in &self.nodes {
            if node.pid().is_some() {
                let _ = node
                    .command(&["CLUSTER", "SETSLOT", &slot, "NODE", &to_id])
                    .await;
            }
        }
    }

    /// Waits until every running node reports `cluster_state:ok` (after a failover, too);
    /// `except`: a node known to be down.
    ///
    /// # Panics
    ///
    /// If the cluster is not healthy after 30 s.
    pub async fn wait_healthy(&self, except: Option<usize>) {
        self.healthy(except)
            .await
            .unwrap_or_else(|err| panic!("the Redis Cluster is not healthy after 30 s: {err}"));
    }

    /// [`RedisCluster::wait_healthy`], failing with the first node not healthy in time.
    async fn healthy(&self, except: Option<usize>) -> Result<(), Error> {
        let deadline = tokio::time::Instant::now() + HEALTHY_TIMEOUT;
        loop {
            let mut sick = None;
            for (i, node) in self.nodes.iter().enumerate() {
                if Some(i) == except {
                    continue;
                }
                let info = node.command(&["CLUSTER", "INFO"]).await;
                if !info
                    .as_deref()
                    .is_some_and(|i| i.contains("cluster_state:ok"))
                {
                    sick.get_or_insert((node.port, info));
                }
            }
            let Some((port, reply)) = sick else {
                return Ok(());
            };
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::Redis {
                    port,
                    command: "CLUSTER INFO".to_owned(),
                    reply,
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The bulk strings of a RESP array reply (`*n`, then `$len` and that many bytes for each);
/// they may hold newlines, as Skat's nonce keys do.
fn bulk_strings(reply: &str) -> Vec<String> {
    let mut rest = reply.split_once("\r\n").map_or("", |(_, rest)| rest);
    let mut strings = Vec::new();
    while let Some((header, after)) = rest.split_once("\r\n") {
        let Some(len) = header
            .strip_prefix('$')
            .and_then(|l| l.parse::<usize>().ok())
        else {
            break;
        };
        let Some(string) = after.get(..len) else {
            break;
        };
        strings.push(string.to_owned());
        rest = after.get(len + 2..).unwrap_or_default();
    }
    strings
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[tokio::test]
    async fn masters_alone_share_every_slot_and_persist_nothing() {
        let options = RedisOptions::default().without_persistence();
        let cluster = RedisCluster::launch_masters(2, &options).await.unwrap();
        let (a, b) = (cluster.master_of("a").await, cluster.master_of("b").await);
        assert_ne!(a, b, "slot 15495 (a) and 3300 (b) are on different halves");
        let nodes = cluster.into_nodes();
        let aof = nodes[0].command(&["CONFIG", "GET", "appendonly"]).await;
        assert!(aof.unwrap().contains("no"));
        let pid = nodes[1].pid().unwrap();
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap();
        assert!(comm.starts_with("redis-server"), "{comm}");
    }
}
