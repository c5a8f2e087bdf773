"""Lua scripts a detector worker runs on Redis to commit windows and save checkpoints, fenced by its
partition lease (``transport.lease.HOLD``)."""

from __future__ import annotations

from tessera_daemon.transport.lease import HOLD

# Fenced by the lease (``HOLD``): KEYS[1..2] lease and epoch, ARGV[1..3] its value, epoch and time to live.
COMMIT = (
    HOLD
    + """
local held = hold()
if held == 0 then return -1 end
local done = tonumber(redis.call('GET', KEYS[3]) or '-1')
if done >= tonumber(ARGV[4]) then return 10 + held end
redis.call('SET', KEYS[3], ARGV[4])
redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[7], '*', 'window', ARGV[4], 'frames', ARGV[5],
           'worker', ARGV[6], 'firings', ARGV[9])
if #KEYS >= 5 then
  for i = 11, #ARGV, 3 do
    redis.call('XADD', KEYS[5], 'MAXLEN', '~', ARGV[8], '*', 'partition', ARGV[10], 'window', ARGV[4],
               'id', ARGV[i], 'state', ARGV[i + 1], 'firing', ARGV[i + 2])
  end
end
return held
"""
)

SAVE = (
    HOLD
    + """
local held = hold()
if held > 0 then redis.call('SET', KEYS[3], ARGV[4]) end
return held
"""
)
