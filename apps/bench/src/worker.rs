//! The client side, one process of many (`skat-bench worker`, started by the coordinator): its
//! share of the clients on one thread. Each connection reads whatever the kernel has into one
//! shared 256 KiB buffer, walks the WebSocket frames in place and, for `message` frames, only
//! extracts the send time from the body. One 1 ms ticker paces all of the worker's senders.
//! Commands come from stdin and answers go to stdout, one JSON line each ([`crate::proto`]).

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::rc::Rc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use tokio::io::Interest;
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::LocalSet;

use crate::hist::Histogram;
use crate::proto::{
    Command, ConnectPlan, ConnectReport, Layout, Reply, RunPlan, Setup, WorkerReport,
};
use crate::wire::{self, Kind};

/// Bytes read from a socket at once, shared by every connection of the worker.
const READ_CHUNK: usize = 256 * 1024;

thread_local! {
    static SCRATCH: RefCell<Vec<u8>> = RefCell::new(vec![0; READ_CHUNK]);
}

/// Microseconds since the Unix epoch.
pub(crate) fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// Sleeps until `at_us` (µs since the epoch); returns at once if it has passed.
pub(crate) async fn sleep_until_us(at_us: u64) {
    let now = now_us();
    if at_us > now {
        tokio::time::sleep(Duration::from_micros(at_us - now)).await;
    }
}

/// Runs the worker until stdin closes or `quit` arrives.
pub(crate) fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the worker's runtime")?;
    LocalSet::new().block_on(&runtime, serve())
}

async fn serve() -> anyhow::Result<()> {
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut worker: Option<Rc<Worker>> = None;
    while let Some(line) = lines.next_line().await.context("cannot read stdin")? {
        let command: Command = serde_json::from_str(&line)
            .with_context(|| format!("bad command from the coordinator: {line}"))?;
        if matches!(command, Command::Quit) {
            break;
        }
        let reply = match handle(command, &mut worker).await {
            Ok(reply) => reply,
            Err(err) => Reply::Error {
                message: format!("{err:#}"),
            },
        };
        let mut out = std::io::stdout().lock();
        serde_json::to_writer(&mut out, &reply).context("cannot encode a reply")?;
        out.write_all(b"\n")
            .and_then(|()| out.flush())
            .context("cannot answer the coordinator")?;
    }
    // Exit without tearing down thousands of tasks one by one.
    std::process::exit(0)
}

async fn handle(command: Command, worker: &mut Option<Rc<Worker>>) -> anyhow::Result<Reply> {
    match command {
        Command::Setup(setup) => {
            *worker = Some(Rc::new(Worker::new(setup).await?));
            Ok(Reply::Ready)
        }
        Command::Connect(plan) => {
            let w = worker.clone().context("connect before setup")?;
            Ok(Reply::Connected(connect_all(w, &plan).await))
        }
        Command::Run(plan) => {
            let w = worker.clone().context("run before setup")?;
            w.reset();
            w.late_us.set(plan.late_us);
            w.window.set((plan.measure_start_us, plan.measure_end_us));
            tokio::task::spawn_local(send_loop(w, plan));
            Ok(Reply::Started)
        }
        Command::Report => {
            let w = worker.as_ref().context("report before setup")?;
            Ok(Reply::Report(w.report()))
        }
        Command::Quit => Ok(Reply::Ready),
    }
}

/// One node to connect to.
struct Node {
    addr: SocketAddr,
    request: Vec<u8>,
}

/// One client of this worker.
#[derive(Debug, Clone, Copy)]
struct Client {
    index: usize,
    room: usize,
    node: usize,
    source: Option<Ipv4Addr>,
}

/// Counters since the last reset.
#[derive(Default)]
struct Stats {
    sent: u64,
    sent_measured: u64,
    expected_measured: u64,
    received: u64,
    received_measured: u64,
    late: u64,
    latency: Histogram,
    errors: u64,
    error_sample: Option<String>,
    closes: BTreeMap<String, u64>,
    loop_lag: Histogram,
}

struct Worker {
    layout: Layout,
    clients: Vec<Client>,
    nodes: Vec<Node>,
    stats: RefCell<Stats>,
    /// The measured send window (µs since the epoch).
    window: Cell<(u64, u64)>,
    late_us: Cell<u64>,
    senders: RefCell<Vec<Rc<Conn>>>,
    room_members: RefCell<Vec<u64>>,
    /// Bumped by each `Run`, so an older send loop stops.
    generation: Cell<u64>,
    /// Nonces used so far.
    nonces: Cell<u64>,
}

