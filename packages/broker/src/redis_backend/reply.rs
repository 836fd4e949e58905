//! Reading fields of Redis replies that are maps in RESP3 and flat lists of names and values in
//! RESP2 (`CLUSTER SHARDS`, read by `waits` and `topology` on connections of either kind).

use redis::Value;

/// The value of `name` in a reply that is a map (RESP3) or a flat list of names and values.
pub(super) fn field<'a>(value: &'a Value, name: &str) -> Option<&'a Value> {
    match value {
        Value::Map(pairs) => pairs
            .iter()
            .find(|(key, _)| text(key) == Some(name))
            .map(|(_, value)| value),
        Value::Array(items) => items
            .chunks_exact(2)
            .find(|pair| text(&pair[0]) == Some(name))
            .map(|pair| &pair[1]),
        _ => None,
    }
}

/// A reply's string, if it is one.
pub(super) fn text(value: &Value) -> Option<&str> {
    match value {
        Value::BulkString(bytes) => std::str::from_utf8(bytes).ok(),
        Value::SimpleString(text) => Some(text),
        _ => None,
    }
}

/// A reply's integer, if it is one.
pub(super) fn int(value: &Value) -> Option<i64> {
    match value {
        Value::Int(int) => Some(*int),
        _ => None,
    }
}

/// Replies as Redis sends them, for the parsers' tests.
#[cfg(test)]
pub(super) mod fake {
    use redis::Value;

    /// A bulk string.
    pub(in super::super) fn bulk(text: &str) -> Value {
        Value::BulkString(text.as_bytes().to_vec())
    }

    /// A node of a `CLUSTER SHARDS` reply, on 127.0.0.1.
    pub(in super::super) fn shard_node(port: i64, role: &str, health: &str) -> Value {
        Value::Array(vec![
            bulk("id"),
            bulk("x"),
            bulk("port"),
            Value::Int(port),
            bulk("ip"),
            bulk("127.0.0.1"),
            bulk("endpoint"),
            bulk("127.0.0.1"),
            bulk("role"),
            bulk(role),
            bulk("health"),
            bulk(health),
        ])
    }

    /// A shard of a `CLUSTER SHARDS` reply: its slot ranges (first, last, first, last...) and
    /// its nodes.
    pub(in super::super) fn shard(slots: Vec<i64>, nodes: Vec<Value>) -> Value {
        Value::Array(vec![
            bulk("slots"),
            Value::Array(slots.into_iter().map(Value::Int).collect()),
            bulk("nodes"),
            Value::Array(nodes),
        ])
    }
}
