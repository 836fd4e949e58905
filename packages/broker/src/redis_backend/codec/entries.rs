//! Decoding stream entries as Redis returns them (`XRANGE`, the read scripts): messages, with
//! the overlay a read script appends to one that changed (see `lua/state.lua`), and changes.
//! Apart from the pub/sub payloads and key names of the parent module, since this is what
//! history, joins, recovery and catch-up read.

use super::{corrupt, decode_change, decode_message, parse_id};
use crate::redis_backend::error::RedisBrokerError;
use crate::{Change, Message, RoomEvent};

/// Stream entries as Redis returns them (`XRANGE` and friends): `[id, [field, value, ...]]`.
pub(in crate::redis_backend) type Entries = Vec<(String, Vec<String>)>;

/// Decodes stream entries (messages and changes), in the order given.
pub(in crate::redis_backend) fn decode_log(
    room: &str,
    entries: Entries,
) -> Result<Vec<RoomEvent>, RedisBrokerError> {
    entries
        .into_iter()
        .map(|(id, fields)| decode_entry(room, &id, &fields))
        .collect()
}

/// Decodes the entries of a read script (messages in their current state, and a recovery's
/// changes), in the order given, into messages and changes.
pub(in crate::redis_backend) fn decode_split(
    room: &str,
    entries: Entries,
) -> Result<(Vec<Message>, Vec<Change>), RedisBrokerError> {
    let mut messages = Vec::with_capacity(entries.len());
    let mut changes = Vec::new();
    for event in decode_log(room, entries)? {
        match event {
            RoomEvent::Message(message) => messages.push(message),
            RoomEvent::Change(change) => changes.push(change),
            _ => {}
        }
    }
    Ok((messages, changes))
}

/// Decodes a stream entry: a message `[d, encoded]` (and, in its current state as the read
/// scripts give it: `y` the message it replies to, `x` a tombstone, `o` its overlay), or a change
/// `[k, kind, t, target, d, encoded]` (`x`: an edit erased with its message, without its body).
pub(super) fn decode_entry(
    room: &str,
    id: &str,
    fields: &[String],
) -> Result<RoomEvent, RedisBrokerError> {
    match fields {
        [k, kind, t, target, d, encoded, ..] if k == "k" && t == "t" && d == "d" => {
            let mut change = decode_change(room, id, kind, target, encoded)?;
            if fields.len() > 6
                && let Change::Edited(edit) = &mut change
            {
                // Erased with its message: the body is gone.
                edit.body.clear();
            }
            Ok(RoomEvent::Change(change))
        }
        [d, encoded, rest @ ..] if d == "d" => {
            let mut message = decode_message(room, id, encoded)?;
            let mut extras = skat_protocol::Extras::default();
            for pair in rest.chunks(2) {
                match pair {
                    [name, value] if name == "y" => extras.reply_to = Some(parse_id(value)?),
                    [name, _] if name == "x" => extras.deleted = true,
                    [name, value] if name == "o" => {
                        apply_overlay(&mut message, &mut extras, value)?;
                    }
                    _ => return Err(corrupt("unknown message field")),
                }
            }
            if extras.deleted {
                extras = skat_protocol::Extras {
                    deleted: true,
                    ..Default::default()
                };
            }
            if !extras.is_empty() {
                message.extras = Some(Box::new(extras));
            }
            Ok(RoomEvent::Message(message))
        }
        _ => Err(corrupt("stream entry without a d field")),
    }
}

/// Applies a message's overlay (its current state, see `lua/state.lua`) to it.
fn apply_overlay(
    message: &mut Message,
    extras: &mut skat_protocol::Extras,
    overlay: &str,
) -> Result<(), RedisBrokerError> {
    let bad = || corrupt("bad overlay");
    let mut rest = overlay;
    let mut line = || -> Result<&str, RedisBrokerError> {
        let (line, after) = rest.split_once('\n').ok_or_else(bad)?;
        rest = after;
        Ok(line)
    };
    let edited = line()?;
    let reactions: usize = line()?.parse().map_err(|_| bad())?;
    for _ in 0..reactions.min(skat_protocol::MAX_REACTIONS) {
        let emoji = line()?.to_owned();
        let count = line()?.parse().map_err(|_| bad())?;
        let shown: usize = line()?.parse().map_err(|_| bad())?;
        let users = (0..shown.min(skat_protocol::REACTION_USERS_SHOWN))
            .map(|_| line().map(str::to_owned))
            .collect::<Result<_, _>>()?;
        extras.reactions.push(skat_protocol::Reaction {
            emoji,
            count,
            users,
        });
    }
    if !edited.is_empty() {
        extras.edited = Some(edited.parse().map_err(|_| bad())?);
        message.body = rest.to_owned();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_in_its_current_state_decodes_from_its_overlay() {
        let fields = |extra: &[&str]| -> Vec<String> {
            ["d", "alice\n-\nold"]
                .iter()
                .chain(extra)
                .map(|f| f.to_string())
                .collect()
        };
        let decode = |fields: Vec<String>| match decode_entry("r", "5-1", &fields).unwrap() {
            RoomEvent::Message(message) => message,
            other => panic!("{other:?}"),
        };
        let plain = decode(fields(&[]));
        assert_eq!((plain.body.as_str(), plain.extras.is_none()), ("old", true));
        let overlay = "9\n2\n👍\n3\n2\nann\nbob\n🎉\n1\n1\nann\nnew\nbody";
        let changed = decode(fields(&["y", "4-0", "o", overlay]));
        assert_eq!(changed.body, "new\nbody");
        assert_eq!(changed.edited(), Some(9));
        assert_eq!(changed.reply_to(), Some("4-0".parse().unwrap()));
        assert_eq!(changed.reactions()[0].users, ["ann", "bob"]);
        assert_eq!(
            (changed.reactions()[0].count, changed.reactions()[1].count),
            (3, 1)
        );
        let reacted = decode(fields(&["o", "\n1\n👍\n1\n1\nann\n"]));
        assert_eq!((reacted.body.as_str(), reacted.edited()), ("old", None));
        let tombstone = decode(vec![
            "d".into(),
            "alice\n-\n".into(),
            "x".into(),
            "1".into(),
        ]);
        assert!(tombstone.is_deleted() && tombstone.body.is_empty());
        assert!(decode_entry("r", "5-1", &fields(&["o", "9\n"])).is_err());
        assert!(decode_entry("r", "5-1", &fields(&["z", "1"])).is_err());
    }
}
