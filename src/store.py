"""Everything that touches Redis for tasks. Every state change is one Lua script, so
concurrent web processes, workers and dispatchers never race (no read-then-write from
Python), and a job's writes are fenced by the job id its task names. The keys:

    pt:task_seq              INCR counter of task numbers
    pt:task:<N>              hash: kind, owner, state, progress, result, error_*, job_id, ...
    pt:dedupe:<sha256>       task number that holds this (user, kind, settings, photo)
    pt:photo:<sha256>        set of task numbers that use this stored photo
    pt:photo_lock:<sha256>   held while that photo's file is removed or put in place
    pt:result_files          set of result file names that tasks name
    pt:active                zset: waiting task -> when the sweep should look at it (its lease)
    pt:deadline              zset: waiting scoring task -> its SCORER_DEADLINE
    pt:due                   zset: waiting scoring task -> when its next run is due
    pt:expiring              zset: finished task -> when its time to live ends
    pt:expiring_files        hash: finished task -> its files, as JSON [photo digest, result file]
    pt:waiters:<N>           set of the lists that answers held on task N block on (Prefer: wait)
    pt:wait:<process>:<n>    one held answer's list: the script that ends or deletes the task pushes to it
    pt:callbacks:<N>         hash: 1, 2, ... -> a callback of the task, as JSON {url, id, state,
                             attempts, last_status} (src/callbacks/deliveries.py)
    pt:deliveries            zset: "<N>:<n>" -> when callback n of finished task N is due (or
                             when the lease of the deliverer that took it ends)
    pt:deliveries_wake       list: pushed when deliveries are made due, to wake a deliverer

How they keep every waiting task moving: docs/architecture.md.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from src import store_sharing as sharing

PREFIX = "pt:"
SEQ_KEY = PREFIX + "task_seq"
ACTIVE_KEY = PREFIX + "active"
DEADLINE_KEY = PREFIX + "deadline"
DUE_KEY = PREFIX + "due"
RESULT_FILES_KEY = PREFIX + "result_files"
EXPIRING_KEY = PREFIX + "expiring"
EXPIRING_FILES_KEY = PREFIX + "expiring_files"
TASK_PREFIX = PREFIX + "task:"
WAITERS_PREFIX = PREFIX + "waiters:"  # waiting answers (Prefer: wait), see Waits below
WAKE_TTL = 10  # seconds a pushed waiter's list outlives a waiter that has stopped listening
CALLBACKS_PREFIX = PREFIX + "callbacks:"
DELIVERIES_KEY = PREFIX + "deliveries"
DELIVERIES_WAKE_KEY = PREFIX + "deliveries_wake"
MAX_CALLBACKS = 16  # distinct callback URLs one task keeps; more are not added

WAITING = ("queued", "running")
# Seconds a claimed task's first lease is longer than others: its POST may still wait this long
# for its photo's lock (10 s at most) before it starts the task, and the sweep must not drop it
# meanwhile (a task still `posting` once its lease runs out was claimed by a web process that died).
POSTING_GRACE = 15.0
READY, FAILED = "ready", "failed"

# Claim a dedupe entry, or report the live task that already holds it (with its result).
# A new task is waiting from the start, with its first job's id and its lease, and is a
# user of its photo; the answer says whether the photo's lock was held at that moment.
# A callback URL given is added to the task (new, or joined while it waits; not one ready).
# A new task is first admitted by the per-user and service limits (src/store_sharing.py):
# a refusal stores nothing and answers {0, 'refused', code, retry after}.
# KEYS: dedupe, sequence, active, deadline, photo users, photo lock.
# ARGV: task-key prefix, job-id suffix, lease end, deadline ('' = none), callback-key prefix,
# callback URL ('' = none), its webhook id if new, most callbacks, owner, digest, photo bytes,
# the five limits (max waiting, rate, burst, max bytes, queue max), then field/value pairs.
_CLAIM = sharing.LIMITS + """
-- callbacks: add ARGV[6] (once per distinct URL) to task `id`, pending until the task ends
local function add_callback(id)
  if ARGV[6] == '' then return end
  local key = ARGV[5] .. id
  local all = redis.call('HVALS', key)
  for _, raw in ipairs(all) do if cjson.decode(raw)['url'] == ARGV[6] then return end end
  if #all >= tonumber(ARGV[8]) then return end
  local entry = {url = ARGV[6], id = ARGV[7], state = 'pending', attempts = 0, last_status = cjson.null}
  redis.call('HSET', key, #all + 1, cjson.encode(entry))
  redis.call('HSET', ARGV[1] .. id, 'callbacks', #all + 1)
end
local held = redis.call('GET', KEYS[1])
if held then
  local task = redis.call('HMGET', ARGV[1] .. held, 'state', 'result', 'posting')
  if task[1] and task[1] ~= 'failed' then
    if task[1] ~= 'ready' then add_callback(held) end
    return {held, task[1], task[2] or '', task[3] and '1' or ''}
  end
end
local n = {}
for i = 11, 16 do n[#n + 1] = tonumber(ARGV[i]) end
local refused = admit(ARGV[9], ARGV[10], unpack(n))
if refused then return {'0', 'refused', refused[1], tostring(refused[2])} end
local id = redis.call('INCR', KEYS[2])
local job = 'task-' .. id .. '-' .. ARGV[2]
local fields = {}
for i = 17, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', ARGV[1] .. id, 'dedupe', KEYS[1], 'job_id', job, unpack(fields))
add_callback(id)
redis.call('SET', KEYS[1], id)
redis.call('ZADD', KEYS[3], ARGV[3], id)
if ARGV[4] ~= '' then redis.call('ZADD', KEYS[4], ARGV[4], id) end
redis.call('SADD', KEYS[5], id)
return {tostring(id), 'new', '', job, redis.call('EXISTS', KEYS[6])}
"""

# Returns the task's state if a job may write to it, else false: it must still wait and, when
# a fence is given, still name that job.
_WRITABLE = """
local function writable(key, fence)
  local task = redis.call('HMGET', key, 'state', 'job_id')
  if task[1] ~= 'queued' and task[1] ~= 'running' then return false end
  if fence ~= '' and task[2] ~= fence then return false end
  return true
end
"""

# Waiting answers (Prefer: wait): wake every answer held on task `id`, once it ends or goes.
# Each held answer blocks on a list of its own, named in the task's waiters set; the set goes.
_WAKE = f"""
local function wake(id)
  local waiters = '{WAITERS_PREFIX}' .. id
  for _, waiter in ipairs(redis.call('SMEMBERS', waiters)) do
    redis.call('RPUSH', waiter, 'ended')
    redis.call('EXPIRE', waiter, {WAKE_TTL})
  end
  redis.call('DEL', waiters)
end
"""

# Update a waiting task; progress only ever goes up; its lease starts again; with a due time
# its next run is put on `pt:due`. Returns the progress after the update, or -1 when the
# write is refused (task gone, finished, or taken over by another job).
# KEYS: task, active, due.  ARGV: task number, fence, progress (or ''), lease end,
# due time (or ''), then field/value pairs.
_UPDATE = _WRITABLE + """
if not writable(KEYS[1], ARGV[2]) then return -1 end
if ARGV[3] ~= '' then
  local old = tonumber(redis.call('HGET', KEYS[1], 'progress') or '0')
  local new = tonumber(ARGV[3])
  if new > old then redis.call('HSET', KEYS[1], 'progress', new) end
end
if #ARGV > 5 then
  local fields = {}
  for i = 6, #ARGV do fields[#fields + 1] = ARGV[i] end
  redis.call('HSET', KEYS[1], unpack(fields))
end
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[1])
if ARGV[5] ~= '' then redis.call('ZADD', KEYS[3], ARGV[5], ARGV[1]) end
return tonumber(redis.call('HGET', KEYS[1], 'progress') or '0')
"""

# Finish a waiting task (ready or failed) and start its time to live: its keys expire, and its
# files are put on `pt:expiring` for the sweep; it leaves every set that keeps waiting tasks
# moving, and stops counting as waiting; its result's bytes count for its owner until it goes.
# Its callbacks are made due at once, in the same script, so a crash cannot end a task without
# them; they expire with the task. Returns the task's kind, or false when refused.
# KEYS: task, active, deadline, due, expiring, expiring files, callbacks, deliveries, wake.
# ARGV: task number, fence, ttl, when the ttl ends, result file ('' = none), result bytes,
# field/value pairs.
_FINISH = _WRITABLE + _WAKE + sharing.COUNTS + """
if not writable(KEYS[1], ARGV[2]) then return false end
local owner = redis.call('HGET', KEYS[1], 'owner')
stop_waiting(owner)
if tonumber(ARGV[6]) > 0 then
  redis.call('HSET', KEYS[1], 'result_bytes', ARGV[6])
  add_bytes(owner, tonumber(ARGV[6]))
end
local fields = {}
for i = 7, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', KEYS[1], 'progress', 100, unpack(fields))
redis.call('EXPIRE', KEYS[1], ARGV[3])
local dedupe = redis.call('HGET', KEYS[1], 'dedupe')
if dedupe then redis.call('EXPIRE', dedupe, ARGV[3]) end
for i = 2, 4 do redis.call('ZREM', KEYS[i], ARGV[1]) end
redis.call('ZADD', KEYS[5], ARGV[4], ARGV[1])
redis.call('HSET', KEYS[6], ARGV[1], files_entry(KEYS[1], redis.call('HGET', KEYS[1], 'digest') or '', ARGV[5]))
wake(ARGV[1])
-- callbacks: every one due now
local callbacks = tonumber(redis.call('HGET', KEYS[1], 'callbacks') or '0')
if callbacks > 0 then
  local now = tonumber(ARGV[4]) - tonumber(ARGV[3])
  for n = 1, callbacks do redis.call('ZADD', KEYS[8], now, ARGV[1] .. ':' .. n) end
  redis.call('EXPIRE', KEYS[7], ARGV[3])
  redis.call('LPUSH', KEYS[9], 1)
  redis.call('LTRIM', KEYS[9], 0, 0)
end
return redis.call('HGET', KEYS[1], 'kind') or 'unknown'
"""

# Delete a task (and its dedupe entry if it still points at it); return its hash. Its files
# are put on `pt:expiring`, due at once: the caller lets go of them and then of that entry,
# and if it cannot (Redis went away midway, the photo's lock is held), the sweep does. A
# waiting task stops counting as waiting; its bytes are released with its files (_LET_GO).
# Its callbacks go with it, delivered or not.
# KEYS: task, active, deadline, due, expiring, expiring files, callbacks, deliveries.
# ARGV: task number, owner ('' = anyone may), now.
_DELETE = _WAKE + sharing.COUNTS + """
local owner = redis.call('HGET', KEYS[1], 'owner')
if not owner or (ARGV[2] ~= '' and owner ~= ARGV[2]) then return nil end
if ARGV[4] == '1' and not redis.call('HGET', KEYS[1], 'posting') then return nil end
local task = redis.call('HGETALL', KEYS[1])
-- callbacks: none is delivered any more
local callbacks = tonumber(redis.call('HGET', KEYS[1], 'callbacks') or '0')
for n = 1, callbacks do redis.call('ZREM', KEYS[8], ARGV[1] .. ':' .. n) end
redis.call('DEL', KEYS[7])
local files = redis.call('HMGET', KEYS[1], 'dedupe', 'digest', 'result_file', 'state')
if files[1] and redis.call('GET', files[1]) == ARGV[1] then redis.call('DEL', files[1]) end
if files[4] == 'queued' or files[4] == 'running' then stop_waiting(owner) end
redis.call('HSET', KEYS[6], ARGV[1], files_entry(KEYS[1], files[2] or '', files[3] or ''))
redis.call('DEL', KEYS[1])
for i = 2, 4 do redis.call('ZREM', KEYS[i], ARGV[1]) end
redis.call('ZADD', KEYS[5], ARGV[3], ARGV[1])
wake(ARGV[1])
return task
"""

# A gone task's files are removed: it leaves `pt:expiring`, and its bytes leave its owner's
# count (once: the entry goes in the same step). KEYS: expiring, expiring files. ARGV: task number.
_LET_GO = sharing.COUNTS + """
redis.call('ZREM', KEYS[1], ARGV[1])
local entry = redis.call('HGET', KEYS[2], ARGV[1])
if not entry then return 0 end
redis.call('HDEL', KEYS[2], ARGV[1])
local f = cjson.decode(entry)
release(f[3], f[1] or '', tonumber(f[4] or 0), tonumber(f[5] or 0))
return 1
"""

# Give a waiting task whose job was lost a new job id, counting the loss (unless told not
# to); 'fail' once it has been lost `max` times, 'moved' when another job took it over meanwhile.
# KEYS: task, active.  ARGV: task number, lost job id, new job id, max losses, lease end,
# '1' to count the loss or '0'.
_REPLACE_JOB = _WRITABLE + """
if not writable(KEYS[1], ARGV[2]) then return 'moved' end
if ARGV[6] == '1' then
  local losses = redis.call('HINCRBY', KEYS[1], 'losses', 1)
  if losses >= tonumber(ARGV[4]) then return 'fail' end
end
redis.call('HSET', KEYS[1], 'job_id', ARGV[3])
redis.call('ZADD', KEYS[2], ARGV[5], ARGV[1])
return 'replaced'
"""


def connect(url: str, *, fail_fast: bool) -> redis.Redis:
    """A client for `url`. The web process fails fast (503 within a second when Redis is
    gone); workers keep blocking reads open, so they get no read timeout."""
    if fail_fast:
        return redis.Redis.from_url(
            url, socket_connect_timeout=0.5, socket_timeout=0.8,
            retry=Retry(NoBackoff(), 0), health_check_interval=10,
        )
    return redis.Redis.from_url(url, socket_connect_timeout=2, health_check_interval=30)


def take_turn(conn: redis.Redis, chore: str, seconds: float) -> bool:
    """True for one caller in `seconds`, whichever process asks: whose turn it is to do a
    periodic chore that any number of dispatchers or workers might start."""
    return bool(conn.set(f"{PREFIX}turn:{chore}", 1, nx=True, px=max(1, int(seconds * 1000))))



def backlog_lengths(client: redis.Redis, kinds: tuple[str, ...]) -> list[int]:
    """Tasks waiting their turn in the users' backlogs, for each kind (fair turns keep RQ's own
    queues short: src/tasks/turns.py)."""
    return client.eval(sharing.BACKLOG_LENGTHS, 0, *kinds)


@dataclass(frozen=True)
class Claim:
    task_id: int
    state: str  # 'new' or the existing task's state
    result: Any = None  # the existing task's result, when it is ready
    job_id: str = ""  # a new task's first job, to be enqueued
    photo_busy: bool = False  # the photo's lock was held when the new task was claimed
    starting: bool = False  # an existing task its own POST has not started (it may have died)
    refused: str = ""  # the limit that refused the task (state 'refused'), see store_sharing.py
    retry_after: int = 0  # seconds, for that refusal

    @property
    def is_new(self) -> bool:
        return self.state == "new"


class Store:
    """The task store. `lease`: how long a waiting task may go unchanged before the sweep
    checks that its job is still alive."""

    def __init__(self, client: redis.Redis, task_ttl: int, lease: float = 10.0):
        self.redis = client
        self.task_ttl = task_ttl
        self.lease = lease
        self._claim = client.register_script(_CLAIM)
        self._update = client.register_script(_UPDATE)
        self._finish = client.register_script(_FINISH)
        self._delete = client.register_script(_DELETE)
        self._replace_job = client.register_script(_REPLACE_JOB)
        self._let_go = client.register_script(_LET_GO)
        self._join_backlog = client.register_script(sharing.JOIN_BACKLOG)
        self._take_turns = client.register_script(sharing.TAKE_TURNS)

    @staticmethod
    def task_key(task_id: int) -> str:
        return f"{TASK_PREFIX}{task_id}"

    @staticmethod
    def photo_key(digest: str) -> str:
        return f"{PREFIX}photo:{digest}"

    @staticmethod
    def _photo_lock_key(digest: str) -> str:
        return f"{PREFIX}photo_lock:{digest}"

    def _lease_end(self) -> float:
        return time.time() + self.lease

    def claim(self, dedupe: str, digest: str, deadline: float | None = None, callback_url: str = "", *,
              owner: str = "", photo_bytes: int = 0, limits: tuple = (0, 0, 0, 0, 0), **fields: Any) -> Claim:
        """Create a queued task for `dedupe`, unless a live task already holds it or the
        `limits` (max waiting, rate, burst, max bytes, queue max; 0 = off) refuse it. The new
        task is a user of the photo `digest` and names its first job (`job_id`), which the
        caller must then enqueue. `callback_url` is added to the task, new or still waiting."""
        now = time.time()
        fields = {"state": "queued", "progress": 0, "created_at": now, "updated_at": now, "digest": digest,
                  "owner": owner, "photo_bytes": photo_bytes, "posting": 1, **fields}
        if deadline is not None:
            fields["deadline"] = deadline
        args = [TASK_PREFIX, uuid.uuid4().hex[:12], self._lease_end() + POSTING_GRACE,
                "" if deadline is None else deadline, CALLBACKS_PREFIX, callback_url, f"msg_{uuid.uuid4().hex}",
                MAX_CALLBACKS, owner, digest, photo_bytes, *limits, *_pairs(fields)]
        keys = [dedupe, SEQ_KEY, ACTIVE_KEY, DEADLINE_KEY, self.photo_key(digest), self._photo_lock_key(digest)]
        task_id, state, result, *more = self._claim(keys=keys, args=args)
        if state == b"refused":
            return Claim(0, "refused", refused=result.decode(), retry_after=int(more[0]))
        if state == b"new":
            return Claim(int(task_id), "new", job_id=more[0].decode(), photo_busy=bool(more[1]))
        starting = more[0] == b"1"  # claimed by a POST that has not started it: whether it still lives is unknown
        return Claim(int(task_id), state.decode(), json.loads(result) if result else None, starting=starting)

    def callbacks(self, task_id: int) -> list[dict]:
        """The task's callbacks as GET shows them: url, state, attempts, last_status."""
        raw = self.redis.hgetall(f"{CALLBACKS_PREFIX}{task_id}")
        entries = [json.loads(raw[n]) for n in sorted(raw, key=int)]
        return [{key: entry[key] for key in ("url", "state", "attempts", "last_status")} for entry in entries]

    def get(self, task_id: int) -> dict[str, str] | None:
        raw = self.redis.hgetall(self.task_key(task_id))
        return {k.decode(): v.decode() for k, v in raw.items()} or None

    def waiting(self, task_id: int) -> dict[str, str] | None:
        """The task while it waits for its job to finish it; None when it is gone or done."""
        task = self.get(task_id)
        return task if task is not None and task["state"] in WAITING else None

    def update(self, task_id: int, progress: int | None = None, *, fence: str = "",
               due: float | None = None, **fields: Any) -> int | None:
        """Record progress or fields of a waiting task (and, with `due`, when its next run is
        due); return its progress now, or None when the write is refused: the task is gone or
        finished, or names another job than `fence`."""
        fields["updated_at"] = time.time()
        args = [task_id, fence, "" if progress is None else int(progress), self._lease_end(),
                "" if due is None else due, *_pairs(fields)]
        now = self._update(keys=[self.task_key(task_id), ACTIVE_KEY, DUE_KEY], args=args)
        return None if now < 0 else now

    def finish(self, task_id: int, result: Any, fence: str = "", result_file: str = "",
               result_bytes: int = 0) -> str | None:
        """End a waiting task as ready; its kind, or None when the write is refused. Its
        photo and `result_file` (of `result_bytes`) go when its time to live ends."""
        return self._end(task_id, fence, result_file, result_bytes, state=READY, result=json.dumps(result))

    def fail(self, task_id: int, code: str, message: str, fence: str = "", result_file: str = "") -> str | None:
        """End a waiting task as failed; its kind, or None when the write is refused."""
        return self._end(task_id, fence, result_file, 0, state=FAILED, error_code=code, error_message=message)

    def _end(self, task_id: int, fence: str, result_file: str, result_bytes: int, **fields: Any) -> str | None:
        now = time.time()
        fields.update(updated_at=now, finished_at=now)
        args = [task_id, fence, self.task_ttl, now + self.task_ttl, result_file, result_bytes, *_pairs(fields)]
        keys = [self.task_key(task_id), ACTIVE_KEY, DEADLINE_KEY, DUE_KEY, EXPIRING_KEY, EXPIRING_FILES_KEY,
                f"{CALLBACKS_PREFIX}{task_id}", DELIVERIES_KEY, DELIVERIES_WAKE_KEY]
        kind = self._finish(keys=keys, args=args)
        return kind.decode() if kind else None

    def ended_tasks(self, now: float, limit: int) -> dict[int, tuple[str, str]]:
        """Finished tasks whose time to live has ended, with their files (photo digest,
        result file or '')."""
        ended = self.redis.zrangebyscore(EXPIRING_KEY, "-inf", now, start=0, num=limit)
        files = self.redis.hmget(EXPIRING_FILES_KEY, ended) if ended else []
        return {int(task_id): tuple(json.loads(pair)[:2]) for task_id, pair in zip(ended, files)}

    def end_expiry(self, task_id: int) -> None:
        """A gone task's files are removed: take it off `pt:expiring`, and its bytes off its
        owner's count."""
        self._let_go(keys=[EXPIRING_KEY, EXPIRING_FILES_KEY], args=[task_id])

    def delete(self, task_id: int, owner: str = "", unstarted: bool = False) -> dict[str, str] | None:
        """Delete a task if it exists (and belongs to `owner`, when given; with `unstarted`,
        if its POST never started it); return it. Its files stay on `pt:expiring` until the
        caller calls `end_expiry` (the sweep lets go of them otherwise)."""
        keys = [self.task_key(task_id), ACTIVE_KEY, DEADLINE_KEY, DUE_KEY, EXPIRING_KEY, EXPIRING_FILES_KEY,
                f"{CALLBACKS_PREFIX}{task_id}", DELIVERIES_KEY]
        flat = self._delete(keys=keys, args=[task_id, owner, time.time(), int(unstarted)])
        if flat is None:
            return None
        return {flat[i].decode(): flat[i + 1].decode() for i in range(0, len(flat), 2)}

    # --- keeping waiting tasks moving (the dispatcher and the sweep) --------------------
    def wait_for_work(self, seconds: float) -> None:
        """Block until a new task joins a backlog or a worker takes a job, or `seconds` pass
        (the dispatcher's idle tick)."""
        self.redis.blpop([sharing.DISPATCH_WAKE_KEY], timeout=seconds)

    def wake_dispatcher(self) -> None:
        """A worker took a job from RQ's queue: a dispatcher waiting for work tops the queue up
        now, so the next job is there when a worker is free, not a tick later."""
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.lpush(sharing.DISPATCH_WAKE_KEY, 1)
            pipe.ltrim(sharing.DISPATCH_WAKE_KEY, 0, 0)
            pipe.execute()

    def join_backlog(self, task_id: int, kind: str, owner: str, counted_as: tuple[str, str]) -> bool:
        """Start a claimed task: it waits for its turn in its owner's backlog, and the field
        `counted_as` (hash, field) is counted. False when it was started already, or ended."""
        key, field = counted_as
        return bool(self._join_backlog(keys=[self.task_key(task_id), key], args=[task_id, kind, owner, field]))

    def take_turns(self, queue_keys: tuple[str, str], workers_key: str, batch: int,
                   due_limit: int) -> tuple[dict[int, str], dict[str, list[int]]]:
        """Move the due runs to their owners' backlogs, then take tasks from the backlogs in
        turns, as many as keep one job per worker waiting on each RQ queue (`queue_keys`:
        score, resize): the resizes (task -> job id) and the scoring batches (job id -> tasks)."""
        keys = [DUE_KEY, ACTIVE_KEY, *queue_keys, workers_key]
        args = [TASK_PREFIX, self._lease_end(), time.time(), uuid.uuid4().hex[:10], batch, due_limit]
        resizes, batches = self._take_turns(keys=keys, args=args)
        pairs = {int(resizes[i]): resizes[i + 1].decode() for i in range(0, len(resizes), 2)}
        return pairs, {b[0].decode(): [int(t) for t in b[1:]] for b in batches}

    def counts(self, user: str) -> dict[str, int]:
        """A user's counts (waiting tasks, stored bytes) and the service's waiting tasks."""
        raw = self.redis.hgetall(sharing.user_key(user))
        counts = {k.decode(): int(v) for k, v in raw.items()}
        return {"waiting": counts.get("waiting", 0), "bytes": counts.get("bytes", 0),
                "service_waiting": int(self.redis.get(sharing.WAITING_TOTAL_KEY) or 0)}

    def is_due_later(self, task_id: int) -> bool:
        return self.redis.zscore(DUE_KEY, task_id) is not None

    def overdue_tasks(self, now: float, limit: int) -> list[int]:
        """Waiting scoring tasks past their deadline."""
        return [int(t) for t in self.redis.zrangebyscore(DEADLINE_KEY, "-inf", now, start=0, num=limit)]

    def unchanged_tasks(self, now: float, limit: int) -> list[int]:
        """Waiting tasks whose lease has run out: nothing has changed them for a while."""
        return [int(t) for t in self.redis.zrangebyscore(ACTIVE_KEY, "-inf", now, start=0, num=limit)]

    def renew_lease(self, task_id: int) -> None:
        self.redis.zadd(ACTIVE_KEY, {task_id: self._lease_end()}, xx=True)

    def stop_tracking(self, task_id: int) -> None:
        """Drop a task that no longer waits from the sets of waiting tasks."""
        for key in (ACTIVE_KEY, DEADLINE_KEY, DUE_KEY):
            self.redis.zrem(key, task_id)

    def replace_job(self, task_id: int, lost_job: str, new_job: str, max_losses: int, counted: bool = True) -> str:
        """'replaced', 'fail' (lost `max_losses` times, this one `counted`) or 'moved' (not
        waiting on `lost_job`)."""
        args = [task_id, lost_job, new_job, max_losses, self._lease_end(), int(counted)]
        return self._replace_job(keys=[self.task_key(task_id), ACTIVE_KEY], args=args).decode()

    # --- files ----------------------------------------------------------------------------
    def photo_lock(self, digest: str):
        """Held while a stored photo's file is removed or put in place (see
        lifecycle.keep_photo)."""
        return self.redis.lock(self._photo_lock_key(digest), timeout=30, blocking_timeout=10)

    def remove_photo_user(self, digest: str, task_id: int) -> int:
        """Forget that `task_id` uses the photo; return how many tasks still do."""
        pipe = self.redis.pipeline()
        pipe.srem(self.photo_key(digest), task_id)
        pipe.scard(self.photo_key(digest))
        return pipe.execute()[1]

    def photo_users(self, digest: str) -> int:
        return self.redis.scard(self.photo_key(digest))

    def photo_user_counts(self, digests: list[str]) -> list[int]:
        """How many tasks use each of the photos `digests`, in one round trip."""
        with self.redis.pipeline(transaction=False) as pipe:
            for digest in digests:
                pipe.scard(self.photo_key(digest))
            return pipe.execute()

    def name_result_file(self, name: str) -> None:
        self.redis.sadd(RESULT_FILES_KEY, name)

    def remove_result_name(self, name: str) -> None:
        self.redis.srem(RESULT_FILES_KEY, name)

    def named_result_files(self, names: list[str]) -> list[bool]:
        return [bool(x) for x in self.redis.smismember(RESULT_FILES_KEY, names)] if names else []


# --- waiting answers (Prefer: wait) ------------------------------------------------------
# Listen for a task's end: name the waiter's list in the task's waiters set (kept at least as
# long as this wait) and tell whether the task still waits, in one step: an end that comes
# later is pushed to the list (_WAKE), one that came before is seen here. 1 = listening.
# KEYS: waiters, task.  ARGV: waiter's list, seconds the set must last.
_LISTEN = """
local state = redis.call('HGET', KEYS[2], 'state')
if state ~= 'queued' and state ~= 'running' then return 0 end
redis.call('SADD', KEYS[1], ARGV[1])
if redis.call('TTL', KEYS[1]) < tonumber(ARGV[2]) then redis.call('EXPIRE', KEYS[1], ARGV[2]) end
return 1
"""


def connect_blocking(url: str, seconds: float, connections: int) -> redis.Redis:
    """A client for calls that block up to `seconds` (held answers): at most `connections`
    of them, each read given that long and a little more; never retried."""
    return redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=seconds + 5,
                                max_connections=max(1, connections), retry=Retry(NoBackoff(), 0),
                                health_check_interval=10)


