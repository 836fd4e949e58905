//! Unit tests of the state machine: frames in, view state and frames out.

use super::*;
use skat_protocol::{ErrorCode, Message, close};

use crate::session::REFRESH_RETRY_MS;

fn msg(room: &str, id: &str, from: &str, body: &str, nonce: Option<&str>) -> Message {
    Message {
        room: room.into(),
        id: id.parse().unwrap(),
        from: from.into(),
        body: body.into(),
        ts: 1,
        nonce: nonce.map(Into::into),
        extras: None,
    }
}

fn joined(room: &str, messages: Vec<Message>, recovered: bool) -> ServerFrame {
    ServerFrame::Joined {
        room: room.into(),
        members: vec!["me".into()],
        messages,
        recovered,
        epoch: Some("e1".into()),
        more_members: false,
        read: None,
        unread: 0,
        changes: vec![],
    }
}

/// The `joined` of a room with more members than it lists: these first ones.
fn crowded_joined(room: &str, members: &[&str]) -> ServerFrame {
    ServerFrame::Joined {
        room: room.into(),
        members: members.iter().map(|&m| m.into()).collect(),
        messages: Vec::new(),
        recovered: false,
        epoch: Some("e1".into()),
        more_members: true,
        read: None,
        unread: 0,
        changes: vec![],
    }
}

/// The welcome of a reconnection.
fn online_again(chat: &mut Chat) {
    chat.apply(
        ServerFrame::Welcome {
            user: "me".into(),
            node: "n2".into(),
            protocol: 1,
            exp: None,
        },
        0.0,
    );
}

fn online(chat: &mut Chat) {
    chat.on_open();
    chat.apply(
        ServerFrame::Welcome {
            user: "me".into(),
            node: "n1".into(),
            protocol: 1,
            exp: None,
        },
        0.0,
    );
}

#[test]
fn hello_claims_the_name_the_token_is_for() {
    let mut chat = Chat::new("mallory", "t");
    // A fetched token whose `sub` is grace: the page is grace, whatever it was opened as.
    let grace = "h.eyJzdWIiOiJncmFjZSIsImV4cCI6MX0.s";
    chat.session = Session::new(Some(grace.into()), Some("/token".into()));
    assert_eq!(
        chat.on_open(),
        [ClientFrame::Hello {
            name: "grace".into(),
            token: Some(grace.into()),
        }]
    );
    // A token with no readable `sub` leaves the name as it is (the server judges it).
    chat.session = Session::new(Some("opaque".into()), None);
    assert_eq!(
        chat.on_open(),
        [ClientFrame::Hello {
            name: "mallory".into(),
            token: Some("opaque".into()),
        }]
    );
}

#[test]
fn welcome_and_join() {
    let mut chat = Chat::new("me", "t");
    assert_eq!(
        chat.on_open(),
        [ClientFrame::Hello {
            name: "me".into(),
            token: None
        }]
    );
    chat.apply(
        ServerFrame::Welcome {
            user: "me".into(),
            node: "n1".into(),
            protocol: 1,
            exp: None,
        },
        0.0,
    );
    assert_eq!(chat.connection, Connection::Online);
    assert_eq!(chat.node.as_deref(), Some("n1"));
    assert_eq!(
        chat.join("general"),
        Some(ClientFrame::Join {
            room: "general".into(),
            since: None,
            epoch: None,
        })
    );
    assert_eq!(chat.join("general"), None, "already joined: just switches");
    chat.apply(
        joined(
            "general",
            vec![msg("general", "1-0", "bob", "hi", None)],
            false,
        ),
        0.0,
    );
    let room = chat.active_room().unwrap();
    assert!(room.joined);
    assert_eq!(room.messages().len(), 1);
    assert_eq!(room.unread, 0, "the latest page is not unread");
}

