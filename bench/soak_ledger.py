"""What the soak's users were answered (bench/soak.py), and what it must add up to.

Every answer is checked against the contract as it comes: a task number answered 202 is a
task; a task that later answers 404 although nobody deleted it is LOST; a task still waiting
when the soak ends is STUCK; a wrong score, progress going down, a finished task changing
its answer, or a duplicate making a second live task are contract breaks.
"""

from __future__ import annotations

import collections
import random
import statistics
import threading
from dataclasses import dataclass, field
from typing import Any

import redis
import requests

from src.local.simulator import expected_score

WAITING = (b"queued", b"running")


@dataclass(eq=False)
class Ask:
    """One request as a user sends it, and may send again: the same photo and fields."""

    kind: str  # "score" or "resize"
    photo: bytes
    fields: dict[str, str]
    filename: str
    content_type: str
    tasks: list[int] = field(default_factory=list)  # the task numbers it was answered with


@dataclass(eq=False)
class Task:
    number: int
    ask: Ask
    seen_at: float  # when an answer first named it (seconds into the soak)
    status: str = "wait"
    progress: int = 0
    result: Any = None
    error: str = ""
    ended_at: float | None = None
    deleting: bool = False  # a DELETE was sent
    deleted: bool = False  # ... and it took effect
    lost: str = ""  # how it was found missing
    followed_at: float = 0.0


