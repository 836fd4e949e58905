//! The client side, one process of many (`skat-bench worker`, started by the coordinator): its
//! share of the clients on one thread. Commands come from stdin and answers go to stdout, one
//! JSON line each ([`super::proto`]); this module holds that command loop and the state the
//! commands act on: the worker's clients, their connections and the counters it reports.
//!
//! The data flows through three submodules: [`connect`] opens the clients (connect, upgrade,
//! hello, join) and hands each joined connection to [`receive`], which reads everything the
//! kernel has into one shared 256 KiB buffer and, for `message` frames, only extracts the send
//! time; [`send`] paces all of the worker's senders with one 1 ms ticker and writes without
//! blocking. The types they share ([`Worker`], [`Conn`], [`Stats`]) are defined here, so their
//! fields stay private to the worker.

mod connect;
mod receive;
mod send;

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::rc::Rc;

use anyhow::Context as _;
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::net::TcpStream;
use tokio::task::LocalSet;

use crate::clients::proto::{Command, Layout, Reply, Setup, WorkerReport};
use crate::clients::wire;
use crate::measure::hist::Histogram;

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
            Ok(Reply::Connected(connect::connect_all(w, &plan).await))
        }
        Command::Run(plan) => {
            let w = worker.clone().context("run before setup")?;
            w.reset();
            w.late_us.set(plan.late_us);
            w.window.set((plan.measure_start_us, plan.measure_end_us));
            tokio::task::spawn_local(send::send_loop(w, plan));
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