#[test]
fn a_big_rooms_members_are_read_page_by_page() {
    let mut chat = Chat::new("me", "t");
    online(&mut chat);
    chat.join("big");
    let next_page = |after: &str| ClientFrame::Members {
        room: "big".into(),
        after: Some(after.into()),
        limit: None,
    };
    assert_eq!(
        chat.apply(crowded_joined("big", &["ann", "me"]), 0.0),
        [next_page("me")]
    );
    let sent = chat.apply(
        ServerFrame::Members {
            room: "big".into(),
            members: vec!["ned".into(), "ole".into()],
            next: Some("ole".into()),
        },
        0.0,
    );
    assert_eq!(sent, [next_page("ole")]);
    let sent = chat.apply(
        ServerFrame::Members {
            room: "big".into(),
            members: vec!["zed".into()],
            next: None,
        },
        0.0,
    );
    assert!(sent.is_empty(), "the last page asks for nothing");
    let members: Vec<_> = chat.rooms["big"].members.iter().cloned().collect();
    assert_eq!(members, ["ann", "me", "ned", "ole", "zed"]);
    assert_eq!(chat.rooms["big"].members_after, None, "done");
}

#[test]
fn a_member_page_refused_as_over_the_rate_is_asked_for_again() {
    let mut chat = Chat::new("me", "t");
    online(&mut chat);
    chat.join("big");
    let page = ClientFrame::Members {
        room: "big".into(),
        after: Some("ann".into()),
        limit: None,
    };
    assert_eq!(
        chat.apply(crowded_joined("big", &["ann"]), 0.0),
        std::slice::from_ref(&page)
    );
    chat.apply(
        ServerFrame::Error {
            code: ErrorCode::RateLimited,
            message: "too many requests".into(),
            nonce: None,
        },
        10_000.0,
    );
    assert_eq!(chat.notice, None, "handled, not shown");
    assert!(chat.retry_members(10_500.0).is_empty(), "not yet");
    assert_eq!(chat.retry_members(11_000.0), [page]);
    // The answer to the first request, late after all, then the retry's: one next request.
    let sent: Vec<ClientFrame> = (0..2)
        .flat_map(|_| {
            chat.apply(
                ServerFrame::Members {
                    room: "big".into(),
                    members: vec!["bob".into()],
                    next: Some("bob".into()),
                },
                11_100.0,
            )
        })
        .collect();
    assert_eq!(sent.len(), 1, "{sent:?}");
}

#[test]
fn dedups_by_id_and_counts_unread_only_elsewhere() {
    let mut chat = Chat::new("me", "t");
    online(&mut chat);
    chat.join("a");
    chat.join("b");
    chat.apply(joined("a", vec![], false), 0.0);
    chat.apply(joined("b", vec![], false), 0.0);
    assert_eq!(chat.active.as_deref(), Some("b"));
    chat.apply(ServerFrame::Message(msg("a", "1-0", "bob", "x", None)), 0.0);
    chat.apply(ServerFrame::Message(msg("a", "1-0", "bob", "x", None)), 0.0);
    chat.apply(ServerFrame::Message(msg("b", "1-1", "bob", "y", None)), 0.0);
    assert_eq!(chat.rooms["a"].messages().len(), 1, "duplicate id ignored");
    assert_eq!(chat.rooms["a"].unread, 1);
    assert_eq!(chat.rooms["b"].unread, 0, "active room is read");
    chat.apply(
        ServerFrame::Message(msg("a", "1-2", "me", "mine", None)),
        0.0,
    );
    assert_eq!(chat.rooms["a"].unread, 1, "own messages are not unread");
    chat.switch_to("a");
    assert_eq!(chat.rooms["a"].unread, 0);
}

#[test]
fn pending_sends_confirm_by_nonce_or_fail_keeping_the_text() {
    let mut chat = Chat::new("me", "t");
    online(&mut chat);
    chat.join("a");
    chat.apply(joined("a", vec![], false), 0.0);
    assert_eq!(
        chat.send("a", "   ", 0.0),
        Err(Unsent::Blank),
        "blank text is not sent"
    );
    let Ok(ClientFrame::Send {
        nonce: Some(n1), ..
    }) = chat.send("a", "hello", 0.0)
    else {
        panic!()
    };
    let Ok(ClientFrame::Send {
        nonce: Some(n2), ..
    }) = chat.send("a", "x".repeat(5000).as_str(), 0.0)
    else {
        panic!()
    };
    assert_ne!(n1, n2);
    assert_eq!(chat.rooms["a"].pending.len(), 2);
    chat.apply(
        ServerFrame::Message(msg("a", "1-0", "me", "hello", Some(&n1))),
        0.0,
    );
    chat.apply(
        ServerFrame::error(ErrorCode::BodyTooLong, "too long", Some(n2.clone())),
        0.0,
    );
    let pending = &chat.rooms["a"].pending;
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].error.as_deref(), Some("too long"));
    assert_eq!(
        chat.discard("a", &n2).map(|b| b.len()),
        Some(5000),
        "the text is given back"
    );
    // An error without a nonce goes to the banner.
    chat.apply(
        ServerFrame::error(ErrorCode::InvalidRoom, "bad room", None),
        0.0,
    );
    assert_eq!(chat.notice.as_deref(), Some("bad room (invalid_room)"));
}

