-- Schema v1 of the embedded node's journal (issue 23). One table per concern; ids are a room's
-- (ms, seq) pairs, stored as two integers. Applied by the migration runner, which records the
-- version in `PRAGMA user_version`.

-- Each room the node has held, with its epoch (unchanged across restarts) and the id of the
-- newest entry trimmed from its log (none yet: NULL), which a `since` may still name.
CREATE TABLE rooms (
    name        TEXT PRIMARY KEY NOT NULL,
    epoch       TEXT NOT NULL,
    trimmed_ms  INTEGER,
    trimmed_seq INTEGER
) WITHOUT ROWID;

-- Each room's ordered log: messages and changes (edits, deletes, reactions) in one id sequence,
-- as the embedded ring holds them. A message row is kept in its current state: the writer
-- applies each change to its target (body, edited_ms, deleted), so a load reads state, it does
-- not replay. A rowid table, not WITHOUT ROWID: the full-text index below is an external-content
-- FTS5 table, which addresses its content by integer rowid.
CREATE TABLE entries (
    id          INTEGER PRIMARY KEY,
    room        TEXT NOT NULL REFERENCES rooms (name) ON DELETE CASCADE,
    ms          INTEGER NOT NULL,
    seq         INTEGER NOT NULL,
    -- 'message', 'edited', 'deleted' or 'reacted'.
    kind        TEXT NOT NULL CHECK (kind IN ('message', 'edited', 'deleted', 'reacted')),
    -- A message's sender, an edit's or delete's `by`, a reaction's `user`.
    author      TEXT NOT NULL,
    -- A message's body ('' once deleted), an edit's new body; NULL otherwise.
    body        TEXT,
    ts          INTEGER NOT NULL,
    nonce       TEXT,
    reply_to_ms  INTEGER,
    reply_to_seq INTEGER,
    -- The message a change changes.
    target_ms   INTEGER,
    target_seq  INTEGER,
    -- A message's current state: when last edited, whether deleted.
    edited_ms   INTEGER,
    deleted     INTEGER NOT NULL DEFAULT 0,
    -- A reaction's emoji, whether added, and the emoji's resulting count.
    emoji       TEXT,
    added       INTEGER,
    count       INTEGER,
    UNIQUE (room, ms, seq)
);

-- Every user reacting to a message, per emoji: what the ring keeps beside a message's summary.
-- `at_*` is the id of the reaction that added it, so a load restores first-appeared order.
CREATE TABLE reactions (
    room       TEXT NOT NULL,
    ms         INTEGER NOT NULL,
    seq        INTEGER NOT NULL,
    emoji      TEXT NOT NULL,
    user       TEXT NOT NULL,
    at_ms      INTEGER NOT NULL,
    at_seq     INTEGER NOT NULL,
    PRIMARY KEY (room, ms, seq, emoji, user),
    FOREIGN KEY (room, ms, seq) REFERENCES entries (room, ms, seq) ON DELETE CASCADE
) WITHOUT ROWID;

-- Users' read markers: everything up to (ms, seq) is read.
CREATE TABLE read_markers (
    room TEXT NOT NULL REFERENCES rooms (name) ON DELETE CASCADE,
    user TEXT NOT NULL,
    ms   INTEGER NOT NULL,
    seq  INTEGER NOT NULL,
    PRIMARY KEY (room, user)
) WITHOUT ROWID;

-- The dedup window: the id (and a change's count) accepted under each nonce, until it expires.
CREATE TABLE nonces (
    room       TEXT NOT NULL REFERENCES rooms (name) ON DELETE CASCADE,
    space      TEXT NOT NULL,
    who        TEXT NOT NULL,
    nonce      TEXT NOT NULL,
    ms         INTEGER NOT NULL,
    seq        INTEGER NOT NULL,
    count      INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL,
    PRIMARY KEY (room, space, who, nonce)
) WITHOUT ROWID;

CREATE INDEX nonces_expiry ON nonces (expires_ms);

-- Full-text index over messages' bodies (the later search step), external content: the
-- writer inserts a message's body, and removes it when the message is edited or deleted.
CREATE VIRTUAL TABLE entries_fts USING fts5 (body, content = 'entries', content_rowid = 'id');

-- FTS5's own secure delete: a removed body's tokens leave the index's pages too.
INSERT INTO entries_fts (entries_fts, rank) VALUES ('secure-delete', 1);
