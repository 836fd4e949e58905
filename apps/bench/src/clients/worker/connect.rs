//! Opening the worker's clients: each connects (from its own loopback source address, if it has
//! one), upgrades to WebSocket, says hello and joins its room, with at most `max_in_flight` of
//! them opening at once (0: no limit). The coordinator gets how many opened, per node, and how
//! long they took; each joined connection is then handed to [`super::receive`] for the rest of
//! its life. The handshake simply awaits each reply in a buffer of its own; whatever follows
//! `joined` in it becomes the connection's first input.

use std::cell::RefCell;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use skat_protocol::ClientFrame;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{Semaphore, mpsc};

use super::receive::live;
use super::{Client, Conn, Worker};
use crate::clients::proto::{ConnectPlan, ConnectReport};
use crate::clients::wire;
use crate::measure::clock::{now_us, sleep_until_us};
use crate::measure::hist::Histogram;

/// Opens every client of the worker at `plan.start_at_us`, then reports once each has joined
/// or failed; the joined ones stay open, read by their own tasks.
pub(super) async fn connect_all(worker: Rc<Worker>, plan: &ConnectPlan) -> ConnectReport {
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
    let hello = ClientFrame::Hello {
        name: layout.user_name(client.index),
        token: None,
    };
    send(&mut stream, &hello).await?;
    await_reply(&mut stream, &mut buf, "welcome").await?;
    let join = ClientFrame::Join {
        room: layout.room_name(client.room),
        since: None,
        epoch: None,
    };
    send(&mut stream, &join).await?;
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

async fn send(stream: &mut TcpStream, frame: &ClientFrame) -> anyhow::Result<()> {
    let mut bytes = Vec::new();
    wire::encode_client_text(&mut bytes, frame);
    stream.write_all(&bytes).await.context("write")
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
