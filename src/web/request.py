"""The request class of the app: werkzeug's, with the upload limits of the settings and file
parts spooled to this process's spool directory while they are hashed."""

from __future__ import annotations

import contextlib

from werkzeug.wrappers import Request

from src.settings import Settings
from src.tasks import photos
from src.web import spools

# Bounds the text fields and each part's headers, and also the parser's buffer, which
# werkzeug feeds in 64 KiB chunks on top of what it still holds: a smaller value refuses
# ordinary photos.
MAX_FORM_MEMORY_SIZE = 500_000
MAX_FORM_PARTS = 32


def request_class(settings: Settings, spool_dir: str) -> type[Request]:
    class ApiRequest(Request):
        # werkzeug answers 413 from Content-Length before reading, or while streaming (when
        # waitress, which refuses such bodies itself, is not the server). One byte more
        # than the limit, as for waitress: werkzeug also refuses a body that merely
        # reaches its limit, when it reads on to find the end.
        max_content_length = settings.max_upload_bytes + 1
        # werkzeug answers these with 413 too; the create handler makes them a 400.
        max_form_memory_size = MAX_FORM_MEMORY_SIZE
        max_form_parts = MAX_FORM_PARTS

        def __init__(self, environ, *args, **kwargs):
            super().__init__(environ, *args, **kwargs)
            self.spooled: list[spools.HashingFile] = []

        def make_form_data_parser(self):
            """werkzeug's parser, but a broken multipart body raises (a 400 `invalid_body` in
            the create handler) instead of passing as an empty form ("send name ...")."""
            parser = super().make_form_data_parser()
            parser.silent = False
            return parser

        def _get_file_stream(self, total_content_length, content_type, filename=None, content_length=None):
            spool = spools.HashingFile(spool_dir)
            self.spooled.append(spool)
            return spool

        def discard_uploads(self) -> None:
            """Remove every spooled part not moved into storage."""
            for spool in self.spooled:
                with contextlib.suppress(OSError):  # a full disk fails the flush of what was left to write
                    spool.close()
                photos.remove(spool.path)

    return ApiRequest
