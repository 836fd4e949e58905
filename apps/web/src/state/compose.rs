//! What the user does to messages already there: edit one of theirs (the Edit action, or Up in
//! an empty composer), delete one of theirs, toggle a reaction, reply to one. The composer
//! holds at most one of an edit or a reply target per room; Enter sends or saves, Escape
//! cancels.
//!
//! Nothing changes locally until the server's `edited`, `deleted` or `reacted` (carrying our
//! nonce) comes back: it is what every member sees, in the room's order. A refusal comes as an
//! error with the nonce, shown as a notice; a refused edit's text also goes back to the
//! composer (in edit mode while the message is still there), as a refused send's is kept.

use skat_protocol::{ClientFrame, MessageId, validate_body, validate_emoji};

use super::{Chat, Connection, SentEdit, Unsent};

impl Chat {
    /// A fresh nonce, unique to this page load.
    pub(super) fn next_nonce(&mut self) -> String {
        let nonce = format!("{}-{}", self.nonce_prefix, self.next_nonce);
        self.next_nonce += 1;
        nonce
    }

    /// Starts editing message `id` of `room`, one of ours and not deleted; returns its body
    /// for the composer. A reply target is dropped.
    pub fn start_edit(&mut self, room: &str, id: MessageId) -> Option<String> {
        let r = self.rooms.get_mut(room)?;
        let body = r
            .get(id)
            .filter(|m| m.from == self.name && !m.is_deleted())?
            .body
            .clone();
        r.editing = Some(id);
        r.reply_to = None;
        Some(body)
    }

    /// Starts editing our newest message in `room` (Up in an empty composer); returns its body.
    pub fn edit_last(&mut self, room: &str) -> Option<String> {
        let r = self.rooms.get(room)?;
        let id = r
            .messages()
            .iter()
            .rev()
            .find(|m| m.from == self.name && !m.is_deleted())?
            .id;
        self.start_edit(room, id)
    }

    /// Sets the message the next send in `room` replies to (an edit in progress is dropped).
    pub fn reply_to(&mut self, room: &str, id: MessageId) {
        if let Some(r) = self.rooms.get_mut(room) {
            r.reply_to = Some(id);
            r.editing = None;
        }
    }

    /// Drops the composer's edit and reply target in `room` (Escape); returns whether there
    /// was one.
    pub fn cancel_compose(&mut self, room: &str) -> bool {
        self.rooms.get_mut(room).is_some_and(|r| {
            let had = r.editing.is_some() || r.reply_to.is_some();
            r.editing = None;
            r.reply_to = None;
            had
        })
    }

    /// The composer's Enter: saves the edit in progress, or sends `body` (replying to the
    /// reply target, if any). See [`Chat::send`] for why nothing may go.
    #[must_use = "the frames it returns are to be sent"]
    pub fn submit(&mut self, room: &str, body: &str, now: f64) -> Result<ClientFrame, Unsent> {
        match self.rooms.get(room).and_then(|r| r.editing) {
            Some(id) => self.save_edit(room, id, body),
            None => self.send(room, body, now),
        }
    }

    /// The `edit` of message `id` to `body`; the edit in progress ends (unchanged text ends it
    /// with nothing sent: [`Unsent::Unchanged`]).
    fn save_edit(&mut self, room: &str, id: MessageId, body: &str) -> Result<ClientFrame, Unsent> {
        if body.trim().is_empty() {
            return Err(Unsent::Blank);
        }
        if let Err(invalid) = validate_body(body) {
            self.notice = Some(invalid.message);
            return Err(Unsent::Invalid);
        }
        self.online()?;
        let r = self.rooms.get_mut(room).ok_or(Unsent::NotJoined)?;
        r.editing = None;
        if r.get(id).is_some_and(|m| m.body == body) {
            return Err(Unsent::Unchanged);
        }
        let nonce = self.next_nonce();
        if let Some(r) = self.rooms.get_mut(room) {
            r.edits_sent.push(SentEdit {
                nonce: nonce.clone(),
                id,
                body: body.to_owned(),
            });
        }
        Ok(ClientFrame::Edit {
            room: room.to_owned(),
            id: id.to_string(),
            body: body.to_owned(),
            nonce: Some(nonce),
        })
    }

