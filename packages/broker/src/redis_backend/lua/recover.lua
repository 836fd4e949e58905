-- Defines `recover(keys, since, limit, max_bytes, fixed)`: what a client that saw `since` missed,
-- oldest first, if `since` is an id of this history and what followed it is all kept and within
-- both bounds (`limit` entries, `max_bytes` as entry_size counts them, `fixed` the bytes every
-- message counts beyond its fields); else nil. `keys`: {stream, trimmed, state, gone, erased}.
-- What followed: the messages after `since` in their current state (tombstones merged, overlays
-- appended) and the changes after it to messages at or before it (edits erased with their
-- message included, as edits of nothing). After message_size.lua, state.lua and reads.lua.
local MAX_ID = '18446744073709551615-18446744073709551615'
local MIN_ID = '0-0'
local CHUNK = 100
local function recover(keys, since, limit, max_bytes, fixed)
  local stream, trimmed_key, state, gone, erased_key = keys[1], keys[2], keys[3], keys[4], keys[5]
  if redis.call('EXISTS', stream) ~= 1 then return nil end
  local trimmed = redis.call('GET', trimmed_key)
  local recoverable = true
  if trimmed then
    local tm, ts = id_parts(trimmed)
    local sm, ss = id_parts(since)
    recoverable = tm < sm or (tm == sm and ts <= ss)
  end
  -- `since` must be an id of this history: a kept entry's (or one a delete took out of the
  -- stream), the newest trimmed one, or an anchor (nothing is after MAX_ID; everything is after
  -- MIN_ID while nothing was trimmed). Any other (one from a history Redis lost, whatever the
  -- epoch says) would pass the new history off as what followed it.
  local anchored = since == MAX_ID or since == trimmed or (since == MIN_ID and not trimmed)
  if recoverable and not anchored then
    recoverable = #redis.call('XRANGE', stream, since, since) == 1
      or erased(gone, erased_key, since)
  end
  if not recoverable then return nil end
  if since == MAX_ID then return {} end
  local missed = {}
  local start = '(' .. since
  while true do
    local chunk = redis.call('XRANGE', stream, start, '+', 'COUNT', CHUNK)
    for _, entry in ipairs(chunk) do
      if not is_change(entry) or not id_less(since, entry[2][4]) then
        if #missed == limit then return nil end
        missed[#missed + 1] = entry
      end
    end
    if #chunk < CHUNK then break end
    start = '(' .. chunk[#chunk][1]
  end
  local merged = false
  -- More tombstones read than the limit (those sharing `since`'s millisecond included, which
  -- are filtered out after the read): answer not-recovered rather than risk one cut off.
  local dead, dead_read = gone_between(gone, since, nil, limit + 1, tombstone)
  if dead_read > limit then return nil end
  for _, entry in ipairs(dead) do
    missed[#missed + 1] = entry
    merged = true
  end
  -- Erased edits after `since` whose message is after it too are its tombstone's, not told: a
  -- read of more than twice the limit answers not-recovered rather than reading them all.
  local edits, read = gone_between(erased_key, since, nil, 2 * limit + 1, erased_edit)
  if read > 2 * limit then return nil end
  for _, entry in ipairs(edits) do
    if not id_less(since, entry[2][4]) then
      missed[#missed + 1] = entry
      merged = true
    end
  end
  if #missed > limit then return nil end
  if merged then table.sort(missed, function(a, b) return id_less(a[1], b[1]) end) end
  with_overlays(state, missed)
  local bytes = 0
  for _, entry in ipairs(missed) do
    bytes = bytes + entry_size(fixed, entry)
    if bytes > max_bytes then return nil end
  end
  return missed
end
