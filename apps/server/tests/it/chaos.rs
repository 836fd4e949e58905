//! Chaos suite over real processes: two `skat-server` nodes sharing one `redis-server`, four
//! senders and one receiver on each node, all in one room, while a node is SIGKILLed, a node is
//! restarted with SIGTERM, or Redis crashes and comes back.
//!
//! Clients behave like a careful real client ([`Resilient`]): when their connection drops they
//! move to the other node, rejoin from the last id they saw and re-send every unconfirmed message
//! with its original nonce (the server deduplicates retried nonces, so a retry never stores a
//! message twice); a send refused with a retryable error is re-sent after a backoff. Each
//! scenario proves that every message is accepted exactly once and reaches every receiver exactly
//! once, in id order, and prints its figures (`cargo test -p skat-server --test it chaos::
//! -- --nocapture`). Node logs go to a temp dir, kept and named on stderr if a test fails.

#![allow(clippy::unwrap_used, clippy::result_large_err)]

use crate::common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

use common::process::{NodeProcess, http_status};
use skat_client::{Client, ClientError};
use skat_protocol::{Message, MessageId, ServerFrame};
use skat_testkit::RedisServer;
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep, timeout, timeout_at};

const ROOM: &str = "chaos";
const SENDERS_PER_NODE: usize = 4;
const SENDERS: usize = 2 * SENDERS_PER_NODE;
const PER_SENDER: usize = 200;
const TOTAL: usize = SENDERS * PER_SENDER;
/// A sender sends `BURST` messages back to back every `PACE`, with at most `WINDOW` unconfirmed.
const BURST: usize = 4;
const PACE: Duration = Duration::from_millis(25);
const WINDOW: usize = 16;
/// How long one step (a connect, a join, a node start) may take.
const STEP: Duration = Duration::from_secs(10);
/// How long a whole run of traffic may take.
const RUN: Duration = Duration::from_secs(30);
/// Error codes that no retry can fix (the test itself would be wrong); any other is retried.
const PERMANENT: &str = "bad_frame unknown_type hello_required invalid_room invalid_body \
                         body_too_long invalid_nonce not_joined unauthorized";

/// `<ms>-<seq>` as a pair, ordered like the server orders ids.
/// Redis and two nodes, `node-a` and `node-b`, logging to `dir` (removed unless the test fails).
struct Cluster {
    nodes: Vec<NodeProcess>,
    redis: RedisServer,
    dir: PathBuf,
}

impl Cluster {
    async fn start(name: &str) -> Cluster {
        let dir = format!("skat-chaos-{name}-{}", std::process::id());
        let dir = std::env::temp_dir().join(dir);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let redis = RedisServer::start().await;
        let mut nodes = Vec::new();
        for id in ["node-a", "node-b"] {
            let addr = common::free_addr();
            nodes.push(NodeProcess::spawn(id, addr, &redis.url(), &dir).await);
        }
        Cluster { nodes, redis, dir }
    }

