"""`python -m src.worker`: one RQ worker on the service's queues, with RQ's scheduler (which
runs in whichever worker holds its lock, so any number of workers may be started)."""

from __future__ import annotations

import logging

from rq import Queue, Worker

from .queues import QUEUES
from .settings import current_settings
from .store import connect


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    conn = connect(current_settings().redis_url, fail_fast=False)
    queues = [Queue(name, connection=conn) for name in QUEUES]
    Worker(queues, connection=conn).work(with_scheduler=True)


if __name__ == "__main__":
    main()
