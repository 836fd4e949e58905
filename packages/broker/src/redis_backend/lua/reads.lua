-- The reads of a room's messages in their current state (issue 22, formats in state.lua):
-- what an entry's extras and a change count in a reply, the reads that skip changes, merge
-- tombstones and apply overlays, and unread counts. After the sizes' constants (scripts.rs),
-- message_size.lua and state.lua.

-- The bytes `s` takes in a JSON string, as skat_protocol::escaped_len counts them.
local function escaped_len(s)
  local _, escapes = string.gsub(s, '[%z\1-\31"\\]', '')
  if escapes == 0 then return #s end
  local _, short = string.gsub(s, '[\b\t\n\f\r"\\]', '')
  return #s + short + 5 * (escapes - short)
end

-- The field value of a message's fields (`d`, `y`, `x`, `o`), or nil.
local function field(entry, name)
  local fields = entry[2]
  for i = 1, #fields, 2 do
    if fields[i] == name then return fields[i + 1] end
  end
  return nil
end

-- The parts of a stored text `<who>\n<nonce length or ->\n<nonce><rest>`: who, nonce (or nil),
-- rest.
local function split_text(text)
  local first = string.find(text, '\n', 1, true)
  local second = first and string.find(text, '\n', first + 1, true)
  if not second then return nil end
  local length = string.sub(text, first + 1, second - 1)
  local who = string.sub(text, 1, first - 1)
  if length == '-' then return who, nil, string.sub(text, second + 1) end
  local n = tonumber(length) or 0
  return who, string.sub(text, second + 1, second + n), string.sub(text, second + n + 1)
end

-- The bytes a message's extras add to skat_protocol::message_size, and the difference an edited
-- body makes, for an entry as the read scripts return it (`y`, `x`, `o` fields).
local function extras_size(entry)
  local bytes = 0
  if field(entry, 'x') then return DELETED_SIZE end
  local reply = field(entry, 'y')
  if reply then bytes = bytes + REPLY_TO_FRAMING + #reply end
  local overlay = field(entry, 'o')
  if not overlay then return bytes end
  local o = parse_overlay(overlay)
  if o.edited then
    local _, _, body = split_text(field(entry, 'd'))
    bytes = bytes + EDITED_FRAMING + #o.edited + escaped_len(o.body) - escaped_len(body or '')
  end
  if #o.reactions > 0 then
    bytes = bytes + REACTIONS_FRAMING + #o.reactions - 1
    for _, r in ipairs(o.reactions) do
      bytes = bytes + REACTION_FRAMING + escaped_len(r.emoji) + #tostring(r.count)
      for _, user in ipairs(r.users) do bytes = bytes + 3 + escaped_len(user) end
      if #r.users > 0 then bytes = bytes - 1 end
    end
  end
  return bytes
end

-- What a change entry counts in a recovery, as skat_broker::change_size does: CHANGE_FRAMING,
-- the room (in `fixed`, beyond the message framing), who, the body or emoji, the nonce.
local function change_size(fixed, entry)
  local who, nonce, rest = split_text(field(entry, 'd'))
  local kind = entry[2][2]
  local bytes = CHANGE_FRAMING + fixed - MESSAGE_FRAMING + escaped_len(who or '')
  if nonce then bytes = bytes + escaped_len(nonce) end
  if kind == 'e' then
    bytes = bytes + escaped_len(rest or '')
  elseif kind == 'r' then
    local nl = string.find(rest, '\n', 1, true)
    bytes = bytes + escaped_len(string.sub(rest, nl + 1))
  end
  return bytes
end

-- What an entry read for a reply counts (messages exactly as the protocol, changes as above).
local function entry_size(fixed, entry)
  if is_change(entry) then return change_size(fixed, entry) end
  return message_size(fixed, entry[1], field(entry, 'd')) + extras_size(entry)
end

-- The tombstone of a deleted message, as an entry: its author, no body, `x`.
local function tombstone(member)
  local nl = string.find(member, '\n', 1, true)
  return {string.sub(member, 1, nl - 1), {'d', string.sub(member, nl + 1) .. '\n-\n', 'x', '1'}}
end

-- An edit erased with its message, as an entry: an edit of nothing, `x`.
local function erased_edit(member)
  local a = string.find(member, '\n', 1, true)
  local b = string.find(member, '\n', a + 1, true)
  local by = string.sub(member, b + 1)
  return {string.sub(member, 1, a - 1),
    {'k', 'e', 't', string.sub(member, a + 1, b - 1), 'd', by .. '\n-\n', 'x', '1'}}
