//! A node's subscription to one room: the sink registered with the room's route (`router`), the
//! channel subscribed on its shard's driver (`shards`), the route started at the stream's end
//! (`catch_up`); and the guard that undoes it.

use std::sync::Arc;

use super::catch_up;
use super::error::RedisBrokerError;
use super::router::Router;
use super::shards::Shards;
use super::store::Store;
use crate::RoomSink;

/// A node's subscription to one room of a [`RedisBroker`](super::RedisBroker); dropping it
/// unsubscribes (the node's pub/sub connection leaves the room's channel with its last one).
#[derive(Debug)]
pub struct RedisSubscription {
    router: Arc<Router>,
    shards: Arc<Shards>,
    channel: String,
    /// The id its sink is registered under.
    id: u64,
}

impl Drop for RedisSubscription {
    fn drop(&mut self) {
        if let Some(slot) = self.router.remove(&self.channel, self.id) {
            self.shards.unsubscribed(slot);
        }
    }
}

/// Subscribes `sink` to `room`: live from the stream's end as of now.
pub(super) async fn subscribe(
    store: &Store,
    router: &Arc<Router>,
    shards: &Arc<Shards>,
    room: &str,
    sink: Arc<dyn RoomSink>,
) -> Result<RedisSubscription, RedisBrokerError> {
    let channel = store.names.channel(room);
    let (id, start) = router.add(&channel, room, sink);
    // From here on, dropping `subscription` unregisters the sink.
    let subscription = RedisSubscription {
        router: Arc::clone(router),
        shards: Arc::clone(shards),
        channel,
        id,
    };
    shards.subscribe(&subscription.channel).await?;
    if let Some(hold) = start {
        catch_up::start(store, router, &subscription.channel, hold).await?;
    }
    Ok(subscription)
}
