"""What a resize task asks for: read from the form by the web process, stored with the task,
and carried out by the resize job."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace

FITS = ("contain", "cover", "fill")
FORMATS = {"jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp"}
EXTENSIONS = {"jpeg": "jpg", "png": "png", "webp": "webp"}
DEFAULT_QUALITY = 85


@dataclass(frozen=True)
class ResizeSpec:
    """The box (`width` and/or `height`, None when not given) and how to fill it.

    `format` is "" until the source is known (the default follows the source).
    """

    width: int | None
    height: int | None
    fit: str = "contain"
    enlarge: bool = False
    format: str = ""
    quality: int = DEFAULT_QUALITY

    def resolved(self, source_format: str) -> ResizeSpec:
        """With the default format filled in (`source_format` is Pillow's name): the source's
        when we write it, else JPEG. Two requests that spell out or leave out the same
        defaults then resolve to equal specs, and dedupe to one task."""
        if self.format:
            return self
        fmt = source_format.lower() if source_format.lower() in FORMATS else "jpeg"
        return replace(self, format=fmt)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, raw: str) -> ResizeSpec:
        return cls(**json.loads(raw))
