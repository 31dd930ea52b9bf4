"""What one attempt's outcome means for a callback.

2xx: delivered. 410: the receiver wants no more (failed, no more attempts). A connection
error, a timeout, 408, 425, 429 or 5xx: tried again after the next step of
WEBHOOK_RETRY_SCHEDULE, or after the receiver's Retry-After when that is longer (at most
MAX_RETRY_AFTER); after the last step, failed. Anything else, a redirect included (never
followed): failed.
"""

from __future__ import annotations

import email.utils
import time
from dataclasses import dataclass

RETRIED = {408, 425, 429}
MAX_RETRY_AFTER = 86400.0  # a receiver cannot park a callback for longer than a day


@dataclass(frozen=True)
class Verdict:
    state: str  # 'delivered', 'failed' or 'pending' (tried again)
    delay: float = 0.0  # seconds until the next attempt, when pending


def verdict(status: int | None, attempts: int, schedule: tuple[float, ...],
            retry_after: float | None = None) -> Verdict:
    """The verdict after `attempts` attempts, the last answered `status` (None: no answer)."""
    if status is not None and 200 <= status < 300:
        return Verdict("delivered")
    retried = status is None or status in RETRIED or 500 <= status < 600
    if not retried or attempts > len(schedule):
        return Verdict("failed")
    return Verdict("pending", max(schedule[attempts - 1], min(retry_after or 0.0, MAX_RETRY_AFTER)))


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """A Retry-After header (seconds, or an HTTP date) as seconds from now; None if absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment is None or moment.tzinfo is None:
        return None
    return max(0.0, moment.timestamp() - (time.time() if now is None else now))
