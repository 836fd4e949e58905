-- Gives a node's claim on its id back if it is still ours. KEYS: claim. ARGV: token.
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
