//! Catching rooms up from Redis: after a shard's connection came back (only that shard's rooms),
//! after a room moved to another shard, and when a room is first subscribed (its start).
//!
//! Each room is one round trip: its stream after the last id it delivered, the stream's newest
//! id, the trimmed marker and its members are read at once (the command connection pipelines
//! concurrent requests), and rooms are read [`CONCURRENCY`] at a time, so 25,000 rooms take
//! hundreds of round trips, not 75,000. The route is then settled under the router's lock (see
//! `route`): the page delivered, presence changes announced, held events released.
//!
//! A stream whose newest id is below the last one delivered, or that no longer holds that message
//! though it was not trimmed away, lost acknowledged writes (a master failed over to a replica
//! that had not got them): the room's epoch is dropped, so clients' `since` from the lost history
//! recover nothing. The route goes on from the new history's newest id (so a new master whose
//! clock is behind is not taken for a repeat), or, if the new history already has messages past
//! the last one delivered, delivers those; what it holds below that id cannot be told from what
//! the sinks had, and is not delivered live (clients rejoining get the latest page).

use std::sync::atomic::Ordering;

use futures_util::StreamExt as _;

use super::backoff::Backoff;
use super::error::RedisBrokerError;
use super::router::{Listed, Router};
use super::store::{Found, Read, Store};
use crate::MessageId;

/// Rooms read at once.
const CONCURRENCY: usize = 64;
/// Messages, or members, read per request.
const PAGE: usize = 1000;

/// Catches up every room listed after a reconnection, [`CONCURRENCY`] at a time; each is
/// retried until Redis answers, or it is listed again, or unsubscribed.
pub(super) async fn catch_up(store: &Store, router: &Router, listed: Vec<Listed>) {
    futures_util::stream::iter(listed)
        .for_each_concurrent(CONCURRENCY, |(channel, hold)| async move {
            let mut backoff = Backoff::default();
            loop {
                match settle(store, router, &channel, hold).await {
                    Ok(Settled::Done { delivered }) => {
                        let repairs = router.repairs();
                        repairs.catch_ups.fetch_add(1, Ordering::Relaxed);
                        repairs
                            .caught_up
                            .fetch_add(delivered as u64, Ordering::Relaxed);
                        return;
                    }
                    Ok(Settled::Elsewhere) => return,
                    Err(err) => {
                        tracing::warn!(%channel, error = %err, "catch-up failed; retrying");
                        tokio::time::sleep(backoff.next()).await;
                    }
                }
            }
        })
        .await;
}

/// Starts a route just subscribed (hold `hold`): from the stream's end as of now, with the
/// room's members as they are; once, failing with Redis.
pub(super) async fn start(
    store: &Store,
    router: &Router,
    channel: &str,
    hold: u32,
) -> Result<(), RedisBrokerError> {
    settle(store, router, channel, hold).await.map(drop)
}

/// How a catch-up ended.
enum Settled {
    /// The route is settled; `delivered` messages came from the stream.
    Done { delivered: usize },
    /// The route is gone, or another catch-up settles it.
    Elsewhere,
}

/// What a settling step leaves to do.
enum Step {
    /// Nothing: another catch-up settles the route.
    Superseded,
    /// Nothing: the route is settled.
    Done,
    /// Read the stream on after this id.
    ReadAfter(Option<MessageId>),
}

