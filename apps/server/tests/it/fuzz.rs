//! Fuzzing the connection: the per-connection state machine under proptest (over an in-memory
//! socket), and 100,000 random and malformed frames over real sockets while a normal client keeps
//! chatting, unaffected.

#![allow(clippy::unwrap_used, clippy::result_large_err)]

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use common::{DEADLINE, Node, join, message, test_config};
use futures_util::{SinkExt, StreamExt};
use proptest::prelude::*;
use skat_broker::MemoryBroker;
use skat_protocol::{ClientFrame, ServerFrame, decode_server, encode_client};
use skat_server::AppState;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::protocol::Role;

/// One input of the state machine: valid-looking frames over a small vocabulary (so joins,
/// sends and leaves meet), garbage text, binary and control frames.
fn input() -> impl Strategy<Value = WsMessage> {
    let room = prop::sample::select(vec![
        "a",
        "b",
        "general",
        "Bad Room",
        "",
        "x".repeat(65).leak(),
    ]);
    let name = prop::sample::select(vec!["alice", "bob", "", "no spaces", "é"]);
    let id = prop::option::of(prop::sample::select(vec![
        "1-0",
        "0-0",
        "bogus",
        "99999999999999999999-0",
        "5-5",
    ]));
    let body = prop::sample::select(vec!["hi", "", "  ", "x".repeat(4001).leak(), "multi\nline"]);
    let nonce = prop::option::of(prop::sample::select(vec![
        "n1",
        "n1",
        "n2",
        "n".repeat(65).leak(),
    ]));
    let frame = prop_oneof![
        (name, prop::option::of(Just("token".to_owned()))).prop_map(|(n, token)| {
            ClientFrame::Hello {
                name: n.to_owned(),
                token,
            }
        }),
        (room.clone(), id.clone(), prop::option::of("[0-9.]{0,20}")).prop_map(
            |(r, since, epoch)| ClientFrame::Join {
                room: r.to_owned(),
                since: since.map(str::to_owned),
                epoch,
            }
        ),
        room.clone()
            .prop_map(|r| ClientFrame::Leave { room: r.to_owned() }),
        (room.clone(), body, nonce).prop_map(|(r, b, n)| ClientFrame::Send {
            room: r.to_owned(),
            body: b.to_owned(),
            nonce: n.map(str::to_owned),
            reply_to: None,
        }),
        room.clone()
            .prop_map(|r| ClientFrame::Typing { room: r.to_owned() }),
        (room, id, prop::option::of(0u32..200)).prop_map(|(r, before, limit)| {
            ClientFrame::History {
                room: r.to_owned(),
                before: before.map(str::to_owned),
                limit,
            }
        }),
    ];
    prop_oneof![
        6 => frame.prop_map(|f| WsMessage::Text(encode_client(&f).into())),
        2 => any::<String>().prop_map(|t| WsMessage::Text(t.into())),
        1 => prop::collection::vec(any::<u8>(), 0..32).prop_map(|b| WsMessage::Binary(b.into())),
        1 => Just(WsMessage::Ping(Default::default())),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Whatever a client sends, the connection never panics, answers only well-formed frames,
    /// and ends cleanly when the client goes away.
    #[test]
    fn the_connection_state_machine_survives_any_input(inputs in prop::collection::vec(input(), 0..60)) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let outputs = runtime.block_on(async move {
            let state = AppState::new(Arc::new(MemoryBroker::default()), test_config());
            // The server speaks WebSocket over an in-memory pipe to a tungstenite client.
            let (client, server) = tokio::io::duplex(4096);
            let server = tokio::spawn(skat_server::serve_socket(server, state));
            let ws = WebSocketStream::from_raw_socket(client, Role::Client, None).await;
            let (mut sink, mut stream) = ws.split();
            let reader = tokio::spawn(async move {
                let mut outputs = Vec::new();
                while let Some(Ok(frame)) = stream.next().await {
                    outputs.push(frame);
                }
                outputs
            });
            for frame in inputs {
                if sink.send(frame).await.is_err() {
                    break;
                }
            }
            // The closing handshake ends the connection.
            let _ = sink.close().await;
            drop(sink);
            tokio::time::timeout(DEADLINE, server).await.expect("connection hung").unwrap();
            tokio::time::timeout(DEADLINE, reader).await.expect("reader hung").unwrap()
        });
        for output in outputs {
            if let WsMessage::Text(text) = output {
                prop_assert!(decode_server(text.as_str()).is_ok(), "server sent {}", text.as_str());
            }
        }
    }
}

