//! The Lua scripts, each one atomic step on one room's keys (which share a hash slot). They live
//! in `lua/`, one file per script or shared fragment; a script is its fragments concatenated.
//!
//! - `sweep.lua` removes a dead node instance's entries from one room (and announces `offline`);
//!   the live nodes run it for each room the dead one listed (see `sweep`).
//! - `lease.lua` defines `check_lease()`, which refuses a presence write (`join_presence.lua`,
//!   `list_room.lua`) sent under a lease that is over on Redis's clock (see `claim`).
//! - Every script starts with `local PUBLISH = ...`: the command its fragments publish with
//!   (`SPUBLISH` in a cluster, where a room's channel is sharded, else `PUBLISH`), then
//!   `ROOM_TTL`, `KEEP_TTL` and `EMPTY_TTL`, the lifetimes of a room's keys in ms (see
//!   `ensure_epoch.lua` and `publish.lua`).
//! - `join_presence.lua` defines `join_presence()`; `ensure_epoch.lua` makes the room's epoch if
//!   needed and reads it into `epoch`, and gives the room's keys their lifetimes (the stream,
//!   trimmed marker and epoch keys are always the script's last three keys);
//!   `members_page.lua` defines `members_page()`, a page of the room's names index (repaired
//!   first if a node of an older version left it out of step with the users hash), for `join`
//!   and `members`.
//! - `recover.lua` defines `recover()`, the recovery of what followed a client's `since` (the
//!   trimmed check, the check that `since` is an id of this history, the chunked read), for
//!   `join` and `recovery` (a recovery on its own).
//! - `message_size.lua` defines `message_size()`, which counts a stored message's encoded size
//!   as the protocol crate does; `state.lua` the formats of the current state of changed
//!   messages (overlays, tombstones, erased edits) and the little that writing or trimming a
//!   stream needs of it (the publish script has it and `trim.lua` only in the branch that trims
//!   a room with changes);
//!   `reads.lua` what their extras add to that size and what a change counts
//!   (`change_size`), and the reads that skip changes, merge tombstones and apply overlays
//!   (`latest`, `with_overlays`, `unread_after`). The scripts that read get the protocol's
//!   byte counts (`NONCE_FRAMING`, `REPLY_TO_FRAMING`, ...) and the broker's `CHANGE_FRAMING`
//!   as constants before them, so the Lua and the Rust count from one source.
//! - `trim.lua` trims a stream with what the room keeps about what goes (the trimmed marker,
//!   overlays, tombstones), for `publish.lua` and `change.lua` (a change to a message: checks,
//!   entry, effect and event in one step); `read.lua` moves a read marker; `history.lua` reads
//!   a page of history.
//! - `claim_refresh.lua` and `claim_release.lua` keep and give back a node's claim on its id
//!   (see `claim`); they touch no room.

use std::time::Duration;

use redis::Script;

use super::config::RedisConfig;

/// How long the epoch of a room without history (only joined) lives, at most: no room name a
/// client joins leaves a key for good. A client that resumes it later gets `recovered: false`,
/// which costs it nothing, since there was nothing to recover.
const EMPTY_ROOM_TTL: Duration = Duration::from_secs(3600);

/// Every script the backend runs.
pub(super) struct Scripts {
    pub(super) publish: Script,
    pub(super) change: Script,
    pub(super) read: Script,
    pub(super) history: Script,
    pub(super) presence_join: Script,
    pub(super) presence_leave: Script,
    pub(super) sweep: Script,
    pub(super) list_room: Script,
    pub(super) join: Script,
    pub(super) recovery: Script,
    pub(super) members: Script,
    pub(super) epoch: Script,
    pub(super) claim_refresh: Script,
    pub(super) claim_release: Script,
}

