//! Property tests: decoding never panics on any input, and every frame survives a round trip.

#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use skat_protocol::{ClientFrame, decode_client, decode_server, encode_client};

/// Text that looks like frames: JSON punctuation, keys, type names and junk.
fn framey() -> impl Strategy<Value = String> {
    let atoms = prop::sample::select(vec![
        "{",
        "}",
        "[",
        "]",
        ":",
        ",",
        "\"",
        "\"type\"",
        "\"hello\"",
        "\"join\"",
        "\"send\"",
        "\"room\"",
        "\"body\"",
        "\"nonce\"",
        "\"limit\"",
        "\"since\"",
        "\"before\"",
        "null",
        "true",
        "-1",
        "1e999",
        "18446744073709551616",
        "\"\\u0000\"",
        "\"\\ud800\"",
        "é",
        "💬",
        " ",
        "\\",
    ]);
    prop::collection::vec(atoms, 0..40).prop_map(|parts| parts.concat())
}

fn client_frame() -> impl Strategy<Value = ClientFrame> {
    let s = ".{0,80}";
    let opt = prop::option::of(s);
    prop_oneof![
        (s, opt.clone()).prop_map(|(name, token)| ClientFrame::Hello { name, token }),
        (s, opt.clone(), opt.clone()).prop_map(|(room, since, epoch)| ClientFrame::Join {
            room,
            since,
            epoch
        }),
        s.prop_map(|room| ClientFrame::Leave { room }),
        (s, ".{0,300}", opt.clone(), opt.clone()).prop_map(|(room, body, nonce, reply_to)| {
            ClientFrame::Send {
                room,
                body,
                nonce,
                reply_to,
            }
        }),
        (s, s, ".{0,300}", opt.clone()).prop_map(|(room, id, body, nonce)| ClientFrame::Edit {
            room,
            id,
            body,
            nonce
        }),
        (s, s, opt.clone()).prop_map(|(room, id, nonce)| ClientFrame::Delete { room, id, nonce }),
        (s, s, ".{0,8}", any::<bool>(), opt.clone()).prop_map(|(room, id, emoji, add, nonce)| {
            ClientFrame::React {
                room,
                id,
                emoji,
                add,
                nonce,
            }
        }),
        (s, s).prop_map(|(room, id)| ClientFrame::Read { room, id }),
        s.prop_map(|room| ClientFrame::Typing { room }),
        (s, opt, prop::option::of(any::<u32>())).prop_map(|(room, before, limit)| {
            ClientFrame::History {
                room,
                before,
                limit,
            }
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn decoding_arbitrary_text_never_panics(text in any::<String>()) {
        let _ = decode_client(&text);
        let _ = decode_server(&text);
    }

    #[test]
    fn decoding_frame_like_text_never_panics(text in framey()) {
        if let Err(err) = decode_client(&text) {
            prop_assert!(!err.message.is_empty());
        }
        let _ = decode_server(&text);
    }

    #[test]
    fn client_frames_round_trip(frame in client_frame()) {
        prop_assert_eq!(decode_client(&encode_client(&frame)).unwrap(), frame);
    }
}
