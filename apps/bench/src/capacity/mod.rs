//! The capacity model: what a deployment of N users needs, scaled from the per-unit figures
//! [`units`] measures on this box (with [`simnodes`] for what grows with the number of nodes).
//! `CAPACITY.md` explains each formula; this is the one place they are computed, so the
//! document's tables are this command's output.

pub(crate) mod simnodes;
pub(crate) mod units;

use serde::Serialize;

use crate::cli::CapacityArgs;
use units::Units;

/// The assumptions a size is computed under (the command's options).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Assumptions {
    /// Rooms each user is in.
    pub(crate) rooms_per_user: f64,
    /// Members of an average room.
    pub(crate) room_size: f64,
    /// Messages each user sends per minute, on average.
    pub(crate) messages_per_user_per_min: f64,
    /// Average connection life, minutes: users reconnect (and rejoin) once per.
    pub(crate) session_minutes: f64,
    /// Cores of one node.
    pub(crate) node_cores: f64,
    /// Memory of one node, GiB.
    pub(crate) node_mem_gib: f64,
    /// Connections one node may hold (its file limit).
    pub(crate) conns_per_node: f64,
    /// Share of a core, memory or link planned to be used (the rest is headroom).
    pub(crate) utilization: f64,
    /// Members and messages per second of the busiest room.
    pub(crate) hot_room_size: f64,
    pub(crate) hot_room_rate: f64,
}

/// What one size needs.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Plan {
    pub(crate) users: f64,
    pub(crate) rooms: f64,
    pub(crate) messages_per_sec: f64,
    pub(crate) deliveries_per_sec: f64,
    /// Nodes, and what decided their number (`cpu`, `memory`, `connections`).
    pub(crate) nodes: f64,
    pub(crate) nodes_by: &'static str,
    /// Nodes a room's members are spread over, on average.
    pub(crate) nodes_per_room: f64,
    pub(crate) node_cores_used: f64,
    /// How many times the message rate could grow before node CPU binds, with these nodes.
    pub(crate) cpu_headroom: f64,
    pub(crate) node_out_mb_per_sec: f64,
    /// Redis CPU in cores (one core per shard at most), and shards at the planned
    /// utilization.
    pub(crate) redis_cores: f64,
    pub(crate) shards: f64,
    pub(crate) redis_commands_per_sec: f64,
    /// Redis memory for presence and rooms (history comes on top), GiB.
    pub(crate) redis_presence_gib: f64,
    /// The busiest room's share of its shard's core.
    pub(crate) hot_room_shard_share: f64,
    /// The first limit this size meets.
    pub(crate) bottleneck: String,
}

/// Nodes holding members of a room of `size` spread at random over `nodes`.
fn nodes_per_room(size: f64, nodes: f64) -> f64 {
    if nodes <= 1.0 {
        return 1.0;
    }
    nodes * (1.0 - (1.0 - 1.0 / nodes).powf(size))
}

