//! The private encodings of the Redis backend: the names of its keys and channels, and the
//! text form of messages and events.
//!
//! Messages are stored and published in a compact text form private to this module (this crate
//! does not speak JSON): `<from>\n<nonce byte length or ->\n<nonce><body>`. The published form
//! prefixes `m<id>\n` (a reply: `y<id>\n<reply_to>\n`); changes are published as
//! `c<id>\n<kind>\n<target>\n` and their stored text (see `lua/state.lua`, which also
//! describes the overlays of messages in their current state, decoded here); presence events are
//! `p1<user>` / `p0<user>` (written by the scripts), typing events `t<user>`, disconnect notices
//! `k<user>\n<reason>`, read-marker notices `r<id>\n<unread>\n<user>\n<room>`.
//!
//! A node instance is named `<node id>:<claim token>` ([`instance_name`]). Every key and channel
//! name is made by [`Names`], under the configured prefix (see the
//! backend's module docs for what each holds): a room's are hash-tagged `{<room>}`, so that they
//! share a cluster slot.

mod entries;

pub(super) use entries::{Entries, decode_log, decode_split};

use super::error::RedisBrokerError;
use crate::{Change, Message, MessageId, RoomEvent};
use skat_protocol::{Deleted, Edited, Reacted};

/// The names of the backend's keys and channels, under the configured prefix: the one place
/// they are made.
#[derive(Debug, Clone)]
pub(super) struct Names {
    prefix: Box<str>,
}

impl Names {
    pub(super) fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }

    /// One key of a room: `<prefix>{<room>}:<kind>`, hash-tagged so a room's keys share a slot.
    fn key(&self, room: &str, kind: &str) -> String {
        format!("{}{{{room}}}:{kind}", self.prefix)
    }

    /// The room's messages, a Redis Stream.
    pub(super) fn stream(&self, room: &str) -> String {
        self.key(room, "stream")
    }

    /// The room's pub/sub channel.
    pub(super) fn channel(&self, room: &str) -> String {
        self.key(room, "events")
    }

    /// The newest message id trimmed from the room's stream.
    pub(super) fn trimmed(&self, room: &str) -> String {
        self.key(room, "trimmed")
    }

    /// The room's count hash of members (user → instances holding it).
    pub(super) fn users(&self, room: &str) -> String {
        self.key(room, "users")
    }

    /// The names of the room's members: the users hash's keys as a sorted set with every score
    /// 0, so members page by name.
    pub(super) fn by_name(&self, room: &str) -> String {
        self.key(room, "names")
    }

    /// The room's current-state overlays of changed messages, and their reactors (see
    /// `lua/state.lua`).
    pub(super) fn state(&self, room: &str) -> String {
        self.key(room, "state")
    }

    /// The room's tombstones: deleted messages, by id.
    pub(super) fn gone(&self, room: &str) -> String {
        self.key(room, "gone")
    }

    /// The edits erased with their deleted message, by id.
    pub(super) fn erased(&self, room: &str) -> String {
        self.key(room, "erased")
    }

    /// The room's read markers: user → id.
    pub(super) fn read(&self, room: &str) -> String {
        self.key(room, "read")
    }

    /// The room's history epoch (see [`Broker::epoch`](crate::Broker::epoch)).
    pub(super) fn epoch(&self, room: &str) -> String {
        self.key(room, "epoch")
    }

    /// The set of the users node instance `instance` holds in `room`.
    pub(super) fn held(&self, room: &str, instance: &str) -> String {
        format!("{}{{{room}}}:held:{instance}", self.prefix)
    }

    /// The dedup key of a sender's nonce: a room's key like the others (a cluster needs every
    /// key of a script in one slot); the sender's name cannot contain a newline.
    pub(super) fn dedup(&self, room: &str, from: &str, nonce: &str) -> String {
        format!("{}{{{room}}}:dedup:{from}\n{nonce}", self.prefix)
    }

    /// The dedup key of a change of the nonce space `space` (`ChangeKind::nonce_space`) that
    /// `by` asked with `nonce`: `dedup-<space>:` cannot be mistaken for a send's `dedup:`.
    pub(super) fn change_dedup(&self, room: &str, space: &str, by: &str, nonce: &str) -> String {
        format!("{}{{{room}}}:dedup-{space}:{by}\n{nonce}", self.prefix)
    }

    /// The dedup key of a publish that came without a nonce, under the node's own `n`th
    /// (`tag`: the node's instance at start): `sent:` cannot be mistaken for a sender's
    /// `dedup:`.
    pub(super) fn own_dedup(&self, room: &str, tag: &str, n: u64) -> String {
        format!("{}{{{room}}}:sent:{tag}:{n}", self.prefix)
    }

    /// The rooms `instance` has held entries in.
    pub(super) fn instance_rooms(&self, instance: &str) -> String {
        format!("{}instance:{instance}:rooms", self.prefix)
    }

    /// The claim on node id `node_id` (see `claim`).
    pub(super) fn claim(&self, node_id: &str) -> String {
        format!("{}node:{node_id}", self.prefix)
    }

    /// The registry of node instances: instance → its last heartbeat (Unix ms).
    pub(super) fn nodes(&self) -> String {
        format!("{}nodes", self.prefix)
    }

    /// The lock of the node sweeping dead instance `instance`.
    pub(super) fn sweep_lock(&self, instance: &str) -> String {
        format!("{}sweep:{instance}", self.prefix)
    }

    /// The index of rooms ([`Broker::rooms`](crate::Broker::rooms)).
    pub(super) fn rooms(&self) -> String {
        format!("{}rooms", self.prefix)
    }
}

