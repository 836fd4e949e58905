//! Names with a meaning: direct-message rooms and the system sender.

use crate::validate_room;

/// The `from` of messages an application's backend publishes through the server API without
/// naming a user. No user can take it: `~` is not allowed in user names.
pub const SYSTEM_SENDER: &str = "~system";

/// The direct-message room of users `a` and `b`: `dm-<n>-<first>-<second>`, the two names
/// sorted and `n` the length of the first, so that the name splits into its users one way only
/// (a plain `dm-a-b-c` could be the pair (`a`, `b-c`) or (`a-b`, `c`)). `None` if the names
/// cannot make a room name (room names are `a-z0-9_-` and at most 64 characters) or are the same.
///
/// ```
/// assert_eq!(skat_protocol::dm_room("bob", "alice").as_deref(), Some("dm-5-alice-bob"));
/// assert_eq!(skat_protocol::dm_room("Bob", "alice"), None);
/// ```
pub fn dm_room(a: &str, b: &str) -> Option<String> {
    let (first, second) = if a <= b { (a, b) } else { (b, a) };
    let room = format!("dm-{}-{first}-{second}", first.len());
    (first != second && validate_room(&room).is_ok()).then_some(room)
}

/// The two users of a direct-message room, sorted, if `room` is one ([`dm_room`]'s inverse).
pub fn dm_users(room: &str) -> Option<(&str, &str)> {
    let rest = room.strip_prefix("dm-")?;
    let (len, rest) = rest.split_once('-')?;
    let len: usize = len.parse().ok()?;
    let first = rest.get(..len)?;
    let second = rest.get(len..)?.strip_prefix('-')?;
    (first < second).then_some((first, second))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dm_rooms_name_their_two_users_one_way_only() {
        let room = dm_room("bob-x", "alice").unwrap();
        assert_eq!(room, "dm-5-alice-bob-x");
        assert_eq!(dm_users(&room), Some(("alice", "bob-x")));
        assert_eq!(dm_room("alice", "bob-x"), Some(room));
        assert_eq!(dm_users("dm-2-al-ice-bob"), Some(("al", "ice-bob")));
        for not_dm in [
            "general", "dm-", "dm-x-a-b", "dm-9-a-b", "dm-1-b-a", "dm-1-a-a",
        ] {
            assert_eq!(dm_users(not_dm), None, "{not_dm}");
        }
        assert_eq!(dm_room("alice", "alice"), None);
        assert_eq!(dm_room("Alice", "bob"), None);
        assert_eq!(dm_room("a.b", "bob"), None);
    }
}
