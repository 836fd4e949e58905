//! Encoded sizes, and the reply-size policy built on them.
//!
//! Replies that carry many messages (`joined`, `history`, the API's pages) are bounded in bytes,
//! and the bytes that matter are the ones on the wire: JSON escaping turns a control character of
//! a body into six bytes (`\u0001`), so a bound on the raw text would let a reply of 4000-character
//! bodies grow six times past it. This is the crate that knows JSON, so it counts here, exactly
//! as `serde_json` writes, without encoding anything: bounding a reply must not cost the
//! allocations of building it twice. Every backend and every reply uses these functions (the
//! Redis backend's recovery script counts the same way from its stored form); the unit tests
//! below hold them to `serde_json`'s output.

use crate::id::digits;
use crate::{Extras, Message, Reaction};

/// How many bytes each byte of a string takes inside a JSON string, as `serde_json` escapes it:
/// `"` and `\` and the control characters with a short escape (`\b \t \n \f \r`) take 2, the
/// other control characters (below 0x20) 6 (`\u00XX`), everything else (DEL and non-ASCII
/// included) itself.
const ESCAPED: [u8; 256] = {
    let mut table = [1u8; 256];
    let mut byte = 0;
    while byte < 0x20 {
        table[byte] = 6;
        byte += 1;
    }
    table[0x08] = 2;
    table[0x09] = 2;
    table[0x0a] = 2;
    table[0x0c] = 2;
    table[0x0d] = 2;
    table[b'"' as usize] = 2;
    table[b'\\' as usize] = 2;
    table
};

/// The bytes `s` takes between the quotes of a JSON string.
pub fn escaped_len(s: &str) -> usize {
    s.bytes()
        .map(|b| usize::from(ESCAPED[usize::from(b)]))
        .sum()
}

/// The bytes of [`message_size`] that are not field values, for a message without a nonce: the
/// braces, keys, quotes and colons of `{"room":"","id":"","from":"","body":"","ts":}` and the
/// comma that separates it from the next message of a list.
pub const MESSAGE_FRAMING: usize = 46;

/// What a nonce adds to [`message_size`] besides its escaped value: `,"nonce":""`.
pub const NONCE_FRAMING: usize = 11;

/// What a `reply_to` adds to [`message_size`] besides the id: `,"reply_to":""`. Public, like
/// the other framings, for a backend that counts a message from its own stored form (the Redis
/// backend's scripts).
pub const REPLY_TO_FRAMING: usize = 14;
/// What an `edited` time adds besides its digits: `,"edited":`.
pub const EDITED_FRAMING: usize = 10;
/// What a deletion adds: `,"deleted":true`.
pub const DELETED_SIZE: usize = 15;
/// What a non-empty `reactions` adds besides its entries and the commas between them:
/// `,"reactions":[]`.
pub const REACTIONS_FRAMING: usize = 15;
/// What one reaction takes besides its values and the commas between its users:
/// `{"emoji":"","count":,"users":[]}`.
pub const REACTION_FRAMING: usize = 32;

/// The bytes `message` adds to a list of messages in a frame: exactly its JSON as
/// `serde_json` writes it, plus one for the comma that separates it from the next. So the
/// `messages` of a reply (what its brackets enclose) take less than the sum of their sizes.
pub fn message_size(message: &Message) -> usize {
    MESSAGE_FRAMING
        + escaped_len(&message.room)
        + message.id.text_len()
        + escaped_len(&message.from)
        + escaped_len(&message.body)
        + digits(message.ts)
        + message
            .nonce
            .as_deref()
            .map_or(0, |nonce| NONCE_FRAMING + escaped_len(nonce))
        + message.extras.as_deref().map_or(0, extras_size)
}

