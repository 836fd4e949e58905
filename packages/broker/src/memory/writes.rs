//! The embedded broker's writes (publish, change) under a room's lock, apart from the trait's
//! methods so that the lock lives in a plain function: no guard can be held across the wait a
//! durable broker's call adds (see `memory/durable.rs`); without a journal nothing is
//! queued and nothing is awaited.

#[cfg(feature = "sqlite")]
use std::sync::Arc;
use std::time::Instant;

use super::changes::Plan;
use super::room::{Entry, RoomLog, RoomState};
use super::{MemoryBroker, MemoryError, Queued, now_ms};
use crate::change::SEND_NONCES;
use crate::lock;
use crate::{
    Change, ChangeRefusal, Changed, MessageId, NewChange, NewMessage, Published, RoomEvent,
};

impl MemoryBroker {
    /// A publish's work under the room's lock; on a durable broker, with what to wait for.
    ///
    /// # Errors
    ///
    /// A durable broker's, while the room is reloaded after a failed write.
    pub(super) fn publish_locked(
        &self,
        log: &RoomLog,
        new: NewMessage,
    ) -> Result<(Published, Option<Queued>), MemoryError> {
        let mut state = lock(&log.state);
        #[cfg(feature = "sqlite")]
        if let Some(durable) = &self.durable {
            durable.writable(&new.room, &state)?;
        }
        let now = Instant::now();
        let (key, original) = state.replay(SEND_NONCES, &new.from, new.nonce.as_deref(), now);
        if let Some((original, _)) = original {
            // The original as stored, or (if trimmed away since) as sent now with its id.
            let stored = state.message(original).cloned();
            let wait = self.unconfirmed(&state, &new.room, Some(original));
            let message = stored.unwrap_or_else(|| new.stored_as(original));
            return Ok((Published::Duplicate(message), wait));
        }
        if let Some(reply_to) = new.reply_to
            && state.message(reply_to).is_none_or(|m| m.is_deleted())
        {
            return Ok((Published::NoSuchReply, None));
        }
        let id = MessageId::next_after(state.last_id, now_ms());
        let message = new.stored_as(id);
        #[cfg(feature = "sqlite")]
        let trimmed = state.trimmed;
        state.push(Entry::Message(message.clone()), self.config.history_len);
        #[cfg(feature = "sqlite")]
        if let Some(durable) = &self.durable {
            let waits = durable.queue_entry(
                (&message.room, &self.epoch),
                &mut state,
                crate::durable::WriteOp::Message(message.clone()),
                (id, 0),
                key.as_ref(),
                (trimmed, self.config.dedup_window),
                RoomEvent::Message(message.clone()),
            );
            self.remember(&mut state, key, (id, 0), now);
            let queued = Queued::Writes {
                room: message.room.clone(),
                waits,
                id: Some(id),
            };
            return Ok((Published::New(message), Some(queued)));
        }
        self.remember(&mut state, key, (id, 0), now);
        // No receivers is fine: nobody subscribed, the history has it.
        state.emit(RoomEvent::Message(message.clone()));
        Ok((Published::New(message), None))
    }

    /// A change's work under the room's lock; on a durable broker, with what to wait for.
    ///
    /// # Errors
    ///
    /// As for [`MemoryBroker::publish_locked`].
    pub(super) fn change_locked(
        &self,
        log: &RoomLog,
        new: NewChange,
    ) -> Result<(Changed, Option<Queued>), MemoryError> {
        let mut state = lock(&log.state);
        #[cfg(feature = "sqlite")]
        if let Some(durable) = &self.durable {
            durable.writable(&new.room, &state)?;
        }
        let now = Instant::now();
        let space = new.kind.nonce_space();
        let (key, original) = state.replay(space, &new.by, new.nonce.as_deref(), now);
        if let Some((original, count)) = original {
            // An edit of a message deleted since lost its body with it: nothing to answer with.
            if let Some(Change::Edited(edit)) = state.stored_change(original)
                && state.message(edit.target).is_some_and(|m| m.is_deleted())
            {
                return Ok((Changed::Refused(ChangeRefusal::NoSuchMessage), None));
            }
            // The original as stored, or (if trimmed away since) as asked now (the same kind)
            // with its id and the count it had.
            let wait = self.unconfirmed(&state, &new.room, Some(original));
            let change = state
                .stored_change(original)
                .unwrap_or_else(|| new.stored_as(original, count));
            return Ok((Changed::Duplicate(change), wait));
        }
        #[cfg(feature = "sqlite")]
        let room = self.durable.as_ref().map(|_| new.room.clone());
        let count = match state.plan(&new) {
            // Drawn from the room's state, which may hold writes not committed yet.
            Plan::Done(outcome) => {
                let wait = self.unconfirmed(&state, &new.room, state.last_id);
                return Ok((outcome, wait));
            }
            Plan::Store { count } => count,
        };
        let id = MessageId::next_after(state.last_id, now_ms());
        let change = new.stored_as(id, count);
        state.apply(&change);
        #[cfg(feature = "sqlite")]
        let trimmed = state.trimmed;
        state.push(
            Entry::Change(Box::new(change.clone())),
            self.config.history_len,
        );
        #[cfg(feature = "sqlite")]
        if let Some(durable) = &self.durable {
            let room = room.unwrap_or_default();
            let waits = durable.queue_entry(
                (&room, &self.epoch),
                &mut state,
                crate::durable::WriteOp::Change(change.clone()),
                (id, count),
                key.as_ref(),
                (trimmed, self.config.dedup_window),
                RoomEvent::Change(change.clone()),
            );
            self.remember(&mut state, key, (id, count), now);
            let queued = Queued::Writes {
                room,
                waits,
                id: Some(id),
            };
            return Ok((Changed::New(change), Some(queued)));
        }
        self.remember(&mut state, key, (id, count), now);
        state.emit(RoomEvent::Change(change.clone()));
        Ok((Changed::New(change), None))
    }

    /// On a durable broker, what an answer drawn from entry `id` (a retry's original) waits
    /// for if that entry is not committed yet: it may still fail. Never on a plain broker.
    #[cfg_attr(not(feature = "sqlite"), allow(clippy::unused_self))]
    fn unconfirmed(&self, state: &RoomState, room: &str, id: Option<MessageId>) -> Option<Queued> {
        #[cfg(feature = "sqlite")]
        if self.durable.is_some() {
            return super::durable::Durable::uncommitted(state, room, id?);
        }
        let _ = (state, room, id);
        None
    }

    /// Waits for what a call queued (see `memory/durable.rs`).
    #[cfg(feature = "sqlite")]
    pub(super) async fn confirm(
        &self,
        log: &Arc<RoomLog>,
        queued: Queued,
    ) -> Result<(), MemoryError> {
        match &self.durable {
            Some(durable) => durable.finish(log, queued, self.tuning()).await,
            None => Ok(()),
        }
    }
}
