"""The Redis side of callback deliveries (keys in src/store.py): which are due, who holds
one, and what each attempt gave.

A finished task's callbacks are put on `pt:deliveries` (score: when due) by the script that
ends the task. A deliverer takes the due ones with a lease: taking one moves its score to the
end of the lease, so one whose deliverer is killed mid-call (or loses Redis) is due again
when the lease lapses, and is delivered again with the same webhook-id. Recording an attempt
either takes it off the set (delivered, failed) or makes it due at its next attempt. All of
it is in `pt:` keys, so Redis's append-only file keeps pending deliveries over a restart.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import redis

from src.store import CALLBACKS_PREFIX, DELIVERIES_KEY, DELIVERIES_WAKE_KEY, TASK_PREFIX

# Take up to ARGV[3] deliveries due by ARGV[1]: each is held until ARGV[2] (its lease), and
# returned with its callback entry and its task's hash. One whose task or entry is gone
# (deleted, expired) is dropped.
# KEYS: deliveries.  ARGV: now, lease end, limit, callbacks prefix, task prefix.
_TAKE = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
local taken = {}
for _, member in ipairs(due) do
  local sep = string.find(member, ':', 1, true)
  local task_id, n = string.sub(member, 1, sep - 1), string.sub(member, sep + 1)
  local entry = redis.call('HGET', ARGV[4] .. task_id, n)
  local task = redis.call('HGETALL', ARGV[5] .. task_id)
  if entry and #task > 0 then
    redis.call('ZADD', KEYS[1], ARGV[2], member)
    taken[#taken + 1] = {member, entry, task}
  else
    redis.call('ZREM', KEYS[1], member)
  end
end
return taken
"""

# Record one attempt of delivery ARGV[1] (callback n = ARGV[2]): its status ('' = no
# answer) and verdict; 'pending' makes it due again at ARGV[5]. Nothing when it was dropped
# meanwhile (its task deleted). Returns 1 when recorded.
# KEYS: deliveries, the task's callbacks.  ARGV: member, n, status, state, next due.
_RECORD = """
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 0 end
local raw = redis.call('HGET', KEYS[2], ARGV[2])
if not raw then
  redis.call('ZREM', KEYS[1], ARGV[1])
  return 0
end
local entry = cjson.decode(raw)
entry['attempts'] = entry['attempts'] + 1
if ARGV[3] == '' then entry['last_status'] = cjson.null else entry['last_status'] = tonumber(ARGV[3]) end
entry['state'] = ARGV[4]
redis.call('HSET', KEYS[2], ARGV[2], cjson.encode(entry))
if ARGV[4] == 'pending' then
  redis.call('ZADD', KEYS[1], ARGV[5], ARGV[1])
else
  redis.call('ZREM', KEYS[1], ARGV[1])
end
return 1
"""


@dataclass(frozen=True)
class Delivery:
    member: str  # "<task>:<n>" in pt:deliveries
    task_id: int
    number: int
    url: str
    webhook_id: str
    attempts: int  # made before this one
    task: dict


class DeliveryStore:
    def __init__(self, client: redis.Redis):
        self.redis = client
        self._take = client.register_script(_TAKE)
        self._record = client.register_script(_RECORD)

    def take(self, now: float, lease_end: float, limit: int) -> list[Delivery]:
        taken = []
        args = [now, lease_end, limit, CALLBACKS_PREFIX, TASK_PREFIX]
        for member, raw_entry, flat in self._take(keys=[DELIVERIES_KEY], args=args):
            member = member.decode()
            task_id, number = (int(part) for part in member.split(":"))
            entry = json.loads(raw_entry)
            task = {flat[i].decode(): flat[i + 1].decode() for i in range(0, len(flat), 2)}
            taken.append(Delivery(member, task_id, number, entry["url"], entry["id"], entry["attempts"], task))
        return taken

    def record(self, delivery: Delivery, status: int | None, state: str, next_due: float = 0.0) -> bool:
        keys = [DELIVERIES_KEY, f"{CALLBACKS_PREFIX}{delivery.task_id}"]
        args = [delivery.member, delivery.number, "" if status is None else status, state, next_due]
        return bool(self._record(keys=keys, args=args))

    def defer(self, deliveries: list[Delivery], until: float) -> None:
        """Put back deliveries taken but not attempted, due at `until` (not one that was
        dropped meanwhile)."""
        with self.redis.pipeline(transaction=False) as pipe:
            for delivery in deliveries:
                pipe.zadd(DELIVERIES_KEY, {delivery.member: until}, xx=True)
            pipe.execute()

    def renew(self, delivery: Delivery, lease_end: float) -> bool:
        """Hold a delivery taken a while ago until `lease_end`; False when it was dropped."""
        return self.redis.zadd(DELIVERIES_KEY, {delivery.member: lease_end}, xx=True, ch=True) == 1

    def next_due(self) -> float | None:
        """When the earliest delivery is due (or its lease ends); None when there is none."""
        first = self.redis.zrange(DELIVERIES_KEY, 0, 0, withscores=True)
        return first[0][1] if first else None

    def wait_for_wake(self, seconds: float) -> None:
        """Block up to `seconds` (at least 10 ms) until a task's end makes deliveries due."""
        self.redis.blpop([DELIVERIES_WAKE_KEY], timeout=max(0.01, seconds))
