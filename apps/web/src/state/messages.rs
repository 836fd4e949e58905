//! Messages, ours and others': a send is pending until its echo (matched by nonce) confirms
//! it, kept with the reason if refused, re-sent by itself after a reconnect while the server can
//! still deduplicate it; every received message is deduplicated by id and counted as unread
//! when its room is not on screen.

use skat_protocol::{ClientFrame, Message, MessageId};

use super::{Chat, Connection, Pending, RESEND_WITHIN_MS, Unsent};

impl Chat {
    /// Queues a message; returns the `send` frame, or why there is none (the UI then keeps the
    /// text in the composer): the text is blank, the connection not live, or the room not
    /// joined. The message shows as pending until its echo arrives. The server handles a
    /// connection's frames in order, so a send right after a join needs no wait for `joined`.
    #[must_use = "the frames it returns are to be sent"]
    pub fn send(&mut self, room: &str, body: &str, now: f64) -> Result<ClientFrame, Unsent> {
        if body.trim().is_empty() {
            return Err(Unsent::Blank);
        }
        self.online()?;
        let generation = self.generation;
        if self.rooms.get(room).is_none_or(|r| r.refused.is_some()) {
            return Err(Unsent::NotJoined);
        }
        let nonce = self.next_nonce();
        let r = self.rooms.get_mut(room).ok_or(Unsent::NotJoined)?;
        let reply_to = r.reply_to.take();
        r.pending.push(Pending {
            nonce: nonce.clone(),
            body: body.to_owned(),
            error: None,
            generation,
            sent_at: now,
            reply_to,
        });
        r.last_typing_sent = None;
        Ok(send_frame(room, body, nonce, reply_to))
    }

    /// Re-sends a failed message with its nonce (a repeat of an accepted send is answered with
    /// the original, never stored twice); returns the frame.
    #[must_use = "the frames it returns are to be sent"]
    pub fn retry(&mut self, room: &str, nonce: &str) -> Option<ClientFrame> {
        if self.connection != Connection::Online {
            return None;
        }
        let generation = self.generation;
        let r = self.rooms.get_mut(room)?;
        let p = r.pending.iter_mut().find(|p| p.nonce == nonce)?;
        p.error = None;
        p.generation = generation;
        Some(send_frame(room, &p.body, p.nonce.clone(), p.reply_to))
    }

    /// Drops a failed message, returning its text (e.g. back to the composer).
    pub fn discard(&mut self, room: &str, nonce: &str) -> Option<String> {
        let r = self.rooms.get_mut(room)?;
        let index = r.pending.iter().position(|p| p.nonce == nonce)?;
        Some(r.pending.remove(index).body)
    }

    /// Records a message: dedup by id, confirm our pending send, count unread.
    pub(super) fn on_message(&mut self, message: Message, from_page: bool) {
        let active = self.active.as_deref() == Some(message.room.as_str());
        let mine = message.from == self.name;
        let Some(r) = self.rooms.get_mut(&message.room) else {
            return;
        };
        if let Some(nonce) = message.nonce.as_deref().filter(|_| mine) {
            r.pending.retain(|p| p.nonce != nonce);
        }
        r.typing.remove(&message.from);
        if r.push(message) && !active && !mine && !from_page {
            r.unread += 1;
        }
    }

    /// Sends of an earlier connection that the recovery (or latest page) did not confirm:
    /// re-sent with their nonce, which the server answers with the original if it stored them.
    /// Too old to be sure of that, they are left to the user. Sends made on this connection are
    /// simply still on their way. Returns the re-sends.
    pub(super) fn resend_unconfirmed(&mut self, room: &str, now: f64) -> Vec<ClientFrame> {
        let generation = self.generation;
        let Some(r) = self.rooms.get_mut(room) else {
            return Vec::new();
        };
        let mut frames = Vec::new();
        for p in r.pending.iter_mut().filter(|p| p.generation < generation) {
            if p.error.is_some() {
                continue;
            }
            if now - p.sent_at <= RESEND_WITHIN_MS {
                p.generation = generation;
                frames.push(send_frame(room, &p.body, p.nonce.clone(), p.reply_to));
            } else {
                p.error = Some("not sent: connection lost".to_owned());
            }
        }
        frames
    }
}

/// The `send` of `body` to `room` with our `nonce`, replying to `reply_to` if any.
fn send_frame(room: &str, body: &str, nonce: String, reply_to: Option<MessageId>) -> ClientFrame {
    ClientFrame::Send {
        room: room.to_owned(),
        body: body.to_owned(),
        nonce: Some(nonce),
        reply_to: reply_to.map(|id| id.to_string()),
    }
}
