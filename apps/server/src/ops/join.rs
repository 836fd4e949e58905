//! Joining a room: a WebSocket `join`. The connection is registered in the room first (its
//! outbox now gets the room's events), then the broker's snapshot is read: the members, the
//! messages the client missed since `since` (and the changes to older messages) or else the
//! latest page, and the user's read marker and unread count.

use std::sync::Arc;

use skat_broker::{Broker, MessageId, Recovery, Resume, Snapshot};
use skat_protocol::{
    DEFAULT_HISTORY_LIMIT, ErrorCode, Invalid, MAX_MEMBERS_LIMIT, keep_newest_within,
};

use super::Access;
use crate::metrics::BrokerCall;
use crate::outbox::{ConnId, Outbox};
use crate::rooms::JoinError;
use crate::state::AppState;

/// The longest epoch a `join` may carry (the brokers' are about 17 bytes).
const MAX_EPOCH_BYTES: usize = 64;

/// A checked request to join `room`, resuming after `since` in history `epoch` if given.
pub(crate) struct Join {
    room: String,
    since: Option<MessageId>,
    epoch: Option<String>,
}

/// A joined room: what the `joined` reply carries, and where live delivery takes over.
pub(crate) struct Entered {
    /// The registry's name for the room: its frames carry the same `Arc`.
    pub(crate) name: Arc<str>,
    /// The members, and the recovered messages or the latest page, bounded in bytes.
    pub(crate) snapshot: Snapshot,
    /// The newest message or change the reply delivers (or, recovering nothing new, `since`):
    /// queued messages and changes up to it are the connection's to skip.
    pub(crate) watermark: Option<MessageId>,
}

impl Join {
    /// Checks, in this order, the room, `access` (see the module docs), `since` and the epoch's
    /// length.
    pub(crate) fn parse(
        room: String,
        access: impl Access,
        since: Option<&str>,
        epoch: Option<String>,
    ) -> Result<Self, Invalid> {
        super::check_room(&room, access)?;
        let since = super::message_id(since)?;
        if epoch.as_ref().is_some_and(|e| e.len() > MAX_EPOCH_BYTES) {
            return Err(Invalid {
                code: ErrorCode::InvalidId,
                message: format!("an epoch is at most {MAX_EPOCH_BYTES} bytes"),
            });
        }
        Ok(Self { room, since, epoch })
    }

    /// The room's name.
    pub(crate) fn room(&self) -> &str {
        &self.room
    }

    /// The room's name, for the reply.
    pub(crate) fn into_room(self) -> String {
        self.room
    }

    /// Registers connection `conn` of `user`, whose outbox is `member`, in the room, then reads
    /// the snapshot: from then on the room's events queue up in the outbox, and the caller
    /// skips those up to the watermark, so nothing falls between history and live delivery.
    pub(crate) async fn run<B: Broker>(
        &self,
        state: &AppState<B>,
        conn: ConnId,
        user: &Arc<str>,
        member: &Arc<Outbox>,
    ) -> Result<Entered, JoinError> {
        let config = state.config();
        let resume = Resume {
            since: self.since,
            epoch: self.epoch.as_deref(),
            recovery: Recovery {
                limit: config.recovery_limit,
                max_bytes: config.max_reply_bytes,
            },
            page: DEFAULT_HISTORY_LIMIT as usize,
            // A huge room's members are paged with `members`, not sent in one frame.
            members: MAX_MEMBERS_LIMIT as usize,
        };
        let joining = state.rooms().join(&self.room, conn, user, member, resume);
        let metrics = state.metrics();
        let (joined, mut snapshot) = metrics.timed(BrokerCall::Join, joining).await?;
        if self.since.is_some() {
            metrics.recovery(snapshot.recovered);
        }
        if !snapshot.recovered {
            // The latest page, like any page, within the reply bound.
            keep_newest_within(&mut snapshot.messages, config.max_reply_bytes);
        }
        // The greatest id the reply delivers: its messages', its recovered changes' (which may
        // be newer than the last message), or `since` when it recovered nothing newer. A change
        // to one of its messages made during the join can be newer still: it then comes live
        // too, though the message shows its outcome already. The snapshot does not carry the
        // stream's newest id, and a change carries its outcome, so clients apply it again
        // harmlessly (PROTOCOL.md, "Delivery semantics").
        let watermark = snapshot
            .messages
            .last()
            .map(|m| m.id)
            .into_iter()
            .chain(snapshot.changes.iter().filter_map(|c| c.id()))
            .chain(if snapshot.recovered { self.since } else { None })
            .max();
        Ok(Entered {
            name: joined.name,
            snapshot,
            watermark,
        })
    }
}
