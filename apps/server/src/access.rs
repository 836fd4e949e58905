//! Who may join which room: private rooms, direct messages, and the rooms a token grants.
//!
//! In signed mode a token may carry a `rooms` claim: exact room names and prefix patterns
//! (`support-*`). Rooms are then of three kinds:
//! - **direct messages**, `dm-<n>-<a>-<b>`: two user names `a` < `b` (sorted, distinct), `n`
//!   the length of `a` so the name splits one way only. Only `a` and `b` may join, whatever
//!   their tokens say;
//! - **private rooms**, named with the private prefix (`private-` by default): only users whose
//!   token's `rooms` names them;
//! - **public rooms**, everything else: anyone, or, with a `rooms` claim, only those it names.
//!
//! In anonymous mode anyone can take any name, so neither kind can be protected: direct
//! messages and private rooms are refused there. A refusal is an `error` with code
//! `forbidden`: the room stays unjoined, and since every other request about a room needs it
//! joined, nothing of it (members, history, presence, typing) reaches the user.

/// The rooms a token's `rooms` claim names: exact names, and prefixes written `prefix*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RoomGrants(Box<[String]>);

impl RoomGrants {
    /// The grants of a `rooms` claim.
    pub(crate) fn new(rooms: Vec<String>) -> Self {
        Self(rooms.into_boxed_slice())
    }

    /// Whether `room` is one of the names, or starts with one of the prefixes.
    pub(crate) fn allows(&self, room: &str) -> bool {
        self.0.iter().any(|grant| match grant.strip_suffix('*') {
            Some(prefix) => room.starts_with(prefix),
            None => grant == room,
        })
    }
}

use skat_protocol::dm_users;

/// Whether `user` may join `room`; the reason to give if not.
pub(crate) fn may_join(
    signed: bool,
    private_prefix: &str,
    user: &str,
    grants: Option<&RoomGrants>,
    room: &str,
) -> Result<(), &'static str> {
    if room.starts_with("dm-") {
        if !signed {
            return Err("direct messages need signed mode");
        }
        return match dm_users(room) {
            Some((a, b)) if user == a || user == b => Ok(()),
            _ => Err("this direct-message room is not yours"),
        };
    }
    let private = !private_prefix.is_empty() && room.starts_with(private_prefix);
    match grants {
        Some(grants) if grants.allows(room) => Ok(()),
        Some(_) => Err("your token does not grant this room"),
        None if private && signed => Err("this private room is not in your token's rooms"),
        None if private => Err("private rooms need signed mode"),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use skat_protocol::dm_room;

    use super::*;

    #[test]
    fn grants_are_names_and_prefixes() {
        let grants = RoomGrants::new(vec!["private-ops".into(), "support-*".into()]);
        assert!(grants.allows("private-ops"));
        assert!(grants.allows("support-42"));
        assert!(!grants.allows("private-opsx"));
        assert!(!grants.allows("general"));
    }

    #[test]
    fn direct_messages_split_one_way_only() {
        // Names with dashes cannot be regrouped into another pair.
        let room = dm_room("a-b", "c").unwrap();
        for user in ["a", "b-c", "b", "c"] {
            let allowed = may_join(true, "private-", user, None, &room).is_ok();
            assert_eq!(allowed, user == "c", "{user}");
        }
        assert!(may_join(true, "private-", "a-b", None, &room).is_ok());
    }

    #[test]
    fn who_may_join_what() {
        let ops = RoomGrants::new(vec!["private-ops".into(), "support-*".into()]);
        let check = |signed, grants, room| may_join(signed, "private-", "alice", grants, room);
        assert!(
            check(true, None, "general").is_ok(),
            "no claim: public rooms"
        );
        assert!(check(true, None, "private-ops").is_err());
        assert!(check(true, Some(&ops), "private-ops").is_ok());
        assert!(check(true, Some(&ops), "support-1").is_ok());
        assert!(
            check(true, Some(&ops), "general").is_err(),
            "a claim limits public rooms"
        );
        assert!(
            check(true, Some(&ops), "dm-5-alice-bob").is_ok(),
            "own direct messages"
        );
        assert!(check(true, None, "dm-3-bob-carol").is_err());
        assert!(
            check(false, None, "private-ops").is_err(),
            "anonymous: no private rooms"
        );
        assert!(check(false, None, "dm-5-alice-bob").is_err());
        assert!(check(false, None, "general").is_ok());
        assert!(
            may_join(true, "", "alice", None, "private-ops").is_ok(),
            "an empty prefix turns private rooms off"
        );
    }
}
