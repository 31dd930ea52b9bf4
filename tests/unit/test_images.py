"""Photo checks at upload, on files made here: what is refused, and why."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from harness import make_photo, noisy_photo
from src.tasks import images


def check(tmp_path, data: bytes, max_pixels: int = 50_000_000):
    path = tmp_path / "upload"
    path.write_bytes(data)
    return images.inspect(str(path), max_pixels)


def code_for(tmp_path, data: bytes, max_pixels: int = 50_000_000) -> str:
    with pytest.raises(images.PhotoRejected) as caught:
        check(tmp_path, data, max_pixels)
    return caught.value.code


@pytest.mark.parametrize(("fmt", "mime"), [("JPEG", "image/jpeg"), ("PNG", "image/png"), ("GIF", "image/gif"),
                                           ("BMP", "image/bmp"), ("TIFF", "image/tiff"), ("WEBP", "image/webp")])
def test_each_supported_format_is_recognised_by_its_content(tmp_path, fmt, mime):
    info = check(tmp_path, make_photo(1, size=(30, 20), fmt=fmt))
    assert (info.format, info.width, info.height, info.mime_type) == (fmt, 30, 20, mime)


def test_not_an_image(tmp_path):
    assert code_for(tmp_path, b"%PDF-1.4 not a photo") == "unsupported_media_type"


def test_an_unsupported_image_format(tmp_path):
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, "ICO")
    assert code_for(tmp_path, buffer.getvalue()) == "unsupported_media_type"


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF"])
def test_a_photo_cut_in_half(tmp_path, fmt):
    data = noisy_photo(fmt, size=(120, 90))
    assert code_for(tmp_path, data[: len(data) // 2]) == "corrupt_image"


def test_a_header_cut_short_is_corrupt_not_unsupported(tmp_path):
    assert code_for(tmp_path, make_photo(2, fmt="PNG")[:20]) == "corrupt_image"


def test_too_many_pixels(tmp_path):
    assert code_for(tmp_path, make_photo(3, size=(100, 100)), max_pixels=9_999) == "image_too_large"


def test_known_photos_are_not_read_again(tmp_path):
    known = images.KnownPhotos(size=1)
    path = tmp_path / "photo"
    path.write_bytes(make_photo(4))
    first = known.inspect("digest", str(path), 50_000_000)
    path.write_bytes(b"gone")  # the same digest means the same bytes: not opened again
    assert known.inspect("digest", str(path), 50_000_000) == first
