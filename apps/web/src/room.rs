//! One joined room as the UI shows it, and our sends awaiting confirmation in it.
//!
//! A room keeps its messages itself: they change only through its own methods ([`Room::push`],
//! [`Room::prepend`], [`Room::start_over`]), which keep the two promises views and the reducer
//! rely on: each id is shown once (`ids` is exactly the ids of `messages`), and `version`
//! changes whenever the messages do, never repeating, so a view memoized on it re-renders
//! exactly then. Changes to a message (an edit, a deletion, a reaction: [`Room::apply_change`])
//! change it in place, once: a change the room has seen (its id at or before `since`, the
//! greatest id seen) or whose outcome it already shows changes nothing.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use skat_protocol::{Change, Message, MessageId, REACTION_USERS_SHOWN, Reaction};

/// Messages a room keeps: past it, live messages push the oldest out (they can be loaded again
/// with "load older"), so a busy room costs the page the same after an hour as after a minute.
pub const ROOM_WINDOW: usize = 500;

/// A message we sent and have not seen confirmed yet (or that failed).
#[derive(Debug, Clone, PartialEq)]
pub struct Pending {
    /// Our nonce, echoed by the server in the confirmation or the error.
    pub nonce: String,
    /// The text, kept so it is never lost.
    pub body: String,
    /// Why it failed, once it has.
    pub error: Option<String>,
    /// The generation of the connection it was (last) sent on: each connection has the next
    /// (see [`Chat::on_open`](crate::state::Chat::on_open)).
    pub generation: u64,
    /// When it was first sent, in ms.
    pub sent_at: f64,
    /// The message it replies to, sent again with it on a retry.
    pub reply_to: Option<MessageId>,
}

/// An `edit` we sent and have not seen answered: its text goes back to the composer if the
/// server refuses it.
#[derive(Debug, Clone, PartialEq)]
pub struct SentEdit {
    /// Our nonce, echoed by the server in the `edited` or the error.
    pub nonce: String,
    /// The message it edits.
    pub id: MessageId,
    /// The new text.
    pub body: String,
}

/// Everything the UI shows about one joined room.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Room {
    /// Messages in server order, oldest first, each id once.
    messages: Vec<Message>,
    /// The ids of `messages`, to drop a message seen twice (live and in a page).
    ids: HashSet<MessageId>,
    /// Users online in the room.
    pub members: BTreeSet<String>,
    /// Unread messages: the server's count (`joined`, `read`), plus the live messages received
    /// since while the room was not the one shown.
    pub unread: u32,
    /// The user's read marker (from the server: `joined`, `read`): the last message read.
    pub read: Option<MessageId>,
    /// The marker of the `read` we sent last, awaiting the server's `read`: not sent again.
    pub read_sent: Option<MessageId>,
    /// Where the "new messages" divider goes: after this marker (the read marker when the room
    /// was joined or shown with unread messages; [`MessageId::MIN`] when none was read).
    pub divider: Option<MessageId>,
    /// The message of ours the composer edits, if any.
    pub editing: Option<MessageId>,
    /// The message the composer's next send replies to, if any.
    pub reply_to: Option<MessageId>,
    /// Our sends awaiting confirmation, or failed.
    pub pending: Vec<Pending>,
    /// Our edits awaiting the server's answer on this connection.
    pub edits_sent: Vec<SentEdit>,
    /// Text for the composer to take back (a refused edit's), once: see
    /// [`Chat::take_draft`](crate::state::Chat::take_draft).
    pub draft: Option<String>,
    /// Users typing, with the time (ms) their notice expires.
    pub typing: BTreeMap<String, f64>,
    /// Whether older history exists before the first message.
    pub has_more: bool,
    /// Whether a `history` request is in flight.
    pub loading_older: bool,
    /// Whether the server confirmed the join on the current connection.
    pub joined: bool,
    /// Why the server refused to let us in (e.g. `forbidden`), shown in place of the room;
    /// such a room is not rejoined on reconnects, only when asked for again.
    pub refused: Option<String>,
    /// The room's history epoch from the last `joined`, sent back with `since` on a rejoin so a
    /// history the server lost is not mistaken for what we missed.
    pub history_epoch: Option<String>,
    /// Bumped whenever `messages` changes, so views re-render the list only then.
    version: u64,
    /// The greatest id seen in the room, of a message or a change: the `since` of a rejoin.
    since: Option<MessageId>,
    /// When we last sent a typing frame, in ms.
    pub last_typing_sent: Option<f64>,
    /// While the member list is read page by page (`joined` said there are more): the `after`
    /// of the `members` request in flight.
    pub members_after: Option<String>,
    /// When to ask for that page again, in ms, after the server refused it as over the
    /// request rate.
    pub members_retry_at: Option<f64>,
}

