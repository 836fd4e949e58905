//! The node's pub/sub side: one connection for every room, routing each event to its room's
//! sinks, and the catch-up from the streams after that connection drops.
//!
//! Every room with a local subscription has a [`Route`]: its sinks and the id of the last message
//! they got. The pub/sub task hands each event straight to the route's sinks, skipping messages
//! at or below that id, so a message reaches a node's sinks at most once whichever way it came.
//!
//! When the connection comes back after a drop, whatever was published meanwhile is only in the
//! streams. Every route then holds live events back ([`Pending`]) while the task re-reads its
//! stream after the last id, delivers that, and then releases what it held back. If more was held
//! back than the bound allows, the held messages are dropped and the stream read again: they are
//! in it. Presence and typing events, which are at most once, may be dropped there.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, mpsc, oneshot, watch};

use super::RedisBrokerError;
use super::codec::decode_event;
use super::link::{Incoming, PubSubSource};
use super::store::{Read, Store};
use crate::lock;
use crate::sinks::Sinks;
use crate::sparse::ShrinkWhenSparse as _;
use crate::{BrokerStats, MessageId, RoomEvent, RoomSink};

/// A subscription's request to the pub/sub task (unsubscribing goes through
/// [`Shared::unsubscribed`](super::Shared) instead, as a `Drop` cannot wait for room in a
/// bounded channel).
pub(super) enum Control {
    Subscribe {
        channel: String,
        ack: oneshot::Sender<Result<(), RedisBrokerError>>,
    },
}

/// The pub/sub side's shared state: every room with local subscriptions, and the pub/sub task's
/// inputs and output.
pub(super) struct Router {
    /// Each room with local subscriptions, by channel name.
    rooms: Mutex<HashMap<String, Route>>,
    /// Subscribe requests to the pub/sub task, bounded.
    pub(super) control: mpsc::Sender<Control>,
    /// Wakes the pub/sub task when a room lost its last local subscription.
    unsubscribed: Notify,
    /// Whether the pub/sub connection is up and every room resubscribed.
    ready: watch::Sender<bool>,
    /// Reconnections and catch-ups so far.
    repairs: Repairs,
}

/// Counts of what the router repaired, read by [`Router::stats`].
#[derive(Debug, Default)]
struct Repairs {
    reconnects: AtomicU64,
    catch_ups: AtomicU64,
    caught_up: AtomicU64,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("rooms", &lock(&self.rooms).len())
            .finish_non_exhaustive()
    }
}

impl Router {
    pub(super) fn new(control: mpsc::Sender<Control>, ready: watch::Sender<bool>) -> Self {
        Self {
            rooms: Mutex::default(),
            control,
            unsubscribed: Notify::new(),
            ready,
            repairs: Repairs::default(),
        }
    }

    /// What the router repaired so far.
    pub(super) fn stats(&self) -> BrokerStats {
        let load = |n: &AtomicU64| n.load(Ordering::Relaxed);
        BrokerStats {
            reconnects: load(&self.repairs.reconnects),
            catch_ups: load(&self.repairs.catch_ups),
            caught_up: load(&self.repairs.caught_up),
        }
    }

    /// Registers `sink` for `room` (channel `channel`); returns the id that removes it.
    pub(super) fn add(&self, channel: &str, room: &str, sink: Arc<dyn RoomSink>) -> u64 {
        lock(&self.rooms)
            .entry(channel.to_owned())
            .or_insert_with(|| Route::new(room))
            .sinks
            .add(sink)
    }

    /// Raises the room's last id to `id` (a subscription learning the stream's end).
    pub(super) fn start_after(&self, channel: &str, id: MessageId) {
        if let Some(route) = lock(&self.rooms).get_mut(channel) {
            route.start_after(id);
        }
    }

    /// Whether the pub/sub connection is up and every room resubscribed.
    pub(super) fn is_ready(&self) -> bool {
        *self.ready.borrow()
    }

    /// Tells every sink its subscription has ended (the broker is going away).
    pub(super) fn close_all(&self) {
        for route in lock(&self.rooms).values() {
            route.sinks.close();
        }
    }

    /// Decodes a pub/sub payload for the route of `channel`, if this node still has one.
    fn route(&self, channel: &str, payload: &[u8], bound: usize) {
        let mut rooms = lock(&self.rooms);
        let Some(route) = rooms.get_mut(channel) else {
            return;
        };
        match decode_event(&route.room, payload) {
            Ok(event) => route.offer(event, bound),
            Err(err) => tracing::warn!(%channel, error = %err, "dropping undecodable event"),
        }
    }
}