/// A small xorshift generator: reproducible junk without another dependency.
struct Junk(u64);

impl Junk {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() % items.len() as u64) as usize]
    }

    /// One random or malformed frame.
    fn frame(&mut self) -> WsMessage {
        let valid = [
            r#"{"type":"join","room":"general"}"#,
            r#"{"type":"send","room":"general","body":"spam","nonce":"x"}"#,
            r#"{"type":"history","room":"general","limit":100}"#,
            r#"{"type":"typing","room":"general"}"#,
            r#"{"type":"leave","room":"general"}"#,
            r#"{"type":"hello","name":"again"}"#,
        ];
        match self.next() % 6 {
            // A valid frame cut short or with a byte flipped.
            0 => {
                let base = self.pick(&valid).as_bytes();
                let cut = (self.next() as usize) % base.len();
                WsMessage::Text(String::from_utf8_lossy(&base[..cut]).into_owned().into())
            }
            1 => {
                let mut bytes = self.pick(&valid).as_bytes().to_vec();
                let at = (self.next() as usize) % bytes.len();
                bytes[at] = (self.next() % 128) as u8;
                WsMessage::Text(String::from_utf8_lossy(&bytes).into_owned().into())
            }
            // Random characters.
            2 => {
                let len = self.next() % 200;
                let text: String = (0..len)
                    .filter_map(|_| char::from_u32((self.next() % 0x11_0000) as u32))
                    .collect();
                WsMessage::Text(text.into())
            }
            // Wrong types and odd values.
            3 => WsMessage::Text(
                self.pick(&[
                    r#"{"type":"send","room":7,"body":[]}"#,
                    r#"{"type":["join"]}"#,
                    r#"{"type":"history","room":"general","limit":-5}"#,
                    r#"{"type":"join","room":"general","since":"1-"}"#,
                    r#"{"type":"send","room":"general","body":"\u0000"}"#,
                    r#"[{"type":"leave","room":"general"}]"#,
                    "null",
                    "{}",
                ])
                .into(),
            ),
            4 => WsMessage::Binary(self.next().to_le_bytes().to_vec().into()),
            _ => WsMessage::Text(self.pick(&valid).into()),
        }
    }
}

#[tokio::test]
async fn a_hundred_thousand_bad_frames_do_not_disturb_a_normal_client() {
    let node = Node::start().await;
    let mut alice = node.client("alice").await;
    let mut bob = node.client("bob").await;
    join(&mut alice, "general").await;
    join(&mut bob, "general").await;

    const FRAMES: usize = 100_000;
    let mut fuzzers = Vec::new();
    for seed in 1..=4u64 {
        let url = node.url.clone();
        fuzzers.push(tokio::spawn(async move {
            let (ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
            let (mut sink, mut stream) = ws.split();
            // Read replies concurrently so the server is never blocked on us.
            let reader =
                tokio::spawn(async move { while let Some(Ok(_)) = stream.next().await {} });
            let hello = ClientFrame::Hello {
                name: format!("fuzz{seed}"),
                token: None,
            };
            sink.send(WsMessage::Text(encode_client(&hello).into()))
                .await
                .unwrap();
            let mut junk = Junk(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            let mut sent = 0;
            for _ in 0..FRAMES / 4 {
                if sink.send(junk.frame()).await.is_err() {
                    break;
                }
                sent += 1;
            }
            let _ = sink.close().await;
            reader.abort();
            sent
        }));
    }
    // Meanwhile alice and bob chat; every message arrives, in order, with nothing else mixed in
    // but presence, typing and the fuzzers' own messages in the shared room.
    for i in 0..200 {
        alice
            .send_message("general", &format!("m{i}"), Some(&format!("a{i}")))
            .await
            .unwrap();
        let mine = loop {
            let m = message(&mut alice).await;
            if m.from == "alice" {
                break m;
            }
        };
        assert_eq!(mine.body, format!("m{i}"));
        let theirs = loop {
            let m = message(&mut bob).await;
            if m.from == "alice" {
                break m;
            }
        };
        assert_eq!(theirs, mine);
    }
    for fuzzer in fuzzers {
        tokio::time::timeout(Duration::from_secs(120), fuzzer)
            .await
            .unwrap()
            .unwrap();
    }
    // Still serving.
    bob.send_message("general", "after the storm", None)
        .await
        .unwrap();
    loop {
        if let ServerFrame::Message(m) = common::next(&mut alice).await
            && m.body == "after the storm"
        {
            break;
        }
    }
}
