"""The per-user and service limits as the claim script checks them (src/store_sharing.py),
and what each refusal answers: its status, its words and its Retry-After."""

from __future__ import annotations

from dataclasses import dataclass

from src.settings import Settings


@dataclass(frozen=True)
class Refusal:
    status: int
    code: str
    message: str
    retry_after: int | None  # seconds; None: no Retry-After (the quota frees only by deletes)


def claim_limits(settings: Settings) -> tuple:
    """The limits, in the order the claim script takes them (0 = off)."""
    return (settings.user_max_waiting, settings.user_rate, settings.user_burst,
            settings.user_max_stored_bytes, settings.queue_max)


def refusal(code: str, retry_after: int, settings: Settings) -> Refusal:
    """What the claim script's refusal `code` answers."""
    if code == "rate_limited":
        return Refusal(429, code, f"more than USER_RATE ({settings.user_rate:g}) new tasks a second "
                       f"(bursts of USER_BURST, {settings.user_burst}); try again in {retry_after} s",
                       retry_after)
    if code == "too_many_tasks":
        return Refusal(429, code, f"you already have USER_MAX_WAITING ({settings.user_max_waiting}) tasks "
                       "waiting; send more once some have finished", retry_after)
    if code == "quota_exceeded":
        return Refusal(507, code, f"your tasks already hold USER_MAX_STORED_BYTES "
                       f"({settings.user_max_stored_bytes} bytes) of photos and results; delete some tasks "
                       "to free space", None)
    if code == "overloaded":
        return Refusal(503, code, f"the service has QUEUE_MAX ({settings.queue_max}) tasks waiting; "
                       "try again shortly", retry_after)
    raise ValueError(f"unknown refusal {code!r}")


def disk_full(settings: Settings) -> Refusal:
    return Refusal(507, "insufficient_storage", f"the upload file system has less than MIN_FREE_BYTES "
                   f"({settings.min_free_bytes} bytes) free; try again later", DISK_RETRY_AFTER)


DISK_RETRY_AFTER = 30  # seconds: space comes back when an operator or the expiry frees it
