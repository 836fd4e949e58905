//! The behavioural test suite every [`Broker`] backend must pass.
//!
//! Backends run [`run_all`] from their own tests (the memory backend in this crate, the Redis one
//! against a real `redis-server`), so that they cannot drift apart. Enabled by the `conformance`
//! feature; every check panics with a description on failure.

#![allow(clippy::unwrap_used, missing_docs)]

mod delete;
mod edit;
mod messages;
mod presence;
mod reactions;
mod read;
mod recovery;
mod replies;
mod search;
mod sizes;
mod snapshot;

pub use delete::{deleting_drops_the_body, moderators_delete_anyone_s};
pub use edit::{
    a_nonce_names_one_request_per_kind, changes_are_deduplicated_by_nonce, edits_are_the_author_s,
    recovery_returns_changes_to_older_messages_only,
};
pub use messages::{
    boundary_ids, history_is_bounded, history_pages_backwards,
    ids_increase_and_reach_every_subscriber, retries_with_the_same_nonce_are_not_stored_twice,
};
pub use presence::{
    all_members, members_are_paged_by_name, notices_and_rooms, presence_counts_nodes,
    presence_spans_nodes, typing_reaches_subscribers,
};
pub use reactions::{reactions_are_counted_and_bounded, repeated_reactions_change_nothing};
pub use read::{read_markers_and_unread_counts, unread_is_capped};
pub use recovery::{recovery, since_must_be_in_the_history};
pub use replies::replies_name_a_retained_message;
pub use search::{
    found, search_finds_what_history_retains, search_finds_words, search_is_unsupported,
};
pub use sizes::recovery_counts_encoded_bytes;
pub use snapshot::join_snapshot;

use std::future::Future;
use std::time::Duration;

use std::sync::Arc;

use tokio::sync::mpsc;

use crate::{
    Broker, Change, ChangeKind, Changed, Message, MessageId, NewChange, NewMessage, Published,
    Recovered, Recovery, Resume, RoomEvent, RoomSink,
};

/// Runs every check; `make` builds a broker whose per-room history holds `history_len` messages.
pub async fn run_all<B, F, Fut>(make: F, history_len: usize)
where
    B: Broker,
    F: Fn() -> Fut,
    Fut: Future<Output = B>,
{
    ids_increase_and_reach_every_subscriber(&make().await).await;
    history_pages_backwards(&make().await).await;
    history_is_bounded(&make().await, history_len).await;
    recovery(&make().await, history_len).await;
    recovery_counts_encoded_bytes(&make().await).await;
    since_must_be_in_the_history(&make().await, history_len).await;
    join_snapshot(&make().await, history_len).await;
    presence_counts_nodes(&make().await).await;
    members_are_paged_by_name(&make().await).await;
    retries_with_the_same_nonce_are_not_stored_twice(&make().await).await;
    typing_reaches_subscribers(&make().await).await;
    boundary_ids(&make().await).await;
    notices_and_rooms(&make().await).await;
}

/// Runs every check of changes to messages, replies and read markers (issue 22); `make` as
/// for [`run_all`], with room for at least 50 entries (changes count toward the history's
/// length, and the reaction checks make 45 to one message).
pub async fn run_changes<B, F, Fut>(make: F, history_len: usize)
where
    B: Broker,
    F: Fn() -> Fut,
    Fut: Future<Output = B>,
{
    edits_are_the_author_s(&make().await).await;
    changes_are_deduplicated_by_nonce(&make().await).await;
    a_nonce_names_one_request_per_kind(&make().await).await;
    recovery_returns_changes_to_older_messages_only(&make().await).await;
    deleting_drops_the_body(&make().await).await;
    moderators_delete_anyone_s(&make().await).await;
    reactions_are_counted_and_bounded(&make().await).await;
    repeated_reactions_change_nothing(&make().await).await;
    replies_name_a_retained_message(&make().await, history_len).await;
    read_markers_and_unread_counts(&make().await).await;
}

/// Runs every check of search (issue 23) on a backend that can search; `make` as for
/// [`run_all`]. A backend that cannot runs [`search_is_unsupported`] instead.
pub async fn run_search<B, F, Fut>(make: F, history_len: usize)
where
    B: Broker,
    F: Fn() -> Fut,
    Fut: Future<Output = B>,
{
    search_finds_words(&make().await).await;
    search_finds_what_history_retains(&make().await, history_len).await;
}

