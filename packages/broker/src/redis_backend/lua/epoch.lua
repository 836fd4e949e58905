-- The room's epoch. KEYS: stream, trimmed marker, epoch. After ensure_epoch.lua.
return epoch
