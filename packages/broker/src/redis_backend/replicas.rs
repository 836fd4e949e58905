//! What the node knows of the replicas in sync with each master, read from `ROLE` (one server)
//! or `CLUSTER SHARDS` (a cluster): how many a publish can wait for (`waits`), and whether a
//! server is a master at all (`watched`'s probe).

use redis::Value;

use super::reply::{field, text};
use super::slots::key_slot;

/// Replicas in sync, by master.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) enum Replicas {
    /// Not counted (yet, or the count failed): assume the wanted number.
    #[default]
    Unknown,
    /// Of the one server.
    Single(u32),
    /// Of each shard of a cluster: its slot ranges (first, last, inclusive) and replicas.
    Slots(Vec<(u16, u16, u32)>),
}

impl Replicas {
    /// The replicas in sync with the master of `key`'s slot, if known (the slot is computed
    /// only on a cluster).
    pub(super) fn of(&self, key: &str) -> Option<u32> {
        match self {
            Self::Unknown => None,
            Self::Single(replicas) => Some(*replicas),
            Self::Slots(ranges) => {
                let slot = key_slot(key);
                ranges
                    .iter()
                    .find(|(first, last, _)| (*first..=*last).contains(&slot))
                    .map(|(_, _, replicas)| *replicas)
            }
        }
    }
}

/// The replicas a `ROLE` reply lists as connected to a master; `None` if it is not a master's
/// (a replica's, or a reply this does not understand).
pub(super) fn master_replicas(role: &Value) -> Option<u32> {
    match role {
        Value::Array(fields) => match (fields.first().and_then(text), fields.get(2)) {
            (Some("master"), Some(Value::Array(replicas))) => {
                Some(u32::try_from(replicas.len()).unwrap_or(u32::MAX))
            }
            _ => None,
        },
        _ => None,
    }
}

/// Each shard's slot ranges and replicas in good health, from a `CLUSTER SHARDS` reply.
pub(super) fn replicas_of_shards(shards: &Value) -> Vec<(u16, u16, u32)> {
    let Value::Array(shards) = shards else {
        return Vec::new();
    };
    let mut ranges = Vec::new();
    for shard in shards {
        let online = match field(shard, "nodes") {
            Some(Value::Array(nodes)) => nodes
                .iter()
                .filter(|node| {
                    field(node, "role").and_then(text) == Some("replica")
                        && field(node, "health").and_then(text) == Some("online")
                })
                .count(),
            _ => 0,
        };
        let online = u32::try_from(online).unwrap_or(u32::MAX);
        if let Some(Value::Array(slots)) = field(shard, "slots") {
            for pair in slots.chunks_exact(2) {
                if let [Value::Int(first), Value::Int(last)] = pair
                    && let (Ok(first), Ok(last)) = (u16::try_from(*first), u16::try_from(*last))
                {
                    ranges.push((first, last, online));
                }
            }
        }
    }
    ranges
}

#[cfg(test)]
mod tests {
    use super::super::reply::fake::{bulk, shard, shard_node};
    use super::*;

    #[test]
    fn role_counts_a_masters_replicas() {
        let replica = Value::Array(vec![bulk("127.0.0.1"), bulk("7001"), bulk("42")]);
        let master = |replicas| Value::Array(vec![bulk("master"), Value::Int(42), replicas]);
        assert_eq!(master_replicas(&master(Value::Array(vec![]))), Some(0));
        assert_eq!(
            master_replicas(&master(Value::Array(vec![replica.clone(), replica]))),
            Some(2)
        );
        let demoted = Value::Array(vec![
            bulk("slave"),
            bulk("127.0.0.1"),
            Value::Int(7000),
            bulk("connected"),
            Value::Int(42),
        ]);
        assert_eq!(master_replicas(&demoted), None);
        assert_eq!(master_replicas(&Value::Nil), None);
    }

    #[test]
    fn cluster_shards_give_each_slot_range_its_healthy_replicas() {
        let node = |role: &str, health: &str| shard_node(7000, role, health);
        let shards = Value::Array(vec![
            shard(
                vec![0, 100, 200, 300],
                vec![node("master", "online"), node("replica", "online")],
            ),
            // Failed over: the old master is a replica that is down.
            shard(
                vec![101, 199],
                vec![node("master", "online"), node("replica", "failed")],
            ),
        ]);
        let ranges = replicas_of_shards(&shards);
        assert_eq!(ranges, [(0, 100, 1), (200, 300, 1), (101, 199, 0)]);
        let replicas = Replicas::Slots(ranges);
        // "foo" is slot 12182, in no range here; "123456789" is 12739.
        assert_eq!(replicas.of("foo"), None);
        let map = Value::Map(vec![(bulk("slots"), Value::Array(vec![]))]);
        assert!(field(&map, "slots").is_some());
    }
}
