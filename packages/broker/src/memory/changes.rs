//! The embedded broker's rules for changes to messages (edit, delete, react), applied to a
//! room's state under its lock, so the checks (the target exists, who wrote it, how many
//! reactions it has) and the effect are one atomic step, as [`Broker::change`] requires.
//!
//! Kept apart from `mod.rs` (the broker's calls) and `room.rs` (the room's data and the rules
//! every call shares) because they are the one place that rewrites a stored message.
//!
//! [`Broker::change`]: crate::Broker::change

use skat_protocol::{Change, Edited, Extras, MAX_REACTIONS, REACTION_USERS_SHOWN, Reaction};

use super::room::{Entry, RoomState};
use crate::{ChangeKind, ChangeRefusal, Changed, MessageId, NewChange};

/// What a change does to the room, decided before anything is written.
pub(super) enum Plan {
    /// Refused, or a reaction that repeats the current one: nothing to store.
    Done(Changed),
    /// Store it; for a reaction, the emoji's resulting count.
    Store {
        /// A reaction's resulting count (0 for the other kinds).
        count: u32,
    },
}

impl RoomState {
    /// Checks `change` against the room's state and, for a reaction, records it among the
    /// message's reactors (the log entry and the message's summary follow in [`Self::apply`]).
    pub(super) fn plan(&mut self, change: &NewChange) -> Plan {
        let Some(message) = self.live_message_mut(change.target) else {
            return Plan::Done(Changed::Refused(ChangeRefusal::NoSuchMessage));
        };
        let (emoji, add) = match &change.kind {
            ChangeKind::Edit { .. } | ChangeKind::Delete => {
                if change.as_author && message.from != change.by {
                    return Plan::Done(Changed::Refused(ChangeRefusal::NotAuthor));
                }
                return Plan::Store { count: 0 };
            }
            ChangeKind::React { emoji, add } => (emoji, *add),
        };
        let reactions = self
            .reactors
            .get_or_insert_default()
            .entry(change.target)
            .or_default();
        let slot = reactions.iter().position(|(e, _)| e == emoji);
        let users = slot.map(|i| &reactions[i].1);
        let has = users.is_some_and(|users| users.contains(&change.by));
        let count = users.map_or(0, |users| count_of(users.len()));
        if has == add {
            // Repeats the user's current reaction: nothing changes, nothing is stored.
            self.forget_empty_reactors(change.target);
            let current = change.clone().stored_as(change.target, count);
            return Plan::Done(Changed::New(current));
        }
        match (slot, add) {
            (Some(i), true) => reactions[i].1.push(change.by.clone()),
            (None, true) if reactions.len() >= MAX_REACTIONS => {
                self.forget_empty_reactors(change.target);
                return Plan::Done(Changed::Refused(ChangeRefusal::TooManyReactions));
            }
            (None, true) => reactions.push((emoji.clone(), vec![change.by.clone()])),
            (Some(i), false) => {
                reactions[i].1.retain(|user| *user != change.by);
                if reactions[i].1.is_empty() {
                    reactions.remove(i);
                }
            }
            // `has == add` above: removing what is not there returned already.
            (None, false) => {}
        }
        let count = reactions
            .iter()
            .find(|(e, _)| e == emoji)
            .map_or(0, |(_, users)| count_of(users.len()));
        Plan::Store { count }
    }

    /// Applies a stored change to its target's current state.
    pub(super) fn apply(&mut self, change: &Change) {
        let Some(target) = change.target() else {
            return;
        };
        match change {
            Change::Edited(edit) => {
                if let Some(message) = self.live_message_mut(target) {
                    message.body.clone_from(&edit.body);
                    message.extras_mut().edited = Some(edit.ts);
                }
            }
            Change::Deleted(_) => {
                if let Some(message) = self.live_message_mut(target) {
                    // Dropped, not hidden: the body's memory goes, and so does the quote and
                    // the reactions (a tombstone has none).
                    message.body = String::new();
                    message.extras = Some(Box::new(Extras {
                        deleted: true,
                        ..Extras::default()
                    }));
                }
                if let Some(reactors) = &mut self.reactors {
                    reactors.remove(&target);
                }
                self.forget_empty_reactors(target);
                // The edits' bodies are the message's body too: gone with it.
                for entry in &mut self.history {
                    if let Entry::Change(c) = entry
                        && let Change::Edited(Edited {
                            target: t, body, ..
                        }) = c.as_mut()
                        && *t == target
                    {
                        *body = String::new();
                    }
                }
            }
            Change::Reacted(_) => {
                let summary = self.summary(target);
                if let Some(message) = self.live_message_mut(target) {
                    message.extras_mut().reactions = summary;
                    if message.extras.as_deref().is_some_and(Extras::is_empty) {
                        message.extras = None;
                    }
                }
                self.forget_empty_reactors(target);
            }
            Change::Unknown => {}
        }
    }

    /// The reaction summary of message `id`: each emoji's exact count and its first users.
    fn summary(&self, id: MessageId) -> Vec<Reaction> {
        let Some(reactions) = self.reactors.as_ref().and_then(|r| r.get(&id)) else {
            return Vec::new();
        };
        reactions
            .iter()
            .map(|(emoji, users)| Reaction {
                emoji: emoji.clone(),
                count: count_of(users.len()),
                users: users.iter().take(REACTION_USERS_SHOWN).cloned().collect(),
            })
            .collect()
    }

    /// Drops message `id`'s reactors if it has none left, and the table if it is empty.
    fn forget_empty_reactors(&mut self, id: MessageId) {
        let Some(reactors) = &mut self.reactors else {
            return;
        };
        if reactors.get(&id).is_some_and(Vec::is_empty) {
            reactors.remove(&id);
        }
        if reactors.is_empty() {
            self.reactors = None;
        }
    }

    /// The change stored under `id` if it is retained: what a retry of it is answered with.
    pub(super) fn stored_change(&self, id: MessageId) -> Option<Change> {
        match &self.history[self.find(id)?] {
            Entry::Change(c) => Some(c.as_ref().clone()),
            Entry::Message(_) => None,
        }
    }
}

/// A count of users as the protocol carries it (saturating: no room has 4 billion users).
fn count_of(users: usize) -> u32 {
    u32::try_from(users).unwrap_or(u32::MAX)
}
