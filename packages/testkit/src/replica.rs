//! Replicas of a [`RedisServer`], for tests of what a node promises while replication lags or
//! a master has no replica (`WAIT`).

use std::time::Duration;

use crate::RedisServer;
use crate::redis::START_TIMEOUT;

impl RedisServer {
    /// Starts a replica of `master` and waits until it is in sync.
    ///
    /// # Panics
    ///
    /// If the replica does not start or does not sync within 10 s.
    pub async fn start_replica_of(master: &RedisServer) -> RedisServer {
        Self::start_replica_via(master, master.port).await
    }

    /// Starts a replica of `master` that reaches it through `port` (a [`Proxy`](crate::Proxy)
    /// in front of it, whose faults then hit the replication link only), and waits until it is
    /// in sync.
    ///
    /// # Panics
    ///
    /// If the replica does not start or does not sync within 10 s.
    pub async fn start_replica_via(master: &RedisServer, port: u16) -> RedisServer {
        // A full sync waits 5 s by default for more replicas to share it: none will come.
        let set = master
            .command(&["CONFIG", "SET", "repl-diskless-sync-delay", "0"])
            .await;
        assert_eq!(set.as_deref(), Some("+OK\r\n"), "configure the master");
        let mut replica = RedisServer::prepare(master.options.clone()).expect("a redis dir");
        replica.extra = vec!["--replicaof".into(), "127.0.0.1".into(), port.to_string()];
        replica
            .spawn_and_wait()
            .await
            .unwrap_or_else(|err| panic!("{err}"));
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        loop {
            let info = replica
                .command(&["INFO", "replication"])
                .await
                .unwrap_or_default();
            if info.contains("master_link_status:up") {
                return replica;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the replica did not sync within {START_TIMEOUT:?}: {info}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
