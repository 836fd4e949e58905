//! What a node id may be, checked in one place for the server's settings and the Redis backend.
//!
//! The Redis backend names a node *instance* `<node id>:<claim token>` and finds a node's
//! instances by splitting that name at its last `:`. An id holding a `:` would make one node's
//! instances look like another's (node `chat` took live node `chat:2`'s instances for its own
//! and swept its users offline), and `{`/`}` would change which cluster slot a key lands on.
//! So ids are short and plain: ASCII letters, digits, `-`, `_` and `.`, which also covers host
//! names, pod names and the random ids nodes make for themselves.

/// Longest node id accepted, in bytes: it is part of every presence key of the node.
pub const NODE_ID_MAX_LEN: usize = 64;

/// A node id that cannot be used (see [`check_node_id`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid node id {0:?}: use 1 to {NODE_ID_MAX_LEN} ASCII letters, digits, '-', '_' or '.' (no ':': it separates a node's id from its instance in Redis)"
)]
pub struct InvalidNodeId(pub String);

/// Checks that `id` can name a node: 1 to [`NODE_ID_MAX_LEN`] bytes of ASCII letters, digits,
/// `-`, `_` and `.`.
pub fn check_node_id(id: &str) -> Result<(), InvalidNodeId> {
    let allowed = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.');
    if id.is_empty() || id.len() > NODE_ID_MAX_LEN || !id.bytes().all(allowed) {
        return Err(InvalidNodeId(id.to_owned()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_ids_pass_and_separators_do_not() {
        for id in [
            "chat",
            "node-a",
            "chat2",
            "ip-10-0-0-1.ec2.internal",
            "a_b",
            "3f2a9c1e",
        ] {
            assert_eq!(check_node_id(id), Ok(()), "{id:?}");
        }
        let long = "x".repeat(NODE_ID_MAX_LEN + 1);
        for id in ["", "chat:2", "a b", "{room}", "é", "a/b", long.as_str()] {
            assert_eq!(
                check_node_id(id),
                Err(InvalidNodeId(id.to_owned())),
                "{id:?}"
            );
        }
        let message = check_node_id("chat:2").unwrap_err().to_string();
        assert!(
            message.contains("\"chat:2\"") && message.contains("':'"),
            "{message}"
        );
    }
}