/// One room's local subscriptions, and where its delivery stands.
#[derive(Debug)]
pub(super) struct Route {
    pub(super) room: Box<str>,
    pub(super) sinks: Sinks,
    /// Id of the last message handed to the sinks (or the stream's end when subscribing).
    pub(super) last: Option<MessageId>,
    /// Live events held back while the room catches up from its stream.
    pending: Option<Box<Pending>>,
}

/// What arrived live while a room was catching up.
#[derive(Debug, Default)]
struct Pending {
    events: VecDeque<RoomEvent>,
    /// Whether events were dropped for want of room (the stream has the messages among them).
    overflowed: bool,
}

impl Route {
    pub(super) fn new(room: &str) -> Self {
        Self {
            room: room.into(),
            sinks: Sinks::default(),
            last: None,
            pending: None,
        }
    }

    /// A live event: delivered now, or held back (at most `bound`) while catching up.
    pub(super) fn offer(&mut self, event: RoomEvent, bound: usize) {
        match &mut self.pending {
            Some(pending) if pending.events.len() < bound => pending.events.push_back(event),
            Some(pending) => pending.overflowed = true,
            None => {
                self.accept(event);
            }
        }
    }

    /// Hands `event` to the sinks, unless it is a message they already got; returns whether
    /// it did.
    fn accept(&mut self, event: RoomEvent) -> bool {
        if let RoomEvent::Message(message) = &event {
            // Exactly once: a catch-up read and live events may overlap.
            if self.last.is_some_and(|last| message.id <= last) {
                return false;
            }
            self.last = Some(message.id);
        }
        self.sinks.deliver(event);
        true
    }

    /// Raises the last id to `id` if it is below (a subscription learning the stream's end).
    pub(super) fn start_after(&mut self, id: MessageId) {
        if self.last < Some(id) {
            self.last = Some(id);
        }
    }

    /// Starts holding live events back until [`Route::caught_up`] (keeping what it holds
    /// already).
    fn hold(&mut self) {
        self.pending.get_or_insert_default();
    }

    /// Delivers a page read from the stream after the last id; returns how many of its
    /// messages the sinks had not had.
    fn replay(&mut self, page: Vec<crate::Message>) -> usize {
        page.into_iter()
            .map(|message| usize::from(self.accept(RoomEvent::Message(message))))
            .sum()
    }

    /// The stream has been read to its end: releases what was held back, and returns `true`; or
    /// returns `false` if some of it was dropped and the stream must be read again.
    fn caught_up(&mut self) -> bool {
        let Some(pending) = self.pending.take() else {
            return true;
        };
        if pending.overflowed {
            self.hold();
            return false;
        }
        for event in pending.events {
            self.accept(event);
        }
        true
    }
}

