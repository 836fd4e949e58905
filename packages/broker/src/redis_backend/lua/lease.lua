-- Defines `check_lease(lease_end)`: refuses a node instance's presence write (error `LAPSED`) once
-- Redis's clock has reached `lease_end`, the end of the lease the node sent it under (Unix ms, see
-- claim.rs). The instance's claim lives past that moment, and nobody sweeps an instance before
-- its claim lapsed: a write that arrives late, from a node cut off too long, is not run at all,
-- rather than after the sweep where nothing would remove it.
local function check_lease(lease_end)
  local clock = redis.call('TIME')
  if clock[1] * 1000 + math.floor(clock[2] / 1000) >= tonumber(lease_end) then
    error({err = 'LAPSED the node instance\'s lease is over: write refused'})
  end
end
