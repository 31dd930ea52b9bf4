"""Resized images: their names and the URLs they are served at.

    UPLOAD_DIR/results/<token>.<ext>    served at /files/<token>.<ext> (on local disk;
                                        src/storage/ says where else they may live)

The token holds 192 random bits, so the URL is the only key a reader needs: it works in an
`<img>` tag without an API key, and cannot be guessed.
"""

from __future__ import annotations

import os
import re
import secrets

from src.tasks.resize_spec import EXTENSIONS, FORMATS

URL_PREFIX = "/files/"
TOKEN_BYTES = 24
NAME = re.compile(r"[A-Za-z0-9_-]{32}\.(?:%s)" % "|".join(EXTENSIONS.values()))
MIME_TYPES = {EXTENSIONS[fmt]: mime for fmt, mime in FORMATS.items()}
CACHE_SECONDS = 365 * 24 * 3600  # a result never changes under its name: clients may keep it a year


def new_name(fmt: str) -> str:
    """A fresh name for a result in format `fmt`."""
    return f"{secrets.token_urlsafe(TOKEN_BYTES)}.{EXTENSIONS[fmt]}"


def results_dir(upload_dir: str) -> str:
    return os.path.join(upload_dir, "results")


def result_path(upload_dir: str, name: str) -> str:
    return os.path.join(results_dir(upload_dir), name)


def url(name: str) -> str:
    return URL_PREFIX + name


def mime_type(name: str) -> str:
    return MIME_TYPES[name.rsplit(".", 1)[1]]
