-- Lists a room among a node instance's rooms, before its first entry there, so that a sweep
-- after its death finds the entry. After lease.lua.
-- KEYS: the instance's room list. ARGV: the lease's end (Unix ms), the room.
check_lease(ARGV[1])
return redis.call('SADD', KEYS[1], ARGV[2])
