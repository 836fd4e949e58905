//! What the conformance suite of changes cannot see of the Redis backend (issue 22): where a
//! change leaves its data in Redis (a deleted body gone from every key, a plain message's entry
//! unchanged, side keys trimmed with the stream), a change missed live and delivered by gap
//! repair, and the recovery scripts counting the same bytes as the protocol crate.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use redis::AsyncCommands as _;
use skat_broker::conformance::{self, change, changed, edit, listen, next_event, react};
use skat_broker::{
    Broker, ChangeKind, MessageId, NewMessage, Published, Recovery, RedisBroker, RedisConfig,
    RoomEvent, change_size,
};
use skat_protocol::message_size;
use skat_testkit::RedisServer;

fn config(redis: &RedisServer, node: &str, stream_len: usize) -> RedisConfig {
    RedisConfig {
        prefix: "life:".to_owned(),
        stream_len,
        presence_ttl: Duration::from_millis(1000),
        heartbeat: Duration::from_millis(200),
        command_timeout: Duration::from_secs(2),
        ..RedisConfig::new(redis.url(), node)
    }
}

async fn connect(redis: &RedisServer, node: &str, stream_len: usize) -> RedisBroker {
    RedisBroker::connect(config(redis, node, stream_len))
        .await
        .unwrap()
}

async fn conn(redis: &RedisServer) -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(redis.url()).unwrap();
    client.get_multiplexed_async_connection().await.unwrap()
}

/// A room's key of `kind`.
fn key(room: &str, kind: &str) -> String {
    format!("life:{{{room}}}:{kind}")
}

/// Everything Redis holds of `room`'s history and its side keys, as text.
async fn dump(con: &mut redis::aio::MultiplexedConnection, room: &str) -> String {
    let stream: Vec<(String, Vec<String>)> = redis::cmd("XRANGE")
        .arg(key(room, "stream"))
        .arg("-")
        .arg("+")
        .query_async(con)
        .await
        .unwrap();
    let state: Vec<(String, String)> = con.hgetall(key(room, "state")).await.unwrap();
    let gone: Vec<String> = con.zrange(key(room, "gone"), 0, -1).await.unwrap();
    let erased: Vec<String> = con.zrange(key(room, "erased"), 0, -1).await.unwrap();
    format!("{stream:?} {state:?} {gone:?} {erased:?}")
}

fn reply(room: &str, to: MessageId, body: &str) -> NewMessage {
    NewMessage {
        room: room.into(),
        from: "bob".into(),
        body: body.into(),
        nonce: Some(format!("re-{body}")),
        reply_to: Some(to),
    }
}