impl Room {
    /// Adds a message unless its id is known; returns whether it was new. Past
    /// [`ROOM_WINDOW`] the oldest messages go (and can be loaded again).
    pub fn push(&mut self, message: Message) -> bool {
        self.seen(message.id);
        if !self.ids.insert(message.id) {
            return false;
        }
        self.messages.push(message);
        if self.messages.len() > ROOM_WINDOW {
            let excess = self.messages.len() - ROOM_WINDOW;
            for old in self.messages.drain(..excess) {
                self.ids.remove(&old.id);
            }
            self.has_more = true;
        }
        self.version += 1;
        true
    }

    /// A page of older messages, put before what the room has (those it already shows are
    /// skipped).
    pub fn prepend(&mut self, page: Vec<Message>) {
        let older: Vec<Message> = page.into_iter().filter(|m| self.ids.insert(m.id)).collect();
        if let Some(newest) = older.last() {
            self.seen(newest.id);
        }
        self.messages.splice(0..0, older);
        self.version += 1;
    }

    /// A gap in the history that cannot be filled: the room starts over, keeping only whether
    /// it is joined, its members and our pending sends (the version moves on, so views see the
    /// change).
    pub fn start_over(&mut self) {
        *self = Room {
            joined: self.joined,
            members: std::mem::take(&mut self.members),
            pending: std::mem::take(&mut self.pending),
            version: self.version + 1,
            ..Room::default()
        };
    }

    /// The messages, oldest first, each id once.
    pub fn messages(&self) -> &[Message] {
        &self.messages
    }

    /// Changes whenever the messages do.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The id of the newest message.
    pub fn last_id(&self) -> Option<MessageId> {
        self.messages.last().map(|m| m.id)
    }

    /// The greatest id seen, of a message or a change: the `since` of a rejoin. Not the last
    /// one received: a no-op reaction's answer carries its target's (older) id.
    pub fn since(&self) -> Option<MessageId> {
        self.since
    }

    fn seen(&mut self, id: MessageId) {
        self.since = self.since.max(Some(id));
    }

    /// The message `id`, if the room shows it.
    pub fn get(&self, id: MessageId) -> Option<&Message> {
        if !self.ids.contains(&id) {
            return None;
        }
        let index = self.messages.binary_search_by_key(&id, |m| m.id).ok()?;
        self.messages.get(index)
    }

    /// The id of the first message after the divider's marker: the divider goes before it.
    pub fn divider_before(&self) -> Option<MessageId> {
        let marker = self.divider?;
        let first = self.messages.partition_point(|m| m.id <= marker);
        self.messages.get(first).map(|m| m.id)
    }

    /// Applies a change (live, or recovered in `joined`) to the message it targets, if shown;
    /// returns whether anything changed. A change seen before (its id at or before the
    /// greatest seen) is skipped, and applying one sets its outcome (a body, a tombstone, a
    /// reaction's count), so a replay is harmless either way. Unknown kinds are skipped.
    pub fn apply_change(&mut self, change: &Change) -> bool {
        let (Some(id), Some(target)) = (change.id(), change.target()) else {
            return false;
        };
        if self.since.is_some_and(|since| id <= since) {
            return false;
        }
        self.seen(id);
        let Ok(index) = self.messages.binary_search_by_key(&target, |m| m.id) else {
            return false;
        };
        let message = &mut self.messages[index];
        let changed = match change {
            // A deleted message stays deleted: nothing changes it any more.
            _ if message.is_deleted() => false,
            Change::Edited(edit) => {
                let moved = message.body != edit.body || message.edited() != Some(edit.ts);
                if moved {
                    message.body.clone_from(&edit.body);
                    message.extras_mut().edited = Some(edit.ts);
                }
                moved
            }
            Change::Deleted(_) => {
                message.body = String::new();
                let extras = message.extras_mut();
                extras.deleted = true;
                extras.reply_to = None;
                extras.edited = None;
                extras.reactions = Vec::new();
                true
            }
            Change::Reacted(r) => react(&mut message.extras_mut().reactions, r),
            Change::Unknown => false,
        };
        if changed {
            self.version += 1;
        }
        changed
    }

    /// Names of users currently typing (not expired at `now`).
    pub fn typing_users(&self, now: f64) -> Vec<&str> {
        self.typing
            .iter()
            .filter(|(_, until)| **until > now)
            .map(|(u, _)| u.as_str())
            .collect()
    }
}

