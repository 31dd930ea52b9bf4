"""The request class of the app: werkzeug's, with the upload limits of the settings and file
parts spooled to this process's spool directory while they are hashed."""

from __future__ import annotations

from werkzeug.wrappers import Request

from . import photos, spools
from .settings import Settings


def request_class(settings: Settings, spool_dir: str) -> type[Request]:
    class ApiRequest(Request):
        # werkzeug answers 413 from Content-Length before reading, or while streaming.
        max_content_length = settings.max_upload_bytes
        # Bounds the text fields, and also the parser's buffer, which werkzeug feeds in 64 KiB
        # chunks on top of what it still holds: a smaller value refuses ordinary photos.
        max_form_memory_size = 500_000
        max_form_parts = 32

        def __init__(self, environ, *args, **kwargs):
            super().__init__(environ, *args, **kwargs)
            self.spooled: list[spools.HashingFile] = []

        def _get_file_stream(self, total_content_length, content_type, filename=None, content_length=None):
            spool = spools.HashingFile(spool_dir)
            self.spooled.append(spool)
            return spool

        def discard_uploads(self) -> None:
            """Remove every spooled part not moved into storage."""
            for spool in self.spooled:
                spool.close()
                photos.discard(spool.path)

    return ApiRequest
