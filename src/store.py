"""Everything that touches Redis for tasks: the counter, one hash per task, the dedupe index
and the photo reference sets.

Every state change is one Lua script, so concurrent web processes and workers never race
(no read-then-write from Python). Keys:

    pt:task_seq              INCR counter of task numbers
    pt:task:<N>              hash: kind, owner, state, progress, result, error_*, ...
    pt:dedupe:<sha256>       task number that holds this (user, kind, settings, photo)
    pt:photo:<sha256>        set of task numbers that use this stored photo
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

PREFIX = "pt:"
SEQ_KEY = PREFIX + "task_seq"

WAITING = ("queued", "running")
READY, FAILED = "ready", "failed"

# Claim a dedupe entry, or report the live task that already holds it (with its result).
# KEYS: dedupe key, sequence key.  ARGV: task-key prefix, then field/value pairs.
_CLAIM = """
local held = redis.call('GET', KEYS[1])
if held then
  local task = redis.call('HMGET', ARGV[1] .. held, 'state', 'result')
  if task[1] and task[1] ~= 'failed' then return {held, task[1], task[2] or ''} end
end
local id = redis.call('INCR', KEYS[2])
local fields = {}
for i = 2, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', ARGV[1] .. id, 'dedupe', KEYS[1], unpack(fields))
redis.call('SET', KEYS[1], id)
return {tostring(id), 'new', ''}
"""

# Update a task that is still waiting; progress only ever goes up. Returns the progress
# after the update, or -1 when the task is gone or finished.
# KEYS: task key.  ARGV: progress (or ''), then field/value pairs.
_UPDATE = """
local state = redis.call('HGET', KEYS[1], 'state')
if state ~= 'queued' and state ~= 'running' then return -1 end
if ARGV[1] ~= '' then
  local old = tonumber(redis.call('HGET', KEYS[1], 'progress') or '0')
  local new = tonumber(ARGV[1])
  if new > old then redis.call('HSET', KEYS[1], 'progress', new) end
end
if #ARGV > 1 then
  local fields = {}
  for i = 2, #ARGV do fields[#fields + 1] = ARGV[i] end
  redis.call('HSET', KEYS[1], unpack(fields))
end
return tonumber(redis.call('HGET', KEYS[1], 'progress') or '0')
"""

# Finish a waiting task (ready or failed) and start its time to live.
# KEYS: task key.  ARGV: ttl, then field/value pairs (state included).
_FINISH = """
local state = redis.call('HGET', KEYS[1], 'state')
if state ~= 'queued' and state ~= 'running' then return 0 end
local fields = {}
for i = 2, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', KEYS[1], 'progress', 100, unpack(fields))
redis.call('EXPIRE', KEYS[1], ARGV[1])
local dedupe = redis.call('HGET', KEYS[1], 'dedupe')
if dedupe then redis.call('EXPIRE', dedupe, ARGV[1]) end
return 1
"""

# Remove a task (and its dedupe entry if it still points at it); return its hash.
# KEYS: task key.  ARGV: task number, owner ('' = anyone may).
_REMOVE = """
local owner = redis.call('HGET', KEYS[1], 'owner')
if not owner or (ARGV[2] ~= '' and owner ~= ARGV[2]) then return nil end
local task = redis.call('HGETALL', KEYS[1])
local dedupe = redis.call('HGET', KEYS[1], 'dedupe')
if dedupe and redis.call('GET', dedupe) == ARGV[1] then redis.call('DEL', dedupe) end
redis.call('DEL', KEYS[1])
return task
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


def normalise_name(name: str) -> str:
    """The form two names are compared in: case-insensitive, spaces collapsed."""
    return " ".join(name.split()).casefold()


def dedupe_key(owner: str, kind: str, settings: str, digest: str) -> str:
    raw = "\0".join((owner, kind, settings, digest)).encode()
    return PREFIX + "dedupe:" + hashlib.sha256(raw).hexdigest()


