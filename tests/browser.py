"""Debian's chromium under Playwright, for the page's tests and its screenshot.

Playwright cannot download its own browser here, so it drives the system's chromium
(`apt-get install chromium`), found on PATH or at $CHROMIUM.
"""

from __future__ import annotations

import os
import shutil

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]


def find_chromium() -> str | None:
    given = os.environ.get("CHROMIUM")
    if given:
        return given if os.access(given, os.X_OK) else None
    return next(filter(None, map(shutil.which, CANDIDATES)), None)


def launch(playwright, executable: str):
    return playwright.chromium.launch(executable_path=executable, args=ARGS)
