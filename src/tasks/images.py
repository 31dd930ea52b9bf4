"""Recognising and checking an uploaded photo with Pillow, before anything is stored.

No pixel is decoded here, so the web process's memory does not grow with an image's size:
Pillow reads the format and the declared size from the headers, and a per-format check of
the file's structure catches what can be told cheaply (a truncated or visibly damaged
file). The job decodes the photo in full; one that fails there ends its task with
`corrupt_image`.
"""

from __future__ import annotations

import collections
import os
import threading
import warnings
from dataclasses import dataclass

from PIL import Image, TiffImagePlugin, UnidentifiedImageError

# Pillow format name -> the MIME type we report for it.
SUPPORTED = {
    "JPEG": "image/jpeg",
    "PNG": "image/png",
    "WEBP": "image/webp",
    "GIF": "image/gif",
    "BMP": "image/bmp",
    "TIFF": "image/tiff",
}
# Formats Pillow names apart that are one of the above: a phone's multi-picture JPEG.
ALIASES = {"MPO": "JPEG"}
# Uploads inspected at once; others wait their turn (a check reads the whole file).
INSPECTIONS_AT_ONCE = 2
_inspecting = threading.BoundedSemaphore(INSPECTIONS_AT_ONCE)
# How each supported format begins (WebP: "RIFF", 4 bytes of size, "WEBP"). A file that
# begins so but that Pillow cannot open is one of them, damaged or cut short before its
# header ends (a TIFF may keep its directory at the end): 422, not 415. BMP's "BM" is left
# out, too short to tell a bitmap from a text.
_SIGNATURES = {
    "JPEG": (b"\xff\xd8\xff",),
    "PNG": (b"\x89PNG\r\n\x1a\n",),
    "GIF": (b"GIF87a", b"GIF89a"),
    "TIFF": (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+"),
}
_JPEG_EOI = b"\xff\xd9"
_GIF_TRAILER = b"\x3b"
_READ_SIZE = 64 * 1024
# Pillow warns of images over its own pixel limit; ours (MAX_IMAGE_PIXELS) is checked here.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


class Damaged(Exception):
    """The file's structure shows it is truncated or corrupt."""


class PhotoRejected(Exception):
    """The upload is no photo the service takes; `code` says why (`unsupported_media_type`:
    not an image of a supported format; `corrupt_image`, `image_too_large`). The web maps it
    to its answer."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class ImageInfo:
    format: str
    width: int
    height: int

    @property
    def mime_type(self) -> str:
        return SUPPORTED[self.format]


def inspect(path: str, max_pixels: int) -> ImageInfo:
    """Identify the image by its content and check its structure.

    PhotoRejected when it is not an image of a supported format, or is one but visibly
    corrupt or truncated, or larger than `max_pixels`.
    """
    try:
        with _inspecting, Image.open(path, formats=list(SUPPORTED)) as image:
            info = ImageInfo(ALIASES.get(image.format, image.format), *image.size)
            _check_size(info, max_pixels)
            STRUCTURE_CHECKS[info.format](image, path)
    except PhotoRejected:
        raise
    except UnidentifiedImageError:
        begins_as = _begins_as(path)
        if begins_as:
            raise _corrupt(f"a {begins_as} file whose header could not be read") from None
        raise PhotoRejected("unsupported_media_type",
                            "photo is not a JPEG, PNG, WebP, GIF, BMP or TIFF image") from None
    except Image.DecompressionBombError:
        raise _too_large(max_pixels) from None
    except Exception as exc:  # Damaged, or any parser failure: a damaged file
        raise _corrupt(str(exc)) from None
    return info


def _begins_as(path: str) -> str | None:
    """The supported format the file's first bytes name, if any."""
    with open(path, "rb") as file:
        head = file.read(12)
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    return next((fmt for fmt, starts in _SIGNATURES.items() if head.startswith(starts)), None)


class KnownPhotos:
    """What `inspect` found in photos this process has already accepted, by their SHA-256:
    the same bytes always get the same answer, so a photo sent again (a dedupe hit, a
    client's retry) is not opened and read again. At most `size` are kept, the least
    recently used dropped first."""

    def __init__(self, size: int = 4096):
        self.size = size
        self.infos: collections.OrderedDict[tuple[str, int], ImageInfo] = collections.OrderedDict()
        self.lock = threading.Lock()

    def inspect(self, digest: str, path: str, max_pixels: int) -> ImageInfo:
        key = (digest, max_pixels)
        with self.lock:
            info = self.infos.get(key)
            if info is not None:
                self.infos.move_to_end(key)
                return info
        info = inspect(path, max_pixels)
        with self.lock:
            self.infos[key] = info
            if len(self.infos) > self.size:
                self.infos.popitem(last=False)
        return info


known_photos = KnownPhotos()


def _check_size(info: ImageInfo, max_pixels: int) -> None:
    if info.width < 1 or info.height < 1:
        raise PhotoRejected("corrupt_image", "photo has no pixels")
    if info.width * info.height > max_pixels:
        raise _too_large(max_pixels)


def _too_large(max_pixels: int) -> PhotoRejected:
    return PhotoRejected("image_too_large", f"photo has more than {max_pixels} pixels")


def _corrupt(detail: str) -> PhotoRejected:
    return PhotoRejected("corrupt_image", f"photo is corrupt or truncated: {detail}")


# --- per-format checks of the structure: Pillow has opened the file and read its headers --

def _png(image: Image.Image, path: str) -> None:
    """Pillow's own check: every chunk's CRC, up to IEND; no pixel data is inflated."""
    image.verify()


def _jpeg(image: Image.Image, path: str) -> None:
    """The scan data ends with an EOI marker (FF D9 cannot occur inside it: a coded FF is
    followed by 00). Pillow has read the markers up to the first scan. Most files end with
    the marker, so the last bytes are looked at before the whole rest is searched."""
    if not (_ends_with(image.fp, _JPEG_EOI) or _contains(image.fp, _JPEG_EOI)):
        raise Damaged("no end-of-image marker after the scan data")


def _gif(image: Image.Image, path: str) -> None:
    with open(path, "rb") as file:
        file.seek(-1, os.SEEK_END)
        if file.read(1) != _GIF_TRAILER:
            raise Damaged("no GIF trailer at the end")


def _webp(image: Image.Image, path: str) -> None:
    """Nothing more: opening it ran libwebp's demuxer over the whole RIFF container."""


def _tiff(image: Image.Image, path: str) -> None:
    """Every strip or tile of the first image lies inside the file."""
    tags = image.tag_v2
    for offsets_tag, counts_tag in ((TiffImagePlugin.STRIPOFFSETS, TiffImagePlugin.STRIPBYTECOUNTS),
                                    (TiffImagePlugin.TILEOFFSETS, TiffImagePlugin.TILEBYTECOUNTS)):
        if offsets_tag in tags:
            offsets, counts = _as_tuple(tags[offsets_tag]), _as_tuple(tags.get(counts_tag, ()))
            if len(offsets) != len(counts):
                raise Damaged("strip or tile byte counts missing")
            _within(path, max(offset + count for offset, count in zip(offsets, counts)))


def _bmp(image: Image.Image, path: str) -> None:
    """An uncompressed bitmap holds all its rows (run-length ones are left to the job)."""
    tile = image.tile[0]
    if tile.codec_name == "raw":
        _within(path, tile.offset + tile.args[1] * image.height)


STRUCTURE_CHECKS = {"PNG": _png, "JPEG": _jpeg, "GIF": _gif, "WEBP": _webp, "TIFF": _tiff, "BMP": _bmp}


def _ends_with(file, marker: bytes) -> bool:
    """Whether the rest of `file` ends with `marker`; the position is left where it was."""
    position = file.tell()
    end = file.seek(0, os.SEEK_END)
    if end - len(marker) < position:
        file.seek(position)
        return False
    file.seek(end - len(marker))
    found = file.read(len(marker)) == marker
    file.seek(position)
    return found


def _contains(file, marker: bytes) -> bool:
    """Whether `marker` occurs in the rest of `file`, read in bounded pieces."""
    tail = b""
    while block := file.read(_READ_SIZE):
        if marker in tail + block:
            return True
        tail = block[-(len(marker) - 1):]
    return False


def _within(path: str, end: int) -> None:
    if end > os.path.getsize(path):
        raise Damaged(f"the pixel data runs to byte {end}, past the end of the file")


def _as_tuple(value) -> tuple:
    return tuple(value) if isinstance(value, (tuple, list)) else (value,)