class Ledger:
    """Thread-safe: the sender, the follower and the chaos loop all write to it."""

    def __init__(self, clock):
        self.clock = clock
        self.lock = threading.RLock()
        self.tasks: dict[int, Task] = {}
        self.asks: list[Ask] = []  # those answered with a task, for sending again
        self.answers: collections.Counter = collections.Counter()
        self.breaks: list[str] = []
        self.pairs: list[tuple[int, int]] = []  # a request sent again: (its task then, the answer's)
        self.ok = False

    # --- answers ------------------------------------------------------------------------
    def posted(self, ask: Ask, answer: requests.Response | None) -> bool:
        """Record a POST's answer; False when it must be sent again (no answer, or 503)."""
        body = self._count("POST", answer)
        if body is None:
            return False
        code, status = answer.status_code, body.get("status")
        with self.lock:
            earlier = ask.tasks[-1] if ask.tasks else None
            if (code, status) == (202, "received"):
                self._new(body["task"], ask, made=True)
            elif (code, status) in ((202, "wait"), (200, "ready")):
                task = self.tasks.get(body["task"]) or self._new(body["task"], ask, made=False)
                if status == "ready":
                    self._check_result(task, body["result"])
            else:
                self.broke(f"POST answered {code}: {answer.text[:160]}")
                return True
            if earlier is not None:
                self.pairs.append((earlier, body["task"]))
        return True

    def followed(self, task: Task, answer: requests.Response | None) -> None:
        """Record a GET's answer."""
        body = self._count("GET", answer)
        if body is None:
            return
        code, status = answer.status_code, body.get("status")
        with self.lock:
            if (code, status) == (404, "not_found"):
                self._not_found(task, "GET")
            elif (code, status) == (202, "wait"):
                if task.status != "wait":
                    self.broke(f"task {task.number} answered {task.status}, then wait")
                elif body["progress"] < task.progress:
                    self.broke(f"task {task.number}: progress went down from {task.progress} to {body['progress']}")
                task.progress = max(task.progress, body["progress"])
            elif code == 200 and status in ("ready", "failed"):
                self._ended(task, body)
            else:
                self.broke(f"GET task {task.number} answered {code}: {answer.text[:160]}")

    def deleting(self, task: Task) -> bool:
        """Note that a DELETE of `task` is being sent; True for the first one."""
        with self.lock:
            first, task.deleting = not task.deleting, True
            return first

    def deleted(self, task: Task, answer: requests.Response | None, first: bool) -> bool:
        """Record a DELETE's answer; False when it must be sent again (no answer, or 503).
        A 404 to the first DELETE means the task was gone already: lost."""
        body = self._count("DELETE", answer)
        if body is None:
            return False
        code, status = answer.status_code, body.get("status")
        with self.lock:
            if (code, status) == (200, "deleted") or ((code, status) == (404, "not_found") and not first):
                task.deleted = True
            elif (code, status) == (404, "not_found"):
                task.lost = task.lost or f"the first DELETE answered 404 at {self.clock():.1f} s"
            else:
                self.broke(f"DELETE task {task.number} answered {code}: {answer.text[:160]}")
        return True

    def _count(self, method: str, answer: requests.Response | None) -> dict | None:
        """Count the answer; its JSON body, or None when there was none to use (no answer,
        503) and the request is worth sending again."""
        if answer is None:
            self.answers[f"{method} no answer"] += 1
            return None
        try:
            body = answer.json()
        except ValueError:
            body = {}
        self.answers[f"{method} {answer.status_code} {body.get('status', '?')}"] += 1
        if answer.status_code == 503:
            return None
        if not body:
            self.broke(f"{method} answered {answer.status_code} without JSON: {answer.text[:160]}")
        return body

    def broke(self, what: str) -> None:
        with self.lock:
            self.breaks.append(f"{self.clock():.1f} s: {what}")

    def _new(self, number: int, ask: Ask, made: bool) -> Task:
        """A task we learn of: `made` by this POST, or one an earlier POST (whose answer
        never came) made and a later one was answered with."""
        if number in self.tasks:
            self.broke(f"task number {number} given to a second new task")
            return self.tasks[number]
        task = self.tasks[number] = Task(number, ask, self.clock())
        if not ask.tasks:
            self.asks.append(ask)
        ask.tasks.append(number)
        if not made:
            self.answers["tasks known only from a later POST"] += 1
        return task

    def _ended(self, task: Task, body: dict) -> None:
        error = (body.get("error") or {}).get("code", "")
        if task.status == "wait":
            task.status, task.result, task.error, task.ended_at = body["status"], body["result"], error, self.clock()
            task.progress = 100
            if task.status == "ready":
                self._check_result(task, task.result)
        elif (task.status, task.result, task.error) != (body["status"], body["result"], error):
            self.broke(f"task {task.number} answered {task.status} {task.result or task.error}, "
                       f"then {body['status']} {body['result'] or error}")

    def _not_found(self, task: Task, how: str) -> None:
        if task.deleting:
            task.deleted = True
        elif not task.lost:
            task.lost = (f"{how} answered 404 at {self.clock():.1f} s; last seen {task.status}, "
                         f"progress {task.progress}")

    def _check_result(self, task: Task, result: Any) -> None:
        ask = task.ask
        if ask.kind == "score":
            right = isinstance(result, float) and abs(result - expected_score(ask.fields["name"], ask.photo)) < 1e-9
        else:
            right = (isinstance(result, dict) and result["width"] <= int(ask.fields["width"])
                     and result["format"] == ask.fields.get("format", result["format"]))
        if not right:
            self.broke(f"task {task.number}: wrong result {result!r}")

    # --- what the load and the follower need ------------------------------------------------
    def some_task(self, rng: random.Random) -> Task | None:
        """A task to delete: any that is neither deleted nor being deleted, nor lost."""
        with self.lock:
            live = [t for t in self.tasks.values() if not (t.deleting or t.lost)]
            return rng.choice(live) if live else None

    def some_ask(self, rng: random.Random) -> Ask | None:
        with self.lock:
            return rng.choice(self.asks) if self.asks else None

    def pending(self) -> list[Task]:
        with self.lock:
            return [t for t in self.tasks.values() if t.status == "wait" and not (t.deleted or t.lost)]

    def to_follow(self, now: float, every: float) -> list[Task]:
        """The waiting tasks not asked about for `every` seconds; marked as asked."""
        with self.lock:
            due = [t for t in self.pending() if now - t.followed_at >= every]
            for task in due:
                task.followed_at = now
            return due

    def progress_line(self) -> str:
        with self.lock:
            tasks = list(self.tasks.values())
        ready = sum(t.status == "ready" and not t.deleted for t in tasks)
        failed = sum(t.status == "failed" and not t.deleted for t in tasks)
        deleted = sum(t.deleted for t in tasks)
        return (f"{len(tasks)} tasks: {ready} ready, {failed} failed, {deleted} deleted, "
                f"{len(self.pending())} waiting, {sum(bool(t.lost) for t in tasks)} lost")

    # --- the report ---------------------------------------------------------------------
    def report(self, client: redis.Redis) -> list[str]:
        tasks = list(self.tasks.values())
        kept = [t for t in tasks if not t.deleted]
        lost = [t for t in tasks if t.lost]
        stuck = [t for t in kept if t.status == "wait" and not t.lost]
        failed = collections.Counter(t.error for t in kept if t.status == "failed")
        self._check_pairs()
        lines = ["requests: " + ", ".join(f"{what} {n}" for what, n in sorted(self.answers.items()))]
        kinds = collections.Counter(t.ask.kind for t in tasks)
        lines += [
            f"tasks created     {len(tasks):5}  (score {kinds['score']}, resize {kinds['resize']})",
            f"  ready           {sum(t.status == 'ready' for t in kept):5}",
            f"  failed          {sum(failed.values()):5}"
            + ("  (" + ", ".join(f"{code} {n}" for code, n in failed.items()) + ")" if failed else ""),
            f"  deleted         {sum(t.deleted for t in tasks):5}",
            f"  LOST            {len(lost):5}",
            f"  STUCK           {len(stuck):5}",
            f"contract breaks   {len(self.breaks):5}",
            *(f"    {b}" for b in self.breaks[:20]),
            _durations(kept),
        ]
        waiting_in_redis, server_lines = _server_side(client, self.tasks)
        lines += server_lines
        for task in lost + stuck:
            lines.append(f"  task {task.number} ({task.ask.kind}) {'LOST: ' + task.lost if task.lost else 'STUCK'}")
            lines += ["      " + line for line in describe(client, task.number)]
        self.ok = not (lost or stuck or self.breaks or waiting_in_redis)
        return lines

    def _check_pairs(self) -> None:
        """A request sent again must be answered with its task, unless that task failed or
        was deleted meanwhile (then a new task is right)."""
        for earlier, answered in self.pairs:
            task = self.tasks[earlier]
            if answered != earlier and not (task.deleting or task.status == "failed"):
                self.broke(f"a request sent again made task {answered} while its task {earlier} was live")