/// A change by `by` to `target` in `room`, as its author would ask it (`as_author`), without
/// a nonce.
pub fn change(room: &str, target: MessageId, by: &str, kind: ChangeKind) -> NewChange {
    NewChange {
        room: room.into(),
        target,
        by: by.into(),
        kind,
        nonce: None,
        as_author: true,
    }
}

/// An edit to `body`.
pub fn edit(body: &str) -> ChangeKind {
    ChangeKind::Edit { body: body.into() }
}

/// Adding (`add`) or removing a reaction with `emoji`.
pub fn react(emoji: &str, add: bool) -> ChangeKind {
    ChangeKind::React {
        emoji: emoji.into(),
        add,
    }
}

/// Makes `change`, failing the test unless it is [`Changed::New`].
pub async fn changed<B: Broker>(broker: &B, change: NewChange) -> Change {
    match broker.change(change).await.unwrap() {
        Changed::New(change) => change,
        other => panic!("change not accepted: {other:?}"),
    }
}

/// The room's latest `n` messages (at most), as `history` returns them.
pub async fn latest<B: Broker>(broker: &B, room: &str, n: usize) -> Vec<Message> {
    broker.history(room, None, n).await.unwrap().messages
}

/// The messages of a recovery that must hold no change (nothing in the room was changed).
pub fn no_changes(recovered: Recovered) -> Vec<Message> {
    assert!(
        recovered.changes.is_empty(),
        "no message was changed, yet a recovery returned changes: {:?}",
        recovered.changes
    );
    recovered.messages
}

/// A join that recovers up to 100 messages, else gets the latest `page`.
pub fn resume(page: usize) -> Resume<'static> {
    Resume {
        recovery: Recovery::count(100),
        members: 100,
        ..Resume::latest(page)
    }
}

/// Publishes `n` messages `m0..` to `room` and returns them as accepted.
pub async fn publish_n<B: Broker>(broker: &B, room: &str, n: usize) -> Vec<Message> {
    // Nonces unique per call, so repeated calls are never taken for retries.
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let new = NewMessage {
            room: room.into(),
            from: "alice".into(),
            body: format!("m{i}"),
            nonce: Some(format!("n{call}-{i}")),
            reply_to: None,
        };
        match broker.publish(new).await.unwrap() {
            Published::New(message) => out.push(message),
            Published::Duplicate(message) => panic!("fresh nonce taken for a retry: {message:?}"),
            Published::NoSuchReply => panic!("refused a message that replies to nothing"),
        }
    }
    out
}

/// A subscription whose events a test reads back one at a time.
pub struct Listener<S> {
    /// Dropping it unsubscribes.
    pub subscription: S,
    events: mpsc::UnboundedReceiver<Option<RoomEvent>>,
}

impl<S> Listener<S> {
    /// The next event, or `None` once the broker ended the subscription.
    pub async fn recv(&mut self) -> Option<RoomEvent> {
        self.events.recv().await.flatten()
    }

    /// The next event if one was delivered already.
    pub fn try_recv(&mut self) -> Option<RoomEvent> {
        self.events.try_recv().ok().flatten()
    }
}

/// Queues what the broker delivers for a [`Listener`]; `None` marks the end.
struct Forward(mpsc::UnboundedSender<Option<RoomEvent>>);

impl RoomSink for Forward {
    fn deliver(&self, event: RoomEvent) {
        let _ = self.0.send(Some(event));
    }

    fn closed(&self) {
        let _ = self.0.send(None);
    }
}

/// Waits until `done` holds (checking every 10 ms), failing the test with `what` after
/// `within`: for what a backend reaches by itself, such as readiness after a fault.
pub async fn eventually(what: &str, within: Duration, done: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + within;
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Subscribes to `room` with a sink a test can read back.
pub async fn listen<B: Broker>(
    broker: &B,
    room: &str,
) -> Result<Listener<B::Subscription>, B::Error> {
    let (tx, events) = mpsc::unbounded_channel();
    let subscription = broker.subscribe(room, Arc::new(Forward(tx))).await?;
    Ok(Listener {
        subscription,
        events,
    })
}

/// The next event, failing the test if none comes within 5 s.
pub async fn next_event<S>(sub: &mut Listener<S>) -> RoomEvent {
    tokio::time::timeout(Duration::from_secs(5), sub.recv())
        .await
        .expect("no room event within 5 s")
        .expect("subscription ended")
}