/// What `users` need under `a`, with the costs `u`.
pub(crate) fn plan(users: f64, a: &Assumptions, u: &Units) -> Plan {
    let rooms = users * a.rooms_per_user / a.room_size;
    let messages = users * a.messages_per_user_per_min / 60.0;
    // The average rooms' deliveries, and the busiest room's on top.
    let deliveries = messages * a.room_size + a.hot_room_rate * a.hot_room_size;
    let joins = users * a.rooms_per_user / (a.session_minutes * 60.0);
    // Nodes: enough for connections, memory and CPU; the spread of rooms over nodes (and with
    // it the per-message work) depends on their number, so iterate.
    let by_conns = (users / (a.conns_per_node * a.utilization)).ceil();
    let mut nodes = by_conns.max(1.0);
    let (mut by, mut spread, mut cores) = ("connections", 1.0, 0.0);
    for _ in 0..20 {
        spread = nodes_per_room(a.room_size, nodes);
        cores = (messages * spread * u.node_cpu_us_per_message
            + deliveries * u.node_cpu_us_per_delivery)
            / 1e6;
        let by_cpu = (cores / (a.node_cores * a.utilization)).ceil();
        let kib = users * u.node_kib_per_conn + rooms * spread * u.node_kib_per_room;
        let by_mem = (kib / (a.node_mem_gib * 1024.0 * 1024.0 * a.utilization)).ceil();
        let next = by_conns.max(by_cpu).max(by_mem).max(1.0);
        by = if next == by_conns {
            "connections"
        } else if next == by_cpu {
            "cpu"
        } else {
            "memory"
        };
        if next == nodes {
            break;
        }
        nodes = next;
    }
    let redis_us = messages * (u.redis_cpu_us_per_message + spread * u.redis_cpu_us_per_push)
        + joins * u.redis_cpu_us_per_join;
    let redis_cores = redis_us / 1e6;
    let shards = (redis_cores / a.utilization).ceil().max(1.0);
    let commands = messages * u.redis_commands_per_message
        + joins * u.redis_commands_per_join
        + nodes * u.redis_commands_per_node_per_sec
        + users * u.redis_commands_per_idle_user_per_min / 60.0;
    let presence_kib = users * u.redis_kib_per_user + rooms * u.redis_kib_per_room;
    let hot_spread = nodes_per_room(a.hot_room_size, nodes);
    let hot_share =
        a.hot_room_rate * (u.redis_cpu_us_per_message + hot_spread * u.redis_cpu_us_per_push) / 1e6;
    let node_out = deliveries * u.wire_bytes_per_delivery / nodes / 1e6;
    let node_limit = match by {
        "cpu" => "node CPU (the kernel's TCP sends, mostly): add nodes",
        "memory" => "node memory: add nodes or memory",
        _ => "connections per node (file limit): raise it, or add nodes",
    };
    let push_share = spread * u.redis_cpu_us_per_push
        / (u.redis_cpu_us_per_message + spread * u.redis_cpu_us_per_push).max(1e-9);
    let redis_note = if push_share > 0.5 {
        format!(
            "; Redis: pub/sub fan-out to {spread:.0} nodes per room is {:.0}% of its CPU (fewer \
             nodes per room: route a room's users to the same nodes)",
            push_share * 100.0
        )
    } else {
        String::new()
    };
    let bottleneck = if hot_share > a.utilization {
        "the hot room: its shard's core (split the room, or rate-limit it)".to_owned()
    } else {
        format!("{node_limit}{redis_note}")
    };
    Plan {
        users,
        rooms,
        messages_per_sec: messages,
        deliveries_per_sec: deliveries,
        nodes,
        nodes_by: by,
        nodes_per_room: spread,
        node_cores_used: cores / nodes,
        cpu_headroom: a.node_cores * a.utilization * nodes / cores.max(1e-9),
        node_out_mb_per_sec: node_out,
        redis_cores,
        shards,
        redis_commands_per_sec: commands,
        redis_presence_gib: presence_kib / 1024.0 / 1024.0,
        hot_room_shard_share: hot_share,
        bottleneck,
    }
}

/// The model's tables, in Markdown: the units, then one row per size.
pub(crate) fn markdown(units: &Units, a: &Assumptions, plans: &[Plan]) -> String {
    let mut out = String::from("| unit | measured |\n| --- | --- |\n");
    let u = serde_json::to_value(units).unwrap_or_default();
    if let Some(fields) = u.as_object() {
        for (name, value) in fields {
            let value = value.as_f64().unwrap_or(0.0);
            out.push_str(&format!("| `{name}` | {value:.3} |\n"));
        }
    }
    out.push_str(&format!(
        "\nAssumptions: {} rooms per user of {} members, {} messages per user per minute, \
         reconnects every {} min; nodes of {} cores, {} GiB and {} connections, planned at {:.0}% \
         use; busiest room {} members at {} messages/s.\n\n",
        a.rooms_per_user,
        a.room_size,
        a.messages_per_user_per_min,
        a.session_minutes,
        a.node_cores,
        a.node_mem_gib,
        a.conns_per_node,
        a.utilization * 100.0,
        a.hot_room_size,
        a.hot_room_rate,
    ));
    out.push_str(
        "| users | rooms | messages/s | deliveries/s | nodes (by) | cores used per node | \
         message rate before node CPU binds | out per node, MB/s | Redis cores | shards | \
         Redis commands/s | presence in Redis, GiB | hot room's share of its shard | first \
         bottleneck |\n",
    );
    out.push_str(&"| --- ".repeat(14));
    out.push_str("|\n");
    for p in plans {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} ({}) | {:.1} | ×{:.1} | {:.0} | {:.2} | {} | {} | {:.2} | {:.0}% | {} |\n",
            human(p.users),
            human(p.rooms),
            human(p.messages_per_sec),
            human(p.deliveries_per_sec),
            p.nodes,
            p.nodes_by,
            p.node_cores_used,
            p.cpu_headroom,
            p.node_out_mb_per_sec,
            p.redis_cores,
            p.shards,
            human(p.redis_commands_per_sec),
            p.redis_presence_gib,
            p.hot_room_shard_share * 100.0,
            p.bottleneck,
        ));
    }
    out
}

