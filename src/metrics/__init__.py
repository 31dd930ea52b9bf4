"""What the service counts, for GET /metrics (Prometheus text format, via prometheus_client).

- Task events (created, finished, scorer calls, resize times, callback attempts) are counted where they happen,
  web process or worker, into Redis (`shared.py`, `events.py`): the service's totals, the
  same from every web process, whatever restarts.
- HTTP requests are counted in memory by the web process that answers them (`web.py`).
- Queue depths and workers alive are read from RQ when /metrics is asked for (`rq_state.py`).

The hooks below are one-line calls from the code where each event happens.
"""

from src.metrics.events import callback_attempt, resize_timed, scorer_call_timed, task_created, task_finished

__all__ = ["callback_attempt", "resize_timed", "scorer_call_timed", "task_created", "task_finished"]
