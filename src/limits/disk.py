"""The upload file system's free space, looked at with statvfs at most once a second per
process, so that a POST can be answered 507 `insufficient_storage` before it fills the disk."""

from __future__ import annotations

import errno
import os
import time

CHECK_EVERY = 1.0  # seconds

_seen: dict[str, tuple[float, int]] = {}  # path -> (when looked at, free bytes)


def free_bytes(path: str) -> int:
    """Bytes free for an unprivileged writer on the file system of `path` (at most
    CHECK_EVERY seconds old)."""
    now = time.monotonic()
    seen = _seen.get(path)
    if seen is None or now - seen[0] >= CHECK_EVERY:
        stats = os.statvfs(path)
        seen = _seen[path] = (now, stats.f_bavail * stats.f_frsize)
    return seen[1]


def short_of_space(path: str, minimum: int) -> bool:
    return minimum > 0 and free_bytes(path) < minimum


def is_disk_full(exc: BaseException) -> bool:
    """An error that says the disk (or the user's disk quota) is full."""
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)
