"""Photos on disk, kept once per SHA-256 (uploads arrive through `spools.py`):

    UPLOAD_DIR/photos/<ab>/<sha256>   a stored photo, shared by every task that sent the same bytes
"""

from __future__ import annotations

import os


def remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def photo_path(upload_dir: str, digest: str) -> str:
    return os.path.join(upload_dir, "photos", digest[:2], digest)


def keep(upload_dir: str, temp_path: str, digest: str) -> str:
    """Move an upload to its content-addressed place, atomically (rename on one disk)."""
    final = photo_path(upload_dir, digest)
    os.makedirs(os.path.dirname(final), exist_ok=True)
    os.replace(temp_path, final)
    return final