/// The bytes of a message's extras, each field counted only when it is written (present, `true`,
/// non-empty), as `Message`'s serializer skips the others.
fn extras_size(extras: &Extras) -> usize {
    let reply_to = extras
        .reply_to
        .map_or(0, |id| REPLY_TO_FRAMING + id.text_len());
    let edited = extras.edited.map_or(0, |ms| EDITED_FRAMING + digits(ms));
    let deleted = if extras.deleted { DELETED_SIZE } else { 0 };
    let reactions = match extras.reactions.len() {
        0 => 0,
        n => {
            REACTIONS_FRAMING + (n - 1) + extras.reactions.iter().map(reaction_size).sum::<usize>()
        }
    };
    reply_to + edited + deleted + reactions
}

/// The bytes of one reaction's JSON object.
fn reaction_size(reaction: &Reaction) -> usize {
    let users: usize = reaction.users.iter().map(|u| 2 + escaped_len(u)).sum();
    REACTION_FRAMING
        + escaped_len(&reaction.emoji)
        + digits(u64::from(reaction.count))
        + users
        + reaction.users.len().saturating_sub(1)
}

/// The reply-size policy: drops the oldest of `messages` (oldest first) until the sizes of the
/// rest ([`message_size`]) add up to at most `max_bytes`, so their JSON in the reply stays below
/// it; returns whether any was dropped, and the client pages back from the oldest one kept.
///
/// At least one message is kept whatever its size, so a message larger than the bound on its own
/// (a 4000-character body of control characters is 24 KB escaped) is still delivered, alone; its
/// size is bounded by the protocol's limits on bodies, nonces and names.
pub fn keep_newest_within(messages: &mut Vec<Message>, max_bytes: usize) -> bool {
    let mut bytes = 0usize;
    let keep = messages
        .iter()
        .rev()
        .take_while(|m| {
            bytes = bytes.saturating_add(message_size(m));
            bytes <= max_bytes
        })
        .count()
        .max(1)
        .min(messages.len());
    let cut = messages.len() - keep;
    messages.drain(..cut);
    cut > 0
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::MessageId;

    fn message(body: &str, nonce: Option<&str>) -> Message {
        Message {
            room: "r".into(),
            id: MessageId { ms: 1, seq: 0 },
            from: "a".into(),
            body: body.into(),
            ts: 1,
            nonce: nonce.map(str::to_owned),
            extras: None,
        }
    }

    fn json_len(message: &Message) -> usize {
        serde_json::to_string(message).unwrap().len()
    }

    #[test]
    fn every_byte_escapes_as_serde_json_escapes_it() {
        for c in (0u8..0x80).map(char::from).chain(['é', '\u{2028}', '💬']) {
            let s = c.to_string();
            let json = serde_json::to_string(&s).unwrap();
            assert_eq!(escaped_len(&s), json.len() - 2, "{c:?} is {json}");
        }
    }

    #[test]
    fn the_framing_is_what_an_empty_message_takes() {
        let mut empty = message("", None);
        empty.room.clear();
        empty.from.clear();
        let fields = empty.id.text_len() + 1;
        assert_eq!(json_len(&empty) + 1, MESSAGE_FRAMING + fields);
        empty.nonce = Some(String::new());
        assert_eq!(
            json_len(&empty) + 1,
            MESSAGE_FRAMING + NONCE_FRAMING + fields
        );
    }

    #[test]
    fn the_extras_framing_is_what_empty_extras_take() {
        let plain = message("", None);
        let base = json_len(&plain);
        let with = |extras: Extras| {
            let mut m = plain.clone();
            m.extras = Some(Box::new(extras));
            m
        };
        let id = MessageId { ms: 1, seq: 0 };
        let m = with(Extras {
            reply_to: Some(id),
            ..Extras::default()
        });
        assert_eq!(json_len(&m) - base, REPLY_TO_FRAMING + id.text_len());
        let m = with(Extras {
            edited: Some(7),
            ..Extras::default()
        });
        assert_eq!(json_len(&m) - base, EDITED_FRAMING + 1);
        let m = with(Extras {
            deleted: true,
            ..Extras::default()
        });
        assert_eq!(json_len(&m) - base, DELETED_SIZE);
        let empty = Reaction {
            emoji: String::new(),
            count: 0,
            users: Vec::new(),
        };
        let m = with(Extras {
            reactions: vec![empty],
            ..Extras::default()
        });
        assert_eq!(
            json_len(&m) - base,
            REACTIONS_FRAMING + REACTION_FRAMING + 1
        );
        // Empty extras are written as nothing at all.
        assert_eq!(json_len(&with(Extras::default())), base);
        assert_eq!(message_size(&with(Extras::default())), message_size(&plain));
    }

    #[test]
    fn a_body_of_control_characters_counts_six_times() {
        let body = "\u{1}".repeat(4000);
        let size = message_size(&message(&body, None));
        assert_eq!(size, json_len(&message(&body, None)) + 1);
        assert!(size > 24_000, "{size}");
    }

    /// Strings made of the characters that escape differently, and a few that do not.
    fn tricky() -> impl Strategy<Value = String> {
        let chars = prop::sample::select(vec![
            '\0', '\u{1}', '\u{8}', '\t', '\n', '\u{b}', '\u{c}', '\r', '\u{1f}', ' ', '"', '\\',
            '/', '\u{7f}', 'a', 'é', '\u{2028}', '💬',
        ]);
        prop::collection::vec(chars, 0..40).prop_map(String::from_iter)
    }

    fn ids() -> impl Strategy<Value = MessageId> {
        (any::<u64>(), any::<u64>()).prop_map(|(ms, seq)| MessageId { ms, seq })
    }

    /// Extras of every shape: absent, empty, and each field present or not, with tricky text.
    fn extras() -> impl Strategy<Value = Option<Box<Extras>>> {
        let reaction = (
            tricky(),
            any::<u32>(),
            prop::collection::vec(tricky(), 0..4),
        )
            .prop_map(|(emoji, count, users)| Reaction {
                emoji,
                count,
                users,
            });
        let extras = (
            prop::option::of(ids()),
            prop::option::of(any::<u64>()),
            any::<bool>(),
            prop::collection::vec(reaction, 0..4),
        )
            .prop_map(|(reply_to, edited, deleted, reactions)| Extras {
                reply_to,
                edited,
                deleted,
                reactions,
            });
        prop::option::of(extras.prop_map(Box::new))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]

        /// `message_size` is exactly what `serde_json` writes, plus the separator.
        #[test]
        fn message_size_is_the_encoded_size(
            room in tricky(),
            from in tricky(),
            body in tricky(),
            nonce in prop::option::of(tricky()),
            id in ids(),
            ts in any::<u64>(),
            extras in extras(),
        ) {
            let m = Message { room, id, from, body, ts, nonce, extras };
            prop_assert_eq!(message_size(&m), json_len(&m) + 1);
        }
    }

    #[test]
    fn pages_keep_their_newest_messages_within_the_bound() {
        let page: Vec<Message> = ["old", "mid", "new"].map(|b| message(b, None)).into();
        let size = message_size(&page[0]);
        let mut all = page.clone();
        assert!(!keep_newest_within(&mut all, 3 * size));
        assert_eq!(all, page);
        let mut two = page.clone();
        assert!(keep_newest_within(&mut two, 3 * size - 1));
        assert_eq!(two, page[1..]);
        let mut one = page.clone();
        assert!(
            keep_newest_within(&mut one, 1),
            "the newest is kept whatever its size"
        );
        assert_eq!(one, page[2..]);
        assert!(!keep_newest_within(&mut Vec::new(), 1));
    }

    #[test]
    fn kept_messages_encode_within_the_bound() {
        // Raw, these are 100 bytes each; escaped, 600.
        let page: Vec<Message> = (0..10)
            .map(|_| message(&"\u{1}".repeat(100), None))
            .collect();
        let mut kept = page.clone();
        keep_newest_within(&mut kept, 2000);
        let json = serde_json::to_string(&kept).unwrap();
        assert!(json.len() - 2 <= 2000, "{}", json.len());
        assert_eq!(kept.len(), 2000 / message_size(&page[0]));
    }
}
