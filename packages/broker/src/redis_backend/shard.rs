//! One shard's live-event driver: its connection, made again after a loss, the rooms it
//! subscribes there, their catch-up, and its readiness. On one server there is one; in a
//! cluster, one per master (see `topology`), so a shard's outage stops only its own rooms.
//!
//! The connection is watched, not trusted: a PING every `pubsub_ping` must be answered within
//! the command timeout, and so must every batch of subscriptions, or the connection is dropped
//! and made again. A connection silently cut on the way (a NAT or firewall forgetting it) would
//! otherwise stop live delivery while the node still reported ready.
//!
//! After a (re)connection the driver lists the rooms its shard serves, holding each one's live
//! events back as it lists it (so a room joined meanwhile is not held: it is subscribed on its
//! own), subscribes them in batches of [`BATCH`], each within the command timeout, and catches
//! up exactly those (see `catch_up`), while it goes on routing, subscribing and pinging.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;
use tokio::sync::{mpsc, oneshot};

use super::backoff::Backoff;
use super::catch_up::catch_up;
use super::driver::{Addr, Driver, Incoming, PubSubSource};
use super::router::{Listed, Router};
use super::shards::{Control, Refusal, ShardDriver, ShardHandle, Shards};
use super::slots::{SlotSet, key_slot};
use super::store::Store;

/// Channels subscribed per pipeline after a reconnection.
const BATCH: usize = 1000;
/// Live events routed at most per wakeup of a shard's task, when they arrived together.
const DRAIN: usize = 256;

/// Starts the driver of the shard at `addr` (`None`: the configured server) serving `slots`;
/// `first`: its first connection is not counted as a reconnection.
pub(super) fn spawn(
    pubsub: &PubSub,
    addr: Option<Addr>,
    slots: SlotSet,
    first: bool,
) -> ShardDriver {
    let (handle, control) = ShardHandle::new(addr, slots);
    let task =
        tokio::spawn(run(pubsub.clone(), Arc::clone(&handle), control, first)).abort_handle();
    (handle, task)
}

/// What every driver works with: the commands (for catch-ups), the routes, the other drivers
/// (for readiness and the topology), and where connections come from.
#[derive(Clone)]
pub(super) struct PubSub {
    pub(super) store: Arc<Store>,
    pub(super) router: Arc<Router>,
    pub(super) shards: Arc<Shards>,
    pub(super) source: Arc<PubSubSource>,
}

/// One connection's state: what it subscribed.
struct Session<'a> {
    driver: Driver,
    router: &'a Router,
    shards: &'a Shards,
    handle: &'a ShardHandle,
    subscribed: HashSet<String>,
    timeout: Duration,
    /// Some room this shard serves is not subscribed (its subscription was refused or dropped
    /// because its slot moved): try again later.
    unsettled: bool,
}