impl Scripts {
    /// The scripts of a node with `config`: they publish with `SPUBLISH` in a cluster, else
    /// `PUBLISH`, and give a room's keys the lifetimes of `config.room_ttl`.
    pub(super) fn new(config: &RedisConfig) -> Self {
        let publish = if config.cluster {
            "SPUBLISH"
        } else {
            "PUBLISH"
        };
        let ms = |ttl: Duration| u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let room_ttl = config.room_ttl.map_or(0, ms);
        let empty_ttl = ms(config
            .room_ttl
            .map_or(EMPTY_ROOM_TTL, |ttl| ttl.min(EMPTY_ROOM_TTL)));
        // What the epoch and side keys get when their lifetime is due again (publish.lua): a
        // quarter more than the stream's, so a publish refreshes them at most once a quarter.
        let keep_ttl = room_ttl.saturating_add(room_ttl / 4);
        let constants = format!(
            "local PUBLISH = '{publish}'\nlocal ROOM_TTL = {room_ttl}\nlocal KEEP_TTL = {keep_ttl}\n\
             local EMPTY_TTL = {empty_ttl}\n"
        );
        let script =
            |parts: &[&str]| Script::new(&[&[constants.as_str()][..], parts].concat().concat());
        // The protocol's byte counts (and the broker's of a change), so the scripts that bound
        // replies count from the same source as the Rust side (see `message_size.lua`,
        // `reads.lua`), and the bounds of reactions.
        let sizes = format!(
            "local NONCE_FRAMING = {}\nlocal MESSAGE_FRAMING = {}\nlocal REPLY_TO_FRAMING = {}\n\
             local EDITED_FRAMING = {}\nlocal DELETED_SIZE = {}\nlocal REACTIONS_FRAMING = {}\n\
             local REACTION_FRAMING = {}\nlocal CHANGE_FRAMING = {}\n",
            skat_protocol::NONCE_FRAMING,
            skat_protocol::MESSAGE_FRAMING,
            skat_protocol::REPLY_TO_FRAMING,
            skat_protocol::EDITED_FRAMING,
            skat_protocol::DELETED_SIZE,
            skat_protocol::REACTIONS_FRAMING,
            skat_protocol::REACTION_FRAMING,
            crate::CHANGE_FRAMING,
        );
        let reads = [
            sizes.as_str(),
            include_str!("lua/message_size.lua"),
            include_str!("lua/state.lua"),
            include_str!("lua/reads.lua"),
        ];
        let with_state = |parts: &[&str]| script(&[&reads[..], parts].concat());
        Self {
            // The hot path: a script defines its fragments' functions on every run it reaches
            // them, so the publish has the trimming of side keys inside the branch that needs it.
            publish: script(&[&publish_script()]),
            change: with_state(&[include_str!("lua/trim.lua"), include_str!("lua/change.lua")]),
            read: with_state(&[include_str!("lua/read.lua")]),
            history: with_state(&[include_str!("lua/history.lua")]),
            presence_join: script(&[
                include_str!("lua/lease.lua"),
                include_str!("lua/join_presence.lua"),
                include_str!("lua/presence_join.lua"),
            ]),
            presence_leave: script(&[include_str!("lua/presence_leave.lua")]),
            sweep: script(&[include_str!("lua/sweep.lua")]),
            list_room: script(&[
                include_str!("lua/lease.lua"),
                include_str!("lua/list_room.lua"),
            ]),
            epoch: script(&[
                include_str!("lua/ensure_epoch.lua"),
                include_str!("lua/epoch.lua"),
            ]),
            join: with_state(&[
                include_str!("lua/recover.lua"),
                include_str!("lua/lease.lua"),
                include_str!("lua/join_presence.lua"),
                include_str!("lua/members_page.lua"),
                include_str!("lua/ensure_epoch.lua"),
                include_str!("lua/join.lua"),
            ]),
            recovery: with_state(&[
                include_str!("lua/recover.lua"),
                include_str!("lua/ensure_epoch.lua"),
                include_str!("lua/recovery.lua"),
            ]),
            members: script(&[
                include_str!("lua/members_page.lua"),
                include_str!("lua/members.lua"),
            ]),
            claim_refresh: Script::new(include_str!("lua/claim_refresh.lua")),
            claim_release: Script::new(include_str!("lua/claim_release.lua")),
        }
    }
}

/// `publish.lua` with state.lua and trim.lua in place of its TRIM_STATE line, inside the branch of
/// a publish that trims a room with changes: a plain publish defines no function.
fn publish_script() -> String {
    let trim = [
        include_str!("lua/state.lua"),
        include_str!("lua/trim.lua"),
        "trim_state(KEYS[1], going)\n",
    ]
    .concat();
    include_str!("lua/publish.lua").replacen("  -- TRIM_STATE\n", &trim, 1)
}

#[cfg(test)]
mod tests {
    use crate::MessageId;

    #[test]
    fn the_publish_trims_side_keys_only_in_its_branch() {
        let script = super::publish_script();
        assert!(!script.contains("-- TRIM_STATE\n"));
        let branch = script.find("if going and").unwrap();
        assert!(script.find("local function trim_state").unwrap() > branch);
        assert!(script.find("local function").unwrap() > branch);
    }

    #[test]
    fn the_recovery_knows_the_extreme_ids() {
        let recover = include_str!("lua/recover.lua");
        assert!(recover.contains(&format!("local MAX_ID = '{}'", MessageId::MAX)));
        assert!(recover.contains(&format!("local MIN_ID = '{}'", MessageId::MIN)));
    }
}
