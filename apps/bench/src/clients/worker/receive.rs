//! The receive path of a live connection, where the worker spends most of its time: every
//! connection reads whatever the kernel has into one 256 KiB buffer shared by the whole worker
//! (one `read` per wakeup), walks the WebSocket frames in place and, for a `message` frame, only
//! extracts the send time from the body to record the latency. Nothing else is parsed, so the
//! client side stays cheap next to the server it measures. Pings are answered, close frames
//! and errors are counted, and a closed connection leaves its room and the senders.

use std::cell::RefCell;
use std::rc::Rc;

use tokio::io::Interest;

use super::{Conn, Stats, Worker};
use crate::clients::wire::{self, Kind};
use crate::measure::clock::now_us;

/// Bytes read from a socket at once, shared by every connection of the worker.
const READ_CHUNK: usize = 256 * 1024;

thread_local! {
    static SCRATCH: RefCell<Vec<u8>> = RefCell::new(vec![0; READ_CHUNK]);
}

/// Reads the connection until it closes.
pub(super) async fn live(worker: Rc<Worker>, conn: Rc<Conn>) {
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

impl Worker {
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
