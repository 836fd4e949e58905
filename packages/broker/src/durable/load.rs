//! What a node reads at startup, on a connection of its own (the writer's stays the writer's):
//! every room with its epoch, its last N entries (N = the history length) in id order, its read
//! markers and its unexpired nonces. Messages come in their current state, as the writer kept
//! them (edited body, deleted flag, reactions), so nothing is replayed.

use std::collections::HashMap;
use std::path::Path;

use rusqlite::{Connection, OptionalExtension as _, Row, params};
use skat_protocol::{Deleted, Edited, Extras, REACTION_USERS_SHOWN, Reacted, Reaction};

use super::DurableError;
use crate::{Change, Message, MessageId};

/// What the journal holds, as a node rebuilds its rooms from it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Loaded {
    /// Every room, by name.
    pub rooms: Vec<LoadedRoom>,
}

/// One room as stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadedRoom {
    /// The room.
    pub name: String,
    /// Its epoch.
    pub epoch: String,
    /// Its last entries, oldest first.
    pub entries: Vec<LoadedEntry>,
    /// The newest id no longer in `entries` (trimmed from the file, or older than the entries
    /// loaded), if any: the ring's `trimmed`, which a `since` may name.
    pub trimmed: Option<MessageId>,
    /// Every user reacting to each loaded message that has reactions: per emoji, every user,
    /// earliest first (what the ring keeps beside a message's summary). Emojis come in the
    /// order of their earliest remaining reactor, which is the ring's "first appeared" order
    /// unless an emoji's first reactors took theirs back while others still react with it.
    pub reactors: Vec<Reactors>,
    /// Users' read markers.
    pub markers: Vec<(String, MessageId)>,
    /// The unexpired nonces.
    pub nonces: Vec<LoadedNonce>,
}

/// Every user reacting to one message: per emoji (first appeared first), the users, earliest
/// first.
pub type Reactors = (MessageId, Vec<(String, Vec<String>)>);

/// One entry of a room's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadedEntry {
    /// A message in its current state.
    Message(Message),
    /// A change.
    Change(Change),
}

impl LoadedEntry {
    /// The entry's id.
    pub fn id(&self) -> MessageId {
        match self {
            Self::Message(m) => m.id,
            Self::Change(c) => c.id().unwrap_or(MessageId::MIN),
        }
    }
}

/// A remembered nonce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedNonce {
    /// The request kind's nonce space.
    pub space: String,
    /// The sender.
    pub who: String,
    /// The nonce.
    pub nonce: String,
    /// The id accepted under it.
    pub id: MessageId,
    /// A change's count (0 otherwise).
    pub count: u32,
    /// When it expires, in Unix milliseconds.
    pub expires_ms: u64,
}

/// Reads everything (see the module's doc), at most `history_len` entries per room, nonces
/// expiring after `now_ms`.
pub(super) fn load(
    conn: &Connection,
    path: &Path,
    history_len: usize,
    now_ms: u64,
) -> Result<Loaded, DurableError> {
    read(conn, None, history_len, now_ms).map_err(|e| DurableError::sqlite(path, &e))
}

/// [`load`] of one room (a broker puts a room back so after a failed commit), if stored.
pub(super) fn load_room(
    conn: &Connection,
    path: &Path,
    room: &str,
    (history_len, now_ms): (usize, u64),
) -> Result<Option<LoadedRoom>, DurableError> {
    read(conn, Some(room), history_len, now_ms)
        .map(|loaded| loaded.rooms.into_iter().next())
        .map_err(|e| DurableError::sqlite(path, &e))
}