/// Owns the node's pub/sub connection: (re)connects, resubscribes, routes, handles control,
/// and catches rooms up after a reconnection.
///
/// The connection is watched, not trusted: a PING every `pubsub_ping` must be answered within the
/// command timeout, and so must every SUBSCRIBE and UNSUBSCRIBE, or the connection is dropped and
/// made again (with the catch-up). A connection silently cut on the way (a NAT or firewall
/// forgetting it) would otherwise stop live delivery while the node still reported ready.
pub(super) async fn pubsub_task(
    store: Arc<Store>,
    router: Arc<Router>,
    source: PubSubSource,
    mut control: mpsc::Receiver<Control>,
) {
    let config = &store.config;
    let timeout = config.command_timeout;
    let mut backoff = Backoff::default();
    let mut first = true;
    loop {
        let connected = tokio::time::timeout(timeout, source.connect()).await;
        let mut driver = match connected {
            Ok(Ok(driver)) => driver,
            failed => {
                let reason = match failed {
                    Ok(Err(err)) => err.to_string(),
                    _ => "timed out".to_owned(),
                };
                tracing::warn!(error = %reason, "redis pub/sub connection failed; retrying");
                if !refuse_while_waiting(&mut control, backoff.next()).await {
                    return;
                }
                continue;
            }
        };
        // Whatever is published from now on to the rooms listed here is only in their streams
        // until the resubscription is answered: they hold live events back from now, and catch
        // up from their streams after it. A room added later is subscribed on its own.
        let channels: Vec<String> = lock(&router.rooms)
            .iter_mut()
            .map(|(channel, route)| {
                route.hold();
                channel.clone()
            })
            .collect();
        if !channels.is_empty() {
            let resubscribed = tokio::time::timeout(timeout, driver.subscribe(&channels)).await;
            if !matches!(resubscribed, Ok(Ok(()))) {
                tracing::warn!("resubscribing failed or timed out; retrying");
                if !refuse_while_waiting(&mut control, backoff.next()).await {
                    return;
                }
                continue;
            }
            tracing::info!(
                rooms = channels.len(),
                "redis pub/sub reconnected; rooms resubscribed"
            );
        }
        let mut subscribed: HashSet<String> = channels.iter().cloned().collect();
        if !std::mem::take(&mut first) {
            router.repairs.reconnects.fetch_add(1, Ordering::Relaxed);
        }
        backoff = Backoff::default();
        router.ready.send_replace(true);
        let catch_up = catch_up(&store, &router, channels);
        tokio::pin!(catch_up);
        let mut caught_up = false;
        let period = config.pubsub_ping;
        let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let lost = loop {
            tokio::select! {
                command = control.recv() => match command {
                    None => return,
                    Some(Control::Subscribe { channel, ack }) => {
                        let one = std::slice::from_ref(&channel);
                        match tokio::time::timeout(timeout, driver.subscribe(one)).await {
                            Ok(Ok(())) => {
                                subscribed.insert(channel);
                                let _ = ack.send(Ok(()));
                            }
                            Ok(Err(err)) => {
                                let _ = ack.send(Err(err.into()));
                                break "SUBSCRIBE failed";
                            }
                            Err(_) => {
                                let _ = ack.send(Err(RedisBrokerError::Unavailable));
                                break "SUBSCRIBE timed out";
                            }
                        }
                    }
                },
                () = router.unsubscribed.notified() => {
                    // Channels no local subscription needs any more (a new one may have
                    // arrived for some since: those stay).
                    let stale: Vec<String> = {
                        let rooms = lock(&router.rooms);
                        subscribed.iter().filter(|c| !rooms.contains_key(*c)).cloned().collect()
                    };
                    if !stale.is_empty() {
                        if !matches!(tokio::time::timeout(timeout, driver.unsubscribe(&stale)).await, Ok(Ok(()))) {
                            break "UNSUBSCRIBE failed or timed out";
                        }
                        stale.iter().for_each(|c| { subscribed.remove(c); });
                        subscribed.shrink_when_sparse();
                    }
                },
                _ = ping.tick() => {
                    if !matches!(tokio::time::timeout(timeout, driver.ping()).await, Ok(Ok(()))) {
                        break "PING unanswered";
                    }
                },
                incoming = driver.next() => match incoming {
                    Incoming::Message(message) => router.route(message.get_channel_name(), message.get_payload_bytes(), config.channel_capacity),
                    Incoming::Lost(reason) => break reason,
                    // The server dropped a channel we still route (its slot moved).
                    Incoming::Unsubscribed(channel) if lock(&router.rooms).contains_key(&channel) => break "a room's slot moved",
                    Incoming::Unsubscribed(_) => {}
                },
                () = &mut catch_up, if !caught_up => caught_up = true,
            }
        };
        router.ready.send_replace(false);
        tracing::warn!(reason = lost, "redis pub/sub connection lost; reconnecting");
    }
}

/// Catches every room in `channels` up from its stream, one after the other.
async fn catch_up(store: &Store, router: &Router, channels: Vec<String>) {
    for channel in channels {
        catch_up_room(store, router, &channel).await;
    }
}