impl Session<'_> {
    /// Subscribes the rooms this shard serves that are not subscribed yet, holding each one's
    /// live events back as it lists it; returns them, to be caught up.
    async fn add_missing(&mut self) -> Result<Vec<Listed>, &'static str> {
        let slots = self.handle.slots();
        let listed = self.router.hold_missing(&slots, &self.subscribed);
        self.unsettled = false;
        let mut subscribed = Vec::with_capacity(listed.len());
        for batch in listed.chunks(BATCH) {
            let channels: Vec<&str> = batch.iter().map(|(channel, _)| channel.as_str()).collect();
            let moved =
                match tokio::time::timeout(self.timeout, self.driver.subscribe(&channels)).await {
                    Ok(Ok(moved)) => moved,
                    Ok(Err(err)) => {
                        tracing::warn!(error = %err, "resubscribing failed");
                        return Err("SUBSCRIBE failed");
                    }
                    Err(_) => return Err("SUBSCRIBE timed out"),
                };
            if !moved.is_empty() {
                self.moved();
            }
            for (channel, hold) in batch {
                if !moved.contains(channel) {
                    self.subscribed.insert(channel.clone());
                    subscribed.push((channel.clone(), *hold));
                }
            }
        }
        Ok(subscribed)
    }

    /// A room of this shard's is served elsewhere now: read the topology again, and try again.
    fn moved(&mut self) {
        self.unsettled = true;
        self.shards.refresh.notify_one();
    }

    /// Unsubscribes the channels no local room of this shard's needs any more.
    async fn drop_stale(&mut self) -> Result<(), &'static str> {
        let slots = self.handle.slots();
        let stale = self.router.stale(&slots, &self.subscribed);
        for batch in stale.chunks(BATCH) {
            let channels: Vec<&str> = batch.iter().map(String::as_str).collect();
            match tokio::time::timeout(self.timeout, self.driver.unsubscribe(&channels)).await {
                Ok(Ok(())) => {}
                _ => return Err("UNSUBSCRIBE failed or timed out"),
            }
            for channel in batch {
                self.subscribed.remove(channel);
            }
        }
        crate::sparse::ShrinkWhenSparse::shrink_when_sparse(&mut self.subscribed);
        Ok(())
    }

    /// Subscribes rooms' channels for subscriptions (in one batch), and answers them.
    async fn subscribe(&mut self, requests: Vec<Subscribe>) -> Result<(), &'static str> {
        let mut wanted = Vec::with_capacity(requests.len());
        for (channel, ack) in requests {
            if !self.handle.serves(key_slot(&channel)) {
                let _ = ack.send(Err(Refusal::Elsewhere));
            } else if self.subscribed.contains(&channel) || !self.router.has_route(&channel) {
                // Subscribed already (listed by a resubscription), or given up on meanwhile.
                let _ = ack.send(Ok(()));
            } else {
                wanted.push((channel, ack));
            }
        }
        if wanted.is_empty() {
            return Ok(());
        }
        let channels: Vec<&str> = wanted.iter().map(|(channel, _)| channel.as_str()).collect();
        let subscribed = tokio::time::timeout(self.timeout, self.driver.subscribe(&channels)).await;
        let moved = match subscribed {
            Ok(Ok(moved)) => moved,
            failed => {
                for (_, ack) in wanted {
                    let _ = ack.send(Err(Refusal::Unavailable));
                }
                return Err(match failed {
                    Ok(_) => "SUBSCRIBE failed",
                    Err(_) => "SUBSCRIBE timed out",
                });
            }
        };
        if !moved.is_empty() {
            self.moved();
        }
        for (channel, ack) in wanted {
            let _ = if moved.contains(&channel) {
                ack.send(Err(Refusal::Elsewhere))
            } else {
                self.subscribed.insert(channel);
                ack.send(Ok(()))
            };
        }
        Ok(())
    }
}

/// A subscription's request: its channel, and where to answer.
type Subscribe = (String, oneshot::Sender<Result<(), Refusal>>);

