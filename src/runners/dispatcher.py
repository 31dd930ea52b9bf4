"""`python -m src.runners.dispatcher`: hands the tasks' runs to RQ's queues, on time, in
batches and in turns by user (src/tasks/turns.py), and enqueues the sweeps every
SWEEP_INTERVAL. Any number may run. Why not RQ's scheduler, and how: docs/architecture.md ("Runs on time, in batches").
"""

from __future__ import annotations

import logging
import signal
import time

import redis

from src.settings import Settings, current_settings
from src.store import Store, connect
from src.tasks import queues, turns

log = logging.getLogger("photo_tasks.dispatcher")

TICK = 0.02  # seconds between looks at `pt:due` when nothing is due
MAX_PAUSE = 5.0  # longest wait for Redis between tries


class Dispatcher:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.store = Store(connect(settings.redis_url, fail_fast=True), settings.task_ttl, settings.lease)
        self.next_sweep = 0.0
        self.stopping = False

    def run(self) -> None:
        pause = 0.1
        while not self.stopping:
            try:
                busy = self.tick()
                pause = 0.1
            except redis.RedisError as exc:
                log.warning("Redis unavailable (%s); trying again in %.1f s", exc, pause)
                busy = False
                time.sleep(pause)
                pause = min(pause * 2, MAX_PAUSE)
            if not busy:
                self._idle()

    def tick(self) -> bool:
        """Hand the runs that are due and have their turn to RQ (and enqueue the sweeps when
        their time comes); True when so many were handed that more may be waiting already."""
        now = time.time()
        handed = turns.hand_out(self.store, self.settings)  # runs due, and backlogs in turns
        if now >= self.next_sweep:
            queues.enqueue_sweeps(self.store.redis, self.settings.sweep_interval)
            self.next_sweep = now + self.settings.sweep_interval
        return handed > 0  # a worker took a job: look again at once

    def _idle(self) -> None:
        """Wait a tick, or less when a new task is created (or Redis is away: then sleep)."""
        try:
            self.store.wait_for_work(TICK)
        except redis.RedisError:
            time.sleep(TICK)

    def stop(self, *_) -> None:
        self.stopping = True


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    dispatcher = Dispatcher(current_settings())
    signal.signal(signal.SIGTERM, dispatcher.stop)
    signal.signal(signal.SIGINT, dispatcher.stop)
    log.info("dispatching due scoring runs; sweeps every %g s", dispatcher.settings.sweep_interval)
    dispatcher.run()


if __name__ == "__main__":
    main()