/// Reads the room and settles its route, if hold `hold` is still on.
async fn settle(
    store: &Store,
    router: &Router,
    channel: &str,
    hold: u32,
) -> Result<Settled, RedisBrokerError> {
    let Some((room, from)) = router.with_route(channel, |route| (route.room.clone(), route.last))
    else {
        return Ok(Settled::Elsewhere);
    };
    let Found {
        newest,
        mut page,
        trimmed,
        kept,
        mut members,
    } = store.catch_up_read(&room, from, PAGE).await?;
    // The message delivered last is gone, and not by trimming: the history it was part of is
    // lost, even when the new one already has messages with greater ids (a new master whose
    // clock was behind, written to since).
    let vanished = !kept && trimmed.is_none_or(|trimmed| from.is_some_and(|from| trimmed < from));
    if let (Some(from), Some(trimmed)) = (from, trimmed)
        && trimmed > from
    {
        tracing::error!(%room, "stream trimmed past this node's position; messages lost for it");
    }
    let (mut delivered, mut lost, mut first) = (0, false, true);
    // Where the route stood when its page was read.
    let mut read_after = from;
    loop {
        let full = page.len() == PAGE;
        let step = router.with_route(channel, |route| {
            if !route.holding(hold) {
                // Listed again since (its connection was lost again, or it moved), or settled
                // by another catch-up: only what cannot be wrong for that one (starting a route
                // that never started: everything after `newest` comes live or from that
                // catch-up, which reads on from where the route stands).
                route.start_at(newest.unwrap_or(MessageId::MIN));
                return Step::Superseded;
            }
            if route.last != read_after {
                // Started by a superseded catch-up after this one read its page from nowhere:
                // what came after that start is not in the page, so read on from it.
                first = false;
                read_after = route.last;
                return Step::ReadAfter(route.last);
            }
            match route.last {
                None => route.start_at(newest.unwrap_or(MessageId::MIN)),
                Some(last)
                    if std::mem::take(&mut first)
                        && last > MessageId::MIN
                        && (vanished || newest.is_none_or(|newest| newest < last)) =>
                {
                    lost = true;
                    if vanished && newest.is_some_and(|newest| newest > last) {
                        // What the new history holds past `last` is news to the sinks; what it
                        // holds below cannot be told from what they had.
                        delivered += route.replay(std::mem::take(&mut page));
                    } else {
                        route.last = Some(newest.unwrap_or(MessageId::MIN));
                    }
                }
                Some(_) => delivered += route.replay(std::mem::take(&mut page)),
            }
            if full {
                read_after = route.last;
                return Step::ReadAfter(route.last);
            }
            if let Some(members) = members.take() {
                route.settle_members(members);
            }
            if route.caught_up() {
                Step::Done
            } else {
                // Held events overflowed: they are in the stream, after the last id.
                read_after = route.last;
                Step::ReadAfter(route.last)
            }
        });
        match step.unwrap_or(Step::Superseded) {
            Step::Superseded => return Ok(Settled::Elsewhere),
            Step::Done => break,
            Step::ReadAfter(after) => {
                page = store.read_stream(&room, Read::After(after, PAGE)).await?;
            }
        }
    }
    if lost {
        if newest.is_some() {
            tracing::error!(%room, "the room's stream lost messages this node delivered; starting a new epoch");
        } else {
            // Expired (unused for `room_ttl`: its epoch went with it) or lost with Redis's data;
            // the epoch is dropped all the same, in case it outlived the stream.
            tracing::warn!(%room, "the room's stream is gone (expired, or lost with Redis's data): its history starts again");
        }
        if let Err(err) = store.forget_epoch(&room).await {
            tracing::warn!(%room, error = %err, "could not start a new epoch");
        }
    }
    if delivered > 0 {
        tracing::debug!(%room, delivered, "caught up from stream");
    }
    Ok(Settled::Done { delivered })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::route::Route;
    use super::super::route::tests::{Record, message, seqs};
    use super::*;
    use crate::{RoomEvent, RoomSink};

    /// A store and a router on a fresh `redis-server`.
    async fn on_redis(redis: &skat_testkit::RedisServer) -> (Store, Router) {
        on_url(redis.url()).await
    }

    /// A route subscribed but not yet told where the stream ended when its connection came back
    /// (item 1 of issue 20) starts at the stream's end: the history is not replayed into it.
    #[tokio::test]
    async fn a_route_that_never_learned_its_start_is_not_replayed_the_history() {
        let redis = skat_testkit::RedisServer::start().await;
        let (store, router) = on_redis(&redis).await;
        for seq in 1..=3 {
            let entry = super::super::codec::encode_message("a", None, &seq.to_string());
            let stream = store.names.stream("r");
            let added = redis
                .command(&["XADD", &stream, &format!("5-{seq}"), "d", &entry])
                .await;
            assert!(added.is_some_and(|r| r.starts_with('$')));
        }
        let record = Arc::new(Record::default());
        let channel = store.names.channel("r");
        router.add(&channel, "r", Arc::clone(&record) as Arc<dyn RoomSink>);
        let hold = router.with_route(&channel, Route::hold).unwrap();
        catch_up(&store, &router, vec![(channel.clone(), hold)]).await;
        assert!(seqs(&record).is_empty(), "{:?}", seqs(&record));
        router.with_route(&channel, |route| {
            assert_eq!(route.last, Some(MessageId { ms: 5, seq: 3 }));
            route.offer(RoomEvent::Message(message(4)), 8);
        });
        assert_eq!(seqs(&record), ["4"], "live again");
        assert_eq!(router.stats().catch_ups, 1);
    }

    /// A route's start (the subscription's catch-up) is superseded by a re-listing (the
    /// connection dropped) and sets the route's start after the newer catch-up read the room
    /// from nowhere: the newer one reads on from that start, so a message published after it
    /// reaches the sinks (the review's H1).
    #[tokio::test]
    async fn a_start_set_by_a_superseded_catch_up_is_read_on_from() {
        let redis = skat_testkit::RedisServer::start().await;
        let proxy = skat_testkit::Proxy::start(redis.port()).await;
        let (store, router) = on_proxy(&proxy).await;
        let stream = store.names.stream("r");
        let add = |seq: u64| {
            let (redis, stream) = (&redis, &stream);
            async move {
                let entry = super::super::codec::encode_message("a", None, &seq.to_string());
                let id = format!("5-{seq}");
                let added = redis.command(&["XADD", stream, &id, "d", &entry]).await;
                assert!(added.is_some_and(|r| r.starts_with('$')));
            }
        };
        add(1).await;
        let record = Arc::new(Record::default());
        let channel = store.names.channel("r");
        router.add(&channel, "r", Arc::clone(&record) as Arc<dyn RoomSink>);
        // The subscription's start, then the re-listing after a drop.
        router.with_route(&channel, Route::hold).unwrap();
        let relisted = router.with_route(&channel, Route::hold).unwrap();
        proxy.hold_replies_to("XREVRANGE");
        let catching = catch_up(&store, &router, vec![(channel.clone(), relisted)]);
        tokio::pin!(catching);
        tokio::select! {
            () = &mut catching => panic!("the read was not held"),
            () = proxy.holding() => {}
        }
        // The superseded start settles what it can: where the route starts.
        router.with_route(&channel, |route| {
            route.start_at(MessageId { ms: 5, seq: 1 });
        });
        add(2).await;
        proxy.release();
        catching.await;
        assert_eq!(seqs(&record), ["2"]);
    }

    /// The message a route delivered last is gone from a stream whose newest id is already
    /// past it (a new master with a clock behind, written to since): the history is lost all
    /// the same (a new epoch), and what the new one holds past that id is delivered (the
    /// review's M3).
    #[tokio::test]
    async fn a_lost_history_is_noticed_when_the_new_one_has_greater_ids() {
        let redis = skat_testkit::RedisServer::start().await;
        let (store, router) = on_redis(&redis).await;
        let stream = store.names.stream("r");
        let add = |id: &'static str| {
            let (redis, stream) = (&redis, &stream);
            async move {
                let entry = super::super::codec::encode_message("a", None, id);
                let added = redis.command(&["XADD", stream, id, "d", &entry]).await;
                assert!(added.is_some_and(|r| r.starts_with('$')));
            }
        };
        add("5-1").await;
        let record = Arc::new(Record::default());
        let channel = store.names.channel("r");
        router.add(&channel, "r", Arc::clone(&record) as Arc<dyn RoomSink>);
        router.with_route(&channel, |route| {
            route.start_at(MessageId { ms: 5, seq: 1 });
        });
        let epoch = store.names.epoch("r");
        assert!(redis.command(&["SET", &epoch, "old"]).await.is_some());
        // Failed over: the new master never had 5-1, and its clock was behind.
        assert!(redis.command(&["DEL", &stream]).await.is_some());
        add("4-1").await;
        add("6-1").await;
        let hold = router.with_route(&channel, Route::hold).unwrap();
        catch_up(&store, &router, vec![(channel.clone(), hold)]).await;
        assert_eq!(seqs(&record), ["6-1"]);
        let exists = redis.command(&["EXISTS", &epoch]).await;
        assert_eq!(exists.as_deref(), Some(":0\r\n"), "a new epoch");
    }

    /// [`on_redis`], through `proxy`.
    async fn on_proxy(proxy: &skat_testkit::Proxy) -> (Store, Router) {
        on_url(proxy.url()).await
    }

    async fn on_url(url: String) -> (Store, Router) {
        let config = super::super::config::RedisConfig::new(url, "unit");
        let link = super::super::link::connect(&config).await.unwrap();
        let router = Router::new();
        let store = Store::new(config, super::super::retry::Retrying::new(link));
        (store, router)
    }
}
