-- Records that this node instance holds the user, publishing `online` if no instance did; refused
-- past the instance's lease (`lease_end`, after lease.lua).
-- KEYS: held (this instance's users in the room), users hash, channel, names index. ARGV: user.
-- The names index (a sorted set, every score 0, so it pages by name) holds exactly the users
-- hash's keys: a name goes in whenever an instance starts holding the user (so a name an older
-- node counted without indexing it is mended too; adding it again changes nothing) and out when
-- its count gets back to zero.
local function join_presence(lease_end)
  check_lease(lease_end)
  if redis.call('SADD', KEYS[1], ARGV[1]) == 1 then
    redis.call('ZADD', KEYS[4], 0, ARGV[1])
    if redis.call('HINCRBY', KEYS[2], ARGV[1], 1) == 1 then
      redis.call(PUBLISH, KEYS[3], 'p1' .. ARGV[1])
    end
  end
end