end

-- Members of a gone set with ids in (after, before) (nil: unbounded), as entries made by `make`,
-- at most `limit` read (nil: all), newest first, and how many were read.
local function gone_between(key, after, before, limit, make)
  local hi = before and tostring((id_parts(before))) or '+inf'
  local lo = after and tostring((id_parts(after))) or '-inf'
  local members
  if limit then
    members = redis.call('ZREVRANGEBYSCORE', key, hi, lo, 'LIMIT', 0, limit)
  else
    members = redis.call('ZREVRANGEBYSCORE', key, hi, lo)
  end
  local out = {}
  for _, member in ipairs(members) do
    local entry = make(member)
    if (not after or id_less(after, entry[1])) and (not before or id_less(entry[1], before)) then
      out[#out + 1] = entry
    end
  end
  return out, #members
end

-- Appends each message entry's overlay (`o`) to it, with one HMGET, if the room has any.
local function with_overlays(state, entries)
  if redis.call('EXISTS', state) == 0 then return entries end
  local ids, at = {}, {}
  for i, entry in ipairs(entries) do
    if not is_change(entry) and not field(entry, 'x') then
      ids[#ids + 1] = entry[1]
      at[#at + 1] = i
    end
  end
  if #ids == 0 then return entries end
  local overlays = redis.call('HMGET', state, unpack(ids))
  for j, overlay in ipairs(overlays) do
    if overlay then
      local fields = entries[at[j]][2]
      fields[#fields + 1] = 'o'
      fields[#fields + 1] = overlay
    end
  end
  return entries
end

-- Whether `id` is a message or change of this history that is gone from the stream by a delete.
local function erased(gone, erased_key, id)
  local ms = tostring((id_parts(id)))
  for _, key in ipairs({gone, erased_key}) do
    for _, member in ipairs(redis.call('ZRANGEBYSCORE', key, ms, ms)) do
      if string.sub(member, 1, #id + 1) == id .. '\n' then return true end
    end
  end
  return false
end

-- The latest `count` messages below `before` ('' for the end), newest first, in their current
-- state: the stream read in chunks skipping changes, tombstones merged in the same id range.
local function latest(stream, state, gone, before, count)
  local out = {}
  local top = before == '' and '+' or '(' .. before
  local low
  if count > 0 and top ~= '(0-0' then
    while true do
      local chunk = redis.call('XREVRANGE', stream, top, '-', 'COUNT', 100)
      for _, entry in ipairs(chunk) do
        if not is_change(entry) then
          out[#out + 1] = entry
          if #out == count then low = entry[1] break end
        end
      end
      if low or #chunk < 100 then break end
      top = '(' .. chunk[#chunk][1]
    end
  end
  if count > 0 and redis.call('EXISTS', gone) == 1 then
    local dead = gone_between(gone, low, before ~= '' and before or nil, count + 64, tombstone)
    if #dead > 0 then
      for _, entry in ipairs(dead) do out[#out + 1] = entry end
      table.sort(out, function(a, b) return id_less(b[1], a[1]) end)
      while #out > count do out[#out] = nil end
    end
  end
  return with_overlays(state, out)
end

-- Messages after `marker` ('' for all) that are not deleted, up to `cap` ("that many or more").
-- A deleted message is out of the stream and `changes` counts the change entries in it, so
-- XLEN - changes is the room's count of messages: a user without a marker is answered from it
-- at once. A scan after a marker reads at most UNREAD_SCAN * cap entries; past that bound (a
-- room with thousands of changes after the marker) it answers the room's count of messages,
-- capped: never fewer than are unread, at most a count that includes older messages. A join or
-- read so costs the same however many changes a room has.
local UNREAD_SCAN = 2
local function unread_after(stream, state, marker, cap)
  local messages = redis.call('XLEN', stream) - (tonumber(redis.call('HGET', state, 'changes')) or 0)
  if marker == '' or messages <= 0 then
    return math.max(math.min(messages, cap), 0)
  end
  local start = '(' .. marker
  local n, read = 0, 0
  while true do
    local chunk = redis.call('XRANGE', stream, start, '+', 'COUNT', 200)
    for _, entry in ipairs(chunk) do
      if not is_change(entry) then
        n = n + 1
        if n == cap then return n end
      end
    end
    read = read + #chunk
    if #chunk < 200 then return n end
    if read >= UNREAD_SCAN * cap then return math.min(messages, cap) end
    start = '(' .. chunk[#chunk][1]
  end
end
