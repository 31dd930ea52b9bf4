"""Photos on disk: uploads spooled while hashed, then kept once per SHA-256.

Layout under UPLOAD_DIR:

    tmp/<random>              an upload being received (removed if the request is rejected,
                              or by the next start of the app if its process died)
    photos/<ab>/<sha256>      a stored photo, shared by every task that sent the same bytes
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time

# An upload is spooled in well under this; an older spool was left by a killed process.
STALE_SPOOL_SECONDS = 3600


class HashingFile:
    """A temporary file in UPLOAD_DIR/tmp that hashes what is written to it, so werkzeug's
    multipart parser spools the upload to disk and we get its SHA-256 in the same pass."""

    def __init__(self, upload_dir: str):
        tmp_dir = os.path.join(upload_dir, "tmp")
        os.makedirs(tmp_dir, exist_ok=True)
        self._file = tempfile.NamedTemporaryFile(dir=tmp_dir, prefix="upload-", delete=False)
        self.path = self._file.name
        self._sha256 = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self._sha256.update(data)
        return self._file.write(data)

    def seek(self, *args):
        return self._file.seek(*args)

    def read(self, *args):
        return self._file.read(*args)

    def tell(self):
        return self._file.tell()

    def flush(self):
        return self._file.flush()

    def close(self):
        self._file.close()

    @property
    def digest(self) -> str:
        return self._sha256.hexdigest()


def sweep_spools(upload_dir: str) -> None:
    """Remove uploads left in UPLOAD_DIR/tmp by a web process that died mid-request."""
    tmp_dir = os.path.join(upload_dir, "tmp")
    if not os.path.isdir(tmp_dir):
        return
    cutoff = time.time() - STALE_SPOOL_SECONDS
    for entry in os.scandir(tmp_dir):
        if entry.is_file() and entry.stat().st_mtime < cutoff:
            discard(entry.path)


def discard(path: str) -> None:
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
