"""The systems bench/peers.py runs side by side, one module each: ours (this checkout, as
`make run` starts it), drf (a Django + DRF + Celery stand-in for overload127/drf_img_resize,
drf_standin/) and thumbor (7.8.0, its PIL engine); each peer in a venv of its own under
var/peers/, from the requirements files here.

Each system offers the same few calls (see `System`): its processes (for CPU and memory),
one resize from upload to bytes in hand, a burst of resizes from several clients, the
wrk targets it has (GET of a ready task, POST create), and a PNG output for PSNR."""

from __future__ import annotations

from typing import Protocol

import psutil

BOX = 800  # every output fits in 800×800
POLL = 0.01  # seconds between a client's polls of a task


class System(Protocol):
    name: str

    def processes(self) -> list[psutil.Process]: ...

    def one_client(self, photo: bytes) -> float:
        """ms from the upload's first byte sent to the resized JPEG's last byte received."""

    def burst(self, jpeg: bytes, count: int, clients: int) -> float:
        """tasks/s of `count` resizes (each photo made distinct) sent by `clients` at once."""

    def get_target(self) -> tuple[str, str] | None:
        """A ready task's URL for wrk and the answer it must give ("200 ready")."""

    def post_target(self, folder: str):
        """(URL, http_load.Body, the answer each POST must give), or None."""

    def png(self, photo: bytes) -> bytes | None:
        """The photo fitted in 800×800 as PNG, or None if the system has no lossless output."""

    def stop(self) -> None: ...