/// Reads the room's stream after its last id into its sinks, then releases the events held back
/// meanwhile; retries until Redis answers. Ends early if the room is unsubscribed meanwhile.
async fn catch_up_room(store: &Store, router: &Router, channel: &str) {
    const PAGE: usize = 1000;
    let mut backoff = Backoff::default();
    let Some((room, from)) = lock(&router.rooms)
        .get(channel)
        .map(|route| (route.room.clone(), route.last))
    else {
        return;
    };
    let (mut missed, mut delivered, mut after) = (0, 0, from);
    if from.is_none() {
        // Subscribed, but its subscription has not learned where the stream ended: nothing
        // was delivered from it, so it starts at the end, as the subscription would.
        let end = loop {
            match store.read_stream(&room, Read::Before(None, 1)).await {
                Ok(newest) => break newest.first().map_or(MessageId::MIN, |m| m.id),
                Err(err) => {
                    tracing::warn!(%room, error = %err, "catch-up failed; retrying");
                    tokio::time::sleep(backoff.next()).await;
                }
            }
        };
        if let Some(route) = lock(&router.rooms).get_mut(channel) {
            route.start_after(end);
        }
        after = Some(end);
    }
    loop {
        let page = match store.read_stream(&room, Read::After(after, PAGE)).await {
            Ok(page) => page,
            Err(err) => {
                tracing::warn!(%room, error = %err, "catch-up failed; retrying");
                tokio::time::sleep(backoff.next()).await;
                continue;
            }
        };
        backoff = Backoff::default();
        let full = page.len() == PAGE;
        missed += page.len();
        let mut rooms = lock(&router.rooms);
        let Some(route) = rooms.get_mut(channel) else {
            return;
        };
        delivered += route.replay(page);
        if !full && route.caught_up() {
            break;
        }
        after = route.last;
    }
    let repairs = &router.repairs;
    repairs.catch_ups.fetch_add(1, Ordering::Relaxed);
    repairs
        .caught_up
        .fetch_add(delivered as u64, Ordering::Relaxed);
    if missed > 0 {
        tracing::debug!(%room, missed, delivered, "caught up from stream");
    }
    if let (Some(from), Ok(Some(Some(trimmed)))) = (from, store.trimmed_up_to(&room).await)
        && trimmed > from
    {
        tracing::error!(%room, "stream trimmed past this node's position; messages lost for it");
    }
    // The stream's newest message older than one this node delivered: the stream lost
    // acknowledged writes (a master failed over to a replica that had not got them). The
    // room's history is not the one clients saw any more: a new epoch makes their `since`
    // recover nothing (`recovered: false`) instead of passing over the gap.
    let delivered_up_to = lock(&router.rooms)
        .get(channel)
        .and_then(|route| route.last);
    if let Some(last) = delivered_up_to.filter(|last| *last > MessageId::MIN)
        && let Ok(newest) = store.read_stream(&room, Read::Before(None, 1)).await
        && newest.first().is_none_or(|newest| newest.id < last)
    {
        tracing::error!(%room, %last, "the room's stream lost messages this node delivered; starting a new epoch");
        // The new history's ids may be below `last` (a new master whose clock is behind):
        // live messages are compared with its newest id from now on, or none would pass.
        let newest = newest.first().map_or(MessageId::MIN, |newest| newest.id);
        if let Some(route) = lock(&router.rooms).get_mut(channel)
            && route.last == Some(last)
        {
            route.last = Some(newest);
        }
        if let Err(err) = store.forget_epoch(&room).await {
            tracing::warn!(%room, error = %err, "could not start a new epoch");
        }
    }
}

/// Waits `delay`, refusing subscriptions meanwhile; `false` if the broker is gone.
async fn refuse_while_waiting(control: &mut mpsc::Receiver<Control>, delay: Duration) -> bool {
    let sleep = tokio::time::sleep(delay);
    tokio::pin!(sleep);
    loop {
        tokio::select! {
            () = &mut sleep => return true,
            command = control.recv() => match command {
                None => return false,
                Some(Control::Subscribe { ack, .. }) => {
                    let _ = ack.send(Err(RedisBrokerError::Unavailable));
                }
            },
        }
    }
}

/// Exponential backoff from 50 ms to 2 s, with jitter.
#[derive(Default)]
struct Backoff {
    attempt: u32,
}

impl Backoff {
    fn next(&mut self) -> Duration {
        let base = 50u64 << self.attempt.min(6);
        self.attempt += 1;
        let jitter = u64::from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos()),
        ) % (base / 2 + 1);
        Duration::from_millis((base + jitter).min(2000))
    }
}

/// A node's subscription to one room of a [`RedisBroker`](super::RedisBroker); dropping it
/// unsubscribes (the node's pub/sub connection leaves the room's channel with its last one).
#[derive(Debug)]
pub struct RedisSubscription {
    pub(super) router: Arc<Router>,
    pub(super) channel: String,
    /// The id its sink is registered under.
    pub(super) id: u64,
}

