//! Presence and the node claim of the Redis backend under faults, against a real `redis-server`
//! (some through the testkit's [`Proxy`], which partitions one node): node ids, sweeps of
//! partitioned and dead nodes, lost replies, clocks, and the work a heartbeat does.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use skat_broker::conformance::{self, Listener, listen, next_event};
use skat_broker::{
    Broker, ConfigError, RedisBroker, RedisBrokerError, RedisConfig, RedisSubscription, RoomEvent,
};
use skat_testkit::{Proxy, RedisServer};
use tokio::time::Instant;

fn config(url: String, prefix: &str, node: &str) -> RedisConfig {
    RedisConfig {
        prefix: prefix.to_owned(),
        stream_len: 100,
        presence_ttl: Duration::from_millis(1000),
        heartbeat: Duration::from_millis(200),
        command_timeout: Duration::from_millis(500),
        ..RedisConfig::new(url, node)
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Runs `args` on `redis` and checks it answered without an error.
async fn run(redis: &RedisServer, args: &[&str]) -> String {
    let reply = redis.command(args).await.unwrap();
    assert!(!reply.starts_with('-'), "{args:?}: {reply}");
    reply
}

/// Writes what a live node instance holding `user` in `room` leaves in Redis, as a node of
/// another version would: its claim, registry stamp, room list and entry.
async fn fake_instance(redis: &RedisServer, prefix: &str, instance: &str, stamp: u64, live: bool) {
    let (id, token) = instance.rsplit_once(':').unwrap();
    if live {
        let claim = format!("{prefix}node:{id}");
        run(redis, &["SET", &claim, token, "PX", "60000"]).await;
    }
    let nodes = format!("{prefix}nodes");
    run(redis, &["ZADD", &nodes, &stamp.to_string(), instance]).await;
}

/// Adds `user` to `room` as held by `instance` (set, count, names index and room list).
async fn fake_entry(redis: &RedisServer, prefix: &str, instance: &str, room: &str, user: &str) {
    let list = format!("{prefix}instance:{instance}:rooms");
    run(redis, &["SADD", &list, room]).await;
    let held = format!("{prefix}{{{room}}}:held:{instance}");
    run(redis, &["SADD", &held, user]).await;
    let users = format!("{prefix}{{{room}}}:users");
    run(redis, &["HINCRBY", &users, user, "1"]).await;
    let names = format!("{prefix}{{{room}}}:names");
    run(redis, &["ZADD", &names, "0", user]).await;
}

/// Item 15: an id with a `:` is refused before anything is written, with the reason.
#[tokio::test]
async fn a_node_id_with_a_colon_is_refused() {
    let redis = RedisServer::start().await;
    let refused = RedisBroker::connect(config(redis.url(), "ids:", "chat:2")).await;
    let Err(RedisBrokerError::Config(ConfigError::NodeId(err))) = refused else {
        panic!("{refused:?}");
    };
    assert!(err.to_string().contains("\"chat:2\""), "{err}");
    assert_eq!(run(&redis, &["DBSIZE"]).await, ":0\r\n", "nothing written");
}

/// Item 15: a starting node sweeps its own previous instances only, never those of a node
/// whose id starts with its own (`chat:2`, as an older version allowed, or `chat2`).
#[tokio::test]
async fn a_starting_node_sweeps_only_instances_of_exactly_its_id() {
    let redis = RedisServer::start().await;
    let prefix = "exact:";
    let now = unix_ms();
    // Live `chat:2` (an older node's id), holding alice.
    fake_instance(&redis, prefix, "chat:2:t1", now, true).await;
    fake_entry(&redis, prefix, "chat:2:t1", "general", "alice").await;
    // A previous, dead instance of `chat` itself, holding carol.
    fake_instance(&redis, prefix, "chat:t0", now, false).await;
    fake_entry(&redis, prefix, "chat:t0", "general", "carol").await;
    // Live `chat2`, a real node, holding bob.
    let chat2 = RedisBroker::connect(config(redis.url(), prefix, "chat2"))
        .await
        .unwrap();
    chat2.presence_join("general", "bob").await.unwrap();

    let chat = RedisBroker::connect(config(redis.url(), prefix, "chat"))
        .await
        .unwrap();
    assert_eq!(
        conformance::all_members(&chat, "general").await,
        ["alice", "bob"],
        "carol's instance was chat's own; alice's and bob's were not"
    );
}

fn presence(room: &str, user: &str, online: bool) -> RoomEvent {
    RoomEvent::Presence {
        room: room.into(),
        user: user.into(),
        online,
    }
}

/// Waits (up to 10 s) until `room` has no members, then checks that every user whose presence
/// `sub` saw change was last announced offline.
async fn empties<S>(broker: &RedisBroker, room: &str, sub: &mut Listener<S>) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let members = conformance::all_members(broker, room).await;
        if members.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{room} keeps {members:?} forever"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut last = BTreeMap::new();
    while let Ok(Some(event)) = tokio::time::timeout(Duration::from_millis(300), sub.recv()).await {
        if let RoomEvent::Presence { user, online, .. } = event {
            last.insert(user, online);
        }
    }
    assert!(last.values().all(|online| !online), "{room}: {last:?}");
}

/// Node A, reaching Redis only through `proxy`, holds alice in `r1`; node B, straight on Redis,
/// listens to `r1` and has heard her come online (`r1` is returned). Each node's keys under
/// `prefix`.
async fn alice_held_through_proxy(
    redis: &RedisServer,
    proxy: &Proxy,
    prefix: &str,
) -> (RedisBroker, RedisBroker, Listener<RedisSubscription>) {
    let a = RedisBroker::connect(config(proxy.url(), prefix, "node-a"))
        .await
        .unwrap();
    let b = RedisBroker::connect(config(redis.url(), prefix, "node-b"))
        .await
        .unwrap();
    let mut r1 = listen(&b, "r1").await.unwrap();
    a.presence_join("r1", "alice").await.unwrap();
    assert_eq!(next_event(&mut r1).await, presence("r1", "alice", true));
    (a, b, r1)
}

/// [`alice_held_through_proxy`], then A is cut off until its claim lapses and B has swept it
/// (alice offline on `r1`).
async fn swept_node(
    redis: &RedisServer,
    proxy: &Proxy,
    prefix: &str,
) -> (RedisBroker, RedisBroker, Listener<RedisSubscription>) {
    let (a, b, mut r1) = alice_held_through_proxy(redis, proxy, prefix).await;
    proxy.set_down(true);
    // A's claim lapses; B sweeps A's instance.
    assert_eq!(next_event(&mut r1).await, presence("r1", "alice", false));
    (a, b, r1)
}

/// Item 2: node A is cut off for longer than the TTL, and B sweeps it. What A writes once Redis
/// is back (before its heartbeat noticed anything) is not left behind when its users leave:
/// whatever A wrote as the swept instance, another sweep finds, or A did not write it.
#[tokio::test]
async fn presence_written_by_a_swept_node_is_never_left_behind() {
    let redis = RedisServer::start().await;
    let proxy = Proxy::start(redis.port()).await;
    let (a, b, mut r1) = swept_node(&redis, &proxy, "part:").await;
    let mut r2 = listen(&b, "r2").await.unwrap();
    assert!(
        a.presence_join("r2", "carol").await.is_err(),
        "A is cut off"
    );
    proxy.set_down(false);
    // At once, before A's heartbeat: bob into a room A holds entries in, carol into another.
    a.presence_join("r1", "bob").await.unwrap();
    a.presence_join("r2", "carol").await.unwrap();
    assert!(
        conformance::all_members(&b, "r1")
            .await
            .contains(&"bob".to_owned())
    );

    // A holds alice again by itself (as a new instance); then everyone leaves A.
    let deadline = Instant::now() + Duration::from_secs(5);
    while conformance::all_members(&b, "r1").await != ["alice", "bob"] {
        assert!(Instant::now() < deadline, "alice never came back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    a.presence_leave("r1", "alice").await.unwrap();
    a.presence_leave("r1", "bob").await.unwrap();
    a.presence_leave("r2", "carol").await.unwrap();
    empties(&b, "r1", &mut r1).await;
    empties(&b, "r2", &mut r2).await;
}

/// Item 5: A's claim lapsed and it claims its id again, as a new instance, but the reply to
/// that claim is lost (held by the proxy until the command timed out). The claim is A's all
/// the same: A must run as that instance and hold its users again, not go on as the swept one.
#[tokio::test]
async fn a_claim_whose_reply_was_lost_is_the_nodes_new_instance() {
    let redis = RedisServer::start().await;
    let proxy = Proxy::start(redis.port()).await;
    let (_a, b, mut r1) = swept_node(&redis, &proxy, "lost:").await;

    // The claim's `SET` runs; its reply comes after A gave up on it.
    proxy.hold_replies_to("SET");
    proxy.set_down(false);
    proxy.holding().await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    proxy.release();

    assert_eq!(next_event(&mut r1).await, presence("r1", "alice", true));
    assert_eq!(conformance::all_members(&b, "r1").await, ["alice"]);
    // The registry names the instance the claim holds: the one A writes as.
    let token = redis.command(&["GET", "lost:node:node-a"]).await.unwrap();
    let token = token.lines().nth(1).unwrap().to_owned();
    let registered = redis
        .command(&["ZRANGE", "lost:nodes", "0", "-1"])
        .await
        .unwrap();
    assert!(
        registered.contains(&format!("node-a:{token}")),
        "{registered}"
    );
}

/// Item 5, the other way a reply is lost: the connection drops after the claim's `SET NX`
/// ran, and the command is sent again, which finds the key set (by itself).
#[tokio::test]
async fn a_claim_sent_twice_is_the_nodes_all_the_same() {
    let redis = RedisServer::start().await;
    let proxy = Proxy::start(redis.port()).await;
    let (_a, b, mut r1) = swept_node(&redis, &proxy, "twice:").await;

    proxy.hold_replies_to("SET");
    proxy.set_down(false);
    proxy.holding().await;
    proxy.cut();
    proxy.release();

    assert_eq!(next_event(&mut r1).await, presence("r1", "alice", true));
    assert_eq!(conformance::all_members(&b, "r1").await, ["alice"]);
}

/// The claim token node `id` holds now.
async fn claim_token(redis: &RedisServer, prefix: &str, id: &str) -> String {
    let reply = redis
        .command(&["GET", &format!("{prefix}node:{id}")])
        .await
        .unwrap();
    reply.lines().nth(1).unwrap_or_default().to_owned()
}

/// Item 9: sweeping dead instances that listed 20,000 rooms takes a node longer than its TTL
/// (0.5 s here). Its claim is kept on its own timer meanwhile: it never lapses, so the node
/// never becomes a new instance (which would sweep and hold all of its own users again).
#[tokio::test]
async fn a_long_sweep_does_not_let_the_sweepers_claim_lapse() {
    const INSTANCES: usize = 4;
    const ROOMS: usize = 5_000;
    let redis = RedisServer::start().await;
    let prefix = "big:";
    let client = redis::Client::open(redis.url()).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    for i in 0..INSTANCES {
        let instance = format!("dead{i}:t");
        let mut pipe = redis::pipe();
        pipe.zadd(format!("{prefix}nodes"), &instance, 0);
        for r in 0..ROOMS {
            let room = format!("room-{r}");
            pipe.sadd(format!("{prefix}instance:{instance}:rooms"), &room)
                .sadd(format!("{prefix}{{{room}}}:held:{instance}"), "u")
                .hincr(format!("{prefix}{{{room}}}:users"), "u", 1)
                .zadd(format!("{prefix}{{{room}}}:names"), "u", 0);
        }
        let () = pipe.query_async(&mut con).await.unwrap();
    }
    let node = RedisBroker::connect(RedisConfig {
        presence_ttl: Duration::from_millis(500),
        heartbeat: Duration::from_millis(100),
        ..config(redis.url(), prefix, "sweeper")
    })
    .await
    .unwrap();
    let token = claim_token(&redis, prefix, "sweeper").await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert_eq!(
            claim_token(&redis, prefix, "sweeper").await,
            token,
            "the claim lapsed during the sweep"
        );
        let registered: i64 = redis::cmd("ZCARD")
            .arg(format!("{prefix}nodes"))
            .query_async(&mut con)
            .await
            .unwrap();
        if registered == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "the sweep never ended");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let left: i64 = redis::cmd("HLEN")
        .arg(format!("{prefix}{{room-4999}}:users"))
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(left, 0);
    assert_eq!(
        conformance::all_members(&node, "room-0").await,
        Vec::<String>::new()
    );
}

/// Item 9: an instance's room list holds the rooms it holds users in, not every room it ever
/// did: a room goes with its last user there, so neither the list nor a sweep of it grows with
/// the node's age.
#[tokio::test]
async fn a_room_leaves_the_instance_list_with_its_last_user() {
    let redis = RedisServer::start().await;
    let node = RedisBroker::connect(config(redis.url(), "list:", "node-a"))
        .await
        .unwrap();
    let token = claim_token(&redis, "list:", "node-a").await;
    let list = format!("list:instance:node-a:{token}:rooms");
    for room in ["r1", "r2", "r3"] {
        node.presence_join(room, "alice").await.unwrap();
    }
    node.presence_join("r1", "bob").await.unwrap();
    let listed = |expected: &'static str| {
        let (redis, list) = (&redis, &list);
        async move {
            let members = redis.command(&["SMEMBERS", list]).await.unwrap();
            let mut rooms: Vec<&str> = members.lines().filter(|l| l.starts_with('r')).collect();
            rooms.sort_unstable();
            assert_eq!(rooms.join(" "), expected);
        }
    };
    listed("r1 r2 r3").await;
    node.presence_leave("r2", "alice").await.unwrap();
    node.presence_leave("r1", "alice").await.unwrap();
    listed("r1 r3").await;
    node.presence_leave("r1", "bob").await.unwrap();
    node.presence_leave("r3", "alice").await.unwrap();
    listed("").await;
    // And a room left is listed again by its next join.
    node.presence_join("r2", "carol").await.unwrap();
    listed("r2").await;
}

/// Item 13: sixteen live instances whose stamps look old (nodes of an older version stamping
/// with slow clocks: their claims are alive) and, behind them, a dead one. Each beat examines
/// the sixteen oldest stamps; the live ones are stamped again on Redis's clock, so they no longer
/// hide the dead one, which is swept.
#[tokio::test]
async fn live_nodes_with_slow_clocks_do_not_hide_a_dead_one() {
    let redis = RedisServer::start().await;
    let prefix = "clocks:";
    for i in 0..16 {
        fake_instance(&redis, prefix, &format!("slow{i}:t"), 1 + i, true).await;
    }
    fake_instance(&redis, prefix, "dead:t", 100, false).await;
    fake_entry(&redis, prefix, "dead:t", "general", "zed").await;
    let node = RedisBroker::connect(config(redis.url(), prefix, "node-a"))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let nodes = format!("{prefix}nodes");
    // Swept: its entries first, its registry entry last.
    while !conformance::all_members(&node, "general").await.is_empty()
        || redis
            .command(&["ZSCORE", &nodes, "dead:t"])
            .await
            .as_deref()
            != Some("$-1\r\n")
    {
        assert!(
            Instant::now() < deadline,
            "the dead instance was never swept"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The live ones are all still registered, stamped on Redis's clock now.
    let time = redis.command(&["TIME"]).await.unwrap();
    let redis_secs: u64 = time.lines().nth(2).unwrap().parse().unwrap();
    let oldest = redis
        .command(&["ZRANGE", &format!("{prefix}nodes"), "0", "0", "WITHSCORES"])
        .await
        .unwrap();
    let oldest_ms: u64 = oldest.lines().nth(4).unwrap().parse().unwrap();
    assert!((redis_secs * 1000).abs_diff(oldest_ms) < 5_000, "{oldest}");
    let registered = redis.command(&["ZCARD", &format!("{prefix}nodes")]).await;
    assert_eq!(registered.as_deref(), Some(":17\r\n"), "16 live and node-a");
}

/// The rooms instance `instance` lists (`instance:<instance>:rooms`), sorted.
async fn listed_rooms(redis: &RedisServer, prefix: &str, instance: &str) -> Vec<String> {
    let list = format!("{prefix}instance:{instance}:rooms");
    let reply = redis.command(&["SMEMBERS", &list]).await.unwrap();
    // `*n`, then `$len` and the name for each member.
    let mut rooms: Vec<String> = reply
        .lines()
        .skip(1)
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect();
    rooms.sort_unstable();
    rooms
}

/// Review H3: A takes a room off its instance's list when its last user there leaves, and the
/// `SREM` runs, but its reply is lost (held past the command timeout). A must not go on
/// believing the room listed: its next join there lists it again, so when A then dies, the
/// sweep finds the entry. Else the user stays online forever.
#[tokio::test]
async fn a_delisting_whose_reply_was_lost_leaves_nothing_for_the_sweep_to_miss() {
    let redis = RedisServer::start().await;
    let proxy = Proxy::start(redis.port()).await;
    let prefix = "delist:";
    let (a, b, mut r1) = alice_held_through_proxy(&redis, &proxy, prefix).await;
    let instance = format!("node-a:{}", claim_token(&redis, prefix, "node-a").await);
    assert_eq!(listed_rooms(&redis, prefix, &instance).await, ["r1"]);

    // The leave's `SREM` runs; its reply comes after A gave up on it.
    proxy.hold_replies_to("SREM");
    a.presence_leave("r1", "alice").await.unwrap();
    assert_eq!(next_event(&mut r1).await, presence("r1", "alice", false));
    assert!(listed_rooms(&redis, prefix, &instance).await.is_empty());
    proxy.release();

    // Alice comes back, then A dies (without giving its id back): B sweeps it.
    a.presence_join("r1", "alice").await.unwrap();
    assert_eq!(next_event(&mut r1).await, presence("r1", "alice", true));
    drop(a);
    empties(&b, "r1", &mut r1).await;
}

/// Waits (up to 5 s) until `room` has no members.
async fn no_members(broker: &RedisBroker, room: &str, why: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !conformance::all_members(broker, room).await.is_empty() {
        assert!(Instant::now() < deadline, "{room}: {why}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Review M1: a leave whose removal keeps failing (its room's key holds the wrong type here; a
/// shard down in a cluster) is tried again every beat, but it does not stop the beat's other
/// work: a dead instance is still swept.
#[tokio::test]
async fn a_removal_that_keeps_failing_does_not_stop_the_sweeping() {
    let redis = RedisServer::start().await;
    let prefix = "stuck:";
    let node = RedisBroker::connect(config(redis.url(), prefix, "node-a"))
        .await
        .unwrap();
    node.presence_join("bad", "alice").await.unwrap();
    let instance = format!("node-a:{}", claim_token(&redis, prefix, "node-a").await);
    let held = format!("{prefix}{{bad}}:held:{instance}");
    run(&redis, &["DEL", &held]).await;
    run(&redis, &["SET", &held, "not a set"]).await;
    assert!(node.presence_leave("bad", "alice").await.is_err());

    fake_instance(&redis, prefix, "dead:t", 100, false).await;
    fake_entry(&redis, prefix, "dead:t", "good", "zed").await;
    no_members(&node, "good", "the dead instance was never swept").await;
}

/// Review M1: a dead instance listed a room whose sweep fails (its key holds the wrong type
/// here; a shard down in a cluster). Its other rooms are swept all the same and taken off its
/// list; the failing one stays listed, for the next sweep.
#[tokio::test]
async fn a_room_whose_sweep_fails_does_not_stop_the_others() {
    let redis = RedisServer::start().await;
    let prefix = "partial:";
    fake_instance(&redis, prefix, "dead:t", 100, false).await;
    for room in ["good-1", "good-2"] {
        fake_entry(&redis, prefix, "dead:t", room, "zed").await;
    }
    let list = format!("{prefix}instance:dead:t:rooms");
    run(&redis, &["SADD", &list, "bad"]).await;
    let held = format!("{prefix}{{bad}}:held:dead:t");
    run(&redis, &["SET", &held, "not a set"]).await;

    let node = RedisBroker::connect(config(redis.url(), prefix, "node-a"))
        .await
        .unwrap();
    no_members(&node, "good-1", "not swept").await;
    no_members(&node, "good-2", "not swept").await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while listed_rooms(&redis, prefix, "dead:t").await != ["bad"] {
        assert!(
            Instant::now() < deadline,
            "{:?}",
            listed_rooms(&redis, prefix, "dead:t").await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Review M1: a node's previous instance listed a room whose sweep fails. The node starts all
/// the same (the rest of that instance is swept later, like any dead one's), having swept its
/// other rooms.
#[tokio::test]
async fn a_previous_instance_partly_swept_does_not_stop_the_start() {
    let redis = RedisServer::start().await;
    let prefix = "restart:";
    fake_instance(&redis, prefix, "node-a:t0", unix_ms(), false).await;
    fake_entry(&redis, prefix, "node-a:t0", "good", "zed").await;
    let list = format!("{prefix}instance:node-a:t0:rooms");
    run(&redis, &["SADD", &list, "bad"]).await;
    let held = format!("{prefix}{{bad}}:held:node-a:t0");
    run(&redis, &["SET", &held, "not a set"]).await;

    let node = RedisBroker::connect(config(redis.url(), prefix, "node-a"))
        .await
        .unwrap();
    assert!(conformance::all_members(&node, "good").await.is_empty());
    assert_eq!(listed_rooms(&redis, prefix, "node-a:t0").await, ["bad"]);
}

/// Waits (up to 5 s) until `broker.is_ready()` is `ready`.
async fn readiness(broker: &RedisBroker, ready: bool) {
    let what = format!("is_ready() never became {ready}");
    conformance::eventually(&what, Duration::from_secs(5), || broker.is_ready() == ready).await;
}

/// Review M2: while the node's claim cannot be kept (here another node took its id, as after a
/// lapse; in a cluster, the claim's shard down), its lease runs out and every presence write is
/// refused: the node is not ready, though its connections are fine. It is ready again once it
/// holds a claim again.
#[tokio::test]
async fn a_node_without_a_lease_is_not_ready() {
    let redis = RedisServer::start().await;
    let prefix = "lease:";
    let node = RedisBroker::connect(config(redis.url(), prefix, "node-a"))
        .await
        .unwrap();
    assert!(node.is_ready());
    let claim = format!("{prefix}node:node-a");
    run(&redis, &["SET", &claim, "another-node", "PX", "60000"]).await;
    readiness(&node, false).await;
    assert!(node.presence_join("r1", "alice").await.is_err());

    run(&redis, &["DEL", &claim]).await;
    readiness(&node, true).await;
    node.presence_join("r1", "alice").await.unwrap();
}
