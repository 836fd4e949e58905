//! Search over real sockets (issue 23, step 5): on a node whose embedded broker keeps a data
//! dir, a member finds messages by words, newest first, paged with `before`, in their current
//! state; a non-member is refused, operators are plain text, bad queries are refused. Where
//! there is no index (no data dir, Redis) the answer is `unsupported`. And the API's route.

#![allow(clippy::unwrap_used)]

use crate::api::{call, error_code, json_of, with_api};
use crate::common;
use crate::common::process::NodeProcess;

use std::sync::Arc;

use common::{Node, error, join, message, next_where, test_config};
use serde_json::Value;
use skat_broker::MemoryBroker;
use skat_client::Client;
use skat_protocol::{ErrorCode, Message, MessageId, ServerFrame};
use skat_testkit::{RedisServer, TempDir};

/// Sends `body` to `room` and waits for its confirmation.
async fn say(client: &mut Client, room: &str, body: &str) -> Message {
    client.send_message(room, body, None).await.unwrap();
    message(client).await
}

/// Searches `room` for `q` and waits for the answer: (bodies newest first, ids, has_more).
async fn search(
    client: &mut Client,
    room: &str,
    q: &str,
    before: Option<MessageId>,
    limit: Option<u32>,
) -> (Vec<String>, Vec<MessageId>, bool) {
    client.search(room, q, before, limit).await.unwrap();
    let (r, got, messages, has_more) = next_where(client, "search", |f| match f {
        ServerFrame::Search {
            room,
            q,
            messages,
            has_more,
        } => Ok((room, q, messages, has_more)),
        other => Err(Box::new(other)),
    })
    .await;
    assert_eq!((r.as_str(), got.as_str()), (room, q));
    let ids = messages.iter().map(|m| m.id).collect();
    (
        messages.into_iter().map(|m| m.body).collect(),
        ids,
        has_more,
    )
}

/// The error a search of `q` in `room` is answered with.
async fn refused(client: &mut Client, room: &str, q: &str, limit: Option<u32>) -> ErrorCode {
    client.search(room, q, None, limit).await.unwrap();
    error(client).await.0
}

