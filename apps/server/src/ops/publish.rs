//! Publishing a message: a WebSocket `send`, or the API's `POST /rooms/{room}/messages`,
//! maybe a reply to an earlier message of the room (`reply_to`: the broker refuses one that is
//! not a retained, not deleted message of the room, atomically with the store).

use std::sync::Arc;

use skat_broker::{Broker, MessageId, NewMessage, Published};
use skat_protocol::{Invalid, SYSTEM_SENDER, validate_body, validate_name, validate_nonce};

use super::Access;
use crate::metrics::{BrokerCall, Source};
use crate::state::AppState;

/// Who a message is from.
pub(crate) enum Sender<'a> {
    /// A connection's user, checked when it said `hello`.
    User(&'a Arc<str>),
    /// The sender an API call names (checked here); none: the system (`~system`).
    Named(Option<String>),
}

/// A message to publish, as a transport received it.
pub(crate) struct Publish<'a> {
    pub(crate) room: String,
    pub(crate) from: Sender<'a>,
    pub(crate) body: String,
    /// The sender's, to match the outcome and to make retries safe.
    pub(crate) nonce: Option<String>,
    /// The message this one replies to, as received (checked by [`Publish::check_content`]).
    pub(crate) reply_to: Option<String>,
}

impl Publish<'_> {
    /// Checks the message: its room, `access` (see the module docs), a named sender, its body,
    /// its `reply_to`, then its nonce.
    pub(crate) fn check(&self, access: impl Access) -> Result<(), Invalid> {
        self.check_content(access)?;
        self.check_nonce()
    }

    /// Checks the nonce alone. A transport that echoes the nonce in its refusals (the
    /// WebSocket) checks it first, so that after any other refusal it is valid to echo, then
    /// calls [`Publish::check_content`].
    pub(crate) fn check_nonce(&self) -> Result<(), Invalid> {
        self.nonce.as_deref().map_or(Ok(()), validate_nonce)
    }

    /// Checks all but the nonce: the room, `access`, a named sender, the body, the `reply_to`
    /// (`invalid_reply` when malformed).
    pub(crate) fn check_content(&self, access: impl Access) -> Result<(), Invalid> {
        super::check_room(&self.room, access)?;
        if let Sender::Named(Some(name)) = &self.from {
            validate_name(name)?;
        }
        validate_body(&self.body)?;
        self.reply_to().map(|_| ())
    }

    /// The parsed `reply_to`, if any.
    fn reply_to(&self) -> Result<Option<MessageId>, Invalid> {
        self.reply_to
            .as_deref()
            .map(str::parse::<MessageId>)
            .transpose()
            .map_err(|err| super::invalid_reply(&err))
    }

    /// Publishes the checked message and counts it as accepted from `source`: stored
    /// ([`Published::New`], which reaches the room's members, the sender's connections too), or
    /// the original of a retried nonce ([`Published::Duplicate`], stored once).
    ///
    /// The hot path of a `send`: the message's fields move into the broker's, and the sender's
    /// name is the one string made here (a plain message has no `reply_to` to parse).
    pub(crate) async fn run<B: Broker>(
        self,
        state: &AppState<B>,
        source: Source,
    ) -> Result<Published, B::Error> {
        // Checked by `check_content`: a malformed one cannot reach here, and is dropped if so.
        let reply_to = self.reply_to().ok().flatten();
        let from = match self.from {
            Sender::User(user) => user.to_string(),
            Sender::Named(name) => name.unwrap_or_else(|| SYSTEM_SENDER.to_owned()),
        };
        let new = NewMessage {
            room: self.room,
            from,
            body: self.body,
            nonce: self.nonce,
            reply_to,
        };
        let metrics = state.metrics();
        let published = state.broker().publish(new);
        let published = metrics.timed(BrokerCall::Publish, published).await?;
        metrics.message_accepted(source, matches!(published, Published::New(_)));
        Ok(published)
    }
}