/// Sets the outcome of a reaction change in a message's reactions; returns whether it moved.
fn react(reactions: &mut Vec<Reaction>, change: &skat_protocol::Reacted) -> bool {
    let Some(index) = reactions.iter().position(|r| r.emoji == change.emoji) else {
        if change.count == 0 {
            return false;
        }
        let users = if change.add {
            vec![change.user.clone()]
        } else {
            Vec::new()
        };
        reactions.push(Reaction {
            emoji: change.emoji.clone(),
            count: change.count,
            users,
        });
        return true;
    };
    if change.count == 0 {
        reactions.remove(index);
        return true;
    }
    let reaction = &mut reactions[index];
    let before = (reaction.count, reaction.users.len());
    reaction.count = change.count;
    let listed = reaction.users.iter().position(|u| *u == change.user);
    match (change.add, listed) {
        (true, None) if reaction.users.len() < REACTION_USERS_SHOWN => {
            reaction.users.push(change.user.clone());
        }
        (false, Some(at)) => {
            reaction.users.remove(at);
        }
        _ => {}
    }
    before != (reaction.count, reaction.users.len())
}

/// What a view of a message depends on beyond its id (its body, edit, tombstone, reply and
/// reactions), hashed: a list keyed by id and revision re-renders a message only when it
/// changes.
pub fn revision(message: &Message) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    message.body.hash(&mut hasher);
    message.edited().hash(&mut hasher);
    message.is_deleted().hash(&mut hasher);
    message.reply_to().hash(&mut hasher);
    for reaction in message.reactions() {
        reaction.emoji.hash(&mut hasher);
        reaction.count.hash(&mut hasher);
        reaction.users.hash(&mut hasher);
    }
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(id: &str) -> Message {
        Message {
            room: "a".into(),
            id: id.parse().unwrap(),
            from: "bob".into(),
            body: "x".into(),
            ts: 1,
            nonce: None,
            extras: None,
        }
    }

    fn ids(room: &Room) -> Vec<String> {
        room.messages().iter().map(|m| m.id.to_string()).collect()
    }

    #[test]
    fn each_id_is_shown_once_and_every_change_moves_the_version() {
        let mut room = Room::default();
        assert!(room.push(msg("1-0")));
        let v = room.version();
        assert!(!room.push(msg("1-0")), "seen already");
        assert_eq!(room.version(), v, "nothing changed");
        room.prepend(vec![msg("0-1"), msg("1-0")]);
        assert_eq!(ids(&room), ["0-1", "1-0"], "the known one skipped");
        assert!(room.version() > v);
        assert_eq!(
            room.last_id().map(|id| id.to_string()).as_deref(),
            Some("1-0")
        );
    }

    #[test]
    fn past_the_window_the_oldest_go_and_may_come_back() {
        let mut room = Room::default();
        for i in 0..=ROOM_WINDOW {
            room.push(msg(&format!("1-{i}")));
        }
        assert_eq!(room.messages().len(), ROOM_WINDOW);
        assert!(room.has_more);
        assert_eq!(ids(&room)[0], "1-1");
        // Gone from the window, so new again when a page brings it back.
        room.prepend(vec![msg("1-0")]);
        assert_eq!(ids(&room)[0], "1-0");
    }

    #[test]
    fn a_change_moves_since_and_the_revision_of_its_message_only() {
        let mut room = Room::default();
        room.push(msg("1-0"));
        room.push(msg("2-0"));
        let before = (revision(&room.messages()[0]), revision(&room.messages()[1]));
        let edit = |id: &str, target: &str| {
            Change::Edited(skat_protocol::Edited {
                room: "a".into(),
                id: id.parse().unwrap(),
                target: target.parse().unwrap(),
                by: "bob".into(),
                body: "y".into(),
                ts: 2,
                nonce: None,
            })
        };
        assert!(room.apply_change(&edit("3-0", "1-0")));
        assert_ne!(revision(&room.messages()[0]), before.0);
        assert_eq!(revision(&room.messages()[1]), before.1);
        // A change to a message not loaded changes nothing shown, but is seen.
        assert!(!room.apply_change(&edit("4-0", "0-5")));
        assert_eq!(
            room.since().map(|id| id.to_string()).as_deref(),
            Some("4-0")
        );
        assert_eq!(
            room.get("1-0".parse().unwrap()).map(|m| m.body.as_str()),
            Some("y")
        );
        assert!(room.get("0-5".parse().unwrap()).is_none());
    }

    #[test]
    fn starting_over_keeps_members_and_pending_sends_only() {
        let mut room = Room {
            joined: true,
            unread: 3,
            ..Room::default()
        };
        room.push(msg("1-0"));
        room.members.insert("bob".into());
        room.pending.push(Pending {
            nonce: "n".into(),
            body: "kept".into(),
            error: None,
            generation: 1,
            sent_at: 0.0,
            reply_to: None,
        });
        let v = room.version();
        room.start_over();
        assert!(room.messages().is_empty());
        assert!(room.joined && room.members.contains("bob") && room.pending.len() == 1);
        assert_eq!(room.unread, 0);
        assert!(room.version() > v);
        // The messages it dropped are new again.
        assert!(room.push(msg("1-0")));
    }
}
