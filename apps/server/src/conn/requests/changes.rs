//! The requests that change a message (`edit`, `delete`, `react`) and move a read marker
//! (`read`): the connection's part of each around its operation (`ops`).
//!
//! Every one checks, in PROTOCOL.md's order: the nonce (first, so that any later refusal can
//! echo it), the room's name, that the connection joined it, the message id, the body or
//! emoji, then the request's rate bucket (edits and deletes take from the `send` budget,
//! reactions and reads have their own); then the broker decides what needs the room's state
//! (`no_such_message`, `not_author`, `too_many_reactions`).
//!
//! The outcome reaches the requester as a send's does: a stored change is broadcast to every
//! member (the requester too, carrying its nonce), so it gets no answer of its own; a retry
//! (`Changed::Duplicate`) and a reaction that changes nothing are answered to it alone, with the
//! original or current state, and never broadcast.

use std::sync::Arc;
use std::time::Instant;

use skat_broker::{Broker, Changed};
use skat_protocol::{ErrorCode, Invalid};
use tokio::io::{AsyncRead, AsyncWrite};

use super::super::Conn;
use crate::ops::{self, Delete, Edit, React, Read};

impl<B, IO> Conn<B, IO>
where
    B: Broker,
    IO: AsyncRead + AsyncWrite + Unpin + Send,
{
    /// Whether the connection's token lets its user moderate `room` (edit and delete anyone's
    /// message there).
    fn moderates(&self, room: &str) -> bool {
        self.signed
            .as_ref()
            .and_then(|signed| signed.moderates.as_ref())
            .is_some_and(|grants| grants.allows(room))
    }

    /// Checks the nonce first: an invalid one is refused without echo; a valid one is
    /// returned to echo.
    fn first_the_nonce(&mut self, nonce: Option<String>) -> Result<Option<String>, ()> {
        match ops::check_nonce(nonce.as_deref()) {
            Ok(()) => Ok(nonce),
            Err(invalid) => {
                self.reply_invalid(invalid, None);
                Err(())
            }
        }
    }

    pub(super) async fn edit(
        &mut self,
        user: &Arc<str>,
        room: String,
        id: &str,
        body: String,
        nonce: Option<String>,
    ) {
        let Ok(nonce) = self.first_the_nonce(nonce) else {
            return;
        };
        let echo = nonce.clone();
        let edit = Edit::parse(room, |room| self.check_joined(room, true), id, body, nonce)
            .and_then(|edit| self.take_message("edit").map(|()| edit));
        let edit = match edit {
            Ok(edit) => edit,
            Err(invalid) => return self.reply_invalid(invalid, echo),
        };
        let as_author = !self.moderates(edit.room());
        let changed = edit.run(&self.state, user.to_string(), as_author).await;
        self.answer_change("edit", changed, echo);
    }

    pub(super) async fn delete(
        &mut self,
        user: &Arc<str>,
        room: String,
        id: &str,
        nonce: Option<String>,
    ) {
        let Ok(nonce) = self.first_the_nonce(nonce) else {
            return;
        };
        let echo = nonce.clone();
        // A delete costs a broker call (and, with `--wait-replicas`, a WAIT) like an edit, so
        // it takes from the same budget.
        let delete = Delete::parse(room, |room| self.check_joined(room, true), id, nonce)
            .and_then(|delete| self.take_message("delete").map(|()| delete));
        let delete = match delete {
            Ok(delete) => delete,
            Err(invalid) => return self.reply_invalid(invalid, echo),
        };
        let as_author = !self.moderates(delete.room());
        let changed = delete.run(&self.state, user.to_string(), as_author).await;
        self.answer_change("delete", changed, echo);
    }

    pub(super) async fn react(
        &mut self,
        user: &Arc<str>,
        room: String,
        id: &str,
        emoji: String,
        add: bool,
        nonce: Option<String>,
    ) {
        let Ok(nonce) = self.first_the_nonce(nonce) else {
            return;
        };
        let echo = nonce.clone();
        let check = |room: &str| self.check_joined(room, true);
        let react = React::parse(room, check, id, emoji, add, nonce).and_then(|react| {
            Self::take(
                &mut self.reactions,
                &self.state,
                "react",
                "too many reactions",
            )
            .map(|()| react)
        });
        let react = match react {
            Ok(react) => react,
            Err(invalid) => return self.reply_invalid(invalid, echo),
        };
        let changed = react.run(&self.state, user.to_string()).await;
        self.answer_change("react", changed, echo);
    }

    pub(super) async fn read(&mut self, user: &Arc<str>, room: String, id: &str) {
        let read = Read::parse(room, |room| self.check_joined(room, true), id).and_then(|read| {
            Self::take(
                &mut self.reads,
                &self.state,
                "read",
                "too many read markers",
            )
            .map(|()| read)
        });
        let read = match read {
            Ok(read) => read,
            Err(invalid) => return self.reply_invalid(invalid, None),
        };
        // The answer, when the marker moved, is the `read` every connection of the user gets.
        if let Err(err) = read.run(&self.state, user).await {
            let message = "read marker not moved: the broker is unavailable, retry";
            self.unavailable("read", &err, message, None);
        }
    }

    /// Takes a token of `bucket`, or says why not (`what`, and the metric's label `request`).
    fn take(
        bucket: &mut crate::quota::TokenBucket,
        state: &crate::state::AppState<B>,
        request: &'static str,
        what: &str,
    ) -> Result<(), Invalid> {
        if bucket.try_take(Instant::now()) {
            return Ok(());
        }
        state.metrics().rate_limited(request);
        Err(Invalid {
            code: ErrorCode::RateLimited,
            message: format!("{what}; retry shortly"),
        })
    }

    /// Answers a change's outcome (see the module docs).
    fn answer_change(
        &mut self,
        request: &str,
        changed: Result<Changed, B::Error>,
        nonce: Option<String>,
    ) {
        let change = match changed {
            Ok(Changed::New(change)) if !ops::is_no_op(&change) => return,
            Ok(Changed::New(change) | Changed::Duplicate(change)) => change,
            Ok(Changed::Refused(refusal)) => {
                return self.reply_invalid(ops::refusal(refusal), nonce);
            }
            Err(err) => {
                let message = format!("{request} not done: the broker is unavailable, retry");
                return self.unavailable(request, &err, &message, nonce);
            }
        };
        if let Some(frame) = crate::rooms::change_frame(change) {
            self.reply(&frame);
        }
    }
}
