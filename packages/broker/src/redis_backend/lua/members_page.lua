-- Defines `members_page(users, names, after, limit)`: up to `limit` names of the room's members
-- after `after` ('' for the first), in name order, and 1 if more follow (else 0).
-- The names index must hold the users hash's keys. A node of an older version keeps only the
-- hash, so during a rolling upgrade the two can part: then their sizes differ (two O(1) reads
-- per call), and the index is built again from the hash, once.
local function members_page(users, names, after, limit)
  if redis.call('ZCARD', names) ~= redis.call('HLEN', users) then
    redis.call('DEL', names)
    local all, batch = redis.call('HKEYS', users), {}
    for i, name in ipairs(all) do
      batch[#batch + 1] = 0
      batch[#batch + 1] = name
      if #batch == 1000 or i == #all then
        redis.call('ZADD', names, unpack(batch))
        batch = {}
      end
    end
  end
  local from = after == '' and '-' or '(' .. after
  local page = redis.call('ZRANGE', names, from, '+', 'BYLEX', 'LIMIT', 0, limit + 1)
  local more = 0
  if #page > limit then
    page[#page] = nil
    more = 1
  end
  return page, more
end
