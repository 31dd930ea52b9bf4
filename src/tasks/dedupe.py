"""The dedupe rule: which requests are the same task for one user (the same photo, by its
SHA-256, for the same kind and settings; names compared case-insensitively, spaces
collapsed). The key names the live task that holds them (src/store.py's claim)."""

from __future__ import annotations

import hashlib

from src.store import PREFIX


def normalise_name(name: str) -> str:
    """The form two names are compared in: case-insensitive, spaces collapsed."""
    return " ".join(name.split()).casefold()


def dedupe_key(owner: str, kind: str, settings: str, digest: str) -> str:
    raw = "\0".join((owner, kind, settings, digest)).encode()
    return PREFIX + "dedupe:" + hashlib.sha256(raw).hexdigest()