impl Drop for RedisSubscription {
    fn drop(&mut self) {
        let mut rooms = lock(&self.router.rooms);
        let Some(route) = rooms.get_mut(&self.channel) else {
            return;
        };
        if route.sinks.remove(self.id) {
            rooms.remove(&self.channel);
            rooms.shrink_when_sparse();
            self.router.unsubscribed.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::{Message, RoomSink};

    /// Records what a route delivers.
    #[derive(Default)]
    struct Record(Mutex<Vec<RoomEvent>>);

    impl RoomSink for Record {
        fn deliver(&self, event: RoomEvent) {
            self.0.lock().unwrap().push(event);
        }
        fn closed(&self) {}
    }

    fn message(seq: u64) -> Message {
        Message {
            room: "r".into(),
            id: MessageId { ms: 5, seq },
            from: "a".into(),
            body: seq.to_string(),
            ts: 5,
            nonce: None,
        }
    }

    fn route() -> (Route, Arc<Record>) {
        let record = Arc::new(Record::default());
        let mut route = Route::new("r");
        route.sinks.add(Arc::clone(&record) as Arc<dyn RoomSink>);
        (route, record)
    }

    fn seqs(record: &Record) -> Vec<String> {
        record
            .0
            .lock()
            .unwrap()
            .iter()
            .map(|event| match event {
                RoomEvent::Message(m) => m.body.clone(),
                RoomEvent::Typing { .. } => "typing".into(),
                RoomEvent::Presence { .. } => "presence".into(),
                RoomEvent::Disconnect { .. } => "disconnect".into(),
            })
            .collect()
    }

    /// A store and a router on a fresh `redis-server`.
    async fn on_redis(redis: &skat_testkit::RedisServer) -> (Store, Router) {
        let config = super::super::RedisConfig::new(redis.url(), "unit");
        let (link, _) = super::super::link::connect(&config).await.unwrap();
        let store = Store {
            config,
            conn: super::super::retry::Retrying::new(link),
            scripts: super::super::scripts::Scripts::new(false),
            held: Mutex::default(),
            unheld: Mutex::default(),
            instance: Mutex::new(Arc::from("unit:0")),
        };
        let (control, _) = mpsc::channel(1);
        (store, Router::new(control, watch::channel(false).0))
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
        lock(&router.rooms).get_mut(&channel).unwrap().hold();
        catch_up_room(&store, &router, &channel).await;
        assert!(seqs(&record).is_empty(), "{:?}", seqs(&record));
        let mut rooms = lock(&router.rooms);
        let route = rooms.get_mut(&channel).unwrap();
        assert_eq!(route.last, Some(MessageId { ms: 5, seq: 3 }));
        route.offer(RoomEvent::Message(message(4)), 8);
        assert_eq!(seqs(&record), ["4"], "live again");
    }

    #[test]
    fn live_messages_are_delivered_once_in_order() {
        let (mut route, record) = route();
        route.start_after("5-1".parse().unwrap());
        for seq in [1, 2, 3, 3, 2, 4] {
            route.offer(RoomEvent::Message(message(seq)), 8);
        }
        assert_eq!(seqs(&record), ["2", "3", "4"]);
    }

    #[test]
    fn a_catch_up_replays_the_stream_before_what_was_held_back() {
        let (mut route, record) = route();
        route.offer(RoomEvent::Message(message(1)), 8);
        route.hold();
        // Live while catching up: 4 and 5 (4 is also in the stream page), and a typing event.
        route.offer(RoomEvent::Message(message(4)), 8);
        route.offer(
            RoomEvent::Typing {
                room: "r".into(),
                user: "b".into(),
            },
            8,
        );
        route.offer(RoomEvent::Message(message(5)), 8);
        assert_eq!(seqs(&record), ["1"], "held back");
        route.replay((2..=4).map(message).collect());
        assert!(route.caught_up());
        assert_eq!(seqs(&record), ["1", "2", "3", "4", "typing", "5"]);
        route.offer(RoomEvent::Message(message(6)), 8);
        assert_eq!(seqs(&record).last().map(String::as_str), Some("6"));
    }

    #[test]
    fn an_overflowing_catch_up_reads_the_stream_again() {
        let (mut route, record) = route();
        route.hold();
        for seq in 1..=5 {
            route.offer(RoomEvent::Message(message(seq)), 2);
        }
        route.replay(vec![message(1)]);
        assert!(!route.caught_up(), "3 to 5 were dropped: read again");
        route.offer(RoomEvent::Message(message(6)), 2);
        route.replay((2..=5).map(message).collect());
        assert!(route.caught_up());
        assert_eq!(seqs(&record), ["1", "2", "3", "4", "5", "6"]);
    }
}
