"""The Redis side of sharing the service fairly (docs/fair-sharing.md): the per-user limits
checked inside the claim script, the counts kept in the scripts that change what they count,
and the per-user backlogs the dispatcher hands to RQ in turns. Lua fragments, composed into
the scripts of src/store.py, and the turn scripts themselves. The keys:

    pt:user:<user>             hash: waiting (tasks queued or running), bytes (stored photos + results)
    pt:user_photos:<user>      hash: photo digest -> how many of the user's tasks use it (bytes counted once)
    pt:rate:<user>             the user's GCRA "theoretical arrival time" (ms), expiring when idle
    pt:waiting                 tasks waiting in the whole service (QUEUE_MAX)
    pt:backlog:<kind>:<user>   list: the user's tasks whose next run waits for its turn
    pt:turns:<kind>            list: the users with a backlog of that kind, in turn order

A task in a backlog carries `turn=backlog` in its hash, so the sweep counts it as alive.
"""

from __future__ import annotations

PREFIX = "pt:"
WAITING_TOTAL_KEY = PREFIX + "waiting"


def user_key(user: str) -> str:
    return f"{PREFIX}user:{user}"


# Every count change, as Lua functions the store's scripts call. `release` is called once per
# task, by the script that lets go of its files for good (end_expiry): a photo's bytes leave
# the user's count with the last of the user's tasks that used it.
COUNTS = """
local function user_keys(owner) return 'pt:user:' .. owner, 'pt:user_photos:' .. owner end
local function tidy(owner)
  local ukey, pkey = user_keys(owner)
  local c = redis.call('HMGET', ukey, 'waiting', 'bytes')
  if tonumber(c[1] or '0') <= 0 and tonumber(c[2] or '0') <= 0 then redis.call('DEL', ukey) end
end
local function stop_waiting(owner)
  if not owner then return end
  redis.call('HINCRBY', 'pt:user:' .. owner, 'waiting', -1)
  if redis.call('DECR', 'pt:waiting') <= 0 then redis.call('DEL', 'pt:waiting') end
  tidy(owner)
end
local function add_bytes(owner, bytes)
  if owner and bytes > 0 then redis.call('HINCRBY', 'pt:user:' .. owner, 'bytes', bytes) end
end
local function release(owner, digest, photo_bytes, result_bytes)
  if not owner or owner == '' then return end
  local ukey, pkey = user_keys(owner)
  local freed = result_bytes
  if digest ~= '' and redis.call('HEXISTS', pkey, digest) == 1 then
    if redis.call('HINCRBY', pkey, digest, -1) <= 0 then
      redis.call('HDEL', pkey, digest)
      freed = freed + photo_bytes
    end
  end
  if freed > 0 then redis.call('HINCRBY', ukey, 'bytes', -freed) end
  tidy(owner)
end
-- What end_expiry needs to release a gone task's counts, from its hash.
local function files_entry(key, digest, result_file)
  local t = redis.call('HMGET', key, 'owner', 'photo_bytes', 'result_bytes')
  return cjson.encode({digest, result_file, t[1] or '', tonumber(t[2] or '0'), tonumber(t[3] or '0')})
end
"""

# The limits of one task-creating POST, in the claim script, after its dedupe check (a dedupe
# hit is never refused). Returns {code, retry_after} for a refusal, or nil after counting the
# new task (its waiting, its photo's bytes once per user, its turn in the user's rate).
# Arguments: the owner, the photo digest, its bytes, then the limits as numbers (0 = off):
# max waiting, rate per second, burst, max stored bytes, queue max.
LIMITS = COUNTS + """
local function admit(owner, digest, photo_bytes, max_waiting, rate, burst, max_bytes, queue_max)
  local ukey, pkey = user_keys(owner)
  if queue_max > 0 and tonumber(redis.call('GET', 'pt:waiting') or '0') >= queue_max then
    return {'overloaded', 5}
  end
  local now, tat
  if rate > 0 then
    local t = redis.call('TIME')
    now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
    local interval = 1000 / rate
    tat = math.max(tonumber(redis.call('GET', 'pt:rate:' .. owner) or '0'), now) + interval
    local allowed_at = tat - math.max(burst, 1) * interval
    if allowed_at > now then return {'rate_limited', math.max(1, math.ceil((allowed_at - now) / 1000))} end
  end
  local counts = redis.call('HMGET', ukey, 'waiting', 'bytes')
  if max_waiting > 0 and tonumber(counts[1] or '0') >= max_waiting then return {'too_many_tasks', 5} end
  local new_photo = redis.call('HEXISTS', pkey, digest) == 0
  local adds = new_photo and photo_bytes or 0
  if max_bytes > 0 and tonumber(counts[2] or '0') + adds > max_bytes then return {'quota_exceeded', 0} end
  if tat then
    redis.call('SET', 'pt:rate:' .. owner, string.format('%.3f', tat), 'PX', math.ceil(tat - now) + 1000)
  end
  redis.call('HINCRBY', ukey, 'waiting', 1)
  redis.call('INCR', 'pt:waiting')
  redis.call('HINCRBY', pkey, digest, 1)
  add_bytes(owner, adds)
  return nil
end
"""

