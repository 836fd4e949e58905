//! What the coordinator and its worker processes say to each other (one JSON object per line on
//! the worker's stdin and stdout), and the layout that tells every process, from a few numbers,
//! which clients exist, where they connect, which room they join and whether they send.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::measure::hist::Sparse;

/// Who is who in a run: client `i` (0-based, over all workers) joins room `i % rooms`, connects
/// to node `(i / rooms) % nodes` (so every room spans the nodes), lives in worker `i % workers`
/// and sends if `i < senders` (so senders spread over rooms, nodes and workers).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Layout {
    /// Clients in total.
    pub(crate) clients: usize,
    /// Rooms.
    pub(crate) rooms: usize,
    /// Clients that send.
    pub(crate) senders: usize,
    /// Server nodes (URLs).
    pub(crate) nodes: usize,
    /// Worker processes.
    pub(crate) workers: usize,
    /// Prefix of every name, room and nonce: unique per run and per test.
    pub(crate) prefix: String,
}

impl Layout {
    /// The room of client `i`.
    pub(crate) fn room_of(&self, i: usize) -> usize {
        i % self.rooms.max(1)
    }

    /// The node of client `i`.
    pub(crate) fn node_of(&self, i: usize) -> usize {
        (i / self.rooms.max(1)) % self.nodes.max(1)
    }

    /// The worker of client `i`.
    #[cfg(test)]
    pub(crate) fn worker_of(&self, i: usize) -> usize {
        i % self.workers.max(1)
    }

    /// Whether client `i` sends.
    pub(crate) fn is_sender(&self, i: usize) -> bool {
        i < self.senders
    }

    /// The clients of worker `w`.
    pub(crate) fn clients_of(&self, w: usize) -> impl Iterator<Item = usize> + use<> {
        (w..self.clients).step_by(self.workers.max(1))
    }

    /// Senders in worker `w`.
    pub(crate) fn senders_of(&self, w: usize) -> usize {
        self.clients_of(w).filter(|&i| self.is_sender(i)).count()
    }

    /// Clients connected to each node.
    #[cfg(test)]
    pub(crate) fn per_node(&self) -> Vec<usize> {
        let mut counts = vec![0; self.nodes.max(1)];
        for i in 0..self.clients {
            counts[self.node_of(i)] += 1;
        }
        counts
    }

    /// Room `r`'s name: `a-z`, `0-9`, `-` only.
    pub(crate) fn room_name(&self, r: usize) -> String {
        format!("{}-r{r}", self.prefix)
    }

    /// Client `i`'s user name.
    pub(crate) fn user_name(&self, i: usize) -> String {
        format!("{}-u{i}", self.prefix)
    }
}

/// A command to a worker.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub(crate) enum Command {
    /// Who the worker is and where its clients go. Answered by `Ready`.
    Setup(Setup),
    /// Open every client of the worker (connect, upgrade, hello, join). Answered by `Connected`.
    Connect(ConnectPlan),
    /// Send at a rate over a schedule; returns at once (answered by `Started`).
    Run(RunPlan),
    /// Counters so far. Answered by `Report`.
    Report,
    /// Exit.
    Quit,
}

/// See [`Command::Setup`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Setup {
    /// This worker's index.
    pub(crate) worker: usize,
    /// The run's layout.
    pub(crate) layout: Layout,
    /// One `ws://host:port/path` URL per node.
    pub(crate) urls: Vec<String>,
    /// Local addresses to bind client sockets to, used in turn (empty: let the kernel choose).
    pub(crate) sources: Vec<Ipv4Addr>,
}

/// See [`Command::Connect`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ConnectPlan {
    /// When to start (µs since the Unix epoch; 0: now), so that workers start together.
    pub(crate) start_at_us: u64,
    /// Clients of this worker opening at once (0: all of them).
    pub(crate) max_in_flight: usize,
    /// Give up on a client after this long.
    pub(crate) timeout_ms: u64,
}

/// See [`Command::Run`]. All times are µs since the Unix epoch.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct RunPlan {
    /// Start sending (the warmup starts).
    pub(crate) start_us: u64,
    /// Messages sent from here on are measured.
    pub(crate) measure_start_us: u64,
    /// Stop sending; messages sent before this are measured.
    pub(crate) measure_end_us: u64,
    /// This worker's share of the sends per second.
    pub(crate) sends_per_sec: f64,
    /// Bytes of each message body.
    pub(crate) body_bytes: usize,
    /// A delivery slower than this is late.
    pub(crate) late_us: u64,
    /// Live members of each room over all workers: the deliveries each send should cause.
    pub(crate) room_members: Vec<u64>,
}

