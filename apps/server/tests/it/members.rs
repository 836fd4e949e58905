//! A room's members over real sockets: `joined` lists the first 1000 by name and says more
//! follow, `members` requests (and the API's members page) page through the rest, on the
//! embedded broker and on Redis; only members may ask, within the request budget.

#![allow(clippy::unwrap_used, clippy::result_large_err)]

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use common::http::request;
use common::{Node, error, join, next, next_where, test_config};
use skat_broker::{Broker, MemoryBroker, RedisBroker, RedisConfig};
use skat_client::Client;
use skat_protocol::{ClientFrame, ErrorCode, MAX_MEMBERS_LIMIT, ServerFrame};
use skat_server::auth::ApiKey;
use skat_server::{Limits, ServerConfig};
use skat_testkit::RedisServer;

/// More members than `joined` lists.
const CROWD: usize = 2345;

/// The crowd's names, sorted (zero-padded, so name order is number order).
fn crowd() -> Vec<String> {
    (0..CROWD).map(|i| format!("u{i:04}")).collect()
}

/// Puts the crowd in `room` through `broker` (as other nodes' users would be), then has
/// `zed` join over a socket.
async fn crowded_room<B: Broker>(broker: &B, node: &Node, room: &str) -> Client {
    for names in crowd().chunks(100) {
        let joins = names.iter().map(|name| broker.presence_join(room, name));
        futures_util::future::try_join_all(joins).await.unwrap();
    }
    let mut zed = node.client("zed").await;
    zed.join(room).await.unwrap();
    zed
}

/// Reads `joined`, then pages with `members` from its cursor; returns (what `joined` listed,
/// everything after, each page's size).
async fn join_and_page(
    client: &mut Client,
    room: &str,
    limit: Option<u32>,
) -> (Vec<String>, Vec<String>, Vec<usize>) {
    let (first, mut after) = next_where(client, "joined", |f| match f {
        ServerFrame::Joined {
            members,
            more_members,
            ..
        } => {
            let after = more_members.then(|| members.last().cloned()).flatten();
            Ok((members, after))
        }
        other => Err(Box::new(other)),
    })
    .await;
    let (mut rest, mut sizes) = (Vec::new(), Vec::new());
    while let Some(cursor) = after {
        client
            .send_frame(&ClientFrame::Members {
                room: room.into(),
                after: Some(cursor),
                limit,
            })
            .await
            .unwrap();
        let (members, next) = next_where(client, "members", |f| match f {
            ServerFrame::Members {
                room: r,
                members,
                next,
            } if r == room => Ok((members, next)),
            other => Err(Box::new(other)),
        })
        .await;
        sizes.push(members.len());
        rest.extend(members);
        after = next;
    }
    (first, rest, sizes)
}

/// The whole check, on any broker: `joined` has the bound and the cursor, the pages give every
/// member exactly once and in order.
async fn pages_every_member_once<B: Broker>(broker: &B, node: &Node, room: &str) {
    let mut zed = crowded_room(broker, node, room).await;
    let (first, rest, sizes) = join_and_page(&mut zed, room, Some(500)).await;
    let bound = MAX_MEMBERS_LIMIT as usize;
    let mut everyone = crowd();
    everyone.push("zed".into());
    assert_eq!(first, everyone[..bound], "joined lists the first {bound}");
    assert_eq!(sizes, [500, 500, 346], "pages of the limit asked for");
    let mut all = first;
    all.extend(rest);
    assert_eq!(all, everyone, "every member exactly once, in name order");

    // Without a limit, the largest page.
    zed.members(room, Some("u0999")).await.unwrap();
    let (page, next) = next_where(&mut zed, "members", |f| match f {
        ServerFrame::Members { members, next, .. } => Ok((members, next)),
        other => Err(Box::new(other)),
    })
    .await;
    assert_eq!(page, everyone[1000..2000]);
    assert_eq!(next.as_deref(), Some("u1999"));
}

#[tokio::test]
async fn a_crowded_rooms_members_are_bounded_in_joined_and_paged_with_members() {
    let broker = Arc::new(MemoryBroker::default());
    let node = Node::start_with(Arc::clone(&broker), test_config()).await;
    pages_every_member_once(&*broker, &node, "crowd").await;

    // A room within the bound: everyone in `joined`, no cursor.
    let mut amy = node.client("amy").await;
    let (first, rest, _) = {
        amy.join("small").await.unwrap();
        join_and_page(&mut amy, "small", None).await
    };
    assert_eq!((first, rest), (vec!["amy".to_owned()], vec![]));
}