impl Worker {
    async fn new(setup: Setup) -> anyhow::Result<Self> {
        let Setup {
            worker,
            layout,
            urls,
            sources,
        } = setup;
        let mut nodes = Vec::new();
        for url in &urls {
            let (host, path) = split_url(url)?;
            let addr = tokio::net::lookup_host(host)
                .await
                .with_context(|| format!("cannot resolve {host}"))?
                .find(SocketAddr::is_ipv4)
                .with_context(|| format!("{host} has no IPv4 address"))?;
            nodes.push(Node {
                addr,
                request: wire::upgrade_request(host, path).into_bytes(),
            });
        }
        let clients = layout
            .clients_of(worker)
            .enumerate()
            .map(|(k, index)| {
                let node = layout.node_of(index);
                // Source addresses only make sense towards loopback.
                let source = match nodes.get(node).map(|n| n.addr.ip()) {
                    Some(IpAddr::V4(ip)) if ip.is_loopback() && !sources.is_empty() => {
                        Some(sources[k % sources.len()])
                    }
                    _ => None,
                };
                Client {
                    index,
                    room: layout.room_of(index),
                    node,
                    source,
                }
            })
            .collect();
        Ok(Self {
            room_members: RefCell::new(vec![0; layout.rooms]),
            layout,
            clients,
            nodes,
            stats: RefCell::default(),
            window: Cell::new((u64::MAX, u64::MAX)),
            late_us: Cell::new(u64::MAX),
            senders: RefCell::default(),
            generation: Cell::new(0),
            nonces: Cell::new(0),
        })
    }

    fn reset(&self) {
        *self.stats.borrow_mut() = Stats::default();
    }

    fn report(&self) -> WorkerReport {
        let stats = self.stats.borrow();
        let unsent_bytes = self
            .senders
            .borrow()
            .iter()
            .map(|c| c.out.borrow().len() as u64)
            .sum();
        WorkerReport {
            sent: stats.sent,
            sent_measured: stats.sent_measured,
            expected_measured: stats.expected_measured,
            received: stats.received,
            received_measured: stats.received_measured,
            late: stats.late,
            latency: stats.latency.to_sparse(),
            errors: stats.errors,
            error_sample: stats.error_sample.clone(),
            closes: stats.closes.clone(),
            unsent_bytes,
            room_members: self.room_members.borrow().clone(),
            loop_lag: stats.loop_lag.to_sparse(),
        }
    }

    /// Counts the frames in `data` (read from `conn` at `now`); false once the server closed.
    fn on_frames(&self, conn: &Conn, data: &[u8], now: u64) -> anyhow::Result<bool> {
        let (from, to) = self.window.get();
        let late_us = self.late_us.get();
        let mut stats = self.stats.borrow_mut();
        let mut open = true;
        let on_text = |stats: &mut Stats, text: &[u8]| match wire::classify(text) {
            Kind::Message(sent_at) => {
                stats.received += 1;
                if let Some(at) = sent_at.filter(|at| (from..to).contains(at)) {
                    let latency = now.saturating_sub(at);
                    stats.received_measured += 1;
                    stats.latency.record(latency);
                    if latency > late_us {
                        stats.late += 1;
                    }
                }
            }
            Kind::Error => {
                stats.errors += 1;
                if stats.error_sample.is_none() {
                    stats.error_sample = Some(String::from_utf8_lossy(text).into_owned());
                }
            }
            Kind::Other => {}
        };
        let mut scan = |buf: &[u8]| {
            wire::scan_frames(buf, |head, payload| match head.opcode {
                wire::OP_TEXT if head.fin => on_text(&mut stats, payload),
                wire::OP_TEXT | wire::OP_CONTINUATION => {
                    let mut partial = conn.partial.borrow_mut();
                    partial.extend_from_slice(payload);
                    if head.fin {
                        on_text(&mut stats, &partial);
                        partial.clear();
                    }
                }
                wire::OP_PING => conn.queue(wire::OP_PONG, payload),
                wire::OP_CLOSE => {
                    let (code, reason) = wire::close_reason(payload);
                    *stats.closes.entry(format!("{code} {reason}")).or_default() += 1;
                    open = false;
                }
                _ => {}
            })
        };
        let mut pending = conn.pending.borrow_mut();
        if pending.is_empty() {
            let used = scan(data)?;
            pending.extend_from_slice(&data[used..]);
        } else {
            pending.extend_from_slice(data);
            let used = scan(&pending)?;
            pending.drain(..used);
        }
        Ok(open)
    }

