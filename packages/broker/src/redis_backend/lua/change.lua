-- A change to an earlier message of the room (`Broker::change`): the checks, the change's entry,
-- its effect on the message's current state (state.lua) and its event, in one step, so that two
-- nodes cannot race and every node reads the same. After message_size.lua, state.lua, reads.lua
-- and trim.lua.
-- KEYS: stream, channel, trimmed marker, dedup key (its kind's key space, see publish.rs), epoch,
-- state, gone, erased. ARGV: maxlen, kind (e, d, r), target, by, `<by>\n<nonce length or
-- ->\n<nonce>`, how long the dedup key lives in ms, as author (1/0), the edit's body or the
-- reaction's emoji, add (1/0, reactions), the most distinct emoji per message, users shown per
-- emoji.
-- Returns {outcome, id, count}: `new` (the change's id, a reaction's resulting count), `dup` (a
-- retry: the original's id and count), `same` (a reaction that repeats the user's current one:
-- stored nowhere; the emoji's count), or a refusal: `nosuch`, `notauthor`, `toomany`.
-- A delete XDELs the message's entry and its edits' (their bodies go from Redis) and keeps their
-- places as a tombstone (`gone`) and erased edits (`erased`), then trims the stream further if
-- those places and the stream's entries are more than `maxlen` together (see `trim_holes`).
local function encode_overlay(o)
  local parts = {o.edited or '', #o.reactions}
  for _, r in ipairs(o.reactions) do
    parts[#parts + 1] = r.emoji
    parts[#parts + 1] = r.count
    parts[#parts + 1] = #r.users
    for _, user in ipairs(r.users) do parts[#parts + 1] = user end
  end
  parts[#parts + 1] = o.body
  return table.concat(parts, '\n')
end

-- The place of a reaction with id `id` among its emoji's reactors: the id, each part
-- zero-padded to 20 digits, so places sort by bytes as ids do.
local function reactor_place(id)
  local dash = string.find(id, '-', 1, true)
  local ms, seq = string.sub(id, 1, dash - 1), string.sub(id, dash + 1)
  return string.rep('0', 20 - #ms) .. ms .. '-' .. string.rep('0', 20 - #seq) .. seq
end

-- Trims the oldest entries of the stream (as the XADD's MAXLEN would, marker and side keys
-- included) until its entries and the places a delete took out of it (tombstones, erased edits)
-- are at most `maxlen` together. Run after a delete, the only step that adds places: an XADD
-- keeps the stream at `maxlen`, so the places stay at most `maxlen` too, whatever a message's
-- count of edits (each of them is an erased place once it is deleted), and a `since` older than
-- what this drops answers not-recovered like one older than any trim.
local function trim_holes(stream, trimmed_key, maxlen)
  local gone, erased_key = side_key(stream, 'gone'), side_key(stream, 'erased')
  while true do
    local len = redis.call('XLEN', stream)
    local over = len + redis.call('ZCARD', gone) + redis.call('ZCARD', erased_key) - maxlen
    if over <= 0 or len == 0 then return end
    -- In steps (holes among the oldest go with them, so the next step may need fewer entries),
    -- each reading a bounded number of entries.
    local going = redis.call('XRANGE', stream, '-', '+', 'COUNT', math.min(over, 100))
    redis.call('SET', trimmed_key, going[#going][1])
    redis.call('XTRIM', stream, 'MAXLEN', len - #going)
    trim_state(stream, going)
  end
end

local stream, state = KEYS[1], KEYS[6]
-- The dedup key (of this kind of change's nonces) holds `<id> <count>`: a retry is answered
-- with the original's count, not today's.
local original = redis.call('GET', KEYS[4])
if original then
  redis.call('SET', KEYS[4], original, 'KEEPTTL')
  local space = string.find(original, ' ', 1, true)
  local id = space and string.sub(original, 1, space - 1) or original
  -- An edit of a message deleted since (erased with it, its body gone): nothing to answer with.
  if ARGV[2] == 'e' and erased(KEYS[7], KEYS[8], id) then return {'nosuch', '', 0} end
  if not space then return {'dup', original, 0} end
  return {'dup', id, tonumber(string.sub(original, space + 1))}
end
local kind, target, by = ARGV[2], ARGV[3], ARGV[4]
local entry = redis.call('XRANGE', stream, target, target)[1]
if not entry or is_change(entry) then return {'nosuch', '', 0} end
local author = split_text(field(entry, 'd'))
local overlay = redis.call('HGET', state, target)
local o = overlay and parse_overlay(overlay) or {reactions = {}, body = ''}
local rest, count = '', 0
local reactor_field, reactor_prefix, reactors
if kind == 'r' then
  -- O(1) in the emoji's reactors (besides the log of their count): the user's own field, and
  -- the sorted set only to bring the next earliest into view when a shown one leaves.
  local emoji, add = ARGV[8], ARGV[9] == '1'
  local shown = tonumber(ARGV[11])
  reactors = side_key(stream, 'reactors')
  reactor_prefix = target .. '\n' .. emoji .. '\n'
  reactor_field = reactor_prefix .. by
  local place = redis.call('HGET', state, reactor_field)
  local slot
  for i, r in ipairs(o.reactions) do
    if r.emoji == emoji then slot = i end
  end
  count = slot and o.reactions[slot].count or 0
  if (place ~= false) == add then return {'same', '', count} end
  if add then
    if not slot then
      if #o.reactions >= tonumber(ARGV[10]) then return {'toomany', '', 0} end
      o.reactions[#o.reactions + 1] = {emoji = emoji, count = 0, users = {}}
      slot = #o.reactions
    end
    count = count + 1
  else
    count = count - 1
  end
  local r = o.reactions[slot]
  r.count = count
  if add then
    -- The newest reactor: shown only while fewer are.
    if #r.users < shown then r.users[#r.users + 1] = by end
  else
    redis.call('HDEL', state, reactor_field)
    redis.call('ZREM', reactors, reactor_prefix .. place .. '\n' .. by)
    for i, user in ipairs(r.users) do
      if user == by then
        table.remove(r.users, i)
        -- The shown were the earliest: the next earliest is the first past them.
        local next_one = redis.call('ZRANGE', reactors, '[' .. reactor_prefix,
          '(' .. target .. '\n' .. emoji .. '\v', 'BYLEX', 'LIMIT', shown - 1, 1)[1]
        if next_one then
          r.users[#r.users + 1] = string.sub(next_one, #reactor_prefix + #place + 2)
        end
        break
      end
    end
  end
  if count == 0 then table.remove(o.reactions, slot) end
  rest = (add and '1' or '0') .. count .. '\n' .. emoji
elseif ARGV[7] == '1' and author ~= by then
  return {'notauthor', '', 0}
elseif kind == 'e' then
  rest = ARGV[8]
end
local encoded = ARGV[5] .. rest
local maxlen = tonumber(ARGV[1])
local going = trim_going(stream, KEYS[3], maxlen)
local id = redis.call('XADD', stream, 'MAXLEN', maxlen, '*', 'k', kind, 't', target, 'd', encoded)
local changes = 1
if kind == 'd' then
  redis.call('XDEL', stream, target)
  redis.call('ZADD', KEYS[7], (id_parts(target)), target .. '\n' .. author)
  for edit in string.gmatch(redis.call('HGET', state, target .. '\nedits') or '', '[^ ]+') do
    local e = redis.call('XRANGE', stream, edit, edit)[1]
    if e then
      local editor = split_text(field(e, 'd'))
      redis.call('XDEL', stream, edit)
      redis.call('ZADD', KEYS[8], (id_parts(edit)), edit .. '\n' .. target .. '\n' .. editor)
      changes = changes - 1
    end
  end
  if overlay then forget_overlay(state, target, overlay) end
else
  if kind == 'e' then
    o.edited = tostring((id_parts(id)))
    o.body = ARGV[8]
    local edits = redis.call('HGET', state, target .. '\nedits')
    redis.call('HSET', state, target .. '\nedits', edits and edits .. ' ' .. id or id)
  elseif ARGV[9] == '1' then
    local place = reactor_place(id)
    redis.call('HSET', state, reactor_field, place)
    redis.call('ZADD', reactors, 0, reactor_prefix .. place .. '\n' .. by)
  end
  if not o.edited and #o.reactions == 0 then
    -- Plain again.
    redis.call('HDEL', state, target)
  else
    redis.call('HSET', state, target, encode_overlay(o))
  end
end
count_changes(state, changes)
redis.call(PUBLISH, KEYS[2], 'c' .. id .. '\n' .. kind .. '\n' .. target .. '\n' .. encoded)
if going then trim_state(stream, going) end
if kind == 'd' then trim_holes(stream, KEYS[3], maxlen) end
redis.call('SET', KEYS[4], id .. ' ' .. count, 'PX', ARGV[6])
if ROOM_TTL > 0 then
  -- As a publish does when due (publish.lua): the epoch and side keys (this change may have
  -- made some) outlive the stream.
  redis.call('PEXPIRE', stream, ROOM_TTL)
  redis.call('PEXPIRE', KEYS[3], ROOM_TTL)
  redis.call('PEXPIRE', KEYS[5], KEEP_TTL)
  for _, kind in ipairs({'state', 'gone', 'erased', 'read', 'reactors'}) do
    redis.call('PEXPIRE', side_key(stream, kind), KEEP_TTL)
  end
else
  redis.call('PERSIST', KEYS[5])
end
return {'new', id, count}
