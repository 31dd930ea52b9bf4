"""The soak's users (bench/soak.py): one thread sends POSTs and DELETEs at a steady rate,
another follows every waiting task with GET. What they are answered goes to the Ledger."""

from __future__ import annotations

import collections
import itertools
import random
import threading
import time

import chaos
import requests
from soak_ledger import Ask, Ledger, Task

from harness import Client, noisy_photo

NAMES = ("Ann Lee", "Bo Chen", "Carla Díaz", "Dmitri Ivanov", "Eve Okafor")
FOLLOW_EVERY = 1.0  # seconds between two GETs of one waiting task
RESEND_AFTER = 2.0  # seconds before a POST or DELETE that got no answer (or 503) goes again
POST_TRIES = 4


class Load:
    def __init__(self, client: Client, ledger: Ledger, rng: random.Random, rate: float):
        self.client, self.ledger, self.rate = client, ledger, rate
        self.rng = random.Random(rng.random())  # this thread's own
        self.seeds = itertools.count(1)
        self.seed_lock = threading.Lock()
        self.resend: collections.deque = collections.deque()  # (when, send again)
        self.sending, self.following = threading.Event(), threading.Event()
        self.sender = threading.Thread(target=self._send_loop, name="sender", daemon=True)
        self.follower = threading.Thread(target=self._follow_loop, name="follower", daemon=True)

    def start(self) -> None:
        self.sending.set()
        self.following.set()
        self.sender.start()
        self.follower.start()

    def finish(self, timeout: float) -> None:
        """Stop sending new requests; send again those that got no answer, for at most
        `timeout` seconds."""
        self.sending.clear()
        self.sender.join()
        deadline = time.monotonic() + timeout
        while self.resend and time.monotonic() < deadline:
            self._resend_due()
            time.sleep(0.2)

    def settle(self, timeout: float) -> bool:
        """Keep following until no task waits, for at most `timeout` seconds; True if none does."""
        deadline = time.monotonic() + timeout
        while self.ledger.pending() and time.monotonic() < deadline:
            time.sleep(0.2)
        self.following.clear()
        self.follower.join()
        return not self.ledger.pending()

    def recheck(self) -> None:
        """Ask about every task once more (deleted ones aside): a finished task must answer
        as it did; a ready resize's file must be there."""
        for task in list(self.ledger.tasks.values()):
            if task.deleted:
                continue
            self.ledger.followed(task, self._send(self.client.get, task.number))
            if task.status == "ready" and task.ask.kind == "resize":
                answer = self._send(self.client.fetch, task.result["url"], "HEAD")
                if answer is None or answer.status_code != 200:
                    self.ledger.broke(f"task {task.number}: its result {task.result['url']} answers "
                                      f"{answer.status_code if answer is not None else 'nothing'}")

    # --- sending --------------------------------------------------------------------------
    def _send_loop(self) -> None:
        next_at = time.monotonic()
        while self.sending.is_set():
            self._resend_due()
            self._one_request()
            next_at = max(next_at + 1 / self.rate, time.monotonic() - 1)  # no bursts after a stall
            time.sleep(max(0.0, next_at - time.monotonic()))

    def _one_request(self) -> None:
        pick = self.rng.random()
        if pick < 0.50:
            self.submit(self._score_ask())
        elif pick < 0.75:
            self.submit(self._resize_ask())
        elif pick < 0.88:
            ask = self.ledger.some_ask(self.rng)
            if ask:
                self.submit(ask)  # the same request again: dedupe
        else:
            task = self.ledger.some_task(self.rng)
            if task:
                self._delete(task, self.ledger.deleting(task))

    def submit(self, ask: Ask, tries: int = 1) -> None:
        answer = self._send(self.client.post, ask.photo, filename=ask.filename,
                            content_type=ask.content_type, **ask.fields)
        if not self.ledger.posted(ask, answer):
            if tries < POST_TRIES:
                self._later(lambda: self.submit(ask, tries + 1))
            else:
                self.ledger.answers["POST given up"] += 1

    def _delete(self, task: Task, first: bool) -> None:
        if not self.ledger.deleted(task, self._send(self.client.delete, task.number), first):
            self._later(lambda: self._delete(task, False))

    def _later(self, send) -> None:
        self.resend.append((time.monotonic() + RESEND_AFTER, send))

    def _resend_due(self) -> None:
        for _ in range(len(self.resend)):
            when, send = self.resend.popleft()
            if when <= time.monotonic():
                send()
            else:
                self.resend.append((when, send))

    @staticmethod
    def _send(call, *args, **kwargs) -> requests.Response | None:
        try:
            return call(*args, **kwargs)
        except requests.RequestException:  # refused (web restarting), reset, timed out
            return None

    # --- what to send -----------------------------------------------------------------------
    def _seed(self) -> int:
        with self.seed_lock:
            return next(self.seeds)

    def _score_ask(self) -> Ask:
        seed = self._seed()
        return Ask("score", noisy_photo("JPEG", (64, 48), seed), {"name": self.rng.choice(NAMES)},
                   f"face{seed}.jpg", "image/jpeg")

    def _resize_ask(self) -> Ask:
        seed = self._seed()
        size = (2000, 1500) if self.rng.random() < 0.1 else (800, 600)
        fields = {"width": str(self.rng.choice((120, 200, 320, 480))), "fit": self.rng.choice(("contain", "cover"))}
        if self.rng.random() < 0.5:
            fields["height"] = str(self.rng.choice((100, 240)))
        fmt = self.rng.choice((None, "jpeg", "png", "webp"))
        if fmt:
            fields["format"] = fmt
        return Ask("resize", noisy_photo("JPEG", size, seed), fields, f"photo{seed}.jpg", "image/jpeg")

    def big_resize(self) -> None:
        """A resize long enough for the chaos loop to kill its work horse mid-resize."""
        seed = self._seed()
        photo, fields = chaos.big_resize(seed)
        self.submit(Ask("resize", photo, fields, f"big{seed}.png", "image/png"))

    # --- following --------------------------------------------------------------------------
    def _follow_loop(self) -> None:
        while self.following.is_set():
            for task in self.ledger.to_follow(time.monotonic(), FOLLOW_EVERY):
                self.ledger.followed(task, self._send(self.client.get, task.number))
            time.sleep(0.1)
