"""Starting helper processes that neither get the terminal's Ctrl-C nor outlive their parent."""

from __future__ import annotations

import ctypes
import signal
import subprocess

PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child, before exec: get SIGTERM when the parent dies, however it dies."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def spawn(command: list[str], **kwargs) -> subprocess.Popen:
    """Start `command` in its own session (a Ctrl-C reaches only the parent, which stops its
    children in order) and tied to the parent's life."""
    return subprocess.Popen(command, stdin=subprocess.DEVNULL, start_new_session=True,
                            preexec_fn=_die_with_parent, **kwargs)
