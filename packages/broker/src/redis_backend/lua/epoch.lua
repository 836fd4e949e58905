-- The room's epoch. KEYS: the epoch key. After ensure_epoch.lua.
return epoch
