-- The current state of a room's messages (issue 22): its formats, and what every script that
-- writes or trims a room's stream needs of them (the publish of a plain message too, so no more:
-- the reads are reads.lua). After the constants of scripts.rs.
-- `{room}:state`, a hash: message id -> overlay, the current state of a message that changed and
-- is not deleted: `<edited ms or ''>\n<reactions>\n`, then per
-- reaction `<emoji>\n<count>\n<users shown>\n` and those users one a line (the earliest
-- REACTION_USERS_SHOWN), then the edited body (the rest). `<id>\n<emoji>\n<user>` -> the user's
-- place among that emoji's reactors (`reactor_place` in change.lua), so a repeat is found
-- with one HGET. `{room}:reactors`: every reactor in place order, a sorted set with every score
-- 0, member `<id>\n<emoji>\n<place>\n<user>`, read only to bring the next earliest into view
-- when a shown one leaves. `<id>\nedits` -> the ids of its edits, space separated, read only by a delete (which
-- erases them), so the overlay every page reads stays small. A message without edit or reaction
-- has no overlay. `changes` -> how many change entries the stream holds (absent: none, as in
-- most rooms), so an unread count knows when XLEN is it.
-- `{room}:gone`: tombstones, a sorted set scored by the id's ms, member `<id>\n<author>`: the
-- message's entry is XDELed (no read returns its body; Redis frees its bytes with the stream node), its place kept. `{room}:erased`: the same
-- for the edits of a deleted message (their bodies went with it), member `<id>\n<target>\n<by>`.
-- Change entries of the stream have `k` (e, d, r) as their first field, then `t` (target) and `d`
-- (`<by>\n<nonce length or ->\n<nonce><payload>`: an edit's body, nothing for a delete, a
-- reaction's `<1 add|0 remove><count>\n<emoji>`); messages are `d` (codec.rs) and, replying, `y`.
local function id_parts(id)
  local dash = string.find(id, '-', 1, true)
  return tonumber(string.sub(id, 1, dash - 1)), tonumber(string.sub(id, dash + 1))
end

-- Whether id a < id b.
local function id_less(a, b)
  local am, as = id_parts(a)
  local bm, bs = id_parts(b)
  return am < bm or (am == bm and as < bs)
end

local function is_change(entry)
  return entry[2][1] == 'k'
end

local function parse_overlay(text)
  local o = {reactions = {}}
  local pos = 1
  local function line()
    local nl = string.find(text, '\n', pos, true)
    local value = string.sub(text, pos, nl - 1)
    pos = nl + 1
    return value
  end
  local edited = line()
  if edited ~= '' then o.edited = edited end
  local n = tonumber(line())
  for i = 1, n do
    local r = {emoji = line(), count = tonumber(line()), users = {}}
    local shown = tonumber(line())
    for j = 1, shown do r.users[j] = line() end
    o.reactions[i] = r
  end
  o.body = string.sub(text, pos)
  return o
end

-- The room key `kind` (state, gone, erased, read) of the room whose stream key is `stream`: the
-- side keys are named after the stream key (`...:stream` -> `...:state`), so a script passes no
-- key more for them (the same room, the same slot).
local function side_key(stream, kind)
  return string.sub(stream, 1, -7) .. kind
end

-- Adds `n` to the count of the stream's change entries (`changes` of the state hash).
local function count_changes(state, n)
  if n ~= 0 and redis.call('HINCRBY', state, 'changes', n) <= 0 then
    redis.call('HDEL', state, 'changes')
  end
end