/// The driver's task: (re)connects, resubscribes, routes, handles control, catches rooms up.
async fn run(
    pubsub: PubSub,
    handle: Arc<ShardHandle>,
    mut control: mpsc::Receiver<Control>,
    mut first: bool,
) {
    let PubSub {
        store,
        router,
        shards,
        source,
    } = &pubsub;
    let config = &store.config;
    let timeout = config.command_timeout;
    let mut slots = handle.watch_slots();
    let mut backoff = Backoff::default();
    let master = handle
        .addr
        .as_ref()
        .map(|(host, port)| format!("{host}:{port}"));
    loop {
        let connected = tokio::time::timeout(timeout, source.connect(handle.addr.as_ref())).await;
        let driver = match connected {
            Ok(Ok(driver)) => driver,
            failed => {
                let reason = match failed {
                    Ok(Err(err)) => err.to_string(),
                    _ => "timed out".to_owned(),
                };
                tracing::warn!(?master, error = %reason, "redis pub/sub connection failed; retrying");
                shards.refresh.notify_one();
                if !refuse_while_waiting(&mut control, backoff.next()).await {
                    return;
                }
                continue;
            }
        };
        let mut session = Session {
            driver,
            router,
            shards,
            handle: &handle,
            subscribed: HashSet::new(),
            timeout,
            unsettled: false,
        };
        slots.mark_unchanged();
        let listed = match session.add_missing().await {
            Ok(listed) => listed,
            Err(reason) => {
                tracing::warn!(?master, reason, "resubscribing failed; retrying");
                if !refuse_while_waiting(&mut control, backoff.next()).await {
                    return;
                }
                continue;
            }
        };
        if !std::mem::take(&mut first) {
            router.repairs().reconnects.fetch_add(1, Ordering::Relaxed);
        }
        if !listed.is_empty() {
            tracing::info!(
                ?master,
                rooms = listed.len(),
                "redis pub/sub connected; rooms resubscribed"
            );
        }
        backoff = Backoff::default();
        handle.set_up(true);
        shards.update_ready();
        let mut catch_ups = FuturesUnordered::new();
        catch_ups.push(catch_up(store, router, listed));
        let period = config.pubsub_ping;
        let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut retry_backoff = Backoff::default();
        let retry = tokio::time::sleep(Duration::ZERO);
        tokio::pin!(retry);
        let lost = loop {
            tokio::select! {
                command = control.recv() => match command {
                    None => return,
                    Some(Control::Subscribe { channel, ack }) => {
                        // A burst of joins is one batch.
                        let mut requests = vec![(channel, ack)];
                        while requests.len() < BATCH
                            && let Ok(Control::Subscribe { channel, ack }) = control.try_recv()
                        {
                            requests.push((channel, ack));
                        }
                        if let Err(reason) = session.subscribe(requests).await {
                            break reason;
                        }
                    }
                },
                () = handle.unsubscribed.notified() => {
                    if let Err(reason) = session.drop_stale().await {
                        break reason;
                    }
                },
                changed = slots.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let added = match session.drop_stale().await {
                        Ok(()) => session.add_missing().await,
                        Err(reason) => Err(reason),
                    };
                    match added {
                        Ok(listed) => catch_ups.push(catch_up(store, router, listed)),
                        Err(reason) => break reason,
                    }
                },
                () = &mut retry, if session.unsettled => {
                    match session.add_missing().await {
                        Ok(listed) => catch_ups.push(catch_up(store, router, listed)),
                        Err(reason) => break reason,
                    }
                    if !session.unsettled {
                        retry_backoff = Backoff::default();
                    }
                    retry.as_mut().reset(tokio::time::Instant::now() + retry_backoff.next());
                },
                _ = ping.tick() => {
                    if !matches!(tokio::time::timeout(timeout, session.driver.ping()).await, Ok(Ok(()))) {
                        break "PING unanswered";
                    }
                },
                incoming = session.driver.next() => match incoming {
                    Incoming::Message(message) => {
                        let route = |message: &redis::Msg| router.route(
                            message.get_channel_name(),
                            message.get_payload_bytes(),
                            config.channel_capacity,
                        );
                        route(&message);
                        // The rest of what arrived with it, up to a bound (the other concerns
                        // wait meanwhile).
                        for _ in 1..DRAIN {
                            let Some(message) = session.driver.try_message() else { break };
                            route(&message);
                        }
                    }
                    Incoming::Lost(reason) => break reason,
                    Incoming::Moved(channel) => {
                        session.subscribed.remove(&channel);
                        if router.has_route(&channel) {
                            tracing::info!(%channel, "a room's slot moved; subscribing where it lives now");
                            session.moved();
                            retry.as_mut().reset(tokio::time::Instant::now() + retry_backoff.next());
                        }
                    }
                },
                Some(()) = catch_ups.next(), if !catch_ups.is_empty() => {},
            }
        };
        handle.set_up(false);
        shards.update_ready();
        shards.refresh.notify_one();
        tracing::warn!(
            ?master,
            reason = lost,
            "redis pub/sub connection lost; reconnecting"
        );
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
                    let _ = ack.send(Err(Refusal::Unavailable));
                }
            },
        }
    }
}
