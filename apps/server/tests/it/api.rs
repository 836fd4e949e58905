//! The server API (`/api/v1`): an application backend publishes, reads history, members and
//! rooms, and disconnects users, through any node, with either broker; bad keys and bad input
//! are refused.

#![allow(clippy::unwrap_used)]

use crate::common;

use std::sync::Arc;

use common::http::{Response, request};
use common::{Node, close_of, join, message, test_config};
use serde_json::{Value, json};
use skat_broker::MemoryBroker;
use skat_protocol::{SYSTEM_SENDER, close};
use skat_server::ServerConfig;
use skat_server::auth::ApiKey;
use skat_testkit::RedisServer;

pub(crate) const KEY: &str = "an-api-key-for-the-tests";

pub(crate) fn with_api(config: ServerConfig) -> ServerConfig {
    ServerConfig {
        api_key: Some(ApiKey::new(KEY).unwrap()),
        ..config
    }
}

/// A call with the right key.
pub(crate) async fn call(node: &Node, method: &str, path: &str, body: &Value) -> Response {
    let auth = format!("Authorization: Bearer {KEY}\r\n");
    let body = if body.is_null() {
        String::new()
    } else {
        body.to_string()
    };
    request(node.addr, method, &format!("/api/v1{path}"), &auth, &body).await
}

pub(crate) fn json_of(response: &Response) -> Value {
    serde_json::from_slice(&response.body)
        .unwrap_or_else(|_| panic!("not JSON: {}", response.text()))
}

/// The API error code of a failed call with this status.
pub(crate) fn error_code(response: &Response, status: u16) -> String {
    assert_eq!(response.status(), status, "{}", response.text());
    json_of(response)["code"].as_str().unwrap().to_owned()
}

/// The whole API, called on `api` while the WebSocket users are on `ws` (the same node, or
/// another one sharing its broker).
async fn backend_scenario(api: &Node, ws: &Node, nonce: &str) {
    let mut bob = ws.client("bob").await;
    join(&mut bob, "general").await;
    let mut bob_elsewhere = api.client("bob").await;

    // Publish as a user: stored, delivered, answered with the stored message.
    let post = json!({"from": "alice", "body": "hi bob", "nonce": nonce});
    let created = call(api, "POST", "/rooms/general/messages", &post).await;
    assert_eq!(created.status(), 201, "{}", created.text());
    let stored = json_of(&created);
    let delivered = message(&mut bob).await;
    assert_eq!(
        (delivered.from.as_str(), delivered.body.as_str()),
        ("alice", "hi bob")
    );
    assert_eq!(stored["id"], delivered.id.to_string());
    assert_eq!(stored["nonce"], nonce);

    // A retry with the same nonce: the original, delivered once only.
    let again = call(api, "POST", "/rooms/general/messages", &post).await;
    assert_eq!(again.status(), 200, "{}", again.text());
    assert_eq!(json_of(&again)["id"], stored["id"]);
    // As the system: the next message Bob sees is this one, not a duplicate.
    let system = call(
        api,
        "POST",
        "/rooms/general/messages",
        &json!({"body": "maintenance at 5"}),
    )
    .await;
    assert_eq!(system.status(), 201);
    let next = message(&mut bob).await;
    assert_eq!(
        (next.from.as_str(), next.body.as_str()),
        (SYSTEM_SENDER, "maintenance at 5")
    );

    // History, members, rooms: the same from any node.
    let page = json_of(&call(api, "GET", "/rooms/general/messages?limit=10", &Value::Null).await);
    let bodies: Vec<&str> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["body"].as_str().unwrap())
        .collect();
    assert_eq!(bodies, ["hi bob", "maintenance at 5"]);
    assert_eq!(page["has_more"], false);
    let before = page["messages"][1]["id"].as_str().unwrap();
    let older = call(
        api,
        "GET",
        &format!("/rooms/general/messages?before={before}"),
        &Value::Null,
    )
    .await;
    assert_eq!(json_of(&older)["messages"].as_array().unwrap().len(), 1);
    let members = call(api, "GET", "/rooms/general/members", &Value::Null).await;
    assert_eq!(
        json_of(&members),
        json!({"room": "general", "members": ["bob"]})
    );
    let rooms = json_of(&call(api, "GET", "/rooms", &Value::Null).await);
    assert!(
        rooms["rooms"]
            .as_array()
            .unwrap()
            .contains(&json!({"name": "general", "members": 1})),
        "{rooms}"
    );

    // Bad input is refused with the protocol's codes.
    for (method, path, body, code) in [
        (
            "GET",
            "/rooms/general/messages?limit=0",
            Value::Null,
            "invalid_limit",
        ),
        (
            "GET",
            "/rooms/general/messages?before=nope",
            Value::Null,
            "invalid_id",
        ),
        (
            "GET",
            "/rooms/No%20Room/members",
            Value::Null,
            "invalid_room",
        ),
        (
            "POST",
            "/rooms/general/messages",
            json!({"body": " "}),
            "invalid_body",
        ),
        (
            "POST",
            "/rooms/general/messages",
            json!({"from": "a b", "body": "x"}),
            "invalid_name",
        ),
        (
            "POST",
            "/rooms/general/messages",
            json!({"text": "x"}),
            "bad_request",
        ),
        ("GET", "/rooms?limit=5000", Value::Null, "invalid_limit"),
        // A request breaking several rules is refused for the first, in API.md's order.
        (
            "POST",
            "/rooms/Bad!/messages",
            json!({"from": "a b", "body": " ", "nonce": "n".repeat(65)}),
            "invalid_room",
        ),
        (
            "POST",
            "/rooms/general/messages",
            json!({"from": "a b", "body": " ", "nonce": "n".repeat(65)}),
            "invalid_name",
        ),
        (
            "POST",
            "/rooms/general/messages",
            json!({"body": " ", "nonce": "n".repeat(65)}),
            "invalid_body",
        ),
        (
            "GET",
            "/rooms/general/members?after=bad!&limit=5000",
            Value::Null,
            "invalid_limit",
        ),
        (
            "GET",
            "/rooms/general/messages?before=bad&limit=5000",
            Value::Null,
            "invalid_limit",
        ),
    ] {
        let refused = call(api, method, path, &body).await;
        assert_eq!(error_code(&refused, 400), code, "{method} {path}");
    }

    // Disconnect: every connection of the user, on every node, with the reason.
    let gone = call(
        api,
        "POST",
        "/users/bob/disconnect",
        &json!({"reason": "account suspended"}),
    )
    .await;
    assert_eq!(gone.status(), 204, "{}", gone.text());
    for client in [&mut bob, &mut bob_elsewhere] {
        assert_eq!(
            close_of(client).await,
            (Some(close::DISCONNECTED), "account suspended".to_owned())
        );
    }
}

