//! The embedded broker's writes (publish, change) under a room's lock, apart from the trait's
//! methods so that the lock lives in a plain function: no guard can be held across the wait a
//! durable broker's call adds (see `memory/durable.rs`); without a journal nothing is
//! queued and nothing is awaited.

use std::time::Instant;

#[cfg(feature = "sqlite")]
use super::MemoryError;
use super::changes::Plan;
use super::room::{Entry, RoomLog};
use super::{MemoryBroker, Queued, now_ms};
use crate::change::SEND_NONCES;
use crate::lock;
use crate::{
    Change, ChangeRefusal, Changed, MessageId, NewChange, NewMessage, Published, RoomEvent,
};

impl MemoryBroker {
    /// A publish's work under the room's lock; on a durable broker, with the writes to wait for.
    pub(super) fn publish_locked(
        &self,
        log: &RoomLog,
        new: NewMessage,
    ) -> (Published, Option<Queued>) {
        let mut state = lock(&log.state);
        let now = Instant::now();
        let (key, original) = state.replay(SEND_NONCES, &new.from, new.nonce.as_deref(), now);
        if let Some((original, _)) = original {
            // The original as stored, or (if trimmed away since) as sent now with its id.
            let stored = state.message(original).cloned();
            let message = stored.unwrap_or_else(|| new.stored_as(original));
            return (Published::Duplicate(message), None);
        }
        if let Some(reply_to) = new.reply_to
            && state.message(reply_to).is_none_or(|m| m.is_deleted())
        {
            return (Published::NoSuchReply, None);
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
            let queued = Queued {
                room: message.room.clone(),
                waits,
                id: Some(id),
            };
            return (Published::New(message), Some(queued));
        }
        self.remember(&mut state, key, (id, 0), now);
        // No receivers is fine: nobody subscribed, the history has it.
        state.emit(RoomEvent::Message(message.clone()));
        (Published::New(message), None)
    }

    /// A change's work under the room's lock; on a durable broker, with the writes to wait for.
    pub(super) fn change_locked(&self, log: &RoomLog, new: NewChange) -> (Changed, Option<Queued>) {
        let mut state = lock(&log.state);
        let now = Instant::now();
        let space = new.kind.nonce_space();
        let (key, original) = state.replay(space, &new.by, new.nonce.as_deref(), now);
        if let Some((original, count)) = original {
            // An edit of a message deleted since lost its body with it: nothing to answer with.
            if let Some(Change::Edited(edit)) = state.stored_change(original)
                && state.message(edit.target).is_some_and(|m| m.is_deleted())
            {
                return (Changed::Refused(ChangeRefusal::NoSuchMessage), None);
            }
            // The original as stored, or (if trimmed away since) as asked now (the same kind)
            // with its id and the count it had.
            let change = state
                .stored_change(original)
                .unwrap_or_else(|| new.stored_as(original, count));
            return (Changed::Duplicate(change), None);
        }
        #[cfg(feature = "sqlite")]
        let room = self.durable.as_ref().map(|_| new.room.clone());
        let count = match state.plan(&new) {
            Plan::Done(outcome) => return (outcome, None),
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
            let queued = Queued {
                room,
                waits,
                id: Some(id),
            };
            return (Changed::New(change), Some(queued));
        }
        self.remember(&mut state, key, (id, count), now);
        state.emit(RoomEvent::Change(change.clone()));
        (Changed::New(change), None)
    }

    /// Waits for a call's writes (see `memory/durable.rs`).
    #[cfg(feature = "sqlite")]
    pub(super) async fn confirm(&self, log: &RoomLog, queued: Queued) -> Result<(), MemoryError> {
        match &self.durable {
            Some(durable) => {
                durable
                    .confirm(&queued.room, log, queued.waits, queued.id, self.tuning())
                    .await
            }
            None => Ok(()),
        }
    }
}
