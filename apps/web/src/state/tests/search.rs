//! Searching the shown room: the request, its answer and next page, a stale answer dropped,
//! and the refusals shown with the search.

use super::*;

/// `me` online in room `a`, shown.
fn in_a() -> Chat {
    let mut chat = Chat::new("me", "t");
    chat.join("a");
    online(&mut chat);
    chat.apply(joined("a", vec![], false), 0.0);
    chat
}

fn found(q: &str, ids: &[&str], has_more: bool) -> ServerFrame {
    ServerFrame::Search {
        room: "a".into(),
        q: q.into(),
        messages: ids.iter().map(|id| msg("a", id, "bob", q, None)).collect(),
        has_more,
    }
}

#[test]
fn a_search_pages_back_through_its_matches() {
    let mut chat = in_a();
    let Ok(ClientFrame::Search {
        room, q, before, ..
    }) = chat.search("deploy")
    else {
        panic!("no search frame");
    };
    assert_eq!((room.as_str(), q.as_str(), before), ("a", "deploy", None));
    assert_eq!(chat.search_more(), None, "one request at a time");
    chat.apply(found("deploy", &["9-0", "7-0"], true), 0.0);
    let search = chat.search.clone().unwrap();
    assert!(!search.waiting && search.has_more);
    assert_eq!(search.results.len(), 2);

    let Some(ClientFrame::Search { before, .. }) = chat.search_more() else {
        panic!("no next page");
    };
    assert_eq!(before.as_deref(), Some("7-0"));
    chat.apply(found("deploy", &["3-0"], false), 0.0);
    let ids: Vec<String> = chat
        .search
        .as_ref()
        .unwrap()
        .results
        .iter()
        .map(|m| m.id.to_string())
        .collect();
    assert_eq!(ids, ["9-0", "7-0", "3-0"]);
    assert_eq!(chat.search_more(), None, "nothing older");
}

#[test]
fn an_answer_to_a_replaced_search_is_dropped() {
    let mut chat = in_a();
    chat.search("deploy").unwrap();
    chat.search("lunch").unwrap();
    chat.apply(found("deploy", &["9-0"], false), 0.0);
    let search = chat.search.clone().unwrap();
    assert!(search.waiting && search.results.is_empty());
    chat.close_search();
    chat.apply(found("lunch", &["8-0"], false), 0.0);
    assert_eq!(chat.search, None);
}

#[test]
fn refusals_are_shown_with_the_search() {
    let mut chat = in_a();
    assert!(chat.search("  - ").is_err(), "nothing to find is not sent");
    chat.search("deploy").unwrap();
    chat.apply(
        ServerFrame::error(ErrorCode::Unsupported, "no index here", None),
        0.0,
    );
    let search = chat.search.clone().unwrap();
    assert!(!search.waiting);
    assert!(search.error.unwrap().contains("does not keep an index"));
    assert_eq!(chat.notice, None);

    let mut elsewhere = Chat::new("me", "t");
    assert!(elsewhere.search("deploy").is_err(), "no room to search");
}
