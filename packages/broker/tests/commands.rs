//! The Redis backend's command side under faults, against real `redis-server`s and the
//! testkit's [`Proxy`]: publishes that wait for a lagging replica, a command connection that goes
//! silent or lands on a replica, a publish whose reply is lost, and the lifetime of a room's keys.

#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use skat_broker::{
    Broker, NewMessage, Published, Recovery, RedisBroker, RedisBrokerError, RedisConfig, Resume,
};
use skat_testkit::{Proxy, RedisServer};

fn config(url: String, prefix: &str) -> RedisConfig {
    RedisConfig {
        prefix: prefix.to_owned(),
        stream_len: 100,
        presence_ttl: Duration::from_millis(1000),
        heartbeat: Duration::from_millis(200),
        command_timeout: Duration::from_millis(500),
        ..RedisConfig::new(url, "node-a")
    }
}

fn message(room: &str, body: &str, nonce: Option<&str>) -> NewMessage {
    NewMessage {
        room: room.into(),
        from: "alice".into(),
        body: body.into(),
        nonce: nonce.map(str::to_owned),
        reply_to: None,
    }
}

fn resume() -> Resume<'static> {
    Resume {
        recovery: Recovery::count(100),
        members: 100,
        ..Resume::latest(10)
    }
}

/// The warnings logged while the returned guard lives, on this thread (a `#[tokio::test]` runs
/// every task on its own thread).
fn warnings() -> (Logs, tracing::subscriber::DefaultGuard) {
    let logs = Logs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    (logs, tracing::subscriber::set_default(subscriber))
}

