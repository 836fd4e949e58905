-- Records that this node instance holds the user, publishing `online` if no instance did.
-- KEYS: held (this instance's users in the room), users hash, channel. ARGV: user.
local function join_presence()
  if redis.call('SADD', KEYS[1], ARGV[1]) == 1 then
    if redis.call('HINCRBY', KEYS[2], ARGV[1], 1) == 1 then
      redis.call(PUBLISH, KEYS[3], 'p1' .. ARGV[1])
    end
  end
end