/// Every room, or `only` that one.
pub(super) fn read(
    conn: &Connection,
    only: Option<&str>,
    history_len: usize,
    now_ms: u64,
) -> rusqlite::Result<Loaded> {
    let mut rooms: Vec<LoadedRoom> = conn
        .prepare(
            "SELECT name, epoch, trimmed_ms, trimmed_seq FROM rooms
             WHERE ?1 IS NULL OR name = ?1 ORDER BY name",
        )?
        .query_map(params![only], |row| {
            let trimmed = match (row.get(2)?, row.get(3)?) {
                (Some(ms), Some(seq)) => Some(MessageId { ms, seq }),
                _ => None,
            };
            Ok(LoadedRoom {
                name: row.get(0)?,
                epoch: row.get(1)?,
                trimmed,
                ..LoadedRoom::default()
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    let limit = i64::try_from(history_len).unwrap_or(i64::MAX);
    let mut entries = conn.prepare(
        "SELECT ms, seq, kind, author, body, ts, nonce, reply_to_ms, reply_to_seq, target_ms,
                target_seq, edited_ms, deleted, emoji, added, count
         FROM entries WHERE room = ?1 ORDER BY ms DESC, seq DESC LIMIT ?2",
    )?;
    let mut reactions = conn.prepare(
        "SELECT ms, seq, emoji, user FROM reactions WHERE room = ?1
         ORDER BY ms, seq, at_ms, at_seq",
    )?;
    let mut unloaded = conn.prepare(
        "SELECT ms, seq FROM entries WHERE room = ?1 ORDER BY ms DESC, seq DESC LIMIT 1 OFFSET ?2",
    )?;
    let mut markers = conn.prepare("SELECT user, ms, seq FROM read_markers WHERE room = ?1")?;
    let mut nonces = conn.prepare(
        "SELECT space, who, nonce, ms, seq, count, expires_ms FROM nonces
         WHERE room = ?1 AND expires_ms > ?2 ORDER BY expires_ms",
    )?;
    for room in &mut rooms {
        let mut list = entries
            .query_map(params![room.name, limit], |row| entry(&room.name, row))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        list.reverse();
        room.entries = list.into_iter().flatten().collect();
        let older = unloaded
            .query_row(params![room.name, limit], |row| {
                Ok(MessageId {
                    ms: row.get(0)?,
                    seq: row.get(1)?,
                })
            })
            .optional()?;
        room.trimmed = room.trimmed.max(older);
        room.reactors = reactors(&mut reactions, room)?;
        room.markers = markers
            .query_map(params![room.name], |row| {
                Ok((
                    row.get(0)?,
                    MessageId {
                        ms: row.get(1)?,
                        seq: row.get(2)?,
                    },
                ))
            })?
            .collect::<rusqlite::Result<_>>()?;
        room.nonces = nonces
            .query_map(params![room.name, now_ms], |row| {
                Ok(LoadedNonce {
                    space: row.get(0)?,
                    who: row.get(1)?,
                    nonce: row.get(2)?,
                    id: MessageId {
                        ms: row.get(3)?,
                        seq: row.get(4)?,
                    },
                    count: row.get(5)?,
                    expires_ms: row.get(6)?,
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
    }
    Ok(Loaded { rooms })
}

/// Reads the room's reactors, keeps those of loaded messages, and sets each message's summary
/// (count, first users shown) from them.
fn reactors(
    stmt: &mut rusqlite::Statement<'_>,
    room: &mut LoadedRoom,
) -> rusqlite::Result<Vec<Reactors>> {
    let mut by_message: Vec<Reactors> = Vec::new();
    let rows = stmt.query_map(params![room.name], |row| {
        Ok((
            MessageId {
                ms: row.get(0)?,
                seq: row.get(1)?,
            },
            row.get::<_, String>(2)?,
            row.get::<_, String>(3)?,
        ))
    })?;
    for row in rows {
        let (id, emoji, user) = row?;
        if by_message.last().is_none_or(|(last, _)| *last != id) {
            by_message.push((id, Vec::new()));
        }
        let Some((_, emojis)) = by_message.last_mut() else {
            continue;
        };
        match emojis.iter_mut().find(|(e, _)| *e == emoji) {
            Some((_, users)) => users.push(user),
            None => emojis.push((emoji, vec![user])),
        }
    }
    let mut positions: HashMap<MessageId, usize> = HashMap::new();
    for (i, entry) in room.entries.iter().enumerate() {
        if let LoadedEntry::Message(m) = entry {
            positions.insert(m.id, i);
        }
    }
    by_message.retain(|(id, _)| positions.contains_key(id));
    for (id, emojis) in &by_message {
        if let Some(LoadedEntry::Message(m)) =
            positions.get(id).and_then(|&i| room.entries.get_mut(i))
        {
            m.extras_mut().reactions = emojis
                .iter()
                .map(|(emoji, users)| Reaction {
                    emoji: emoji.clone(),
                    count: u32::try_from(users.len()).unwrap_or(u32::MAX),
                    users: users.iter().take(REACTION_USERS_SHOWN).cloned().collect(),
                })
                .collect();
        }
    }
    Ok(by_message)
}

/// One row of `entries` (`None` for a kind this version does not know: a later one may add).
fn entry(room: &str, row: &Row<'_>) -> rusqlite::Result<Option<LoadedEntry>> {
    let id = MessageId {
        ms: row.get(0)?,
        seq: row.get(1)?,
    };
    let kind: String = row.get(2)?;
    let author: String = row.get(3)?;
    let body: Option<String> = row.get(4)?;
    let ts: u64 = row.get(5)?;
    let nonce: Option<String> = row.get(6)?;
    let pair = |ms: usize, seq: usize| -> rusqlite::Result<Option<MessageId>> {
        Ok(
            match (
                row.get::<_, Option<u64>>(ms)?,
                row.get::<_, Option<u64>>(seq)?,
            ) {
                (Some(ms), Some(seq)) => Some(MessageId { ms, seq }),
                _ => None,
            },
        )
    };
    let target = pair(9, 10)?.unwrap_or(MessageId::MIN);
    let room = room.to_owned();
    Ok(Some(match kind.as_str() {
        "message" => {
            let extras = Extras {
                reply_to: pair(7, 8)?,
                edited: row.get(11)?,
                deleted: row.get(12)?,
                reactions: Vec::new(),
            };
            LoadedEntry::Message(Message {
                room,
                id,
                from: author,
                body: body.unwrap_or_default(),
                ts,
                nonce,
                extras: (!extras.is_empty()).then(|| Box::new(extras)),
            })
        }
        "edited" => LoadedEntry::Change(Change::Edited(Edited {
            room,
            id,
            target,
            by: author,
            body: body.unwrap_or_default(),
            ts,
            nonce,
        })),
        "deleted" => LoadedEntry::Change(Change::Deleted(Deleted {
            room,
            id,
            target,
            by: author,
            ts,
            nonce,
        })),
        "reacted" => LoadedEntry::Change(Change::Reacted(Reacted {
            room,
            id,
            target,
            user: author,
            emoji: row.get::<_, Option<String>>(13)?.unwrap_or_default(),
            add: row.get::<_, Option<bool>>(14)?.unwrap_or_default(),
            count: row.get::<_, Option<u32>>(15)?.unwrap_or_default(),
            nonce,
        })),
        _ => return Ok(None),
    }))
}