/// The name of node `node_id`'s instance holding the claim `token`: `<node id>:<token>`.
pub(super) fn instance_name(node_id: &str, token: &str) -> String {
    format!("{node_id}:{token}")
}

/// The node id and claim token of an instance (`<node id>:<token>`), split at the last `:`: a
/// token has none, and neither has a valid node id, so the id is exact (an older node's id
/// could hold one: `chat:2`'s instances are not `chat`'s).
pub(super) fn split_instance(instance: &str) -> Option<(&str, &str)> {
    instance.rsplit_once(':')
}

/// Encodes a message for the stream: `<from>\n<nonce byte length or ->\n<nonce><body>`.
pub(super) fn encode_message(from: &str, nonce: Option<&str>, body: &str) -> String {
    match nonce {
        Some(nonce) => format!("{from}\n{}\n{nonce}{body}", nonce.len()),
        None => format!("{from}\n-\n{body}"),
    }
}

/// Encodes a typing event: `t<user>`.
pub(super) fn encode_typing(user: &str) -> String {
    format!("t{user}")
}

/// Encodes a disconnect notice: `k<user>\n<reason>`.
pub(super) fn encode_disconnect(user: &str, reason: &str) -> String {
    format!("k{user}\n{reason}")
}

fn corrupt(what: &str) -> RedisBrokerError {
    RedisBrokerError::Corrupt(what.to_owned())
}

/// Parses a stream id Redis gave us.
pub(super) fn parse_id(id: &str) -> Result<MessageId, RedisBrokerError> {
    id.parse()
        .map_err(|e| RedisBrokerError::Corrupt(format!("{e}")))
}

/// Decodes [`encode_message`]'s output.
fn decode_message(room: &str, id: &str, encoded: &str) -> Result<Message, RedisBrokerError> {
    let id = parse_id(id)?;
    let (from, nonce, body) = split_stored(encoded, "message")?;
    Ok(Message {
        room: room.to_owned(),
        id,
        from: from.to_owned(),
        body: body.to_owned(),
        ts: id.ms,
        nonce: nonce.map(str::to_owned),
        extras: None,
    })
}

/// Splits a stored text `<who>\n<nonce byte length or ->\n<nonce><rest>` (a message's, or a
/// change's: see `lua/state.lua`) into who, nonce and the rest.
fn split_stored<'a>(
    encoded: &'a str,
    what: &str,
) -> Result<(&'a str, Option<&'a str>, &'a str), RedisBrokerError> {
    let (who, rest) = encoded
        .split_once('\n')
        .ok_or_else(|| corrupt(&format!("{what} without sender")))?;
    let (len, rest) = rest
        .split_once('\n')
        .ok_or_else(|| corrupt(&format!("{what} without nonce length")))?;
    match len {
        "-" => Ok((who, None, rest)),
        len => {
            let len: usize = len.parse().map_err(|_| corrupt("bad nonce length"))?;
            if !rest.is_char_boundary(len) {
                return Err(corrupt("nonce length past the data"));
            }
            let (nonce, rest) = rest.split_at(len);
            Ok((who, Some(nonce), rest))
        }
    }
}

/// Encodes a change for the stream and its event, without its payload: `<by>\n<nonce byte
/// length or ->\n<nonce>` (the script appends an edit's body, or a reaction's outcome).
pub(super) fn encode_change_head(by: &str, nonce: Option<&str>) -> String {
    encode_message(by, nonce, "")
}