def _durations(tasks: list[Task]) -> str:
    took = sorted((t.ended_at - t.seen_at, t.number) for t in tasks if t.ended_at is not None)
    if not took:
        return "no task ended"
    p99 = took[min(len(took) - 1, int(len(took) * 0.99))][0]
    return (f"time from the POST's answer to the end seen by GET (polled every second): "
            f"median {statistics.median(s for s, _ in took):.1f} s, 99th percentile {p99:.1f} s, "
            f"max {took[-1][0]:.1f} s (task {took[-1][1]})")


def _server_side(client: redis.Redis, known: dict[int, Task]) -> tuple[int, list[str]]:
    """What Redis holds at the end: tasks still waiting (any, also ones no answer named),
    the sets that keep waiting tasks moving, and RQ's failed registries."""
    states: collections.Counter = collections.Counter()
    waiting, unknown = [], 0
    for key in client.scan_iter("pt:task:*", count=1000):
        number, state = int(key.rsplit(b":", 1)[1]), client.hget(key, "state")
        states[(state or b"?").decode()] += 1
        unknown += number not in known
        if state in WAITING:
            waiting.append(number)
    sets = {name: client.zcard(f"pt:{name}") for name in ("active", "due", "deadline")}
    failed = {queue: client.zcard(f"rq:failed:{queue}") for queue in ("score", "resize")}
    lines = [
        "redis at the end: task hashes " + ", ".join(f"{s} {n}" for s, n in sorted(states.items()))
        + f" ({unknown} made by a POST whose answer never came); waiting {len(waiting)}; "
        + ", ".join(f"pt:{name} {n}" for name, n in sets.items()),
        "RQ failed registries (jobs whose run was lost or raised): "
        + ", ".join(f"{queue} {n}" for queue, n in failed.items()),
    ]
    for number in waiting:
        if number not in known:
            lines.append(f"  task {number} (no answer named it) STUCK in Redis")
            lines += ["      " + line for line in describe(client, number)]
    return len(waiting), lines


def describe(client: redis.Redis, number: int) -> list[str]:
    """Evidence for a task gone wrong: its hash, its job in RQ, where it waits."""
    def text(raw: dict) -> dict:
        return {k.decode(): v.decode(errors="replace") for k, v in raw.items()}

    task = text(client.hgetall(f"pt:task:{number}"))
    lines = [f"pt:task:{number} = {task or '(gone)'}"]
    sets = {name: client.zscore(f"pt:{name}", number) for name in ("active", "due", "deadline")}
    lines.append("scores: " + ", ".join(f"pt:{name} {score}" for name, score in sets.items()))
    job_id = task.get("job_id")
    if job_id:
        fields = ("status", "origin", "worker_name", "enqueued_at", "started_at", "ended_at", "description")
        job = dict(zip(fields, (v.decode() if v else None for v in client.hmget(f"rq:job:{job_id}", fields))))
        lines.append(f"rq:job:{job_id} = {job}")
        if job["origin"]:
            queue = "rq:queue:" + job["origin"]
            lines.append(f"position on {queue}: {client.lpos(queue, job_id)}")
        if job["worker_name"]:
            lines.append(f"pt:alive:{job['worker_name']} = {client.get('pt:alive:' + job['worker_name'])}")
    return lines
