//! Presence across real node processes on one Redis: every node agrees on the members, a node
//! killed with SIGKILL loses its users within the bound (one `offline` each), and a node
//! restarted with the same id brings nothing stale back.

#![allow(clippy::unwrap_used)]

use crate::common;

use std::time::Duration;

use common::process::NodeProcess;
use common::{DEADLINE, join};
use skat_client::Client;
use skat_protocol::ServerFrame;
use skat_testkit::{RedisServer, TempDir};
use tokio::time::Instant;

/// Presence settings of the nodes: a short TTL so the test is quick.
const TTL: Duration = Duration::from_millis(2000);
const HEARTBEAT: Duration = Duration::from_millis(200);

async fn spawn(
    id: &str,
    addr: std::net::SocketAddr,
    redis: &str,
    dir: &std::path::Path,
) -> NodeProcess {
    let (ttl, beat) = (
        TTL.as_millis().to_string(),
        HEARTBEAT.as_millis().to_string(),
    );
    NodeProcess::spawn_with(
        id,
        addr,
        redis,
        dir,
        &[("SKAT_PRESENCE_TTL_MS", &ttl), ("SKAT_HEARTBEAT_MS", &beat)],
    )
    .await
}

async fn client(node: &NodeProcess, name: &str) -> Client {
    Client::connect(&format!("ws://{}/ws", node.addr), name)
        .await
        .unwrap()
}

/// The members a fresh observer on `node` is told when it joins `room` (without itself).
async fn members_seen_from(node: &NodeProcess, room: &str) -> Vec<String> {
    let mut observer = client(node, "observer").await;
    let (members, _, _) = join(&mut observer, room).await;
    members.into_iter().filter(|m| m != "observer").collect()
}

/// Reads `client`'s frames until `marker` (a message body) arrives; returns the presence
/// changes seen before it, as (user, online).
async fn presence_until(client: &mut Client, marker: &str) -> Vec<(String, bool)> {
    let mut seen = Vec::new();
    loop {
        let frame = tokio::time::timeout(DEADLINE * 4, client.next_event())
            .await
            .expect("no frame in time")
            .unwrap();
        match frame {
            ServerFrame::Presence { user, online, .. } => seen.push((user, online)),
            ServerFrame::Message(m) if m.body == marker => return seen,
            _ => {}
        }
    }
}

#[tokio::test]
async fn nodes_agree_on_members_and_a_killed_node_leaves_nothing_behind() {
    let temp = TempDir::new("presence").unwrap();
    let dir = temp.path();
    let redis = RedisServer::start().await;
    let addr_a = common::free_addr();
    let mut a = spawn("node-a", addr_a, &redis.url(), dir).await;
    let b = spawn("node-b", common::free_addr(), &redis.url(), dir).await;

    // Users across both nodes; Carol is on both.
    let mut bob = client(&b, "bob").await;
    join(&mut bob, "general").await;
    let mut alice = client(&a, "alice").await;
    join(&mut alice, "general").await;
    let mut carol_a = client(&a, "carol").await;
    join(&mut carol_a, "general").await;
    let mut carol_b = client(&b, "carol").await;
    join(&mut carol_b, "general").await;
    let mut dave = client(&a, "dave").await;
    join(&mut dave, "general").await;
    dave.leave("general").await.unwrap();
    common::next_where(&mut dave, "left", |f| match f {
        ServerFrame::Left { .. } => Ok(()),
        other => Err(Box::new(other)),
    })
    .await;
    let everyone = ["alice", "bob", "carol"];
    assert_eq!(members_seen_from(&a, "general").await, everyone);
    assert_eq!(members_seen_from(&b, "general").await, everyone);
    // Bob saw each arrival and Dave's departure once (the observers' come and go too).
    bob.send_message("general", "mark-1", None).await.unwrap();
    let seen: Vec<_> = presence_until(&mut bob, "mark-1")
        .await
        .into_iter()
        .filter(|(user, _)| user != "observer")
        .collect();
    let expected = [
        ("alice", true),
        ("carol", true),
        ("dave", true),
        ("dave", false),
    ];
    let expected: Vec<_> = expected
        .iter()
        .map(|(u, o)| ((*u).to_owned(), *o))
        .collect();
    assert_eq!(seen, expected);

    // Node A dies without a word: Alice (only there) goes offline once, within the bound;
    // Carol (also on B) stays.
    let killed = Instant::now();
    a.kill();
    drop((alice, carol_a, dave));
    let offline = loop {
        let frame = tokio::time::timeout(DEADLINE, bob.next_event())
            .await
            .expect("alice never went offline")
            .unwrap();
        if let ServerFrame::Presence { user, online, .. } = frame {
            assert_ne!(user, "carol", "carol is still on node B");
            if user == "alice" {
                assert!(!online);
                break killed.elapsed();
            }
        }
    };
    let bound = TTL + HEARTBEAT * 2 + Duration::from_secs(1);
    assert!(offline <= bound, "alice went offline after {offline:?}");
    assert_eq!(members_seen_from(&b, "general").await, ["bob", "carol"]);

    // Node A comes back with the same id: nothing of its previous life reappears.
    a = spawn("node-a", addr_a, &redis.url(), dir).await;
    assert_eq!(members_seen_from(&a, "general").await, ["bob", "carol"]);
    tokio::time::sleep(TTL).await;
    assert_eq!(members_seen_from(&b, "general").await, ["bob", "carol"]);
    bob.send_message("general", "mark-2", None).await.unwrap();
    let after: Vec<_> = presence_until(&mut bob, "mark-2")
        .await
        .into_iter()
        .filter(|(user, _)| user != "observer")
        .collect();
    assert!(
        after.is_empty(),
        "stale presence after the restart: {after:?}"
    );
    // And it serves as before.
    let mut erin = client(&a, "erin").await;
    let (members, _, _) = join(&mut erin, "general").await;
    assert_eq!(members, ["bob", "carol", "erin"]);
    erin.send_message("general", "back", None).await.unwrap();
    presence_until(&mut carol_b, "back").await;
    drop(a);
}