/// Every call without the key, or with another, is refused.
async fn keys_are_checked(node: &Node) {
    let path = "/api/v1/rooms/general/members";
    for headers in [
        "",
        "Authorization: Bearer not-the-key-at-all\r\n",
        "Authorization: an-api-key-for-the-tests\r\n",
    ] {
        let refused = request(node.addr, "GET", path, headers, "").await;
        assert_eq!(error_code(&refused, 401), "unauthorized", "{headers:?}");
        assert_eq!(refused.headers["www-authenticate"], "Bearer");
    }
    let post = request(node.addr, "POST", "/api/v1/users/bob/disconnect", "", "").await;
    assert_eq!(post.status(), 401);
}

#[tokio::test]
async fn the_api_on_one_embedded_node() {
    let node = Node::start_with(Arc::new(MemoryBroker::default()), with_api(test_config())).await;
    backend_scenario(&node, &node, "api-embedded").await;
    keys_are_checked(&node).await;
    // Without a key, there is no API at all.
    let off = Node::start().await;
    assert_eq!(off.http_status("/api/v1/rooms").await, 404);
    assert_eq!(off.http_status("/api/v1/openapi.json").await, 404);
}

#[tokio::test]
async fn the_api_reaches_users_on_another_node_through_redis() {
    let redis = RedisServer::start().await;
    let config = |id: &str| ServerConfig {
        node_id: id.to_owned(),
        ..with_api(test_config())
    };
    let a = Node::redis_with(&redis.url(), "api:", config("node-a"), 100).await;
    let b = Node::redis_with(&redis.url(), "api:", config("node-b"), 100).await;
    backend_scenario(&a, &b, "api-redis").await;
    keys_are_checked(&b).await;
}

#[tokio::test]
async fn the_openapi_document_describes_every_endpoint() {
    let node = Node::start_with(Arc::new(MemoryBroker::default()), with_api(test_config())).await;
    // No key needed: it describes the API, not the data.
    let response = request(node.addr, "GET", "/api/v1/openapi.json", "", "").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers["content-type"], "application/json");
    let doc = json_of(&response);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    for (path, method) in [
        ("/rooms/{room}/messages", "post"),
        ("/rooms/{room}/messages", "get"),
        ("/rooms/{room}/messages/{id}", "patch"),
        ("/rooms/{room}/messages/{id}", "delete"),
        ("/rooms/{room}/messages/{id}/reactions", "post"),
        ("/rooms/{room}/members", "get"),
        ("/rooms/{room}/search", "get"),
        ("/users/{name}/disconnect", "post"),
        ("/rooms", "get"),
    ] {
        let operation = &paths[path][method];
        assert!(operation.is_object(), "{method} {path} missing");
        assert_eq!(
            operation["security"],
            json!([{"api_key": []}]),
            "{method} {path}"
        );
    }
    assert_eq!(
        doc["components"]["securitySchemes"]["api_key"]["scheme"],
        "bearer"
    );
    let message = &doc["components"]["schemas"]["Message"]["properties"];
    for field in ["reply_to", "edited", "deleted", "reactions"] {
        assert!(message[field].is_object(), "Message.{field} missing");
    }
    for schema in [
        "PostMessage",
        "Message",
        "MessagesPage",
        "SearchPage",
        "Members",
        "Rooms",
        "ApiError",
        "Disconnect",
        "EditMessage",
        "DeleteMessage",
        "PostReaction",
        "Edited",
        "Deleted",
        "Reacted",
    ] {
        assert!(
            doc["components"]["schemas"][schema].is_object(),
            "schema {schema} missing"
        );
    }
}
