//! Golden tests of issue 23's `search`: the request (`q` is plain words; `before` and `limit`
//! page as `history`'s do), its answer (newest first), the API's page, and the two error codes
//! it brings (`invalid_query`, `unsupported`, pinned with every code in `golden.rs`).

use skat_protocol::api::{SearchPage, decode_api, encode_api};
use skat_protocol::{ClientFrame, ServerFrame};

use super::{client_golden, message, s, server_golden};

#[test]
fn client_search() {
    client_golden(
        r#"{"type":"search","room":"general","q":"deploy friday"}"#,
        &ClientFrame::Search {
            room: s("general"),
            q: s("deploy friday"),
            before: None,
            limit: None,
        },
    );
}

#[test]
fn client_search_next_page() {
    client_golden(
        r#"{"type":"search","room":"general","q":"deploy","before":"1764289000000-0","limit":10}"#,
        &ClientFrame::Search {
            room: s("general"),
            q: s("deploy"),
            before: Some(s("1764289000000-0")),
            limit: Some(10),
        },
    );
}

#[test]
fn server_search() {
    server_golden(
        concat!(
            r#"{"type":"search","room":"general","q":"deploy","messages":["#,
            r#"{"room":"general","id":"1764290000000-0","from":"alice","body":"deploy done","ts":1764290000000},"#,
            r#"{"room":"general","id":"1764289000000-0","from":"bob","body":"deploy at 5?","ts":1764289000000}"#,
            r#"],"has_more":true}"#,
        ),
        &ServerFrame::Search {
            room: s("general"),
            q: s("deploy"),
            messages: vec![
                message(
                    "1764290000000-0",
                    1_764_290_000_000,
                    "alice",
                    "deploy done",
                    None,
                ),
                message(
                    "1764289000000-0",
                    1_764_289_000_000,
                    "bob",
                    "deploy at 5?",
                    None,
                ),
            ],
            has_more: true,
        },
    );
}

#[test]
fn server_search_nothing_found() {
    server_golden(
        r#"{"type":"search","room":"general","q":"nothing","messages":[],"has_more":false}"#,
        &ServerFrame::Search {
            room: s("general"),
            q: s("nothing"),
            messages: vec![],
            has_more: false,
        },
    );
}

#[test]
fn api_search_page() {
    let json = concat!(
        r#"{"room":"general","q":"deploy","messages":["#,
        r#"{"room":"general","id":"1764290000000-0","from":"alice","body":"deploy done","ts":1764290000000}"#,
        r#"],"has_more":false}"#,
    );
    let page = SearchPage {
        room: s("general"),
        q: s("deploy"),
        messages: vec![message(
            "1764290000000-0",
            1_764_290_000_000,
            "alice",
            "deploy done",
            None,
        )],
        has_more: false,
    };
    assert_eq!(encode_api(&page), json);
    assert_eq!(decode_api::<SearchPage>(json).unwrap(), page);
}