/// Decodes a change of kind `kind` (`e`, `d`, `r`) with id `id` to `target`, stored as
/// `encoded` (see [`encode_change_head`]).
fn decode_change(
    room: &str,
    id: &str,
    kind: &str,
    target: &str,
    encoded: &str,
) -> Result<Change, RedisBrokerError> {
    let id = parse_id(id)?;
    let target = parse_id(target)?;
    let (by, nonce, rest) = split_stored(encoded, "change")?;
    let (room, by, nonce, ts) = (
        room.to_owned(),
        by.to_owned(),
        nonce.map(str::to_owned),
        id.ms,
    );
    Ok(match kind {
        "e" => Change::Edited(Edited {
            room,
            id,
            target,
            by,
            body: rest.to_owned(),
            ts,
            nonce,
        }),
        "d" => Change::Deleted(Deleted {
            room,
            id,
            target,
            by,
            ts,
            nonce,
        }),
        "r" => {
            let (add, rest) = rest
                .split_at_checked(1)
                .ok_or_else(|| corrupt("empty reaction"))?;
            let (count, emoji) = rest
                .split_once('\n')
                .ok_or_else(|| corrupt("reaction without emoji"))?;
            Change::Reacted(Reacted {
                room,
                id,
                target,
                user: by,
                emoji: emoji.to_owned(),
                add: add == "1",
                count: count.parse().map_err(|_| corrupt("bad reaction count"))?,
                nonce,
            })
        }
        _ => return Err(corrupt("unknown change kind")),
    })
}

/// Encodes a read marker's move for the nodes' channel: `r<id>\n<unread>\n<user>\n<room>`.
pub(super) fn encode_read(room: &str, user: &str, id: MessageId, unread: u32) -> String {
    format!("r{id}\n{unread}\n{user}\n{room}")
}

