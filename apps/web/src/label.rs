//! How rooms and senders are named on screen: direct-message rooms by the other user
//! (`@bob`, not `dm-5-alice-bob`), other rooms with a `#`, and the application's own messages
//! as "system".

use skat_protocol::{SYSTEM_SENDER, dm_users};

/// The other user of direct-message room `room`, if it is one of `me`'s.
pub fn dm_partner<'a>(room: &'a str, me: &str) -> Option<&'a str> {
    match dm_users(room)? {
        (a, b) if a == me => Some(b),
        (a, b) if b == me => Some(a),
        _ => None,
    }
}

/// The room's name without its sigil: `random`, or `@bob` for `me`'s direct messages with bob.
pub fn room_title(room: &str, me: &str) -> String {
    match dm_partner(room, me) {
        Some(other) => format!("@{other}"),
        None => room.to_owned(),
    }
}

/// The room as a tab or heading shows it: `#random`, or `@bob`.
pub fn room_label(room: &str, me: &str) -> String {
    match dm_partner(room, me) {
        Some(other) => format!("@{other}"),
        None => format!("#{room}"),
    }
}

/// Whether a message was published by the application rather than a user.
pub fn is_system(from: &str) -> bool {
    from == SYSTEM_SENDER
}

/// The sender as shown.
pub fn sender_label(from: &str) -> &str {
    if is_system(from) { "system" } else { from }
}

#[cfg(test)]
mod tests {
    use super::*;
    use skat_protocol::dm_room;

    #[test]
    fn direct_messages_are_named_after_the_other_user() {
        let room = dm_room("alice", "bob").unwrap();
        assert_eq!(room_label(&room, "alice"), "@bob");
        assert_eq!(room_label(&room, "bob"), "@alice");
        assert_eq!(room_title(&room, "bob"), "@alice");
        // Someone else's (not ours to show as a DM) and plain rooms keep their names.
        assert_eq!(room_label(&room, "carol"), "#dm-5-alice-bob");
        assert_eq!(room_label("random", "alice"), "#random");
        assert_eq!(room_title("random", "alice"), "random");
    }

    #[test]
    fn the_system_sender_is_shown_as_system() {
        assert!(is_system(SYSTEM_SENDER));
        assert_eq!(sender_label(SYSTEM_SENDER), "system");
        assert_eq!(sender_label("bob"), "bob");
    }
}