# A task joins its owner's backlog of its kind (the user joins the turns when its backlog was
# empty): a user is in `pt:turns:<kind>` exactly while its backlog holds something.
JOIN = """
local function join_backlog(key, id, kind, owner)
  redis.call('HSET', key, 'turn', 'backlog')
  redis.call('HDEL', key, 'posting')  -- started: its POST put its photo in place
  if redis.call('RPUSH', 'pt:backlog:' .. kind .. ':' .. owner, id) == 1 then
    redis.call('RPUSH', 'pt:turns:' .. kind, owner)
  end
end
"""

# A new task is started: it joins its owner's backlog, if it still waits and is not started
# yet (a second POST of the same photo may start it too, when the first died before it
# could: the first to come starts it), is counted in the metrics hash, and wakes a
# dispatcher waiting for work (DISPATCH_WAKE_KEY), so it need not wait for a tick.
# KEYS: task, metrics hash.  ARGV: task number, kind, owner, the count's field.
DISPATCH_WAKE_KEY = "pt:dispatch_wake"
JOIN_BACKLOG = JOIN + """
local task = redis.call('HMGET', KEYS[1], 'state', 'posting')
if (task[1] ~= 'queued' and task[1] ~= 'running') or not task[2] then return 0 end
join_backlog(KEYS[1], ARGV[1], ARGV[2], ARGV[3])
redis.call('HINCRBY', KEYS[2], ARGV[4], 1)
redis.call('LPUSH', '""" + DISPATCH_WAKE_KEY + """', 1)
redis.call('LTRIM', '""" + DISPATCH_WAKE_KEY + """', 0, 0)
return 1
"""

# The dispatcher's tick: due runs join their owners' backlogs, then each kind's RQ queue is
# topped up to `room` jobs waiting (one per two registered workers, at least one: ahead of a
# new turn are the jobs running and about half a job per worker) with tasks taken from the
# backlogs in turns, one task per user per turn: resizes one per job, scoring runs in batches
# of up to `batch` tasks. Each task taken names its new job and its lease starts again.
# Returns {resizes as task/job pairs, scoring batches as {job, task, task, ...}}.
# KEYS: due, active, score queue (RQ), resize queue (RQ), RQ's set of workers.
# ARGV: task-key prefix, lease end, now, job-id token, batch size, most due runs to move.
TAKE_TURNS = JOIN + """
local prefix, lease, token, batch = ARGV[1], ARGV[2], ARGV[4], tonumber(ARGV[5])
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[3], 'LIMIT', 0, tonumber(ARGV[6]))) do
  redis.call('ZREM', KEYS[1], id)
  local key = prefix .. id
  local t = redis.call('HMGET', key, 'state', 'kind', 'owner')
  if (t[1] == 'queued' or t[1] == 'running') and t[2] and t[3] then join_backlog(key, id, t[2], t[3]) end
end
local function take(kind)
  local turns = 'pt:turns:' .. kind
  while true do
    local owner = redis.call('LPOP', turns)
    if not owner then return nil end
    local backlog = 'pt:backlog:' .. kind .. ':' .. owner
    local id = redis.call('LPOP', backlog)
    if redis.call('LLEN', backlog) > 0 then redis.call('RPUSH', turns, owner) end
    if id then
      local key = prefix .. id
      local t = redis.call('HMGET', key, 'state', 'turn')
      if (t[1] == 'queued' or t[1] == 'running') and t[2] == 'backlog' then return id, key end
    end
  end
end
local function assign(id, key, job)
  redis.call('HSET', key, 'job_id', job)
  redis.call('HDEL', key, 'turn')
  redis.call('ZADD', KEYS[2], lease, id)
end
local jobs = 0
local function start(id, key)
  jobs = jobs + 1
  local job = 'task-' .. id .. '-' .. token .. jobs
  assign(id, key, job)
  return job
end
local room = math.max(1, math.floor(redis.call('SCARD', KEYS[5]) / 2))
local resizes, batches = {}, {}
for _ = 1, room - redis.call('LLEN', KEYS[4]) do
  local id, key = take('resize')
  if not id then break end
  resizes[#resizes + 1] = id
  resizes[#resizes + 1] = start(id, key)
end
for _ = 1, room - redis.call('LLEN', KEYS[3]) do
  local id, key = take('score')
  if not id then break end
  local job = start(id, key)
  local one = {job, id}
  while #one <= batch do
    local more, more_key = take('score')
    if not more then break end
    assign(more, more_key, job)
    one[#one + 1] = more
  end
  batches[#batches + 1] = one
end
return {resizes, batches}
"""

# How many tasks wait their turn in the backlogs of each kind in ARGV: the sum over the users
# in that kind's ring (what RQ's own, short, queues do not show).
BACKLOG_LENGTHS = """
local lengths = {}
for i, kind in ipairs(ARGV) do
  local n = 0
  for _, owner in ipairs(redis.call('LRANGE', 'pt:turns:' .. kind, 0, -1)) do
    n = n + redis.call('LLEN', 'pt:backlog:' .. kind .. ':' .. owner)
  end
  lengths[i] = n
end
return lengths
"""
