"""Uploads while they arrive: spooled to disk and hashed, in one directory per web process.

    UPLOAD_DIR/tmp/<host>-<pid>-<random>.lock   locked (flock) by its web process while it lives
    UPLOAD_DIR/tmp/<host>-<pid>-<random>/       that process's uploads being received

A request removes its own spool when it ends (see `request.py`); a process killed mid-upload
cannot, but the kernel releases its lock. So a web process, when it starts, removes every
spool directory whose lock it can take, since its owner is dead, at once and without
touching the live spools of other web processes, whichever host they run on (as long as the
volume shares locks between hosts, as local disks and NFSv4 do).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import secrets
import shutil
import socket
import tempfile
from typing import IO

from src.tasks.photos import remove


class SpoolDir:
    """This process's spool directory, locked for as long as this object lives."""

    def __init__(self, upload_dir: str):
        root = os.path.join(upload_dir, "tmp")
        os.makedirs(root, exist_ok=True)
        sweep(root)
        self._lock, name = _claim(root)
        self.path = os.path.join(root, name)
        os.makedirs(self.path)


def _claim(root: str) -> tuple[IO, str]:
    """A new lock file in `root`, created and locked (opened for writing: NFS needs it)."""
    while True:
        name = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}"
        path = os.path.join(root, name + ".lock")
        lock = open(path, "x")
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _names_file(path, lock):
            return lock, name
        lock.close()  # a sweep took it between our open and flock, and removed it


def _names_file(path: str, file: IO) -> bool:
    try:
        return os.stat(path).st_ino == os.fstat(file.fileno()).st_ino
    except FileNotFoundError:
        return False


def sweep(root: str) -> None:
    """Remove the spool directories (and lock files) of web processes that are gone."""
    for entry in os.scandir(root):
        if entry.name.endswith(".lock"):
            _remove_if_unlocked(entry.path)


def _remove_if_unlocked(lock_path: str) -> None:
    try:
        lock = open(lock_path, "r+")
    except FileNotFoundError:  # another process's sweep got there first
        return
    with lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # its web process is alive
            return
        shutil.rmtree(lock_path.removesuffix(".lock"), ignore_errors=True)
        remove(lock_path)


class HashingFile:
    """A temporary file in a spool directory that hashes what is written to it, so werkzeug's
    multipart parser spools the upload to disk and we get its SHA-256 in the same pass."""

    def __init__(self, spool_dir: str):
        os.makedirs(spool_dir, exist_ok=True)  # should someone have cleared UPLOAD_DIR/tmp
        self._file = tempfile.NamedTemporaryFile(dir=spool_dir, prefix="upload-", delete=False)
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