#[test]
fn reconnect_rejoins_with_since_and_recovers_without_duplicates() {
    let mut chat = Chat::new("me", "t");
    online(&mut chat);
    chat.join("a");
    chat.apply(
        joined("a", vec![msg("a", "1-0", "bob", "one", None)], false),
        0.0,
    );
    chat.apply(
        ServerFrame::Message(msg("a", "1-1", "bob", "two", None)),
        0.0,
    );
    let Ok(ClientFrame::Send {
        nonce: Some(lost), ..
    }) = chat.send("a", "did it go?", 0.0)
    else {
        panic!()
    };

    chat.on_close(1, 700);
    assert_eq!(
        chat.connection,
        Connection::Reconnecting {
            attempt: 1,
            retry_in_ms: 700
        }
    );
    assert!(!chat.rooms["a"].joined);
    let frames = chat.on_open();
    assert_eq!(
        frames[1],
        ClientFrame::Join {
            room: "a".into(),
            since: Some("1-1".into()),
            epoch: Some("e1".into()),
        },
        "rejoins with the history epoch the messages came from"
    );

    online_again(&mut chat);
    // The recovery overlaps what we had (1-1) and brings what we missed (1-2).
    let resent = chat.apply(
        joined(
            "a",
            vec![
                msg("a", "1-1", "bob", "two", None),
                msg("a", "1-2", "carol", "three", None),
            ],
            true,
        ),
        0.0,
    );
    let room = &chat.rooms["a"];
    let bodies: Vec<&str> = room.messages().iter().map(|m| m.body.as_str()).collect();
    assert_eq!(bodies, ["one", "two", "three"]);
    assert_eq!(chat.node.as_deref(), Some("n2"));
    // Our unconfirmed send was not in the recovery: re-sent with its nonce (the server
    // answers a repeat of a stored send with the original), still pending, no error.
    assert_eq!(room.pending[0].error, None);
    assert_eq!(
        resent,
        [ClientFrame::Send {
            room: "a".into(),
            body: "did it go?".into(),
            nonce: Some(lost.clone()),
            reply_to: None,
        }]
    );
    // Its echo confirms it, once.
    chat.apply(
        ServerFrame::Message(msg("a", "1-3", "me", "did it go?", Some(&lost))),
        0.0,
    );
    assert!(chat.rooms["a"].pending.is_empty());
    assert_eq!(chat.rooms["a"].messages().len(), 4);
}