#[tokio::test]
async fn a_crowded_rooms_members_page_the_same_on_redis() {
    let redis = RedisServer::start().await;
    // Patient with a busy machine: thousands of presence writes in a few seconds.
    let broker = |node: &str| {
        RedisBroker::connect(RedisConfig {
            command_timeout: Duration::from_secs(5),
            ..common::redis_config(&redis.url(), "crowd:", node, 100)
        })
    };
    let config = ServerConfig {
        node_id: "node-a".into(),
        ..test_config()
    };
    let node = Node::start_with(Arc::new(broker("node-a").await.unwrap()), config).await;
    // The crowd is held by another node.
    let other = broker("node-b").await.unwrap();
    pages_every_member_once(&other, &node, "crowd").await;
}

#[tokio::test]
async fn members_is_for_members_only_and_checked_like_history() {
    let node = Node::start_with(
        Arc::new(MemoryBroker::default()),
        ServerConfig {
            limits: Limits {
                joins_per_sec: 1,
                max_rooms_per_conn: 5,
                ..test_config().limits
            },
            ..test_config()
        },
    )
    .await;
    let mut alice = node.client("alice").await;
    join(&mut alice, "general").await;
    let mut bob = node.client("bob").await;

    bob.members("general", None).await.unwrap();
    assert_eq!(error(&mut bob).await.0, ErrorCode::NotJoined);
    bob.members("No Room", None).await.unwrap();
    assert_eq!(error(&mut bob).await.0, ErrorCode::InvalidRoom);

    let ask = |after: Option<&str>, limit| ClientFrame::Members {
        room: "general".into(),
        after: after.map(Into::into),
        limit,
    };
    for (frame, code) in [
        (ask(None, Some(0)), ErrorCode::InvalidLimit),
        (ask(None, Some(1001)), ErrorCode::InvalidLimit),
        (ask(Some("not a name"), None), ErrorCode::InvalidName),
    ] {
        alice.send_frame(&frame).await.unwrap();
        assert_eq!(error(&mut alice).await.0, code, "{frame:?}");
    }

    // Members requests draw on the join/history budget: the burst (10, of which the join and
    // the three refused requests took four), then one a second.
    let (mut pages, mut limited) = (0, 0);
    for _ in 0..15 {
        alice.send_frame(&ask(None, Some(1))).await.unwrap();
    }
    for _ in 0..15 {
        match next(&mut alice).await {
            ServerFrame::Members { members, next, .. } => {
                assert_eq!((members, next), (vec!["alice".to_owned()], None));
                pages += 1;
            }
            ServerFrame::Error {
                code: ErrorCode::RateLimited,
                ..
            } => limited += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!((5..=8).contains(&pages), "{pages} pages served");
    assert_eq!(pages + limited, 15);
}

#[tokio::test]
async fn the_apis_members_are_paged_the_same_way() {
    const KEY: &str = "an-api-key-for-the-tests";
    let broker = Arc::new(MemoryBroker::default());
    let config = ServerConfig {
        api_key: Some(ApiKey::new(KEY).unwrap()),
        ..test_config()
    };
    let node = Node::start_with(Arc::clone(&broker), config).await;
    for name in ["carol", "alice", "dave", "bob", "erin"] {
        broker.presence_join("general", name).await.unwrap();
    }
    let get = |query: &'static str| {
        let auth = format!("Authorization: Bearer {KEY}\r\n");
        let addr = node.addr;
        async move {
            let path = format!("/api/v1/rooms/general/members{query}");
            let response = request(addr, "GET", &path, &auth, "").await;
            (response.status(), response.text())
        }
    };
    assert_eq!(
        get("?limit=2").await,
        (
            200,
            r#"{"room":"general","members":["alice","bob"],"next":"bob"}"#.into()
        )
    );
    assert_eq!(
        get("?after=bob&limit=2").await.1,
        r#"{"room":"general","members":["carol","dave"],"next":"dave"}"#
    );
    assert_eq!(
        get("?after=dave&limit=2").await.1,
        r#"{"room":"general","members":["erin"]}"#
    );
    assert_eq!(
        get("").await.1,
        r#"{"room":"general","members":["alice","bob","carol","dave","erin"]}"#
    );
    for bad in ["?limit=0", "?limit=1001"] {
        let (status, body) = get(bad).await;
        assert_eq!(status, 400, "{bad}");
        assert!(body.contains(r#""code":"invalid_limit""#), "{bad}: {body}");
    }
    let (status, body) = get("?after=a%20b").await;
    assert_eq!(status, 400);
    assert!(body.contains(r#""code":"invalid_name""#), "{body}");
}