/// Decodes a pub/sub payload.
pub(super) fn decode_event(room: &str, payload: &[u8]) -> Result<RoomEvent, RedisBrokerError> {
    let text = std::str::from_utf8(payload).map_err(|_| corrupt("event is not UTF-8"))?;
    let mut chars = text.chars();
    match chars.next() {
        Some('m') => {
            let (id, encoded) = chars
                .as_str()
                .split_once('\n')
                .ok_or_else(|| corrupt("message event without id"))?;
            Ok(RoomEvent::Message(decode_message(room, id, encoded)?))
        }
        Some('y') => {
            let mut parts = chars.as_str().splitn(3, '\n');
            let (Some(id), Some(reply_to), Some(encoded)) =
                (parts.next(), parts.next(), parts.next())
            else {
                return Err(corrupt("reply event without its ids"));
            };
            let mut message = decode_message(room, id, encoded)?;
            message.extras = Some(Box::new(skat_protocol::Extras {
                reply_to: Some(parse_id(reply_to)?),
                ..Default::default()
            }));
            Ok(RoomEvent::Message(message))
        }
        Some('c') => {
            let mut parts = chars.as_str().splitn(4, '\n');
            let (Some(id), Some(kind), Some(target), Some(encoded)) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                return Err(corrupt("change event without its ids"));
            };
            Ok(RoomEvent::Change(decode_change(
                room, id, kind, target, encoded,
            )?))
        }
        Some('r') => {
            let mut parts = chars.as_str().splitn(4, '\n');
            let (Some(id), Some(unread), Some(user), Some(read_room)) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                return Err(corrupt("read event without its fields"));
            };
            Ok(RoomEvent::Read {
                room: read_room.to_owned(),
                user: user.to_owned(),
                id: parse_id(id)?,
                unread: unread.parse().map_err(|_| corrupt("bad unread count"))?,
            })
        }
        Some('p') => {
            let rest = chars.as_str();
            let online = match rest.as_bytes().first() {
                Some(b'1') => true,
                Some(b'0') => false,
                _ => return Err(corrupt("presence event without state")),
            };
            Ok(RoomEvent::Presence {
                room: room.to_owned(),
                user: rest[1..].to_owned(),
                online,
            })
        }
        Some('t') => Ok(RoomEvent::Typing {
            room: room.to_owned(),
            user: chars.as_str().to_owned(),
        }),
        Some('k') => {
            let (user, reason) = chars
                .as_str()
                .split_once('\n')
                .ok_or_else(|| corrupt("disconnect notice without reason"))?;
            Ok(RoomEvent::Disconnect {
                user: user.to_owned(),
                reason: reason.to_owned(),
            })
        }
        _ => Err(corrupt("unknown event kind")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_encoding_round_trips() {
        for (nonce, body) in [
            (None, "hi"),
            (Some("c-1"), "multi\nline\n"),
            (Some(""), "-\n5\n"),
            (Some("é\n"), "ü"),
        ] {
            let encoded = encode_message("alice", nonce, body);
            let message = decode_message("r", "5-1", &encoded).unwrap();
            assert_eq!(message.from, "alice");
            assert_eq!(message.nonce.as_deref(), nonce);
            assert_eq!(message.body, body);
            assert_eq!(message.ts, 5);
            let event = decode_event("r", format!("m5-1\n{encoded}").as_bytes()).unwrap();
            assert_eq!(event, RoomEvent::Message(message));
        }
    }

    #[test]
    fn replies_changes_and_read_markers_decode() {
        let encoded = encode_message("bob", Some("n"), "re");
        let RoomEvent::Message(reply) =
            decode_event("r", format!("y5-2\n5-1\n{encoded}").as_bytes()).unwrap()
        else {
            panic!("not a message")
        };
        assert_eq!(
            (reply.reply_to(), reply.body.as_str()),
            (Some("5-1".parse().unwrap()), "re")
        );
        let head = encode_change_head("ann", None);
        let change = |kind: &str, rest: &str| {
            decode_event("r", format!("c6-0\n{kind}\n5-1\n{head}{rest}").as_bytes()).unwrap()
        };
        let RoomEvent::Change(Change::Edited(edit)) = change("e", "new\nbody") else {
            panic!("not an edit")
        };
        assert_eq!(
            (edit.body.as_str(), edit.ts, edit.by.as_str()),
            ("new\nbody", 6, "ann")
        );
        let RoomEvent::Change(Change::Reacted(r)) = change("r", "112\n👍") else {
            panic!("not a reaction")
        };
        assert_eq!(
            (r.add, r.count, r.emoji.as_str(), r.user.as_str()),
            (true, 12, "👍", "ann")
        );
        assert!(matches!(
            change("d", ""),
            RoomEvent::Change(Change::Deleted(_))
        ));
        let read = encode_read("a\nroom", "bob", "7-0".parse().unwrap(), 3);
        assert_eq!(
            decode_event("~nodes", read.as_bytes()).unwrap(),
            RoomEvent::Read {
                room: "a\nroom".into(),
                user: "bob".into(),
                id: "7-0".parse().unwrap(),
                unread: 3
            }
        );
        for bad in [
            &b"c6-0\nq\n5-1\nann\n-\n"[..],
            b"c6-0\nr\n5-1\nann\n-\n",
            b"y5-2\n5-1",
            b"r7-0\nx\nbob\nr",
        ] {
            assert!(decode_event("r", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn names_are_hash_tagged_by_room() {
        let names = Names::new("skat:");
        assert_eq!(names.stream("general"), "skat:{general}:stream");
        assert_eq!(names.channel("general"), "skat:{general}:events");
        assert_eq!(names.by_name("general"), "skat:{general}:names");
        assert_eq!(names.state("general"), "skat:{general}:state");
        assert_eq!(names.gone("general"), "skat:{general}:gone");
        assert_eq!(names.erased("general"), "skat:{general}:erased");
        assert_eq!(names.read("general"), "skat:{general}:read");
        // The scripts name the side keys after the stream key (`side_key` in `lua/state.lua`).
        let base = names
            .stream("general")
            .strip_suffix("stream")
            .unwrap()
            .to_owned();
        assert_eq!(base + "state", names.state("general"));
        assert_eq!(names.held("general", "n:t"), "skat:{general}:held:n:t");
        assert_eq!(
            names.dedup("general", "bob", "c-1"),
            "skat:{general}:dedup:bob\nc-1"
        );
        assert_eq!(
            names.change_dedup("general", "r1", "bob", "c-1"),
            "skat:{general}:dedup-r1:bob\nc-1",
            "a change's nonces are apart from a send's, one key space per kind"
        );
        assert_eq!(
            names.own_dedup("general", "n:t", 7),
            "skat:{general}:sent:n:t:7"
        );
        assert_eq!(names.instance_rooms("n:t"), "skat:instance:n:t:rooms");
        assert_eq!(instance_name("chat", "t"), "chat:t");
        assert_eq!(split_instance("chat:2:t"), Some(("chat:2", "t")));
    }

    #[test]
    fn events_decode() {
        assert_eq!(
            decode_event("r", b"p1bob").unwrap(),
            RoomEvent::Presence {
                room: "r".into(),
                user: "bob".into(),
                online: true
            }
        );
        assert_eq!(
            decode_event("r", b"p0bob").unwrap(),
            RoomEvent::Presence {
                room: "r".into(),
                user: "bob".into(),
                online: false
            }
        );
        assert_eq!(
            decode_event("r", b"tbob").unwrap(),
            RoomEvent::Typing {
                room: "r".into(),
                user: "bob".into()
            }
        );
        assert_eq!(
            decode_event("r", encode_typing("bob").as_bytes()).unwrap(),
            decode_event("r", b"tbob").unwrap()
        );
        assert_eq!(
            decode_event("~nodes", encode_disconnect("bob", "bye\nnow").as_bytes()).unwrap(),
            RoomEvent::Disconnect {
                user: "bob".into(),
                reason: "bye\nnow".into()
            }
        );
        for bad in [
            &b""[..],
            b"kbob",
            b"x",
            b"m5-1",
            b"m5-1\nalice",
            b"m5-1\nalice\n9\nab",
            b"p",
            b"\xff",
        ] {
            assert!(decode_event("r", bad).is_err(), "{bad:?}");
        }
    }
}
