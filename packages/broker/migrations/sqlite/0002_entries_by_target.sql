-- Schema v2 (issue 23, step 4): changes by the message they target. Deleting a message blanks
-- its edits' bodies, and a retention sweep drops the changes of expired messages; both find
-- them by their target, which without this index is a scan of the room's whole log (up to the
-- history length) per delete. Partial: messages have no target and are most rows.
CREATE INDEX entries_by_target ON entries (room, target_ms, target_seq)
    WHERE target_ms IS NOT NULL;