/// Log lines, shared with the subscriber that writes them.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    /// The lines that contain `text`.
    fn count(&self, text: &str) -> usize {
        String::from_utf8_lossy(&self.0.lock().unwrap())
            .lines()
            .filter(|line| line.contains(text))
            .count()
    }
}

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// With `wait_replicas`, a publish waits (up to a tenth of the command timeout) for a replica to
/// have it. While the replica lags, that wait must cost the publishes only: the node's joins,
/// history reads and presence writes to the same Redis answer at once, as without a replica.
/// The shortfall is a warning, logged once, not once per message.
#[tokio::test]
async fn a_lagging_replica_delays_publishes_not_the_nodes_other_commands() {
    let (logs, _guard) = warnings();
    let master = RedisServer::start().await;
    let replication = Proxy::start(master.port()).await;
    let replica = RedisServer::start_replica_via(&master, replication.port()).await;
    let broker = Arc::new(
        RedisBroker::connect(RedisConfig {
            wait_replicas: 1,
            // Publishes wait up to 1 s for the replica.
            command_timeout: Duration::from_secs(10),
            ..config(master.url(), "lag:")
        })
        .await
        .unwrap(),
    );
    // In sync: a confirmed message is on the replica.
    broker
        .publish(message("general", "first", Some("n0")))
        .await
        .unwrap();
    let on_replica = replica.command(&["XLEN", "lag:{general}:stream"]).await;
    assert_eq!(on_replica.as_deref(), Some(":1\r\n"));

    // The replication link goes silent: the master still counts the replica, which gets
    // nothing. Four senders keep publishing, each send waiting out the full second.
    replication.set_blackhole(true);
    let confirmed = Arc::new(AtomicUsize::new(0));
    let senders: Vec<_> = (0..4)
        .map(|sender| {
            let broker = Arc::clone(&broker);
            let confirmed = Arc::clone(&confirmed);
            tokio::spawn(async move {
                for i in 0.. {
                    let nonce = format!("s{sender}-{i}");
                    let started = Instant::now();
                    broker
                        .publish(message("general", "lagging", Some(&nonce)))
                        .await
                        .unwrap();
                    assert!(
                        started.elapsed() >= Duration::from_millis(900),
                        "the publish waited for the replica"
                    );
                    confirmed.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    for round in 0..8 {
        let started = Instant::now();
        let room = format!("room-{round}");
        broker
            .join_snapshot(&room, "bob", true, resume())
            .await
            .unwrap();
        broker.history("general", None, 10).await.unwrap();
        broker.presence_join("general", "carol").await.unwrap();
        broker.members("general", None, 10).await.unwrap();
        let took = started.elapsed();
        assert!(
            took < Duration::from_millis(300),
            "round {round}: four commands took {took:?} behind the publishes' wait"
        );
    }
    // Two publishes each, then: eight shortfalls.
    let deadline = Instant::now() + Duration::from_secs(10);
    while confirmed.load(Ordering::Relaxed) < 8 {
        assert!(Instant::now() < deadline, "the publishes never ended");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for sender in &senders {
        assert!(!sender.is_finished(), "a sender failed");
        sender.abort();
    }
    let shortfalls = logs.count("not on enough replicas");
    assert_eq!(shortfalls, 1, "logged once, not per message");
    drop(replica);
}

/// A master without a replica cannot replicate anything: waiting for one would only delay every
/// send by the full wait. The node sees there is none and confirms at once, with a warning.
#[tokio::test]
async fn without_a_replica_publishes_do_not_wait() {
    let (logs, _guard) = warnings();
    let master = RedisServer::start().await;
    let broker = RedisBroker::connect(RedisConfig {
        wait_replicas: 1,
        command_timeout: Duration::from_secs(10),
        ..config(master.url(), "alone:")
    })
    .await
    .unwrap();
    let started = Instant::now();
    for i in 0..5 {
        broker
            .publish(message("general", "alone", Some(&format!("n{i}"))))
            .await
            .unwrap();
    }
    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(500),
        "five publishes took {took:?}: they waited for a replica there is none of"
    );
    assert_eq!(logs.count("no replica"), 1, "logged once");
}

/// Review H2: once the publish script ran, the message is stored (and broadcast): a `WAIT` that
/// then fails (here refused by an ACL; in a cluster, one that landed on a replica) is a
/// shortfall, logged, not an error. An error would have the sender send again, and a message
/// without a nonce would be stored twice.
#[tokio::test]
async fn a_wait_that_fails_after_the_publish_is_a_shortfall_not_an_error() {
    let (logs, _guard) = warnings();
    let master = RedisServer::start().await;
    let replica = RedisServer::start_replica_of(&master).await;
    // The node counts the replicas the master lists as in sync.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !master
        .command(&["INFO", "replication"])
        .await
        .unwrap_or_default()
        .contains("state=online")
    {
        assert!(Instant::now() < deadline, "the replica never got in sync");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let denied = master
        .command(&["ACL", "SETUSER", "default", "-wait"])
        .await;
    assert_eq!(denied.as_deref(), Some("+OK\r\n"));
    let broker = RedisBroker::connect(RedisConfig {
        wait_replicas: 1,
        ..config(master.url(), "waitfails:")
    })
    .await
    .unwrap();
    for body in ["first", "second"] {
        let published = broker.publish(message("general", body, None)).await;
        assert!(
            matches!(published, Ok(Published::New(_))),
            "stored, so confirmed: {published:?}"
        );
    }
    let stored = broker.history("general", None, 10).await.unwrap().messages;
    let bodies: Vec<&str> = stored.iter().map(|m| m.body.as_str()).collect();
    assert_eq!(bodies, ["first", "second"]);
    assert_eq!(logs.count("the wait for replicas failed"), 1, "logged once");
    drop(replica);
}

/// Polls `ready` until it says `want`, failing the test after `within`.
async fn wait_ready(broker: &RedisBroker, want: bool, within: Duration, what: &str) {
    skat_broker::conformance::eventually(what, within, || broker.is_ready() == want).await;
}

/// A path to Redis that goes silent (a firewall or NAT dropping the flow) fails nothing at once:
/// commands time out. The node must say it is not ready while its commands cannot get through,
/// even though its pub/sub connection, idle, has not noticed yet; and once the path is back, its
/// commands work and it is ready again, without a restart.
#[tokio::test]
async fn a_silent_command_path_makes_the_node_unready_until_it_answers_again() {
    let redis = RedisServer::start().await;
    let path = Proxy::start(redis.port()).await;
    let broker = RedisBroker::connect(RedisConfig {
        // The pub/sub side's own check would notice in a minute: too late to matter here.
        pubsub_ping: Duration::from_secs(60),
        ..config(path.url(), "silent:")
    })
    .await
    .unwrap();
    assert!(broker.is_ready());
    path.set_blackhole(true);
    // The heartbeat's commands time out (0.5 s): within a few, the node says so.
    wait_ready(
        &broker,
        false,
        Duration::from_secs(3),
        "still ready, blackholed",
    )
    .await;
    assert!(
        broker.history("general", None, 10).await.is_err(),
        "nothing gets through"
    );
    path.set_blackhole(false);
    wait_ready(&broker, true, Duration::from_secs(5), "never ready again").await;
    broker
        .publish(message("general", "back", Some("n1")))
        .await
        .unwrap();
}

/// One command connection that stops answering (its replies held back, as a path dropping one
/// flow would) is replaced after a command times out on it: the next commands go through a new
/// connection instead of queuing behind the silent one until TCP gives up.
#[tokio::test]
async fn a_command_connection_that_stops_answering_is_replaced() {
    let redis = RedisServer::start().await;
    let path = Proxy::start(redis.port()).await;
    let broker = RedisBroker::connect(config(path.url(), "stall:"))
        .await
        .unwrap();
    let sent = message("general", "once", Some("n1"));
    broker.publish(sent.clone()).await.unwrap();
    // From now on, the connection that reads streams hears nothing back (a publish sent again
    // reads its original with an `XRANGE`; history pages are a script now, as every other
    // command the test sends).
    path.hold_replies_to("XRANGE");
    let stalled = broker.publish(sent).await;
    assert!(stalled.is_err(), "{stalled:?}");
    let started = Instant::now();
    broker.members("general", None, 10).await.unwrap();
    assert!(
        started.elapsed() < Duration::from_millis(400),
        "members took {:?}",
        started.elapsed()
    );
    wait_ready(
        &broker,
        true,
        Duration::from_secs(2),
        "not ready on a new connection",
    )
    .await;
}

/// Review L3: one slow moment of Redis (a slow script, an fsync stall: here every client paused
/// for 1.3 command timeouts) times a command out, but Redis answers again within the next
/// timeout: the node must not say it is unready for that (every node would, at once). It checks
/// the new connection first, and only a check that fails too marks it down (the blackhole test
/// above still sees that).
#[tokio::test]
async fn one_slow_moment_of_redis_does_not_make_the_node_unready() {
    let redis = RedisServer::start().await;
    let broker = Arc::new(
        RedisBroker::connect(RedisConfig {
            command_timeout: Duration::from_secs(1),
            // Neither the claim nor the pub/sub side's own check are what this is about.
            presence_ttl: Duration::from_secs(30),
            heartbeat: Duration::from_secs(5),
            pubsub_ping: Duration::from_secs(60),
            ..config(redis.url(), "slow:")
        })
        .await
        .unwrap(),
    );
    assert!(broker.is_ready());
    let unready = Arc::new(AtomicUsize::new(0));
    let watcher = {
        let (broker, unready) = (Arc::clone(&broker), Arc::clone(&unready));
        tokio::spawn(async move {
            loop {
                if !broker.is_ready() {
                    unready.fetch_add(1, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let paused = redis.command(&["CLIENT", "PAUSE", "1300", "ALL"]).await;
    assert_eq!(paused.as_deref(), Some("+OK\r\n"));
    let slow = broker.history("general", None, 10).await;
    assert!(slow.is_err(), "the command timed out: {slow:?}");
    // The pause ends 0.3 s after that; the check on a new connection answers then.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    broker.history("general", None, 10).await.unwrap();
    watcher.abort();
    assert_eq!(
        unready.load(Ordering::Relaxed),
        0,
        "the node said it was unready for one slow moment"
    );
}

/// A Redis demoted to a replica (a failover behind a fixed address, or an operator's
/// `REPLICAOF`) refuses writes with READONLY. The node says it is not ready while its Redis is
/// not a master, fails writes with that error, and is ready again once it is.
#[tokio::test]
async fn a_node_whose_redis_becomes_a_replica_is_unready_and_fails_writes_clearly() {
    let redis = RedisServer::start().await;
    let other = RedisServer::start().await;
    let broker = RedisBroker::connect(config(redis.url(), "demoted:"))
        .await
        .unwrap();
    let port = other.port().to_string();
    let demoted = redis.command(&["REPLICAOF", "127.0.0.1", &port]).await;
    assert_eq!(demoted.as_deref(), Some("+OK\r\n"));
    let refused = broker
        .publish(message("general", "refused", Some("n1")))
        .await
        .unwrap_err();
    let readonly = redis::ErrorKind::Server(redis::ServerErrorKind::ReadOnly);
    assert!(
        matches!(refused, RedisBrokerError::Redis(ref err) if err.kind() == readonly),
        "{refused}"
    );
    wait_ready(&broker, false, Duration::from_secs(3), "ready on a replica").await;
    let promoted = redis.command(&["REPLICAOF", "NO", "ONE"]).await;
    assert_eq!(promoted.as_deref(), Some("+OK\r\n"));
    wait_ready(&broker, true, Duration::from_secs(5), "never ready again").await;
    broker
        .publish(message("general", "accepted", Some("n2")))
        .await
        .unwrap();
}

/// A publish whose first attempt ran but whose reply was lost on the way back (the connection
/// dropped) is sent again, by the node's retry or a cluster client's own. Without a nonce of the
/// sender's, the node gives it one of its own, so the second attempt finds the first: the
/// message is stored and confirmed once, as sent, and the sender sees no nonce it did not send.
#[tokio::test]
async fn a_publish_without_a_nonce_whose_reply_was_lost_is_stored_once() {
    let redis = RedisServer::start().await;
    let path = Proxy::start(redis.port()).await;
    let broker = RedisBroker::connect(RedisConfig {
        // No heartbeat in the way: the publish's is the only reply on the connection.
        presence_ttl: Duration::from_secs(60),
        heartbeat: Duration::from_secs(30),
        ..config(path.url(), "once:")
    })
    .await
    .unwrap();
    // Loads the script: from now on a publish is one EVALSHA.
    broker
        .publish(message("general", "first", None))
        .await
        .unwrap();
    path.hold_replies_to("EVALSHA");
    let lose_the_reply = async {
        path.holding().await;
        path.cut();
        path.release();
    };
    let (published, ()) = tokio::join!(
        broker.publish(message("general", "second", None)),
        lose_the_reply
    );
    let Published::New(sent) = published.unwrap() else {
        panic!("a message sent once is new to its sender");
    };
    assert_eq!(
        (sent.body.as_str(), sent.nonce.as_deref()),
        ("second", None)
    );
    let stored = broker.history("general", None, 10).await.unwrap().messages;
    let bodies: Vec<&str> = stored.iter().map(|m| m.body.as_str()).collect();
    assert_eq!(bodies, ["first", "second"], "stored once");
    assert_eq!(stored[1], sent, "confirmed as stored");
}

/// The keys of `prefix`'s rooms (`<prefix>{<room>}:...`), with their TTL in ms (-1: none).
async fn room_keys(redis: &RedisServer, prefix: &str) -> Vec<(String, i64)> {
    let client = redis::Client::open(redis.url()).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}{{*"))
        .query_async(&mut con)
        .await
        .unwrap();
    let mut out = Vec::new();
    for key in keys {
        let ttl: i64 = redis::cmd("PTTL")
            .arg(&key)
            .query_async(&mut con)
            .await
            .unwrap();
        out.push((key, ttl));
    }
    out
}

/// `config` with time to spare for each command: a test making a thousand rooms on a loaded
/// machine is not about timeouts.
fn patient(config: RedisConfig) -> RedisConfig {
    RedisConfig {
        command_timeout: Duration::from_secs(5),
        ..config
    }
}

/// Joins `rooms` fresh rooms as a client would (subscribe, join with presence), then leaves
/// them all.
async fn join_and_leave(broker: &RedisBroker, rooms: usize) {
    for room in 0..rooms {
        let room = format!("fresh-{room}");
        let sub = skat_broker::conformance::listen(broker, &room)
            .await
            .unwrap();
        broker
            .join_snapshot(&room, "anon", true, resume())
            .await
            .unwrap();
        broker.presence_leave(&room, "anon").await.unwrap();
        drop(sub);
    }
}

/// Any client may join any valid room name, and each join of a fresh one makes keys: the room's
/// epoch at least. A room that never had a message must leave nothing permanent: with the
/// defaults (rooms with history kept for good), every key of those rooms expires.
#[tokio::test]
async fn joins_of_fresh_rooms_leave_no_permanent_key() {
    let redis = RedisServer::start().await;
    let broker = RedisBroker::connect(patient(config(redis.url(), "fresh:")))
        .await
        .unwrap();
    join_and_leave(&broker, 1000).await;
    let keys = room_keys(&redis, "fresh:").await;
    assert!(!keys.is_empty(), "the joins made epochs");
    let permanent: Vec<_> = keys.iter().filter(|(_, ttl)| *ttl < 0).collect();
    assert!(
        permanent.is_empty(),
        "{} permanent: {permanent:?}",
        permanent.len()
    );
}

/// With a room TTL, the same joins leave nothing once it has passed, and listing the rooms drops
/// their names from the index.
#[tokio::test]
async fn with_a_room_ttl_fresh_rooms_vanish_and_leave_the_index() {
    let redis = RedisServer::start().await;
    let broker = RedisBroker::connect(RedisConfig {
        room_ttl: Some(Duration::from_millis(500)),
        ..patient(config(redis.url(), "gone:"))
    })
    .await
    .unwrap();
    join_and_leave(&broker, 200).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(room_keys(&redis, "gone:").await, []);
    // The node unsubscribes in the background: the index is emptied once it has.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let page = broker.rooms(None, 100).await.unwrap();
        assert_eq!(page.rooms, [], "no room is left to list");
        let indexed = redis.command(&["ZCARD", "gone:rooms"]).await;
        if indexed.as_deref() == Some(":0\r\n") {
            break;
        }
        assert!(Instant::now() < deadline, "still indexed: {indexed:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A page of rooms examines a bounded number of names once it has a room to list: a flood of
/// made-up names (joined and left, so gone) is not read in one call; each page removes the gone
/// names it passes, so the next ones make progress (the review's M4).
#[tokio::test]
async fn a_page_of_rooms_passes_a_bounded_number_of_gone_names() {
    let redis = RedisServer::start().await;
    let broker = RedisBroker::connect(patient(config(redis.url(), "flood:")))
        .await
        .unwrap();
    for room in ["a", "z"] {
        broker.publish(message(room, "hi", None)).await.unwrap();
    }
    let mut add = vec!["ZADD", "flood:rooms"];
    let gone: Vec<String> = (0..2500).map(|i| format!("g-{i:04}")).collect();
    for name in &gone {
        add.extend(["0", name.as_str()]);
    }
    add.extend(["0", "a", "0", "z"]);
    assert!(redis.command(&add).await.is_some());
    let names = |page: &skat_broker::RoomsPage| -> Vec<String> {
        page.rooms.iter().map(|room| room.name.clone()).collect()
    };
    let first = broker.rooms(None, 10).await.unwrap();
    assert_eq!(
        (names(&first), first.has_more),
        (vec!["a".to_owned()], true)
    );
    let indexed = redis.command(&["ZCARD", "flood:rooms"]).await.unwrap();
    let left: usize = indexed.trim_start_matches(':').trim().parse().unwrap();
    assert!(
        (1400..2502).contains(&left),
        "{left} names left after one page"
    );
    // A page with nothing to list yet reads on to the next room.
    let second = broker.rooms(Some("a"), 10).await.unwrap();
    assert_eq!(
        (names(&second), second.has_more),
        (vec!["z".to_owned()], false)
    );
    let indexed = redis.command(&["ZCARD", "flood:rooms"]).await;
    assert_eq!(indexed.as_deref(), Some(":2\r\n"));
}

/// A room with history lives while it is used: a publish or a join gives it the whole TTL again.
/// Idle for the TTL, its history, epoch and index entry go; a client resuming from the old
/// history then recovers nothing (`recovered: false`), with or without the epoch it had.
#[tokio::test]
async fn an_idle_room_expires_and_resuming_from_its_history_recovers_nothing() {
    let redis = RedisServer::start().await;
    let ttl = Duration::from_millis(800);
    let broker = RedisBroker::connect(RedisConfig {
        room_ttl: Some(ttl),
        // Nonces are remembered for a while too, but never for good.
        dedup_window: ttl,
        ..config(redis.url(), "idle:")
    })
    .await
    .unwrap();
    let sub = skat_broker::conformance::listen(&broker, "general")
        .await
        .unwrap();
    let joined = broker
        .join_snapshot("general", "bob", false, resume())
        .await
        .unwrap();
    let old = broker
        .publish(message("general", "old", Some("n1")))
        .await
        .unwrap()
        .into_message()
        .unwrap();
    // Used more often than the TTL: kept.
    for i in 0..3 {
        tokio::time::sleep(ttl / 2).await;
        if i % 2 == 0 {
            broker
                .publish(message("general", "more", Some(&format!("m{i}"))))
                .await
                .unwrap();
        } else {
            broker
                .join_snapshot("general", "bob", false, resume())
                .await
                .unwrap();
        }
    }
    assert_eq!(
        broker
            .history("general", None, 10)
            .await
            .unwrap()
            .messages
            .len(),
        3
    );
    for (key, ttl_left) in room_keys(&redis, "idle:").await {
        assert!(ttl_left > 0, "{key} has no TTL");
    }
    // Idle past the TTL: gone, and off the index once unused.
    drop(sub);
    tokio::time::sleep(ttl + Duration::from_millis(300)).await;
    assert_eq!(room_keys(&redis, "idle:").await, []);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !broker.rooms(None, 10).await.unwrap().rooms.is_empty()
        || redis.command(&["ZCARD", "idle:rooms"]).await.as_deref() != Some(":0\r\n")
    {
        assert!(Instant::now() < deadline, "still listed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The room starts over; a client of its old history resumes.
    let new = broker
        .publish(message("general", "new", Some("n2")))
        .await
        .unwrap()
        .into_message()
        .unwrap();
    for epoch in [Some(joined.epoch.as_str()), None] {
        let snapshot = broker
            .join_snapshot(
                "general",
                "bob",
                false,
                Resume {
                    since: Some(old.id),
                    epoch,
                    ..resume()
                },
            )
            .await
            .unwrap();
        assert!(!snapshot.recovered, "epoch {epoch:?}");
        assert_eq!(snapshot.messages, std::slice::from_ref(&new));
        assert_ne!(snapshot.epoch, joined.epoch, "a new history, a new epoch");
    }
}

/// Review L2: the dedup key of a publish that came without a nonce (the node's own, `sent:`)
/// only has to outlive the node's own retries of that publish, which all start within a couple
/// of command timeouts: it lives a few command timeouts, not the whole dedup window (at 10k
/// messages a second, 2 minutes of them is hundreds of MB of Redis memory). A sender's nonce
/// is still remembered for the whole window, as its client may send again much later.
#[tokio::test]
async fn the_nodes_own_nonces_live_a_few_command_timeouts_not_the_dedup_window() {
    let redis = RedisServer::start().await;
    let broker = RedisBroker::connect(config(redis.url(), "nonce:"))
        .await
        .unwrap();
    broker
        .publish(message("general", "own", None))
        .await
        .unwrap();
    broker
        .publish(message("general", "senders", Some("n1")))
        .await
        .unwrap();
    let keys = room_keys(&redis, "nonce:").await;
    let ttl = |kind: &str| {
        let found: Vec<i64> = keys
            .iter()
            .filter(|(key, _)| key.contains(kind))
            .map(|(_, ttl)| *ttl)
            .collect();
        assert_eq!(found.len(), 1, "one {kind} key in {keys:?}");
        found[0]
    };
    // A command timeout of 0.5 s: retries all start within about 1 s.
    let own = ttl(":sent:");
    assert!(
        (1..=2_500).contains(&own),
        "the node's own nonce lives {own} ms"
    );
    let senders = ttl(":dedup:");
    assert!(
        senders > 100_000,
        "a sender's nonce lives the dedup window, not {senders} ms"
    );
}