async fn publish(broker: &RedisBroker, new: NewMessage) -> skat_broker::Message {
    match broker.publish(new).await.unwrap() {
        Published::New(message) => message,
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_plain_message_is_stored_as_before_and_a_deleted_body_is_gone_from_redis() {
    let redis = RedisServer::start().await;
    let broker = connect(&redis, "node-a", 100).await;
    let mut con = conn(&redis).await;
    let room = "r";
    let plain = conformance::publish_n(&broker, room, 1).await;
    let secret = publish(&broker, reply(room, plain[0].id, "secret-one")).await;
    let entries: Vec<(String, Vec<String>)> = redis::cmd("XRANGE")
        .arg(key(room, "stream"))
        .arg("-")
        .arg("+")
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(
        entries[0].1,
        [
            "d",
            &format!(
                "alice\n{}\n{}m0",
                plain[0].nonce.as_ref().unwrap().len(),
                plain[0].nonce.as_ref().unwrap()
            )
        ],
        "a plain message's entry has the one field it always had"
    );
    assert_eq!(entries[1].1[2..], ["y".to_owned(), plain[0].id.to_string()]);

    changed(&broker, change(room, secret.id, "bob", edit("secret-two"))).await;
    changed(&broker, change(room, secret.id, "carol", react("👍", true))).await;
    assert!(dump(&mut con, room).await.contains("secret-two"));
    changed(&broker, change(room, secret.id, "bob", ChangeKind::Delete)).await;
    let text = dump(&mut con, room).await;
    assert!(!text.contains("secret"), "{text}");
    let state: Vec<(String, String)> = con.hgetall(key(room, "state")).await.unwrap();
    assert_eq!(
        state,
        [("changes".to_owned(), "2".to_owned())],
        "its overlay and reactors went too (the reaction and the delete are the stream's changes)"
    );
    let reactors: i64 = con.exists(key(room, "reactors")).await.unwrap();
    assert_eq!(reactors, 0, "and its reactors' order");
    let page = broker.history(room, None, 10).await.unwrap().messages;
    assert_eq!(page.len(), 2);
    assert!(page[1].is_deleted());
    assert_eq!(page[1].from, "bob");
}

#[tokio::test]
async fn overlays_and_tombstones_are_trimmed_with_the_stream() {
    let redis = RedisServer::start().await;
    let broker = connect(&redis, "node-a", 8).await;
    let mut con = conn(&redis).await;
    let room = "trim";
    let sent = conformance::publish_n(&broker, room, 3).await;
    changed(&broker, change(room, sent[0].id, "alice", edit("e0"))).await;
    changed(&broker, change(room, sent[1].id, "bob", react("🎉", true))).await;
    changed(&broker, change(room, sent[2].id, "alice", edit("e2"))).await;
    changed(
        &broker,
        change(room, sent[2].id, "alice", ChangeKind::Delete),
    )
    .await;
    let exists = |kind: &'static str| {
        let mut con = con.clone();
        async move {
            let n: i64 = con.exists(key(room, kind)).await.unwrap();
            n
        }
    };
    for kind in ["state", "gone", "erased", "reactors"] {
        assert_eq!(exists(kind).await, 1, "{kind}");
    }
    // Five entries more: the stream's first is past every changed message and every change.
    conformance::publish_n(&broker, room, 8).await;
    for kind in ["state", "gone", "erased", "reactors"] {
        assert_eq!(exists(kind).await, 0, "{kind} is trimmed with the stream");
    }
    let len: usize = con.xlen(key(room, "stream")).await.unwrap();
    assert_eq!(len, 8);
}

#[tokio::test]
async fn a_change_missed_live_is_delivered_by_gap_repair() {
    let redis = RedisServer::start().await;
    let a = connect(&redis, "node-a", 1000).await;
    let b = connect(&redis, "node-b", 1000).await;
    let room = "gap";
    let mut sub = listen(&a, room).await.unwrap();
    let first = conformance::publish_n(&b, room, 2).await;
    for message in &first {
        assert_eq!(
            next_event(&mut sub).await,
            RoomEvent::Message(message.clone())
        );
    }
    let epoch = a.epoch(room).await.unwrap();
    let mut con = conn(&redis).await;
    let killed: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("pubsub")
        .query_async(&mut con)
        .await
        .unwrap();
    assert!(killed >= 1);
    // Missed live: an edit, a reaction, a deletion (which takes the edit's entry out of the
    // stream: the catch-up delivers what the stream still holds, in id order).
    let edited = changed(&b, change(room, first[0].id, "alice", edit("e0"))).await;
    let reacted = changed(&b, change(room, first[1].id, "bob", react("👍", true))).await;
    let deleted = changed(&b, change(room, first[1].id, "alice", ChangeKind::Delete)).await;
    let after = conformance::publish_n(&b, room, 1).await;
    for expected in [edited, reacted, deleted] {
        assert_eq!(next_event(&mut sub).await, RoomEvent::Change(expected));
    }
    assert_eq!(
        next_event(&mut sub).await,
        RoomEvent::Message(after[0].clone())
    );
    assert_eq!(a.stats().catch_ups, 1, "{:?}", a.stats());
    assert_eq!(sub.try_recv(), None, "each once");
    assert_eq!(
        a.epoch(room).await.unwrap(),
        epoch,
        "the message delivered last was deleted, not lost: the history goes on"
    );
}

/// The recovery scripts count a message with extras (a reply, an edit, reactions, a
/// tombstone) and a change exactly as the Rust side does: a bound of exactly their sizes
/// recovers them, one byte less does not.
#[tokio::test]
async fn recovery_bounds_count_the_bytes_the_protocol_counts() {
    let redis = RedisServer::start().await;
    let broker = connect(&redis, "node-a", 100).await;
    let room = "size\"\u{1}";
    let sent = conformance::publish_n(&broker, room, 2).await;
    let since = sent[1].id;
    let answer = publish(&broker, reply(room, sent[0].id, "quote \"me\"\n")).await;
    let gone = publish(&broker, reply(room, sent[0].id, "bye")).await;
    changed(
        &broker,
        change(room, answer.id, "bob", edit("edited\t\u{2}é")),
    )
    .await;
    for user in ["ann", "b\"o", "cé"] {
        changed(&broker, change(room, answer.id, user, react("👍", true))).await;
    }
    changed(&broker, change(room, answer.id, "ann", react("🎉", true))).await;
    changed(&broker, change(room, gone.id, "bob", ChangeKind::Delete)).await;
    let mut to_older = change(room, sent[0].id, "alice", edit("older \\ one"));
    to_older.nonce = Some("n\u{3}".into());
    changed(&broker, to_older).await;
    changed(&broker, change(room, sent[1].id, "dé", react("🚀", true))).await;

    let all = broker
        .recover(room, since, Recovery::count(100))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(all.messages.len(), 2);
    assert!(all.messages[0].edited().is_some() && all.messages[0].reactions().len() == 2);
    assert!(all.messages[0].reply_to().is_some());
    assert!(all.messages[1].is_deleted());
    assert_eq!(all.changes.len(), 2);
    let bytes: usize = all.messages.iter().map(message_size).sum::<usize>()
        + all.changes.iter().map(change_size).sum::<usize>();
    let within = |max_bytes| Recovery {
        limit: 100,
        max_bytes,
    };
    assert_eq!(
        broker
            .recover(room, since, within(bytes))
            .await
            .unwrap()
            .as_ref(),
        Some(&all)
    );
    assert_eq!(
        broker
            .recover(room, since, within(bytes - 1))
            .await
            .unwrap(),
        None
    );
}

#[tokio::test]
async fn an_unread_count_reads_a_bounded_part_of_the_stream() {
    let redis = RedisServer::start().await;
    let broker = connect(&redis, "node-a", 5000).await;
    let mut con = conn(&redis).await;
    let cap = skat_protocol::UNREAD_CAP;
    // Messages only: no `changes` count, and a user without a marker is answered from XLEN.
    let room = "unread";
    let sent = conformance::publish_n(&broker, room, 3).await;
    let changes = |con: &mut redis::aio::MultiplexedConnection| {
        let mut con = con.clone();
        async move {
            let n: Option<i64> = con.hget(key(room, "state"), "changes").await.unwrap();
            n
        }
    };
    assert_eq!(changes(&mut con).await, None);
    assert_eq!(
        broker
            .read(room, "cy", MessageId::MIN)
            .await
            .unwrap()
            .unread,
        3
    );
    broker.read(room, "ann", sent[0].id).await.unwrap();
    // Far more change entries after ann's marker than the scan reads, then a message.
    let rounds = cap as usize + 10;
    let mut last = sent[2].id;
    for _ in 0..rounds {
        changed(&broker, change(room, sent[0].id, "bob", react("🎉", true))).await;
        last = changed(&broker, change(room, sent[0].id, "bob", react("🎉", false)))
            .await
            .id()
            .unwrap();
    }
    assert_eq!(changes(&mut con).await, Some(2 * rounds as i64));
    conformance::publish_n(&broker, room, 1).await;
    // The scan stops at twice the cap entries and answers the room's count of messages (XLEN
    // less the change entries): never fewer than are unread (3 after ann's marker), here the
    // room's 4, not the cap.
    let ann = broker.read(room, "ann", MessageId::MIN).await.unwrap();
    assert_eq!(
        ann.unread, 4,
        "past the bound: the room's count of messages"
    );
    let cy = broker.read(room, "cy", MessageId::MIN).await.unwrap();
    assert_eq!(cy.unread, 4, "from the start, bounded too: every message");
    // A marker past the changes counts exactly again.
    let near = broker.read(room, "bob", last).await.unwrap();
    assert_eq!(near.unread, 1);
}

#[tokio::test]
async fn deletes_of_much_edited_messages_keep_the_room_bounded() {
    let redis = RedisServer::start().await;
    let stream_len = 20;
    let broker = connect(&redis, "node-a", stream_len).await;
    let mut con = conn(&redis).await;
    let room = "erase";
    let first = conformance::publish_n(&broker, room, 1).await;
    for round in 0..15 {
        let sent = conformance::publish_n(&broker, room, 1).await;
        for i in 0..12 {
            changed(
                &broker,
                change(room, sent[0].id, "alice", edit(&format!("{round}.{i}"))),
            )
            .await;
        }
        changed(
            &broker,
            change(room, sent[0].id, "alice", ChangeKind::Delete),
        )
        .await;
        let len: usize = con.xlen(key(room, "stream")).await.unwrap();
        let gone: usize = con.zcard(key(room, "gone")).await.unwrap();
        let erased: usize = con.zcard(key(room, "erased")).await.unwrap();
        assert!(
            len + gone + erased <= stream_len,
            "round {round}: {len} entries, {gone} tombstones, {erased} erased edits"
        );
    }
    // What the deletes trimmed is not recoverable; the latest delete's place is.
    let old = broker
        .recover(room, first[0].id, Recovery::count(100))
        .await
        .unwrap();
    assert!(old.is_none(), "{old:?}");
    let latest = conformance::publish_n(&broker, room, 1).await;
    let recent = broker
        .recover(room, latest[0].id, Recovery::count(100))
        .await
        .unwrap();
    assert!(recent.is_some());
}

/// With a room TTL, the epoch and side keys outlive the stream: a publish gives them more than the
/// stream's TTL when the epoch has less than it left (not on every publish: the hot path), and a
/// publish that starts a history deletes the side keys an older one left.
#[tokio::test]
async fn with_a_room_ttl_the_side_keys_outlive_the_stream_and_not_its_history() {
    let redis = RedisServer::start().await;
    let ttl = Duration::from_secs(60);
    let broker = RedisBroker::connect(RedisConfig {
        room_ttl: Some(ttl),
        ..config(&redis, "node-a", 100)
    })
    .await
    .unwrap();
    let mut con = conn(&redis).await;
    let room = "ttl";
    let sent = conformance::publish_n(&broker, room, 1).await;
    changed(&broker, change(room, sent[0].id, "bob", react("👍", true))).await;
    broker.read(room, "bob", sent[0].id).await.unwrap();
    let reader = con.clone();
    let left = |kind: &'static str| {
        let mut con = reader.clone();
        async move {
            let ms: i64 = con.pttl(key(room, kind)).await.unwrap();
            ms
        }
    };
    // Fresh: a publish leaves them as they are. (A join makes the epoch; without one, as here
    // so far, every publish gives them their lifetime.)
    let _: () = con.set(key(room, "epoch"), "1.000001").await.unwrap();
    for kind in ["state", "read", "reactors", "epoch"] {
        let _: bool = con.pexpire(key(room, kind), 70_000).await.unwrap();
    }
    conformance::publish_n(&broker, room, 1).await;
    for kind in ["state", "read", "reactors", "epoch"] {
        let ms = left(kind).await;
        assert!(ms <= 70_000 && ms > 60_000, "{kind}: {ms} ms");
    }
    // Due (the epoch has less than the stream's TTL left): all of them get more than the stream.
    for kind in ["state", "read", "reactors", "epoch"] {
        let _: bool = con.pexpire(key(room, kind), 1000).await.unwrap();
    }
    conformance::publish_n(&broker, room, 1).await;
    let stream = left("stream").await;
    for kind in ["state", "read", "reactors", "epoch"] {
        let ms = left(kind).await;
        assert!(ms > stream, "{kind}: {ms} ms, the stream {stream} ms");
    }
    for kind in ["gone", "erased"] {
        let n: i64 = con.exists(key(room, kind)).await.unwrap();
        assert_eq!(n, 0, "{kind} is not made by an expiry");
    }
    // The stream went (expired) before its side keys: a new history does not inherit them.
    let _: i64 = con.del(key(room, "stream")).await.unwrap();
    conformance::publish_n(&broker, room, 1).await;
    for kind in ["state", "read", "reactors"] {
        let n: i64 = con.exists(key(room, kind)).await.unwrap();
        assert_eq!(n, 0, "{kind} outlived its history");
    }
}