#[test]
fn only_sends_of_an_earlier_connection_are_resent_and_old_ones_are_left_to_the_user() {
    let mut chat = Chat::new("me", "t");
    online(&mut chat);
    chat.join("a");
    chat.apply(joined("a", vec![], false), 0.0);
    let old = chat.send("a", "ancient", 0.0);
    let recent = chat.send("a", "recent", RESEND_WITHIN_MS);
    assert!(old.is_ok() && recent.is_ok());
    chat.on_close(1, 500);
    chat.on_open();
    online_again(&mut chat);
    // Sent on this connection before its joined arrived: neither failed nor re-sent.
    let current = chat.send("a", "now", RESEND_WITHIN_MS + 1.0);
    assert!(current.is_ok());
    let resent: Vec<String> = chat
        .apply(joined("a", vec![], true), RESEND_WITHIN_MS + 1.0)
        .iter()
        .map(|f| match f {
            ClientFrame::Send { body, .. } => body.clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(resent, ["recent"]);
    let errors: Vec<(&str, Option<&str>)> = chat.rooms["a"]
        .pending
        .iter()
        .map(|p| (p.body.as_str(), p.error.as_deref()))
        .collect();
    assert_eq!(
        errors,
        [
            ("ancient", Some("not sent: connection lost")),
            ("recent", None),
            ("now", None)
        ]
    );
}

#[test]
fn a_room_keeps_a_bounded_window_of_messages() {
    let mut chat = Chat::new("me", "t");
    online(&mut chat);
    chat.join("a");
    chat.apply(joined("a", vec![], false), 0.0);
    let before = chat.rooms["a"].version();
    for i in 0..ROOM_WINDOW + 10 {
        let id = format!("1-{i}");
        chat.apply(ServerFrame::Message(msg("a", &id, "bob", "x", None)), 0.0);
    }
    let room = &chat.rooms["a"];
    assert_eq!(room.messages().len(), ROOM_WINDOW);
    assert_eq!(room.messages()[0].id.to_string(), "1-10", "the oldest went");
    assert!(room.has_more, "and can be loaded again");
    assert!(room.version() > before);
    // A message pushed out is new again if a page brings it back.
    let v = room.version();
    chat.apply(
        ServerFrame::History {
            room: "a".into(),
            messages: vec![msg("a", "1-9", "bob", "x", None)],
            has_more: true,
        },
        0.0,
    );
    assert_eq!(chat.rooms["a"].messages()[0].id.to_string(), "1-9");
    assert!(chat.rooms["a"].version() > v);
}

#[test]
fn a_gap_that_cannot_be_recovered_resets_the_room() {
    let mut chat = Chat::new("me", "t");
    online(&mut chat);
    chat.join("a");
    chat.apply(
        joined("a", vec![msg("a", "1-0", "bob", "old", None)], false),
        0.0,
    );
    chat.on_close(1, 500);
    chat.on_open();
    chat.apply(
        joined("a", vec![msg("a", "9-0", "bob", "new", None)], false),
        0.0,
    );
    let bodies: Vec<&str> = chat.rooms["a"]
        .messages()
        .iter()
        .map(|m| m.body.as_str())
        .collect();
    assert_eq!(bodies, ["new"]);
}

#[test]
fn history_pages_prepend_and_presence_and_typing_update() {
    let mut chat = Chat::new("me", "t");
    online(&mut chat);
    chat.join("a");
    let page: Vec<Message> = (10..60)
        .map(|i| msg("a", &format!("{i}-0"), "bob", "m", None))
        .collect();
    chat.apply(joined("a", page, false), 0.0);
    assert!(chat.rooms["a"].has_more);
    let Some(ClientFrame::History { before, .. }) = chat.load_older("a") else {
        panic!()
    };
    assert_eq!(before.as_deref(), Some("10-0"));
    assert_eq!(chat.load_older("a"), None, "one request at a time");
    let older = vec![
        msg("a", "8-0", "bob", "m", None),
        msg("a", "9-0", "bob", "m", None),
    ];
    chat.apply(
        ServerFrame::History {
            room: "a".into(),
            messages: older,
            has_more: false,
        },
        0.0,
    );
    assert_eq!(chat.rooms["a"].messages()[0].id.to_string(), "8-0");
    assert_eq!(chat.rooms["a"].messages().len(), 52);
    assert_eq!(chat.load_older("a"), None, "nothing older");

    chat.apply(
        ServerFrame::Presence {
            room: "a".into(),
            user: "bob".into(),
            online: true,
        },
        0.0,
    );
    assert!(chat.rooms["a"].members.contains("bob"));
    chat.apply(
        ServerFrame::Typing {
            room: "a".into(),
            user: "bob".into(),
        },
        1000.0,
    );
    assert_eq!(chat.rooms["a"].typing_users(1000.0), ["bob"]);
    assert_eq!(
        chat.rooms["a"].typing_users(1000.0 + TYPING_VISIBLE_MS),
        Vec::<&str>::new()
    );
    assert!(chat.expire_typing(1000.0 + TYPING_VISIBLE_MS));
    chat.apply(
        ServerFrame::Presence {
            room: "a".into(),
            user: "bob".into(),
            online: false,
        },
        0.0,
    );
    assert!(!chat.rooms["a"].members.contains("bob"));
}

#[test]
fn signed_mode_sends_the_token_and_stops_on_refusal() {
    let mut chat = Chat::new("alice", "t");
    chat.session.token = Some("jwt".into());
    assert_eq!(
        chat.on_open()[0],
        ClientFrame::Hello {
            name: "alice".into(),
            token: Some("jwt".into())
        }
    );
    assert!(chat.should_reconnect());
    chat.apply(
        ServerFrame::error(
            ErrorCode::Unauthorized,
            "invalid token: ExpiredSignature",
            None,
        ),
        0.0,
    );
    assert_eq!(
        chat.connection,
        Connection::Refused("invalid token: ExpiredSignature".into())
    );
    assert!(
        !chat.should_reconnect(),
        "a refused identity is not retried"
    );
}

#[test]
fn typing_frames_are_throttled() {
    let mut chat = Chat::new("me", "t");
    chat.join("a");
    assert_eq!(chat.typing("a", 0.0), None, "not while disconnected");
    online(&mut chat);
    chat.join("a");
    assert_eq!(
        chat.typing("a", 0.0),
        None,
        "not before the join is confirmed"
    );
    chat.apply(joined("a", vec![], false), 0.0);
    assert!(chat.typing("a", 0.0).is_some());
    assert_eq!(chat.typing("a", 1000.0), None);
    assert!(chat.typing("a", 2500.0).is_some());
}

#[test]
fn leave_moves_to_another_room() {
    let mut chat = Chat::new("me", "t");
    chat.join("a");
    chat.join("b");
    assert_eq!(
        chat.leave("b"),
        Some(ClientFrame::Leave { room: "b".into() })
    );
    assert_eq!(chat.active.as_deref(), Some("a"));
    assert_eq!(chat.leave("b"), None);
}

#[test]
fn backoff_grows_with_jitter_and_caps() {
    assert_eq!(backoff_ms(0, 0.0), 250);
    assert_eq!(backoff_ms(0, 0.999_999), 499);
    assert_eq!(backoff_ms(3, 0.0), 2000);
    assert!(backoff_ms(30, 0.5) <= 30_000);
    assert!(backoff_ms(30, 0.0) >= 15_000);
}

fn welcome(exp: Option<u64>) -> ServerFrame {
    ServerFrame::Welcome {
        user: "alice".into(),
        node: "n1".into(),
        protocol: 1,
        exp,
    }
}

/// Alice, signed in with `t1` and a token URL, online since time 0 with a token of 10 s.
fn signed_alice() -> Chat {
    let mut chat = Chat::new("alice", "t");
    chat.session = Session::new(Some("t1".into()), Some("/token".into()));
    chat.on_open();
    chat.apply(welcome(Some(10)), 0.0);
    chat
}

#[test]
fn a_token_nearing_expiry_is_refreshed_on_the_live_connection() {
    let mut chat = signed_alice();
    assert!(!chat.refresh_due(7_000.0));
    assert!(chat.refresh_due(8_000.0), "at 80% of its life");
    assert_eq!(chat.session.begin_fetch().as_deref(), Some("/token"));
    assert_eq!(
        chat.token_fetched("t2".into()),
        Fetched::Refresh(ClientFrame::Refresh { token: "t2".into() })
    );
    chat.apply(ServerFrame::Refreshed { exp: Some(20) }, 8_100.0);
    assert_eq!(chat.session.token.as_deref(), Some("t2"));
    assert_eq!(chat.connection, Connection::Online);
    // A reconnect says hello with the new token.
    assert!(chat.on_socket_closed(1006, ""));
    assert_eq!(
        chat.on_open()[0],
        ClientFrame::Hello {
            name: "alice".into(),
            token: Some("t2".into())
        }
    );
}

#[test]
fn a_refused_refresh_keeps_the_connection_and_tries_again() {
    let mut chat = signed_alice();
    chat.session.begin_fetch();
    chat.token_fetched("bad".into());
    chat.apply(
        ServerFrame::error(
            ErrorCode::Unauthorized,
            "the token is for another user",
            None,
        ),
        8_000.0,
    );
    assert_eq!(
        chat.connection,
        Connection::Online,
        "not a refused identity"
    );
    assert_eq!(
        chat.notice.as_deref(),
        Some("Could not renew the session: the token is for another user")
    );
    assert_eq!(chat.session.token.as_deref(), Some("t1"));
    assert!(chat.refresh_due(8_000.0 + REFRESH_RETRY_MS));
    // A failed fetch is shown and retried too, with no reconnect.
    chat.session.begin_fetch();
    assert!(!chat.token_fetch_failed("the token URL answered 500", 9_000.0));
    assert!(chat.notice.as_deref().is_some_and(|n| n.contains("500")));
    assert!(chat.refresh_due(9_000.0 + REFRESH_RETRY_MS));
}

#[test]
fn close_codes_decide_between_reconnecting_fetching_and_stopping() {
    // 4001 with a token URL: reconnect, fetching a token first.
    let mut chat = signed_alice();
    assert!(chat.on_socket_closed(close::TOKEN_EXPIRED, "token expired"));
    assert!(chat.session.needs_token());
    assert_eq!(chat.session.begin_fetch().as_deref(), Some("/token"));
    assert_eq!(chat.token_fetched("t2".into()), Fetched::Connect);
    assert_eq!(
        chat.on_open()[0],
        ClientFrame::Hello {
            name: "alice".into(),
            token: Some("t2".into())
        }
    );

    // 4001 without one: the session is over, said so.
    let mut chat = Chat::new("alice", "t");
    chat.session = Session::new(Some("t1".into()), None);
    chat.on_open();
    chat.apply(welcome(Some(10)), 0.0);
    assert!(!chat.on_socket_closed(close::TOKEN_EXPIRED, "token expired"));
    assert_eq!(chat.connection, Connection::Expired);

    // 4000: the application's reason, and no reconnect.
    let mut chat = signed_alice();
    assert!(!chat.on_socket_closed(close::DISCONNECTED, "banned for spam"));
    assert_eq!(
        chat.connection,
        Connection::Disconnected("banned for spam".into())
    );
    assert!(!chat.should_reconnect());

    // Anything else reconnects.
    let mut chat = signed_alice();
    assert!(chat.on_socket_closed(1012, "service restart"));
    assert!(!chat.session.needs_token());
}

#[test]
fn a_refused_hello_fetches_a_fresh_token_once() {
    let mut chat = Chat::new("alice", "t");
    chat.session = Session::new(Some("stale".into()), Some("/token".into()));
    chat.on_open();
    let refused = || ServerFrame::error(ErrorCode::Unauthorized, "invalid token", None);
    chat.apply(refused(), 0.0);
    assert_eq!(chat.connection, Connection::Connecting);
    assert!(chat.on_socket_closed(1008, "unauthorized"));
    assert!(chat.session.needs_token());
    chat.session.begin_fetch();
    assert_eq!(chat.token_fetched("fresh".into()), Fetched::Connect);
    chat.on_open();
    // Refused with the token just fetched: final.
    chat.apply(refused(), 0.0);
    assert_eq!(chat.connection, Connection::Refused("invalid token".into()));
    assert!(!chat.on_socket_closed(1008, "unauthorized"));
}

#[test]
fn a_forbidden_join_is_shown_in_its_room_and_not_rejoined() {
    let mut chat = Chat::new("alice", "t");
    chat.on_open();
    chat.apply(welcome(None), 0.0);
    chat.join("general");
    chat.join("private-ops");
    chat.join("random");
    chat.apply(joined("general", vec![], false), 0.0);
    chat.apply(
        ServerFrame::error(
            ErrorCode::Forbidden,
            "this private room is not in your token's rooms",
            None,
        ),
        0.0,
    );
    chat.apply(joined("random", vec![], false), 0.0);
    let ops = &chat.rooms["private-ops"];
    assert!(!ops.joined);
    assert_eq!(
        ops.refused.as_deref(),
        Some(
            "You don't have access to #private-ops: this private room is not in your token's rooms"
        )
    );
    assert!(chat.rooms["random"].joined && chat.rooms["random"].refused.is_none());
    assert_eq!(chat.notice, None, "shown in the room, not as a banner");
    assert_eq!(chat.send("private-ops", "hi", 0.0), Err(Unsent::NotJoined));
    // A reconnect rejoins the others only.
    chat.on_socket_closed(1012, "");
    let rejoined: Vec<String> = chat
        .on_open()
        .into_iter()
        .filter_map(|f| match f {
            ClientFrame::Join { room, .. } => Some(room),
            _ => None,
        })
        .collect();
    assert_eq!(rejoined, ["general", "random"]);
    chat.apply(welcome(None), 0.0);
    chat.apply(joined("general", vec![], true), 0.0);
    chat.apply(joined("random", vec![], true), 0.0);
    // Asking again sends a join again; closing it sends no leave (it was never joined).
    assert!(matches!(
        chat.join("private-ops"),
        Some(ClientFrame::Join { .. })
    ));
    assert_eq!(chat.rooms["private-ops"].refused, None);
    chat.apply(ServerFrame::error(ErrorCode::Forbidden, "no", None), 0.0);
    assert_eq!(chat.leave("private-ops"), None);
    assert!(!chat.rooms.contains_key("private-ops"));
}

#[test]
fn a_join_answered_by_an_unattributed_error_is_shown_once_a_later_join_lands() {
    let mut chat = Chat::new("alice", "t");
    chat.on_open();
    chat.apply(welcome(None), 0.0);
    chat.join("a");
    chat.join("b");
    chat.apply(
        ServerFrame::error(ErrorCode::Unavailable, "the broker is unavailable", None),
        0.0,
    );
    assert!(chat.notice.is_some());
    chat.apply(joined("b", vec![], false), 0.0);
    assert_eq!(
        chat.rooms["a"].refused.as_deref(),
        Some("Could not join #a.")
    );
    assert!(chat.rooms["b"].joined);
}

#[test]
fn a_direct_message_room_is_refused_with_its_label() {
    let mut chat = Chat::new("alice", "t");
    chat.on_open();
    chat.apply(welcome(None), 0.0);
    let dm = skat_protocol::dm_room("alice", "bob").unwrap();
    assert!(chat.join(&dm).is_some());
    assert_eq!(chat.active.as_deref(), Some(dm.as_str()));
    chat.apply(
        ServerFrame::error(ErrorCode::Forbidden, "private rooms need signed mode", None),
        0.0,
    );
    assert_eq!(
        chat.rooms[&dm].refused.as_deref(),
        Some("You don't have access to @bob: private rooms need signed mode")
    );
}

#[test]
fn a_send_that_cannot_go_says_why() {
    let mut chat = Chat::new("me", "t");
    chat.join("a");
    assert_eq!(
        chat.send("a", "hi", 0.0),
        Err(Unsent::Offline { retrying: true }),
        "still connecting"
    );
    assert_eq!(chat.send("a", " ", 0.0), Err(Unsent::Blank));
    online(&mut chat);
    assert_eq!(chat.send("b", "hi", 0.0), Err(Unsent::NotJoined));
    chat.on_socket_closed(close::DISCONNECTED, "bye");
    assert_eq!(
        chat.send("a", "hi", 0.0),
        Err(Unsent::Offline { retrying: false }),
        "not coming back: the header says why"
    );
    assert!(
        chat.rooms["a"].pending.is_empty(),
        "nothing kept: the text stays in the composer"
    );
}

#[test]
fn what_a_transition_returns_carries_its_frames() {
    let frame = ClientFrame::Typing { room: "a".into() };
    let one = std::slice::from_ref(&frame);
    assert_eq!(Some(frame.clone()).frames(), one);
    assert_eq!(vec![frame.clone()].frames(), one);
    assert_eq!(Ok::<_, Unsent>(frame.clone()).frames(), one);
    assert!(Err::<ClientFrame, _>(Unsent::Blank).frames().is_empty());
    let refresh = ClientFrame::Refresh { token: "t".into() };
    assert_eq!(Fetched::Refresh(refresh.clone()).frames(), [refresh]);
    assert!(Fetched::Connect.frames().is_empty() && Fetched::Keep.frames().is_empty());
}

/// Edits, deletions, reactions, replies and the read state (issue 22).
mod lifecycle;

/// Searching the shown room (issue 23).
mod search;