    fn closed(&self, conn: &Conn, why: Option<String>) {
        if let Some(why) = why {
            *self.stats.borrow_mut().closes.entry(why).or_default() += 1;
        }
        if let Some(n) = self.room_members.borrow_mut().get_mut(conn.room) {
            *n = n.saturating_sub(1);
        }
        self.senders.borrow_mut().retain(|c| c.index != conn.index);
    }
}

/// `ws://host:port/path` → (`host:port`, `/path`).
fn split_url(url: &str) -> anyhow::Result<(&str, &str)> {
    let rest = url
        .strip_prefix("ws://")
        .with_context(|| format!("only ws:// URLs are supported, not {url}"))?;
    Ok(match rest.find('/') {
        Some(slash) => (&rest[..slash], &rest[slash..]),
        None => (rest, "/"),
    })
}

/// An open, joined client.
struct Conn {
    stream: TcpStream,
    index: usize,
    room: usize,
    /// An incomplete frame from the last read.
    pending: RefCell<Vec<u8>>,
    /// A fragmented message being reassembled (servers rarely fragment).
    partial: RefCell<Vec<u8>>,
    /// Bytes the kernel did not take yet.
    out: RefCell<Vec<u8>>,
}

impl Conn {
    /// Queues a frame and writes what the socket takes now.
    fn queue(&self, opcode: u8, payload: &[u8]) {
        let mut frame = Vec::with_capacity(payload.len() + 14);
        wire::encode_client_frame(&mut frame, opcode, payload);
        self.write(&frame);
    }

    /// Writes `bytes` after anything still queued, without waiting.
    fn write(&self, bytes: &[u8]) {
        let mut out = self.out.borrow_mut();
        if out.is_empty() {
            match self.stream.try_write(bytes) {
                Ok(n) => out.extend_from_slice(&bytes[n..]),
                Err(_) => out.extend_from_slice(bytes),
            }
        } else {
            out.extend_from_slice(bytes);
            drop(out);
            self.flush();
        }
    }

    /// Writes what it can of the queued bytes.
    fn flush(&self) {
        let mut out = self.out.borrow_mut();
        while !out.is_empty() {
            match self.stream.try_write(&out) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    out.drain(..n);
                }
            }
        }
    }
}

async fn connect_all(worker: Rc<Worker>, plan: &ConnectPlan) -> ConnectReport {
    sleep_until_us(plan.start_at_us).await;
    let started_at_us = now_us();
    let permits = match plan.max_in_flight {
        0 => Semaphore::MAX_PERMITS,
        n => n,
    };
    let gate = Rc::new(Semaphore::new(permits));
    let timeout = Duration::from_millis(plan.timeout_ms.max(1));
    let (done_tx, mut done_rx) = mpsc::unbounded_channel();
    for &client in &worker.clients {
        let (worker, gate, done_tx) = (Rc::clone(&worker), Rc::clone(&gate), done_tx.clone());
        tokio::task::spawn_local(async move {
            let permit = gate.acquire().await;
            let begun = now_us();
            let opened = tokio::time::timeout(timeout, open(&worker, client)).await;
            drop(permit);
            let opened = match opened {
                Ok(Ok(conn)) => Ok(conn),
                Ok(Err(err)) => Err(format!("{err:#}")),
                Err(_) => Err(format!("no joined within {timeout:?}")),
            };
            match opened {
                Ok(conn) => {
                    let _ = done_tx.send(Ok((client.node, now_us() - begun)));
                    drop(done_tx);
                    live(worker, conn).await;
                }
                Err(err) => {
                    let _ = done_tx.send(Err(err));
                }
            }
        });
    }
    drop(done_tx);
    let mut report = ConnectReport {
        started_at_us,
        node_clients: vec![0; worker.nodes.len()],
        ..ConnectReport::default()
    };
    let mut times = Histogram::default();
    while let Some(done) = done_rx.recv().await {
        match done {
            Ok((node, took)) => {
                report.ok += 1;
                report.node_clients[node] += 1;
                times.record(took);
            }
            Err(err) => {
                report.failed += 1;
                report.first_error.get_or_insert(err);
            }
        }
        if report.ok + report.failed == worker.clients.len() as u64 {
            break;
        }
    }
    report.done_at_us = now_us();
    report.setup_times = times.to_sparse();
    report
}

