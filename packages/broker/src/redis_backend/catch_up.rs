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

use std::collections::HashSet;
use std::sync::atomic::Ordering;

use futures_util::StreamExt as _;

use redis::Value;

use super::RedisBrokerError;
use super::codec::{decode_entries, parse_id};
use super::router::Router;
use super::shard::Backoff;
use super::store::{Read, Store};
use crate::{Message, MessageId, NODES_ROOM};

/// Rooms read at once.
const CONCURRENCY: usize = 64;
/// Messages, or members, read per request.
const PAGE: usize = 1000;

/// A room to catch up: its channel and the number of the hold it was listed under.
pub(super) type Listed = (String, u32);

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
    } = read(store, &room, from).await?;
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

/// What a catch-up first reads of a room.
struct Found {
    /// The stream's newest id.
    newest: Option<MessageId>,
    /// The first page after the route's last id (none for a route not started).
    page: Vec<Message>,
    /// The newest id trimmed from the stream (not read for a route not started).
    trimmed: Option<MessageId>,
    /// Whether the stream still holds the message the route delivered last (true for a route
    /// not started).
    kept: bool,
    /// Every member (`None` for the notices room), as a set made here rather than under the
    /// router's lock.
    members: Option<HashSet<Box<str>>>,
}

/// Reads what a catch-up needs of `room`, whose route delivered up to `from`, in one request
/// (its keys share a slot).
async fn read(
    store: &Store,
    room: &str,
    from: Option<MessageId>,
) -> Result<Found, RedisBrokerError> {
    // The notices room has no members.
    let presence = room != NODES_ROOM;
    let after = from.and_then(|from| store.stream_command(room, Read::After(Some(from), PAGE)));
    let mut pipe = redis::pipe();
    pipe.ignore_errors();
    // From the end, there is always something to ask.
    pipe.add_command(
        store
            .stream_command(room, Read::Before(None, 1))
            .unwrap_or_default(),
    );
    let at = from.and_then(|from| store.stream_command(room, Read::At(from)));
    if from.is_some() {
        pipe.get(store.key(room, "trimmed"));
    }
    if let Some(at) = at.clone() {
        pipe.add_command(at);
    }
    if presence {
        let keys = store.keys(room);
        pipe.cmd("EVALSHA")
            .arg(store.scripts.members.get_hash())
            .arg(2)
            .arg(&keys.users)
            .arg(&keys.names)
            .arg("")
            .arg(PAGE);
    }
    if let Some(after) = after.clone() {
        pipe.add_command(after);
    }
    let replies: Vec<Value> = pipe.query_async(&mut store.conn.clone()).await?;
    let mut replies = replies.into_iter();
    let newest = decode_entries(room, reply(replies.next())?)?;
    let trimmed: Option<String> = match from {
        Some(_) => reply(replies.next())?,
        None => None,
    };
    let kept = match at {
        Some(_) => !decode_entries(room, reply(replies.next())?)?.is_empty(),
        None => true,
    };
    let members = match (presence, replies.next()) {
        (false, _) => None,
        // Not loaded on this server yet (a restart, a new master): loaded by the call.
        (true, Some(Value::ServerError(err))) if err.code() == "NOSCRIPT" => {
            Some(self::members(store, room, Vec::new()).await?)
        }
        (true, first) => {
            let (first, more): (Vec<String>, i64) = reply(first)?;
            Some(if more == 1 {
                self::members(store, room, first).await?
            } else {
                first
            })
        }
    };
    let page = match after {
        Some(_) => decode_entries(room, reply(replies.next())?)?,
        None => Vec::new(),
    };
    Ok(Found {
        newest: newest.first().map(|newest| newest.id),
        page,
        trimmed: trimmed.as_deref().map(parse_id).transpose()?,
        kept,
        members: members.map(|members| members.into_iter().map(Into::into).collect()),
    })
}

/// One reply of a pipeline, as `T`.
fn reply<T: redis::FromRedisValue>(value: Option<Value>) -> Result<T, RedisBrokerError> {
    match value {
        None => Err(RedisBrokerError::Corrupt("a reply is missing".to_owned())),
        Some(Value::ServerError(err)) => Err(redis::RedisError::from(err).into()),
        Some(value) => Ok(redis::from_redis_value(value).map_err(redis::RedisError::from)?),
    }
}

/// Every member of `room`, by name: `first` (a first page), then the pages after it.
async fn members(
    store: &Store,
    room: &str,
    mut all: Vec<String>,
) -> Result<Vec<String>, RedisBrokerError> {
    loop {
        let page = store
            .members_page(room, all.last().map(String::as_str), PAGE)
            .await?;
        all.extend(page.members);
        if !page.has_more {
            return Ok(all);
        }
    }
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
            let stream = store.key("r", "stream");
            let added = redis
                .command(&["XADD", &stream, &format!("5-{seq}"), "d", &entry])
                .await;
            assert!(added.is_some_and(|r| r.starts_with('$')));
        }
        let record = Arc::new(Record::default());
        let channel = store.channel("r");
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
        let stream = store.key("r", "stream");
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
        let channel = store.channel("r");
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
        let stream = store.key("r", "stream");
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
        let channel = store.channel("r");
        router.add(&channel, "r", Arc::clone(&record) as Arc<dyn RoomSink>);
        router.with_route(&channel, |route| {
            route.start_at(MessageId { ms: 5, seq: 1 });
        });
        let epoch = store.epoch_key("r");
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
        let config = super::super::RedisConfig::new(url, "unit");
        let (link, _) = super::super::link::connect(&config).await.unwrap();
        let router = Router::new(&config, tokio::sync::watch::channel(false).0);
        let store = Store::new(config, super::super::retry::Retrying::new(link));
        (store, router)
    }
}
