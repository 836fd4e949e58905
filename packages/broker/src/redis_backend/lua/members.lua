-- A page of the room's members. After members_page.lua.
-- KEYS: users hash, names index. ARGV: after ('' for the first), limit.
-- Returns {names, more (1/0)}.
local page, more = members_page(KEYS[1], KEYS[2], ARGV[1], tonumber(ARGV[2]))
return {page, more}
