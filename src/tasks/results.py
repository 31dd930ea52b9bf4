"""Resized images on disk and the URLs they are served at.

    UPLOAD_DIR/results/<token>.<ext>    served at /files/<token>.<ext>

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


def new_result(upload_dir: str, fmt: str) -> tuple[str, str]:
    """A fresh name for a result in format `fmt`, and the path to write it to."""
    name = f"{secrets.token_urlsafe(TOKEN_BYTES)}.{EXTENSIONS[fmt]}"
    os.makedirs(results_dir(upload_dir), exist_ok=True)
    return name, result_path(upload_dir, name)


def results_dir(upload_dir: str) -> str:
    return os.path.join(upload_dir, "results")


def result_path(upload_dir: str, name: str) -> str:
    return os.path.join(results_dir(upload_dir), name)


def url(name: str) -> str:
    return URL_PREFIX + name


def mime_type(name: str) -> str:
    return MIME_TYPES[name.rsplit(".", 1)[1]]