@dataclass(frozen=True)
class Claim:
    task_id: int
    state: str  # 'new' or the existing task's state
    result: Any = None  # the existing task's result, when it is ready

    @property
    def is_new(self) -> bool:
        return self.state == "new"


class Store:
    def __init__(self, client: redis.Redis, task_ttl: int):
        self.redis = client
        self.task_ttl = task_ttl
        self._claim = client.register_script(_CLAIM)
        self._update = client.register_script(_UPDATE)
        self._finish = client.register_script(_FINISH)
        self._remove = client.register_script(_REMOVE)

    @staticmethod
    def task_key(task_id: int) -> str:
        return f"{PREFIX}task:{task_id}"

    @staticmethod
    def photo_key(digest: str) -> str:
        return f"{PREFIX}photo:{digest}"

    def claim(self, dedupe: str, **fields: Any) -> Claim:
        """Create a queued task for `dedupe`, unless a live task already holds it."""
        now = time.time()
        fields = {"state": "queued", "progress": 0, "created_at": now, "updated_at": now, **fields}
        task_id, state, result = self._claim(keys=[dedupe, SEQ_KEY], args=[PREFIX + "task:", *_pairs(fields)])
        return Claim(int(task_id), state.decode(), json.loads(result) if result else None)

    def get(self, task_id: int) -> dict[str, str] | None:
        raw = self.redis.hgetall(self.task_key(task_id))
        return {k.decode(): v.decode() for k, v in raw.items()} or None

    def waiting(self, task_id: int) -> dict[str, str] | None:
        """The task while it waits for its job to finish it; None when it is gone or done."""
        task = self.get(task_id)
        return task if task is not None and task["state"] in WAITING else None

    def update(self, task_id: int, progress: int | None = None, **fields: Any) -> int | None:
        """Record progress or fields of a waiting task; return its progress now, or None
        when it is gone or finished."""
        fields["updated_at"] = time.time()
        args = ["" if progress is None else int(progress), *_pairs(fields)]
        now = self._update(keys=[self.task_key(task_id)], args=args)
        return None if now < 0 else now

    def finish(self, task_id: int, result: Any) -> bool:
        return self._end(task_id, state=READY, result=json.dumps(result))

    def fail(self, task_id: int, code: str, message: str) -> bool:
        return self._end(task_id, state=FAILED, error_code=code, error_message=message)

    def _end(self, task_id: int, **fields: Any) -> bool:
        now = time.time()
        fields.update(updated_at=now, finished_at=now)
        args = [self.task_ttl, *_pairs(fields)]
        return bool(self._finish(keys=[self.task_key(task_id)], args=args))

    def remove(self, task_id: int, owner: str = "") -> dict[str, str] | None:
        """Delete a task if it exists (and belongs to `owner`, when given); return it."""
        flat = self._remove(keys=[self.task_key(task_id)], args=[task_id, owner])
        if flat is None:
            return None
        return {flat[i].decode(): flat[i + 1].decode() for i in range(0, len(flat), 2)}

    def photo_lock(self, digest: str):
        """Serialises adding and dropping users of one stored photo with its file on disk."""
        return self.redis.lock(f"{PREFIX}photo_lock:{digest}", timeout=30, blocking_timeout=10)

    def add_photo_user(self, digest: str, task_id: int) -> None:
        self.redis.sadd(self.photo_key(digest), task_id)

    def drop_photo_user(self, digest: str, task_id: int) -> int:
        """Forget that `task_id` uses the photo; return how many tasks still do."""
        pipe = self.redis.pipeline()
        pipe.srem(self.photo_key(digest), task_id)
        pipe.scard(self.photo_key(digest))
        return pipe.execute()[1]


def _pairs(fields: dict[str, Any]) -> list:
    flat: list = []
    for key, value in fields.items():
        flat += [key, value]
    return flat