/// `1.2M`, `35k`, `120`.
fn human(n: f64) -> String {
    if n >= 1e6 {
        format!("{:.1}M", n / 1e6)
    } else if n >= 1e3 {
        format!("{:.0}k", n / 1e3)
    } else {
        format!("{n:.0}")
    }
}

/// The assumptions of `args`.
pub(crate) fn assumptions(args: &CapacityArgs) -> Assumptions {
    Assumptions {
        rooms_per_user: args.rooms_per_user,
        room_size: args.room_size,
        messages_per_user_per_min: args.messages_per_user_per_min,
        session_minutes: args.session_minutes,
        node_cores: args.node_cores,
        node_mem_gib: args.node_mem_gib,
        conns_per_node: args.conns_per_node,
        utilization: args.utilization,
        hot_room_size: args.hot_room_size,
        hot_room_rate: args.hot_room_rate,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn units() -> Units {
        Units {
            node_cpu_us_per_delivery: 5.0,
            node_cpu_us_per_message: 30.0,
            wire_bytes_per_delivery: 200.0,
            node_kib_per_conn: 2.0,
            node_kib_per_room: 1.0,
            redis_cpu_us_per_message: 40.0,
            redis_cpu_us_per_push: 5.0,
            ..Units::default()
        }
    }

    fn assumed() -> Assumptions {
        Assumptions {
            rooms_per_user: 3.0,
            room_size: 20.0,
            messages_per_user_per_min: 1.0,
            session_minutes: 30.0,
            node_cores: 8.0,
            node_mem_gib: 16.0,
            conns_per_node: 100_000.0,
            utilization: 0.6,
            hot_room_size: 5000.0,
            hot_room_rate: 20.0,
        }
    }

    #[test]
    fn rooms_spread_over_at_most_their_members_or_the_nodes() {
        assert!((nodes_per_room(20.0, 1.0) - 1.0).abs() < 1e-9);
        assert!(nodes_per_room(20.0, 10_000.0) < 20.0);
        assert!(nodes_per_room(20.0, 10_000.0) > 19.9);
        assert!(nodes_per_room(1000.0, 10.0) > 9.99);
    }

    #[test]
    fn more_users_need_more_of_everything() {
        let (a, u) = (assumed(), units());
        let small = plan(100_000.0, &a, &u);
        let big = plan(10_000_000.0, &a, &u);
        assert!(big.nodes > small.nodes && big.redis_cores > small.redis_cores);
        assert!((small.messages_per_sec - 100_000.0 / 60.0).abs() < 1e-6);
        let hot = a.hot_room_size * a.hot_room_rate;
        assert!((small.deliveries_per_sec - small.messages_per_sec * 20.0 - hot).abs() < 1e-6);
        assert!(small.cpu_headroom >= 1.0);
        // Every node serves its share within the planned use.
        assert!(big.node_cores_used <= a.node_cores * a.utilization + 1e-9);
        assert!(markdown(&u, &a, &[small, big]).contains("| 10.0M |"));
    }
}