class Waits:
    """Answers held until their task ends. Each held answer has a list of its own (`waiter`)
    and makes ONE blocking call on it, on `blocking`: a client whose connections have no
    short read timeout. The scripts that end or delete a task push to its waiters' lists;
    `wake` pushes to some itself (a web process that stops)."""

    def __init__(self, client: redis.Redis, blocking: redis.Redis):
        self.redis = client
        self.blocking = blocking
        self._listen = client.register_script(_LISTEN)

    def listen(self, task_id: int, waiter: str, seconds: int) -> bool:
        """Start listening for the task's end; False when it has already ended or gone."""
        keys = [WAITERS_PREFIX + str(task_id), Store.task_key(task_id)]
        return bool(self._listen(keys=keys, args=[waiter, seconds + WAKE_TTL]))

    def wait(self, waiter: str, seconds: int) -> bool:
        """Block until `waiter` is pushed to or `seconds` pass; True when it was pushed to."""
        return self.blocking.blpop([waiter], timeout=seconds) is not None

    def stop_listening(self, task_id: int, waiter: str) -> None:
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.srem(WAITERS_PREFIX + str(task_id), waiter)
            pipe.delete(waiter)
            pipe.execute()

    def wake(self, waiters: list[str]) -> None:
        with self.redis.pipeline(transaction=False) as pipe:
            for waiter in waiters:
                pipe.rpush(waiter, "stop")
                pipe.expire(waiter, WAKE_TTL)
            pipe.execute()


def _pairs(fields: dict[str, Any]) -> list:
    flat: list = []
    for key, value in fields.items():
        flat += [key, value]
    return flat
