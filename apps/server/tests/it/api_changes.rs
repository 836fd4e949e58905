//! The server API's changes to messages: an application backend edits, deletes and reacts as
//! any user or the system, idempotent by nonce, members see the same frames as for a user's
//! change, history pages show the current state; bad input and missing messages are refused
//! in the API's idiom.

#![allow(clippy::unwrap_used)]

use crate::api::{call, error_code, json_of, with_api};
use crate::changes::change;
use crate::common;

use std::sync::Arc;

use common::{Node, join, message, test_config};
use serde_json::{Value, json};
use skat_broker::MemoryBroker;
use skat_protocol::{SYSTEM_SENDER, ServerFrame};

#[tokio::test]
async fn a_backend_edits_deletes_and_reacts_as_anyone() {
    let node = Node::start_with(Arc::new(MemoryBroker::default()), with_api(test_config())).await;
    let mut bob = node.client("bob").await;
    join(&mut bob, "general").await;
    let post = json!({"from": "alice", "body": "hi", "nonce": "p1"});
    let posted = json_of(&call(&node, "POST", "/rooms/general/messages", &post).await);
    let id = posted["id"].as_str().unwrap().to_owned();
    message(&mut bob).await;
    let path = format!("/rooms/general/messages/{id}");

    // A reply through the API carries reply_to; a reply to nothing is refused.
    let reply = json!({"from": "bob", "body": "re", "reply_to": id});
    let replied = call(&node, "POST", "/rooms/general/messages", &reply).await;
    assert_eq!(replied.status(), 201, "{}", replied.text());
    assert_eq!(json_of(&replied)["reply_to"], id.as_str());
    assert_eq!(message(&mut bob).await.reply_to().unwrap().to_string(), id);
    let bad = json!({"body": "re", "reply_to": "1-0"});
    let refused = call(&node, "POST", "/rooms/general/messages", &bad).await;
    assert_eq!(error_code(&refused, 400), "invalid_reply");

    // Edit as another user (the API is not held to authorship), then retried.
    let edit = json!({"from": "carol", "body": "hello", "nonce": "e1"});
    let edited = call(&node, "PATCH", &path, &edit).await;
    assert_eq!(edited.status(), 200, "{}", edited.text());
    let edited = json_of(&edited);
    assert_eq!(
        (edited["by"].as_str(), edited["body"].as_str()),
        (Some("carol"), Some("hello"))
    );
    let ServerFrame::Edited(seen) = change(&mut bob).await else {
        panic!("bob saw no edit")
    };
    assert_eq!(edited["id"], seen.id.to_string());
    assert_eq!(seen.nonce.as_deref(), Some("e1"));
    let again = call(&node, "PATCH", &path, &edit).await;
    assert_eq!(
        (again.status(), json_of(&again)["id"].clone()),
        (200, edited["id"].clone())
    );

    // React: 201 when stored, 200 for a reaction that changes nothing.
    let thumbs = json!({"from": "dave", "emoji": "👍", "add": true});
    let reactions = format!("{path}/reactions");
    let reacted = call(&node, "POST", &reactions, &thumbs).await;
    assert_eq!(reacted.status(), 201, "{}", reacted.text());
    assert_eq!(json_of(&reacted)["count"], 1);
    assert!(matches!(change(&mut bob).await, ServerFrame::Reacted(r) if r.user == "dave"));
    let same = call(&node, "POST", &reactions, &thumbs).await;
    assert_eq!(
        (same.status(), json_of(&same)["id"].as_str()),
        (200, Some(id.as_str()))
    );

    // History pages show the current state.
    let page = json_of(&call(&node, "GET", "/rooms/general/messages", &Value::Null).await);
    let first = &page["messages"][0];
    assert_eq!(
        (
            first["body"].as_str(),
            first["reactions"][0]["count"].as_u64()
        ),
        (Some("hello"), Some(1))
    );
    assert!(first["edited"].is_u64());

    // Delete as the system (an empty body), then again: gone.
    let deleted = call(&node, "DELETE", &path, &Value::Null).await;
    assert_eq!(deleted.status(), 200, "{}", deleted.text());
    assert_eq!(json_of(&deleted)["by"], SYSTEM_SENDER);
    assert!(matches!(change(&mut bob).await, ServerFrame::Deleted(_)));
    let twice = call(&node, "DELETE", &path, &json!({"from": "alice"})).await;
    assert_eq!(error_code(&twice, 404), "no_such_message");
    let page = json_of(&call(&node, "GET", "/rooms/general/messages", &Value::Null).await);
    assert_eq!(
        (
            page["messages"][0]["deleted"].as_bool(),
            page["messages"][0]["body"].as_str()
        ),
        (Some(true), Some(""))
    );
}

#[tokio::test]
async fn bad_changes_are_refused_in_the_apis_idiom() {
    let node = Node::start_with(Arc::new(MemoryBroker::default()), with_api(test_config())).await;
    let posted = json_of(&call(&node, "POST", "/rooms/r/messages", &json!({"body": "x"})).await);
    let id = posted["id"].as_str().unwrap().to_owned();
    let path = format!("/rooms/r/messages/{id}");
    let cases = [
        (
            "PATCH",
            "/rooms/BAD/messages/1-0".to_owned(),
            json!({"body": "b"}),
            400,
            "invalid_room",
        ),
        (
            "PATCH",
            path.clone(),
            json!({"from": "no name", "body": "b"}),
            400,
            "invalid_name",
        ),
        (
            "PATCH",
            "/rooms/r/messages/x".to_owned(),
            json!({"body": "b"}),
            400,
            "invalid_id",
        ),
        (
            "PATCH",
            path.clone(),
            json!({"body": " "}),
            400,
            "invalid_body",
        ),
        (
            "PATCH",
            path.clone(),
            json!({"body": "b", "nonce": "n".repeat(65)}),
            400,
            "invalid_nonce",
        ),
        (
            "PATCH",
            path.clone(),
            json!({"nobody": 1}),
            400,
            "bad_request",
        ),
        (
            "PATCH",
            "/rooms/r/messages/1-0".to_owned(),
            json!({"body": "b"}),
            404,
            "no_such_message",
        ),
        (
            "DELETE",
            path.clone(),
            json!({"from": 5}),
            400,
            "bad_request",
        ),
        (
            "POST",
            format!("{path}/reactions"),
            json!({"from": "a", "emoji": "ab", "add": true}),
            400,
            "invalid_emoji",
        ),
        (
            "POST",
            format!("{path}/reactions"),
            json!({"emoji": "👍", "add": true}),
            400,
            "bad_request",
        ),
    ];
    for (method, path, body, status, code) in cases {
        let response = call(&node, method, &path, &body).await;
        assert_eq!(
            error_code(&response, status),
            code,
            "{method} {path} {body}"
        );
    }
    for i in 0..20 {
        let emoji = char::from(b'a' + i).to_string();
        let body = json!({"from": "a", "emoji": emoji, "add": true});
        assert_eq!(
            call(&node, "POST", &format!("{path}/reactions"), &body)
                .await
                .status(),
            201
        );
    }
    let body = json!({"from": "a", "emoji": "z", "add": true});
    let full = call(&node, "POST", &format!("{path}/reactions"), &body).await;
    assert_eq!(error_code(&full, 409), "too_many_reactions");
}