/// A worker's answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub(crate) enum Reply {
    /// Setup done.
    Ready,
    /// Outcome of `Connect`.
    Connected(ConnectReport),
    /// The run is scheduled.
    Started,
    /// Counters.
    Report(WorkerReport),
    /// The command failed.
    Error {
        /// Why.
        message: String,
    },
}

/// Outcome of `Connect`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct ConnectReport {
    /// Clients that got `joined`.
    pub(crate) ok: u64,
    /// Clients that failed or timed out.
    pub(crate) failed: u64,
    /// The first failure, for the report.
    pub(crate) first_error: Option<String>,
    /// When the start was (µs since the epoch).
    pub(crate) started_at_us: u64,
    /// When the last client finished (µs since the epoch).
    pub(crate) done_at_us: u64,
    /// Time from starting to connect to `joined`, per client (µs).
    pub(crate) setup_times: Sparse,
    /// Joined clients per node.
    pub(crate) node_clients: Vec<u64>,
}

/// A worker's counters since the last `Run` (or since `Connect` if none).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct WorkerReport {
    /// Messages sent.
    pub(crate) sent: u64,
    /// Messages sent in the measured window.
    pub(crate) sent_measured: u64,
    /// Deliveries the measured messages should cause.
    pub(crate) expected_measured: u64,
    /// Message frames received.
    pub(crate) received: u64,
    /// Message frames received that were sent in the measured window.
    pub(crate) received_measured: u64,
    /// Of those, how many were late.
    pub(crate) late: u64,
    /// Latency of the measured deliveries (µs).
    pub(crate) latency: Sparse,
    /// `error` frames received.
    pub(crate) errors: u64,
    /// The first `error` frame, for the report.
    pub(crate) error_sample: Option<String>,
    /// Connections the server closed, by close code and reason ("eof" without a close frame).
    pub(crate) closes: BTreeMap<String, u64>,
    /// Bytes written to sockets that the kernel has not taken yet (senders slowed by the server).
    pub(crate) unsent_bytes: u64,
    /// Live (joined, not closed) clients per room.
    pub(crate) room_members: Vec<u64>,
    /// How late the worker's 1 ms ticker fired during the measured window (µs): its own lag.
    pub(crate) loop_lag: Sparse,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn layout(
        clients: usize,
        rooms: usize,
        senders: usize,
        nodes: usize,
        workers: usize,
    ) -> Layout {
        Layout {
            clients,
            rooms,
            senders,
            nodes,
            workers,
            prefix: "b1a2b3c4t1".to_owned(),
        }
    }

    #[test]
    fn every_client_has_exactly_one_worker() {
        let l = layout(2003, 20, 200, 2, 3);
        let mut seen = vec![0; l.clients];
        for w in 0..l.workers {
            for i in l.clients_of(w) {
                assert_eq!(l.worker_of(i), w);
                seen[i] += 1;
            }
        }
        assert!(seen.iter().all(|&n| n == 1));
        let senders: usize = (0..l.workers).map(|w| l.senders_of(w)).sum();
        assert_eq!(senders, 200);
    }

    #[test]
    fn rooms_span_nodes_and_senders_span_rooms() {
        let l = layout(2000, 20, 200, 2, 2);
        for r in 0..l.rooms {
            let nodes: Vec<usize> = (0..l.clients)
                .filter(|&i| l.room_of(i) == r)
                .map(|i| l.node_of(i))
                .collect();
            assert_eq!(nodes.len(), 100);
            assert_eq!(nodes.iter().filter(|&&n| n == 0).count(), 50);
            let senders = (0..l.clients)
                .filter(|&i| l.room_of(i) == r && l.is_sender(i))
                .count();
            assert_eq!(senders, 10);
        }
        assert_eq!(l.per_node(), [1000, 1000]);
        // One busy room still spreads over the nodes.
        let busy = layout(500, 1, 50, 2, 1);
        assert_eq!(busy.per_node(), [250, 250]);
    }

    #[test]
    fn names_are_valid_protocol_names() {
        let l = layout(15_000, 150, 0, 1, 3);
        let room = l.room_name(149);
        assert!(room.len() <= 64);
        assert!(
            room.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        );
        let user = l.user_name(14_999);
        assert!(user.len() <= 32, "{user}");
    }

    #[test]
    fn commands_round_trip_as_lines() {
        let cmd = Command::Connect(ConnectPlan {
            start_at_us: 5,
            max_in_flight: 0,
            timeout_ms: 1000,
        });
        let line = serde_json::to_string(&cmd).unwrap();
        assert!(!line.contains('\n'));
        assert!(matches!(
            serde_json::from_str::<Command>(&line).unwrap(),
            Command::Connect(ConnectPlan { start_at_us: 5, .. })
        ));
        let reply = serde_json::to_string(&Reply::Started).unwrap();
        assert!(matches!(
            serde_json::from_str::<Reply>(&reply).unwrap(),
            Reply::Started
        ));
    }
}