    /// Our edit with `nonce` in `room` was stored (the `edited` carrying it came back).
    pub(super) fn edit_answered(&mut self, room: &str, nonce: Option<&str>) {
        if let (Some(r), Some(nonce)) = (self.rooms.get_mut(room), nonce) {
            r.edits_sent.retain(|e| e.nonce != nonce);
        }
    }

    /// If `nonce` is one of our edits in flight, the server refused it: its text goes back to
    /// the composer, editing the message again, if the message is still shown and not deleted
    /// and the composer has not moved on to another edit or a reply. Otherwise only the notice
    /// tells: text put back without an edit to save would be sent as a new message by Enter.
    /// Returns whether it was an edit of ours.
    pub(super) fn edit_refused(&mut self, nonce: &str) -> bool {
        let Some((r, edit)) = self.rooms.values_mut().find_map(|r| {
            let index = r.edits_sent.iter().position(|e| e.nonce == nonce)?;
            let edit = r.edits_sent.remove(index);
            Some((r, edit))
        }) else {
            return false;
        };
        let shown = r.get(edit.id).is_some_and(|m| !m.is_deleted());
        if shown && r.editing.is_none() && r.reply_to.is_none() {
            r.editing = Some(edit.id);
            r.draft = Some(edit.body);
        }
        true
    }

    /// Takes the text the composer of `room` gets back (see [`Room::draft`](super::Room::draft)).
    /// The UI passes whether its composer is empty: if not, the user is typing something else,
    /// which is kept, and the edit mode the draft came with ends (so Enter does not save that
    /// text as the edit).
    pub fn take_draft(&mut self, room: &str, composer_empty: bool) -> Option<String> {
        let r = self.rooms.get_mut(room)?;
        let draft = r.draft.take()?;
        if composer_empty {
            Some(draft)
        } else {
            r.editing = None;
            None
        }
    }

    /// The `delete` of message `id` of `room` (the UI asks for it on our messages, after an
    /// inline confirmation).
    #[must_use = "the frames it returns are to be sent"]
    pub fn delete(&mut self, room: &str, id: MessageId) -> Option<ClientFrame> {
        self.online().ok()?;
        let r = self.rooms.get_mut(room)?;
        if r.editing == Some(id) {
            r.editing = None;
        }
        Some(ClientFrame::Delete {
            room: room.to_owned(),
            id: id.to_string(),
            nonce: Some(self.next_nonce()),
        })
    }

    /// Toggles our reaction `emoji` on message `id` of `room`: a `react` whose `add` is the
    /// opposite of what the message shows (explicit, so a retry cannot undo itself).
    #[must_use = "the frames it returns are to be sent"]
    pub fn react(&mut self, room: &str, id: MessageId, emoji: &str) -> Option<ClientFrame> {
        if let Err(invalid) = validate_emoji(emoji) {
            self.notice = Some(invalid.message);
            return None;
        }
        self.online().ok()?;
        let message = self.rooms.get(room)?.get(id)?;
        let mine = message
            .reactions()
            .iter()
            .any(|r| r.emoji == emoji && r.users.contains(&self.name));
        Some(ClientFrame::React {
            room: room.to_owned(),
            id: id.to_string(),
            emoji: emoji.to_owned(),
            add: !mine,
            nonce: Some(self.next_nonce()),
        })
    }

    /// `Ok` if the connection is live, else why a frame cannot go.
    pub(super) fn online(&self) -> Result<(), Unsent> {
        if self.connection == Connection::Online {
            Ok(())
        } else {
            Err(Unsent::Offline {
                retrying: self.should_reconnect(),
            })
        }
    }
}
