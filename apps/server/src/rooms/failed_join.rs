//! Presence when a user's join fails on one connection while another of theirs joins: tested
//! with a broker that fails chosen joins before they record anything, as a Redis broker does
//! when its command never reached Redis.

use std::sync::{Arc, Mutex};

use skat_broker::{
    Broker, Changed, HistoryPage, MembersPage, MemoryBroker, MemoryError, MemorySubscription,
    MessageId, NewChange, NewMessage, Published, ReadState, Recovered, Recovery, Resume, RoomSink,
    RoomsPage, Snapshot,
};
use tokio::sync::{Notify, oneshot};

use super::Rooms;
use crate::lock;
use crate::outbox::{Bounds, Outbox};

#[derive(Debug, thiserror::Error)]
#[error("the broker failed")]
struct Failed;

/// The embedded broker's answer, as this one's (in memory it never fails).
fn never<T>(answer: Result<T, MemoryError>) -> Result<T, Failed> {
    answer.map_err(|_| Failed)
}

/// A [`MemoryBroker`] whose next `join_snapshot` can be made to wait for a signal and then
/// fail, having recorded nothing.
#[derive(Default)]
struct FailingJoins {
    inner: MemoryBroker,
    /// The signal the next join waits for before failing.
    next: Mutex<Option<oneshot::Receiver<()>>>,
    /// Told when a join is waiting.
    waiting: Notify,
}

impl Broker for FailingJoins {
    type Error = Failed;
    type Subscription = MemorySubscription;

    async fn publish(&self, message: NewMessage) -> Result<Published, Failed> {
        never(self.inner.publish(message).await)
    }

    async fn change(&self, change: NewChange) -> Result<Changed, Failed> {
        never(self.inner.change(change).await)
    }

    async fn read(&self, room: &str, user: &str, id: MessageId) -> Result<ReadState, Failed> {
        never(self.inner.read(room, user, id).await)
    }

    async fn subscribe(
        &self,
        room: &str,
        sink: Arc<dyn RoomSink>,
    ) -> Result<MemorySubscription, Failed> {
        never(self.inner.subscribe(room, sink).await)
    }

    async fn history(
        &self,
        room: &str,
        before: Option<MessageId>,
        limit: usize,
    ) -> Result<HistoryPage, Failed> {
        never(self.inner.history(room, before, limit).await)
    }

    async fn recover(
        &self,
        room: &str,
        since: MessageId,
        bounds: Recovery,
    ) -> Result<Option<Recovered>, Failed> {
        never(self.inner.recover(room, since, bounds).await)
    }

    async fn presence_join(&self, room: &str, user: &str) -> Result<(), Failed> {
        never(self.inner.presence_join(room, user).await)
    }

    async fn presence_leave(&self, room: &str, user: &str) -> Result<(), Failed> {
        never(self.inner.presence_leave(room, user).await)
    }

    async fn members(
        &self,
        room: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<MembersPage, Failed> {
        never(self.inner.members(room, after, limit).await)
    }

    async fn typing(&self, room: &str, user: &str) -> Result<(), Failed> {
        never(self.inner.typing(room, user).await)
    }

    async fn disconnect(&self, user: &str, reason: &str) -> Result<(), Failed> {
        never(self.inner.disconnect(user, reason).await)
    }

    async fn rooms(&self, after: Option<&str>, limit: usize) -> Result<RoomsPage, Failed> {
        never(self.inner.rooms(after, limit).await)
    }

    async fn epoch(&self, room: &str) -> Result<String, Failed> {
        never(self.inner.epoch(room).await)
    }

    async fn join_snapshot(
        &self,
        room: &str,
        user: &str,
        join_presence: bool,
        resume: Resume<'_>,
    ) -> Result<Snapshot, Failed> {
        let failing = lock(&self.next).take();
        if let Some(signal) = failing {
            self.waiting.notify_one();
            let _ = signal.await;
            return Err(Failed);
        }
        never(
            self.inner
                .join_snapshot(room, user, join_presence, resume)
                .await,
        )
    }
}

fn resume() -> Resume<'static> {
    Resume::latest(10)
}

fn outbox() -> Arc<Outbox> {
    Arc::new(Outbox::new(Bounds::frames(8), Arc::default()))
}

/// Alice's first connection (the one that records her presence) fails its join before anything
/// was recorded, while her second joins (not recording it: it is not her first). The second
/// is in the room: Alice must be online there, and offline once it leaves.
#[tokio::test]
async fn a_first_join_that_fails_leaves_the_users_other_connection_present() {
    let broker = Arc::new(FailingJoins::default());
    let rooms = Arc::new(Rooms::new(Arc::clone(&broker), Default::default()));
    let alice: Arc<str> = Arc::from("alice");
    let (fail, signal) = oneshot::channel();
    *lock(&broker.next) = Some(signal);

    let first = tokio::spawn({
        let (rooms, alice) = (Arc::clone(&rooms), Arc::clone(&alice));
        async move {
            rooms
                .join("r", 1, &alice, &outbox(), resume())
                .await
                .map(drop)
        }
    });
    broker.waiting.notified().await;
    let (joined, _) = rooms
        .join("r", 2, &alice, &outbox(), resume())
        .await
        .unwrap();
    assert!(!joined.first_of_user);
    fail.send(()).unwrap();
    assert!(first.await.unwrap().is_err());

    let members = broker.members("r", None, 10).await.unwrap().members;
    assert_eq!(
        members,
        ["alice"],
        "alice's second connection is in the room"
    );
    assert!(rooms.leave("r", 2, &alice).await);
    let members = broker.members("r", None, 10).await.unwrap().members;
    assert!(members.is_empty(), "{members:?}");
}