#[tokio::test]
async fn members_find_messages_by_their_words() {
    let dir = TempDir::new("search-node").unwrap();
    let node = Node::durable(dir.path(), test_config()).await;
    let mut alice = node.client("alice").await;
    join(&mut alice, "general").await;
    let mut said = Vec::new();
    for body in [
        "deploy the api on friday",
        "lunch on friday?",
        "deploy OR rollback: NOT sure",
        "friday deploy again",
        "unrelated chatter",
    ] {
        said.push(say(&mut alice, "general", body).await);
    }
    let mut bob = node.client("bob").await;
    join(&mut bob, "general").await;

    // Every word, newest first.
    let (bodies, _, more) = search(&mut bob, "general", "deploy friday", None, None).await;
    assert_eq!(bodies, ["friday deploy again", "deploy the api on friday"]);
    assert!(!more);

    // Paged with `before`.
    let (bodies, ids, more) = search(&mut bob, "general", "friday", None, Some(2)).await;
    assert_eq!(bodies, ["friday deploy again", "lunch on friday?"]);
    assert!(more);
    let (bodies, _, more) = search(&mut bob, "general", "friday", Some(ids[1]), Some(2)).await;
    assert_eq!(bodies, ["deploy the api on friday"]);
    assert!(!more);

    // Operators and quotes are plain text.
    let (bodies, _, _) = search(&mut bob, "general", "deploy OR lunch", None, None).await;
    assert!(bodies.is_empty(), "OR is a word: {bodies:?}");
    let (bodies, _, _) = search(&mut bob, "general", r#"NOT "sure""#, None, None).await;
    assert_eq!(bodies, ["deploy OR rollback: NOT sure"]);
    let (bodies, _, _) = search(&mut bob, "general", "lunch* (friday", None, None).await;
    assert_eq!(bodies, ["lunch on friday?"]);

    // The current state: an edited message by its new words only, a deleted one never.
    alice
        .edit("general", said[4].id, "quarterly numbers", None)
        .await
        .unwrap();
    next_where(&mut bob, "edited", |f| match f {
        ServerFrame::Edited(e) => Ok(e),
        other => Err(Box::new(other)),
    })
    .await;
    let (bodies, _, _) = search(&mut bob, "general", "chatter", None, None).await;
    assert!(bodies.is_empty(), "{bodies:?}");
    let (bodies, _, _) = search(&mut bob, "general", "quarterly", None, None).await;
    assert_eq!(bodies, ["quarterly numbers"]);
    alice.delete("general", said[1].id, None).await.unwrap();
    next_where(&mut bob, "deleted", |f| match f {
        ServerFrame::Deleted(d) => Ok(d),
        other => Err(Box::new(other)),
    })
    .await;
    let (bodies, _, _) = search(&mut bob, "general", "lunch", None, None).await;
    assert!(bodies.is_empty(), "{bodies:?}");

    // Member-only: a connection that has not joined the room is refused.
    let mut carol = node.client("carol").await;
    assert_eq!(
        refused(&mut carol, "general", "friday", None).await,
        ErrorCode::NotJoined
    );

    // Queries with nothing to find, too long, or with control characters; bad limits and ids.
    for q in ["", "   ", "- * \"", "a\u{7}b", &"x".repeat(257)] {
        assert_eq!(
            refused(&mut bob, "general", q, None).await,
            ErrorCode::InvalidQuery,
            "{q:?}"
        );
    }
    assert_eq!(
        refused(&mut bob, "general", "friday", Some(51)).await,
        ErrorCode::InvalidLimit
    );
    bob.send_raw(r#"{"type":"search","room":"general","q":"friday","before":"x"}"#)
        .await
        .unwrap();
    assert_eq!(error(&mut bob).await.0, ErrorCode::InvalidId);
    node.stop().await.unwrap();
}

#[tokio::test]
async fn without_an_index_search_is_unsupported() {
    let node = Node::start().await;
    let mut alice = node.client("alice").await;
    join(&mut alice, "general").await;
    say(&mut alice, "general", "hello").await;
    assert_eq!(
        refused(&mut alice, "general", "hello", None).await,
        ErrorCode::Unsupported
    );
    node.stop().await.unwrap();

    let redis = RedisServer::start().await;
    let node = Node::redis(&redis.url(), "search:", "node-a", 100).await;
    let mut alice = node.client("alice").await;
    join(&mut alice, "general").await;
    say(&mut alice, "general", "hello").await;
    assert_eq!(
        refused(&mut alice, "general", "hello", None).await,
        ErrorCode::Unsupported
    );
    node.stop().await.unwrap();
}

#[tokio::test]
async fn the_api_searches_any_room() {
    let dir = TempDir::new("search-api").unwrap();
    let node = Node::durable(dir.path(), with_api(test_config())).await;
    let mut alice = node.client("alice").await;
    join(&mut alice, "general").await;
    for body in ["deploy at five", "deploy done", "coffee?"] {
        say(&mut alice, "general", body).await;
    }

    let found = call(
        &node,
        "GET",
        "/rooms/general/search?q=deploy&limit=1",
        &Value::Null,
    )
    .await;
    assert_eq!(found.status(), 200, "{}", found.text());
    let page = json_of(&found);
    assert_eq!(page["room"], "general");
    assert_eq!(page["q"], "deploy");
    assert_eq!(page["messages"][0]["body"], "deploy done");
    assert_eq!(page["has_more"], true);
    let last = page["messages"][0]["id"].as_str().unwrap().to_owned();
    let path = format!("/rooms/general/search?q=deploy&before={last}");
    let page = json_of(&call(&node, "GET", &path, &Value::Null).await);
    assert_eq!(page["messages"][0]["body"], "deploy at five");
    assert_eq!(page["has_more"], false);
    // A cursor past SQLite's integers bounds nothing more (not `unavailable`).
    let path = "/rooms/general/search?q=deploy&before=18446744073709551615-0";
    let found = call(&node, "GET", path, &Value::Null).await;
    assert_eq!(found.status(), 200, "{}", found.text());
    assert_eq!(json_of(&found)["messages"][0]["body"], "deploy done");

    for bad in ["", "?q=", "?q=%2A%2A", "?q=a%07b"] {
        let path = format!("/rooms/general/search{bad}");
        let response = call(&node, "GET", &path, &Value::Null).await;
        assert_eq!(error_code(&response, 400), "invalid_query", "{bad}");
    }
    let response = call(
        &node,
        "GET",
        "/rooms/general/search?q=a&limit=0",
        &Value::Null,
    )
    .await;
    assert_eq!(error_code(&response, 400), "invalid_limit");
    node.stop().await.unwrap();

    let node = Node::start_with(Arc::new(MemoryBroker::default()), with_api(test_config())).await;
    let response = call(&node, "GET", "/rooms/general/search?q=deploy", &Value::Null).await;
    assert_eq!(error_code(&response, 501), "unsupported");
    node.stop().await.unwrap();
}

/// The binary with `--data-dir` (as `SKAT_DATA_DIR`): what it stored is found again after an
/// orderly restart, the index being in the file.
#[tokio::test]
async fn the_node_s_data_dir_is_searched_after_a_restart() {
    let data = TempDir::new("search-data").unwrap();
    let logs = TempDir::new("search-logs").unwrap();
    let addr = common::free_addr();
    let url = format!("ws://{addr}/ws");
    let mut node = NodeProcess::embedded("search-a", addr, data.path(), logs.path(), &[]).await;
    let mut alice = Client::connect(&url, "alice").await.unwrap();
    join(&mut alice, "general").await;
    for body in ["needle in the file", "hay"] {
        say(&mut alice, "general", body).await;
    }
    drop(alice);
    assert!(node.terminate().await.success(), "{}", node.log());

    let _node = NodeProcess::embedded("search-b", addr, data.path(), logs.path(), &[]).await;
    let mut alice = Client::connect(&url, "alice").await.unwrap();
    join(&mut alice, "general").await;
    let (bodies, _, more) = search(&mut alice, "general", "needle", None, None).await;
    assert_eq!(bodies, ["needle in the file"]);
    assert!(!more);
}
