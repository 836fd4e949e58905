//! Every error code, produced by sending the bad frame over a real socket, and the connection
//! staying usable afterwards.

#![allow(clippy::unwrap_used, clippy::result_large_err)]

use crate::common;

use common::{Node, closed, error, join, message, next};
use skat_client::RawFrame;
use skat_protocol::{ErrorCode, ServerFrame};

/// Sends `raw` and expects an error with `code` (and `nonce`).
async fn expect_error(
    client: &mut skat_client::Client,
    raw: &str,
    code: ErrorCode,
    nonce: Option<&str>,
) {
    client.send_raw(raw).await.unwrap();
    assert_eq!(
        error(client).await,
        (code, nonce.map(str::to_owned)),
        "after sending {raw}"
    );
}

#[tokio::test]
async fn frames_before_hello_are_refused_until_hello() {
    let node = Node::start().await;
    let mut client = node.raw_client().await;
    expect_error(
        &mut client,
        r#"{"type":"join","room":"general"}"#,
        ErrorCode::HelloRequired,
        None,
    )
    .await;
    expect_error(
        &mut client,
        r#"{"type":"send","room":"general","body":"x","nonce":"n9"}"#,
        ErrorCode::HelloRequired,
        Some("n9"),
    )
    .await;
    expect_error(
        &mut client,
        r#"{"type":"hello","name":"bad name"}"#,
        ErrorCode::InvalidName,
        None,
    )
    .await;
    expect_error(
        &mut client,
        r#"{"type":"hello","name":""}"#,
        ErrorCode::InvalidName,
        None,
    )
    .await;
    expect_error(
        &mut client,
        &format!(r#"{{"type":"hello","name":"{}"}}"#, "x".repeat(33)),
        ErrorCode::InvalidName,
        None,
    )
    .await;
    // Still usable: a valid hello is welcomed.
    client.hello("alice").await.unwrap();
    assert_eq!(client.user(), Some("alice"));
    expect_error(
        &mut client,
        r#"{"type":"hello","name":"again"}"#,
        ErrorCode::AlreadyHello,
        None,
    )
    .await;
}

#[tokio::test]
async fn malformed_frames_get_clear_errors_and_the_connection_survives() {
    let node = Node::start().await;
    let mut alice = node.client("alice").await;
    join(&mut alice, "general").await;

    expect_error(&mut alice, "this is not json", ErrorCode::BadFrame, None).await;
    expect_error(&mut alice, "[1,2,3]", ErrorCode::BadFrame, None).await;
    expect_error(
        &mut alice,
        r#"{"room":"general"}"#,
        ErrorCode::BadFrame,
        None,
    )
    .await;
    expect_error(
        &mut alice,
        r#"{"type":"send","room":"general","nonce":"n1"}"#,
        ErrorCode::BadFrame,
        Some("n1"),
    )
    .await;
    expect_error(
        &mut alice,
        r#"{"type":"dance","room":"general"}"#,
        ErrorCode::UnknownType,
        None,
    )
    .await;
    alice
        .send_ws(RawFrame::Binary(vec![1u8, 2, 3]))
        .await
        .unwrap();
    assert_eq!(error(&mut alice).await.0, ErrorCode::BadFrame);

    expect_error(
        &mut alice,
        r#"{"type":"join","room":"Not A Room"}"#,
        ErrorCode::InvalidRoom,
        None,
    )
    .await;
    expect_error(
        &mut alice,
        &format!(r#"{{"type":"join","room":"{}"}}"#, "r".repeat(65)),
        ErrorCode::InvalidRoom,
        None,
    )
    .await;
    expect_error(
        &mut alice,
        r#"{"type":"join","room":"other","since":"yesterday"}"#,
        ErrorCode::InvalidId,
        None,
    )
    .await;
    expect_error(
        &mut alice,
        r#"{"type":"send","room":"other","body":"hi","nonce":"n2"}"#,
        ErrorCode::NotJoined,
        Some("n2"),
    )
    .await;

    let long = "x".repeat(4001);
    expect_error(
        &mut alice,
        &format!(r#"{{"type":"send","room":"general","body":"{long}","nonce":"n3"}}"#),
        ErrorCode::BodyTooLong,
        Some("n3"),
    )
    .await;
    expect_error(
        &mut alice,
        r#"{"type":"send","room":"general","body":"  \n ","nonce":"n4"}"#,
        ErrorCode::InvalidBody,
        Some("n4"),
    )
    .await;
    let long_nonce = "n".repeat(65);
    expect_error(
        &mut alice,
        &format!(r#"{{"type":"send","room":"general","body":"x","nonce":"{long_nonce}"}}"#),
        ErrorCode::InvalidNonce,
        None,
    )
    .await;
    expect_error(
        &mut alice,
        r#"{"type":"history","room":"general","limit":0}"#,
        ErrorCode::InvalidLimit,
        None,
    )
    .await;
    expect_error(
        &mut alice,
        r#"{"type":"history","room":"general","limit":101}"#,
        ErrorCode::InvalidLimit,
        None,
    )
    .await;
    expect_error(
        &mut alice,
        r#"{"type":"history","room":"general","before":"x-1"}"#,
        ErrorCode::InvalidId,
        None,
    )
    .await;

    // Nothing was published by the failed sends, and the connection still works.
    alice
        .send_message("general", "still fine", Some("ok"))
        .await
        .unwrap();
    let m = message(&mut alice).await;
    assert_eq!(
        (m.body.as_str(), m.nonce.as_deref()),
        ("still fine", Some("ok"))
    );
    alice.history("general", None, None).await.unwrap();
    match next(&mut alice).await {
        ServerFrame::History {
            messages, has_more, ..
        } => {
            assert_eq!(messages, [m]);
            assert!(!has_more);
        }
        other => panic!("expected history, got {other:?}"),
    }
}

#[tokio::test]
async fn a_bad_client_does_not_disturb_others() {
    let node = Node::start().await;
    let mut alice = node.client("alice").await;
    let mut mallory = node.client("mallory").await;
    join(&mut alice, "general").await;
    join(&mut mallory, "general").await;
    for junk in [
        "{",
        "null",
        r#"{"type":"send"}"#,
        r#"{"type":"join","room":"../etc"}"#,
    ] {
        mallory.send_raw(junk).await.unwrap();
    }
    alice.send_message("general", "hello", None).await.unwrap();
    assert_eq!(
        message(&mut alice).await.body,
        "hello",
        "alice never sees mallory's errors"
    );
}

#[tokio::test]
async fn oversized_websocket_messages_close_the_connection() {
    let node = Node::start().await;
    let mut mallory = node.client("mallory").await;
    let mut alice = node.client("alice").await;
    join(&mut alice, "general").await;
    // 100 KiB exceeds the default 64 KiB limit enforced by the WebSocket layer itself.
    let huge = format!(
        r#"{{"type":"send","room":"general","body":"{}"}}"#,
        "x".repeat(100 * 1024)
    );
    let _ = mallory.send_raw(huge).await;
    let code = closed(&mut mallory).await;
    assert_eq!(code, Some(1009), "closed as too big");
    alice
        .send_message("general", "unaffected", None)
        .await
        .unwrap();
    assert_eq!(message(&mut alice).await.body, "unaffected");
}

/// The requests that change a message (`edit`, `delete`, `react`) and `read` need `hello`
/// first, like every request; the nonce of those that carry one is echoed, as a `send`'s is.
/// (Each one's own refusals are in `changes`.)
#[tokio::test]
async fn changes_and_reads_need_hello_first() {
    let node = Node::start().await;
    let frames = [
        (
            r#"{"type":"edit","room":"general","id":"1-0","body":"b","nonce":"e1"}"#,
            Some("e1"),
        ),
        (
            r#"{"type":"delete","room":"general","id":"1-0","nonce":"d1"}"#,
            Some("d1"),
        ),
        (
            r#"{"type":"react","room":"general","id":"1-0","emoji":"👍","add":true,"nonce":"r1"}"#,
            Some("r1"),
        ),
        (r#"{"type":"read","room":"general","id":"1-0"}"#, None),
    ];
    let mut anonymous = node.raw_client().await;
    for (raw, nonce) in frames {
        expect_error(&mut anonymous, raw, ErrorCode::HelloRequired, nonce).await;
    }
}
