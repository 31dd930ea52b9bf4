"""Recognising and checking an uploaded photo with Pillow, before anything is stored."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from .errors import ApiError

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


@dataclass(frozen=True)
class ImageInfo:
    format: str
    width: int
    height: int

    @property
    def mime_type(self) -> str:
        return SUPPORTED[self.format]


def inspect(path: str, max_pixels: int) -> ImageInfo:
    """Identify the image by its content and prove it decodes.

    415 when it is not an image of a supported format, 422 when it is one but corrupt,
    truncated or larger than `max_pixels`. A JPEG is decoded at 1/8 scale (`draft`), so even
    a 50 MP photo costs a few milliseconds and little memory here.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(path, formats=list(SUPPORTED)) as image:
                info = ImageInfo(ALIASES.get(image.format, image.format), *image.size)
                _check_size(info, max_pixels)
                _decode(image)
        except ApiError:
            raise
        except UnidentifiedImageError:
            raise ApiError(415, "unsupported_media_type",
                           "photo is not a JPEG, PNG, WebP, GIF, BMP or TIFF image", "photo") from None
        except Image.DecompressionBombError:
            raise _too_large(max_pixels) from None
        except Exception as exc:  # any decoder failure means a damaged file
            raise ApiError(422, "corrupt_image", f"photo could not be decoded: {exc}", "photo") from None
    return info


def _check_size(info: ImageInfo, max_pixels: int) -> None:
    if info.width < 1 or info.height < 1:
        raise ApiError(422, "corrupt_image", "photo has no pixels", "photo")
    if info.width * info.height > max_pixels:
        raise _too_large(max_pixels)


def _too_large(max_pixels: int) -> ApiError:
    return ApiError(422, "image_too_large", f"photo has more than {max_pixels} pixels", "photo")


def _decode(image: Image.Image) -> None:
    if image.format in ("JPEG", "MPO"):
        image.draft("RGB", (max(1, image.width // 8), max(1, image.height // 8)))
    image.load()