    fn urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("ws://{}/ws", n.addr))
            .collect()
    }

    /// Starts node `i` again, as a new process on the port it had.
    async fn respawn(&mut self, i: usize) {
        let (id, addr) = (self.nodes[i].id.clone(), self.nodes[i].addr);
        let (url, dir) = (self.redis.url(), self.dir.clone());
        self.nodes[i] = NodeProcess::spawn(&id, addr, &url, &dir).await;
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.nodes.clear();
        if std::thread::panicking() {
            eprintln!("node logs kept in {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Counters shared by every client of a run.
#[derive(Debug, Default)]
struct Stats {
    /// Distinct sends confirmed (a confirmation is our own `message` carrying our nonce).
    accepted: AtomicUsize,
    /// Sends written to a socket, first tries and retries.
    attempts: AtomicUsize,
    /// Sends refused (`unavailable`, `rate_limited`), then retried.
    refused: AtomicUsize,
    /// Sends in flight when a connection dropped, re-sent after the failover.
    resent: AtomicUsize,
    /// Confirmations of messages the server had taken before the connection dropped: found in
    /// the rejoin page, or returned as the original to a retry.
    replayed: AtomicUsize,
    /// Rejoins with `since` that did not recover (a possible gap).
    gaps: AtomicUsize,
    /// Retries of confirmed sends answered with the original message (same id).
    originals: AtomicUsize,
    /// Sends answered with an error (so not accepted, says the protocol) that the server had
    /// stored all the same: confirmed while awaiting their retry, or twice (the stored copy,
    /// then the original returned to the retry).
    stored_anyway: AtomicUsize,
    /// Nonces confirmed with two different ids: a message stored twice.
    conflicts: AtomicUsize,
}

fn bump(counter: &AtomicUsize, by: usize) {
    counter.fetch_add(by, Relaxed);
}

/// An unconfirmed send to `room`: re-sent at `due`, or in flight while `due` is `None`.
struct Pending {
    room: String,
    body: String,
    due: Option<Instant>,
}

/// A client that survives its node: [`Client`] plus the failover logic a real client needs.
#[derive(Default)]
struct Resilient {
    name: String,
    urls: Vec<String>,
    /// Index in `urls` of the node in use.
    node: usize,
    client: Option<Client>,
    /// Joined rooms, with the newest message id seen in each: the `since` of a rejoin.
    rooms: BTreeMap<String, Option<MessageId>>,
    /// Unconfirmed sends by nonce.
    pending: BTreeMap<String, Pending>,
    /// Confirmed sends: nonce → id.
    confirmed: HashMap<String, MessageId>,
    /// Nonces refused before they were confirmed.
    refused: HashSet<String>,
    /// Every message received (live or in a `joined` page) in arrival order, and their ids.
    delivered: Vec<Message>,
    unique: HashSet<MessageId>,
    stats: Arc<Stats>,
    reconnects: usize,
    /// How each dropped connection ended: the close code, if a close frame came.
    close_codes: Vec<Option<u16>>,
}

impl Resilient {
    /// Connects `name` to `urls[node]` and joins `room`.
    async fn connect(name: &str, urls: &[String], node: usize, stats: &Arc<Stats>) -> Self {
        let (name, urls) = (name.to_owned(), urls.to_vec());
        let stats = Arc::clone(stats);
        let mut client = Resilient {
            name,
            urls,
            node,
            stats,
            ..Default::default()
        };
        client.open().await.unwrap();
        client.rooms.insert(ROOM.to_owned(), None);
        let mut ws = client.client.take().unwrap();
        client.join_on(&mut ws, ROOM).await.unwrap();
        client.client = Some(ws);
        client
    }

    /// Connects to the current node, says hello and rejoins every room from its newest id.
    async fn open(&mut self) -> Result<(), String> {
        let url = self.urls[self.node].clone();
        let connect = timeout(STEP, Client::connect(&url, &self.name)).await;
        let connect = connect.map_err(|_| format!("{url}: timeout"))?;
        let mut client = connect.map_err(|e| e.to_string())?;
        for room in self.rooms.keys().cloned().collect::<Vec<_>>() {
            self.join_on(&mut client, &room).await?;
        }
        self.client = Some(client);
        Ok(())
    }

    async fn join_on(&mut self, client: &mut Client, room: &str) -> Result<(), String> {
        let since = self.rooms.get(room).copied().flatten();
        let sent = match since {
            Some(id) => client.join_since(room, id).await,
            None => client.join(room).await,
        };
        sent.map_err(|e| e.to_string())?;
        loop {
            let frame = timeout(STEP, client.next_event()).await;
            let frame = frame.map_err(|_| format!("no joined: {room}"))?;
            match frame.map_err(|e| e.to_string())? {
                ServerFrame::Joined {
                    room: r,
                    messages,
                    recovered,
                    ..
                } if r == room => {
                    bump(&self.stats.gaps, usize::from(since.is_some() && !recovered));
                    messages.into_iter().for_each(|m| self.on_message(m));
                    return Ok(());
                }
                ServerFrame::Error {
                    code,
                    nonce: None,
                    message,
                } => {
                    return Err(format!("join: {} {message}", code.as_str()));
                }
                other => self.on_frame(other),
            }
        }
    }

    /// Moves to the next node (round robin) and re-sends everything unconfirmed, same nonces.
    async fn failover(&mut self) {
        self.reconnects += 1;
        let deadline = Instant::now() + STEP * 2;
        loop {
            self.node = (self.node + 1) % self.urls.len();
            match self.open().await {
                Ok(()) => break,
                Err(err) => assert!(Instant::now() < deadline, "{}: {err}", self.name),
            }
            sleep(Duration::from_millis(100)).await;
        }
        for pending in self.pending.values_mut().filter(|p| p.due.is_none()) {
            pending.due = Some(Instant::now());
            bump(&self.stats.resent, 1);
        }
    }

    /// Queues a send; the next pump transmits it.
    fn send(&mut self, room: &str, nonce: String, body: String) {
        let (room, due) = (room.to_owned(), Some(Instant::now()));
        self.pending.insert(nonce, Pending { room, body, due });
    }

    /// Transmits every send that is due.
    async fn flush(&mut self) {
        let (now, mut broken) = (Instant::now(), None);
        let Some(client) = self.client.as_mut() else {
            return;
        };
        for (nonce, p) in &mut self.pending {
            if p.due.is_some_and(|due| due <= now) {
                p.due = None;
                bump(&self.stats.attempts, 1);
                let sent = client.send_message(&p.room, &p.body, Some(nonce));
                if let Err(err) = sent.await {
                    broken = Some(err);
                    break;
                }
            }
        }
        if let Some(err) = broken {
            self.dropped(&err);
        }
    }

    fn dropped(&mut self, err: &ClientError) {
        let code = match err {
            ClientError::Closed { code, .. } => *code,
            _ => None,
        };
        self.close_codes.push(code);
        self.client = None;
    }

    /// Handles events (failing over and re-sending as needed) until `done` holds or `limit`
    /// passes; returns whether `done` holds.
    async fn pump_until(&mut self, limit: Duration, done: impl Fn(&Self) -> bool) -> bool {
        let deadline = Instant::now() + limit;
        while !done(self) {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            if self.client.is_none() {
                self.failover().await;
            }
            self.flush().await;
            let due = self.pending.values().filter_map(|p| p.due).min();
            let until = due.unwrap_or(deadline).min(deadline);
            let until = until.max(now + Duration::from_millis(1));
            let Some(client) = self.client.as_mut() else {
                continue;
            };
            match timeout_at(until, client.next_event()).await {
                Ok(Ok(frame)) => self.on_frame(frame),
                Ok(Err(err)) => self.dropped(&err),
                Err(_) => {}
            }
        }
        true
    }

    fn on_frame(&mut self, frame: ServerFrame) {
        match frame {
            ServerFrame::Message(m) => self.on_message(m),
            ServerFrame::Error {
                code,
                nonce: Some(nonce),
                message,
            } => {
                let (code, name) = (code.as_str(), &self.name);
                let permanent = PERMANENT.split(' ').any(|p| p == code);
                assert!(!permanent, "{name}: {code} {message}");
                // `unavailable`, `rate_limited` or anything new: not accepted, retry later.
                let ms = if code == "rate_limited" { 100 } else { 200 };
                if let Some(pending) = self.pending.get_mut(&nonce) {
                    if !self.confirmed.contains_key(&nonce) {
                        self.refused.insert(nonce);
                    }
                    bump(&self.stats.refused, 1);
                    pending.due = Some(Instant::now() + Duration::from_millis(ms));
                }
            }
            ServerFrame::Error { code, message, .. } => panic!("{}: {code} {message}", self.name),
            _ => {}
        }
    }

    fn on_message(&mut self, m: Message) {
        let mut newest = true;
        if let Some(last) = self.rooms.get_mut(&m.room) {
            newest = last.is_none_or(|l| l < m.id);
            if newest {
                *last = Some(m.id);
            }
        }
        if m.from == self.name
            && let Some(nonce) = &m.nonce
        {
            let waiting = self.pending.get(nonce).is_some_and(|p| p.due.is_some());
            let twice = self.confirmed.contains_key(nonce);
            if (waiting || twice) && self.refused.remove(nonce) {
                bump(&self.stats.stored_anyway, 1);
            }
            match self.confirmed.get(nonce) {
                Some(first) if *first == m.id => bump(&self.stats.originals, 1),
                Some(_) => bump(&self.stats.conflicts, 1),
                None => {
                    self.confirmed.insert(nonce.clone(), m.id);
                    bump(&self.stats.accepted, 1);
                    // Out of order, or in a rejoin page (no client while joining).
                    let replayed = !newest || self.client.is_none();
                    bump(&self.stats.replayed, usize::from(replayed));
                }
            }
            self.pending.remove(nonce);
        }
        self.unique.insert(m.id);
        self.delivered.push(m);
    }
}

/// The receivers' audit, and which clients moved.
#[derive(Debug, Default)]
struct Figures {
    /// Distinct messages each receiver got.
    delivered: Vec<usize>,
    duplicates: usize,
    out_of_order: usize,
    lost: usize,
    /// Messages a receiver got that no sender saw confirmed.
    unknown: usize,
    /// Clients that reconnected at least once.
    moved: usize,
    close_codes: Vec<Option<u16>>,
}

/// Per node, `SENDERS_PER_NODE` senders and one receiver, running as tasks.
struct Traffic {
    stats: Arc<Stats>,
    tasks: Vec<JoinHandle<Resilient>>,
}

impl Traffic {
    /// Everyone joins before anyone sends, so receivers see every message.
    async fn start(urls: &[String]) -> Traffic {
        let stats = Arc::new(Stats::default());
        let senders = (0..SENDERS).map(|i| (i % 2, format!("s{}-{}", i % 2, i / 2)));
        let receivers = (0..2).map(|node| (node, format!("r{node}")));
        let mut tasks = Vec::new();
        for (node, name) in senders.chain(receivers) {
            let mut c = Resilient::connect(&name, urls, node, &stats).await;
            tasks.push(async move {
                if c.name.starts_with('r') {
                    if c.pump_until(RUN, |c| c.unique.len() >= TOTAL).await {
                        // Anything late (a duplicate) would still show.
                        c.pump_until(Duration::from_millis(300), |_| false).await;
                    }
                    return c;
                }
                for seq in 0..PER_SENDER {
                    let room = c.pump_until(RUN, |c| c.pending.len() < WINDOW).await;
                    assert!(room, "{}: nothing confirmed for {RUN:?}", c.name);
                    let body = format!("message {seq} from {}", c.name);
                    c.send(ROOM, format!("{}-{seq}", c.name), body);
                    if seq == PER_SENDER / 2 {
                        // Probe the dedup: retry a confirmed send, as after a lost confirmation.
                        let nonce = format!("{}-0", c.name);
                        c.refused.remove(&nonce);
                        c.send(ROOM, nonce, format!("message 0 from {}", c.name));
                    }
                    if seq % BURST == BURST - 1 {
                        c.pump_until(PACE, |_| false).await;
                    }
                }
                c.pump_until(RUN, |c| c.pending.is_empty()).await;
                c
            });
        }
        let tasks = tasks.into_iter().map(tokio::spawn).collect();
        Traffic { stats, tasks }
    }

    /// Waits until `n` sends are confirmed; returns how many are.
    async fn wait_accepted(&self, n: usize) -> usize {
        let deadline = Instant::now() + STEP;
        loop {
            let done = self.stats.accepted.load(Relaxed);
            if done >= n {
                return done;
            }
            assert!(Instant::now() < deadline, "only {done} confirmed");
            sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits for every client; prints the figures as `what`, asserts zero loss, zero duplicates,
    /// order, and returns the figures for the scenario's own checks.
    async fn finish(self, what: &str) -> (Figures, Arc<Stats>) {
        let mut all = Vec::new();
        for task in self.tasks {
            let client = timeout(RUN + STEP, task).await;
            all.push(client.expect("client hung").unwrap());
        }
        let (senders, receivers) = all.split_at(SENDERS);
        let ids = senders.iter().flat_map(|s| s.confirmed.values());
        let accepted: HashSet<MessageId> = ids.copied().collect();
        let mut f = Figures::default();
        for r in receivers {
            let (mut ids, mut nonces, mut last) = (HashSet::new(), HashSet::new(), None);
            for m in &r.delivered {
                let new_nonce = nonces.insert((m.from.as_str(), m.nonce.as_deref()));
                f.duplicates += usize::from(!ids.insert(m.id) || !new_nonce);
                f.out_of_order += usize::from(last >= Some(m.id));
                f.unknown += usize::from(!accepted.contains(&m.id));
                last = Some(m.id);
            }
            f.lost += accepted.iter().filter(|id| !ids.contains(*id)).count();
            f.delivered.push(ids.len());
        }
        for c in &all {
            f.moved += usize::from(c.reconnects > 0);
            f.close_codes.extend(&c.close_codes);
        }
        let s = &self.stats;
        let n = |counter: &AtomicUsize| counter.load(Relaxed);
        let each = f.delivered.iter().copied().min().unwrap_or(0);
        eprintln!(
            "{what}: sent {TOTAL}, accepted {}, refused-then-retried {}, delivered to each \
             receiver {each}, duplicates {}, lost {} ({} clients moved, {} re-sent after \
             failover, {} found already stored, {} retries answered with the original, {} \
             refused yet stored, {} transmissions, close codes {:?})",
            accepted.len(),
            n(&s.refused),
            f.duplicates,
            f.lost,
            f.moved,
            n(&s.resent),
            n(&s.replayed),
            n(&s.originals),
            n(&s.stored_anyway),
            n(&s.attempts),
            f.close_codes
        );
        let all_in = (accepted.len(), n(&s.accepted));
        assert_eq!(all_in, (TOTAL, TOTAL), "all confirmed: {f:?}");
        assert!(n(&s.originals) >= SENDERS, "dedup probes: {s:?}");
        let each_got_all = f.delivered.iter().all(|&d| d == TOTAL);
        assert!(each_got_all, "all delivered: {f:?}");
        let bad = (f.duplicates, f.out_of_order, f.lost, f.unknown);
        assert_eq!(bad, (0, 0, 0, 0), "dup, disorder, lost, unknown: {f:?}");
        let bad = (n(&s.gaps), n(&s.conflicts));
        assert_eq!(bad, (0, 0), "gaps, conflicts: {s:?}");
        (f, self.stats)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_a_node_under_traffic() {
    let mut cluster = Cluster::start("kill9").await;
    let traffic = Traffic::start(&cluster.urls()).await;
    let at_kill = traffic.wait_accepted(TOTAL / 2).await;
    cluster.nodes[0].kill();
    let what = format!("kill -9 node (after {at_kill} accepted)");
    let (f, _) = traffic.finish(&what).await;
    assert!(at_kill < TOTAL, "the kill happened under traffic");
    let moved = SENDERS_PER_NODE + 1;
    assert_eq!(f.moved, moved, "every client of node A moved, no other");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rolling_restart_under_traffic() {
    let mut cluster = Cluster::start("rolling").await;
    let traffic = Traffic::start(&cluster.urls()).await;
    let at_stop = traffic.wait_accepted(TOTAL / 2).await;
    let status = cluster.nodes[0].terminate().await;
    assert!(status.success(), "node A exits cleanly: {status}");
    cluster.respawn(0).await;
    let what = format!("rolling restart (SIGTERM after {at_stop} accepted)");
    let (f, _) = traffic.finish(&what).await;
    assert!(at_stop < TOTAL, "the restart happened under traffic");
    let moved = SENDERS_PER_NODE + 1;
    assert_eq!(f.moved, moved, "every client of node A moved, no other");
    // Clients of node A were told "service restart".
    let restart = f.close_codes.contains(&Some(1012));
    assert!(restart, "no close 1012: {:?}", f.close_codes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_killed_and_restarted_under_traffic() {
    let mut cluster = Cluster::start("redis").await;
    let traffic = Traffic::start(&cluster.urls()).await;
    let at_kill = traffic.wait_accepted(TOTAL / 3).await;
    cluster.redis.kill();
    sleep(Duration::from_millis(500)).await;
    let ready = http_status(cluster.nodes[0].addr, "/readyz").await;
    sleep(Duration::from_millis(500)).await;
    cluster.redis.restart().await;
    let what = format!("redis killed for 1 s (after {at_kill} accepted)");
    let (f, stats) = traffic.finish(&what).await;
    assert!(at_kill < TOTAL, "the crash happened under traffic");
    assert_eq!(ready, Some(503), "node A not ready while Redis is down");
    let refused = stats.refused.load(Relaxed);
    assert!(refused > 0, "sends during the outage were refused");
    assert_eq!(f.moved, 0, "clients moved: {:?}", f.close_codes);
}