/// Connects, upgrades, says hello and joins; the connection is then live.
async fn open(worker: &Worker, client: Client) -> anyhow::Result<Rc<Conn>> {
    let node = &worker.nodes[client.node];
    let socket = TcpSocket::new_v4().context("cannot create a socket")?;
    if let Some(ip) = client.source {
        socket
            .bind(SocketAddr::new(IpAddr::V4(ip), 0))
            .with_context(|| format!("cannot bind to {ip}"))?;
    }
    let mut stream = socket
        .connect(node.addr)
        .await
        .with_context(|| format!("cannot connect to {}", node.addr))?;
    stream.set_nodelay(true).context("TCP_NODELAY")?;
    stream.write_all(&node.request).await.context("upgrade")?;
    let mut buf = Vec::with_capacity(4096);
    loop {
        if read_more(&mut stream, &mut buf).await? == 0 {
            bail!("the server closed during the upgrade");
        }
        if let Some(head) = wire::upgrade_response(&buf)? {
            buf.drain(..head);
            break;
        }
    }
    let layout = &worker.layout;
    let hello = format!(
        r#"{{"type":"hello","name":"{}"}}"#,
        layout.user_name(client.index)
    );
    send_text(&mut stream, &hello).await?;
    await_reply(&mut stream, &mut buf, "welcome").await?;
    let join = format!(
        r#"{{"type":"join","room":"{}"}}"#,
        layout.room_name(client.room)
    );
    send_text(&mut stream, &join).await?;
    await_reply(&mut stream, &mut buf, "joined").await?;
    if let Some(n) = worker.room_members.borrow_mut().get_mut(client.room) {
        *n += 1;
    }
    let conn = Rc::new(Conn {
        stream,
        index: client.index,
        room: client.room,
        pending: RefCell::new(buf),
        partial: RefCell::default(),
        out: RefCell::default(),
    });
    if layout.is_sender(client.index) {
        worker.senders.borrow_mut().push(Rc::clone(&conn));
    }
    Ok(conn)
}

async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> anyhow::Result<usize> {
    buf.reserve(16 * 1024);
    stream.read_buf(buf).await.context("read")
}

async fn send_text(stream: &mut TcpStream, text: &str) -> anyhow::Result<()> {
    let mut frame = Vec::with_capacity(text.len() + 14);
    wire::encode_client_frame(&mut frame, wire::OP_TEXT, text.as_bytes());
    stream.write_all(&frame).await.context("write")
}

/// Reads frames until a text frame of type `kind`; frames before it are dropped, and whatever
/// follows it stays in `buf`.
async fn await_reply(stream: &mut TcpStream, buf: &mut Vec<u8>, kind: &str) -> anyhow::Result<()> {
    loop {
        let mut outcome: Option<anyhow::Result<()>> = None;
        let mut pongs = Vec::new();
        let mut used = 0;
        while outcome.is_none() {
            let Some(head) = wire::parse_head(&buf[used..])? else {
                break;
            };
            let Some(payload) = buf.get(used + head.header_len..used + head.total_len()) else {
                break;
            };
            match head.opcode {
                wire::OP_TEXT if wire::has_type(payload, kind) => outcome = Some(Ok(())),
                wire::OP_TEXT if wire::has_type(payload, "error") => {
                    let text = String::from_utf8_lossy(payload);
                    outcome = Some(Err(anyhow::anyhow!("waiting for {kind}: {text}")));
                }
                wire::OP_PING => wire::encode_client_frame(&mut pongs, wire::OP_PONG, payload),
                wire::OP_CLOSE => {
                    let (code, reason) = wire::close_reason(payload);
                    outcome = Some(Err(anyhow::anyhow!(
                        "closed while waiting for {kind}: {code} {reason}"
                    )));
                }
                _ => {}
            }
            used += head.total_len();
        }
        buf.drain(..used);
        if !pongs.is_empty() {
            stream.write_all(&pongs).await.context("pong")?;
        }
        if let Some(outcome) = outcome {
            return outcome;
        }
        if read_more(stream, buf).await? == 0 {
            bail!("the server closed while we waited for {kind}");
        }
    }
}

/// Reads the connection until it closes.
async fn live(worker: Rc<Worker>, conn: Rc<Conn>) {
    let leftover = std::mem::take(&mut *conn.pending.borrow_mut());
    let mut why = match worker.on_frames(&conn, &leftover, now_us()) {
        Ok(true) => None,
        Ok(false) => Some(None),
        Err(err) => Some(Some(format!("error {err:#}"))),
    };
    while why.is_none() {
        if let Err(err) = conn.stream.readable().await {
            why = Some(Some(format!("error {err}")));
            break;
        }
        // A read that did not fill the buffer drained the socket: saying "would block" then
        // clears tokio's readiness without the second read() that would have learnt it (one
        // syscall per wakeup instead of two; tokio keeps readiness that arrived meanwhile).
        let mut step = None;
        let read = conn.stream.try_io(Interest::READABLE, || {
            SCRATCH.with_borrow_mut(|buf| {
                let n = conn.stream.try_read(buf)?;
                step = Some(match n {
                    0 => Some(Some("eof".to_owned())),
                    n => match worker.on_frames(&conn, &buf[..n], now_us()) {
                        Ok(true) => None,
                        Ok(false) => Some(None),
                        Err(err) => Some(Some(format!("error {err:#}"))),
                    },
                });
                if n < buf.len() {
                    Err(std::io::ErrorKind::WouldBlock.into())
                } else {
                    Ok(())
                }
            })
        });
        why = match (step, read) {
            (Some(outcome), _) => outcome,
            (None, Err(err)) if err.kind() == std::io::ErrorKind::WouldBlock => None,
            (None, Err(err)) => Some(Some(format!("error {}", err.kind()))),
            (None, Ok(())) => None,
        };
        if !conn.out.borrow().is_empty() {
            conn.flush();
        }
    }
    worker.closed(&conn, why.flatten());
}

/// Sends this worker's share of the messages, paced by one ticker for all its senders. The
/// ticker's lateness is the worker's own lag: how long its thread was too busy (or not
/// scheduled) to look at its sockets, recorded over the measured window.
async fn send_loop(worker: Rc<Worker>, plan: RunPlan) {
    let generation = worker.generation.get() + 1;
    worker.generation.set(generation);
    sleep_until_us(plan.start_us).await;
    let mut ticker = tokio::time::interval(Duration::from_millis(1));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let prefix = worker.layout.prefix.clone();
    let rooms: Vec<String> = (0..worker.layout.rooms)
        .map(|r| worker.layout.room_name(r))
        .collect();
    let (mut json, mut frame, mut nonce) = (Vec::new(), Vec::new(), String::new());
    let (mut sent, mut turn) = (0u64, 0usize);
    loop {
        let scheduled = ticker.tick().await;
        let now = now_us();
        if now >= plan.measure_end_us || worker.generation.get() != generation {
            break;
        }
        if now >= plan.measure_start_us {
            let lag = scheduled.elapsed().as_micros() as u64;
            worker.stats.borrow_mut().loop_lag.record(lag);
        }
        if plan.sends_per_sec <= 0.0 {
            continue;
        }
        let due = ((now - plan.start_us) as f64 * plan.sends_per_sec / 1e6) as u64;
        let senders = worker.senders.borrow().clone();
        if senders.is_empty() {
            continue;
        }
        while sent < due {
            let conn = &senders[turn % senders.len()];
            turn += 1;
            sent += 1;
            let at = now_us();
            // Unique over the worker's whole life: the server drops a repeated (user, nonce)
            // for two minutes, and later runs reuse the same users.
            let seq = worker.nonces.get() + 1;
            worker.nonces.set(seq);
            nonce.clear();
            {
                use std::fmt::Write as _;
                let _ = write!(nonce, "{prefix}-{}-{seq}", conn.index);
            }
            wire::send_json(&mut json, &rooms[conn.room], at, plan.body_bytes, &nonce);
            frame.clear();
            wire::encode_client_frame(&mut frame, wire::OP_TEXT, &json);
            conn.write(&frame);
            let mut stats = worker.stats.borrow_mut();
            stats.sent += 1;
            if (plan.measure_start_us..plan.measure_end_us).contains(&at) {
                stats.sent_measured += 1;
                stats.expected_measured += plan.room_members.get(conn.room).copied().unwrap_or(0);
            }
        }
        for conn in &senders {
            if !conn.out.borrow().is_empty() {
                conn.flush();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            split_url("ws://127.0.0.1:3000/ws").unwrap(),
            ("127.0.0.1:3000", "/ws")
        );
        assert_eq!(split_url("ws://h:1").unwrap(), ("h:1", "/"));
        assert!(split_url("wss://h:1/ws").is_err());
    }
}
