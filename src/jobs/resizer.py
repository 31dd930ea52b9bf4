"""The resize pipeline: one source image in, one upright, resized, re-encoded image out.

Fast where it matters:
- a JPEG is decoded already shrunk (`draft`: libjpeg scales by 1/2, 1/4 or 1/8 while it
  decodes), to about twice the output size, so a large photo is never decoded whole for an
  output under about half its size;
- what is left is shrunk by whole factors (`reduce`: a cheap box filter, as Pillow's
  `reducing_gap` does), and only the last step uses the high-quality Lanczos filter;
- the image is turned upright (EXIF orientation) on the decoded, already smaller pixels, and
  an image with alpha bound for JPEG is flattened before resizing, not after;
- a JPEG is written baseline, with standard tables (ENCODER_OPTIONS).

Lean where it matters (see "Memory" in docs/performance.md): besides the decoded pixels and
the output, little is held at once: a large resize goes in bands, and the decoded pixels are
let go before the encoding.

Pillow lets go of the GIL while it resamples, so the Lanczos runs in bands on a few threads
at once: one photo uses the cores a single call would leave idle (docs/cost.md).
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from typing import BinaryIO

from PIL import ExifTags, Image, ImageCms, ImageOps, TiffImagePlugin, WebPImagePlugin  # noqa: F401  (see below)

from src.jobs.geometry import Plan, plan
from src.tasks.resize_spec import ResizeSpec

# How much larger than the output the decoded JPEG stays, and how far whole-factor reducing
# goes before Lanczos takes over: one gap, so that what a draft leaves (less than twice the
# gap) is never reduced again, beside the decoded image. Measured in bench/resize.py (see
# docs/performance.md): the smallest that keeps 38 dB against naive Pillow where it is at
# its worst (an output just narrow enough to be decoded at the next smaller scale); 2.0 gave
# 37.9.
DRAFT_GAP = 2.05
REDUCING_GAP = DRAFT_GAP
# The Lanczos goes in bands of BAND_ROWS output rows when Pillow's intermediate image (output
# width × source rows read) would be larger than BANDED_ABOVE pixels (8 MiB in RGB), and
# otherwise in one band per thread; RESIZE_THREADS bands are resized at once.
BAND_ROWS = 64
BANDED_ABOVE = 2**21
RESIZE_THREADS = min(4, len(os.sched_getaffinity(0)))
# Pillow resizes an image with alpha premultiplied, so no colour bleeds in from clear pixels.
PREMULTIPLIED = {"RGBA": "RGBa"}

# Pillow imports its format plugins when it first opens or saves an image: 20 ms or more
# (bench/task_cost.py; docs/cost.md). Done here once, when the worker imports this module,
# for the formats the service takes: the five Pillow loads first, plus TIFF and WebP
# (imported above), so it never loads all forty.
Image.preinit()

PILLOW_FORMATS = {"jpeg": "JPEG", "png": "PNG", "webp": "WEBP"}
# JPEG: baseline with libjpeg's standard Huffman tables and 4:2:0 chroma (bench/encoder.py,
# docs/cost.md): at 800×600 a progressive, optimised encoding took 15-20× the time of this one
# (the largest single part of a small photo's resize) to save 6 % of the bytes; optimised
# tables alone took 2-3× for 1 %.
ENCODER_OPTIONS = {
    "jpeg": lambda quality: {"quality": quality, "optimize": False, "progressive": False},
    "png": lambda quality: {"compress_level": 6},
    "webp": lambda quality: {"quality": quality, "method": 4},
}
SWAPPING_ORIENTATIONS = (5, 6, 7, 8)  # EXIF orientations that turn the image a quarter
SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")  # Pillow opens some 16-bit grey as "I"
WHITE = (255, 255, 255)


class CorruptImage(Exception):
    """The photo passed the checks at upload but its pixels could not be decoded."""


@dataclass(frozen=True)
class Resized:
    width: int
    height: int
    bytes: int


def resize(source: str | BinaryIO, spec: ResizeSpec, output: str | BinaryIO,
           report: Callable[[str], None] = lambda stage: None) -> Resized:
    """Resize the image in `source` (a path, or a seekable file) as `spec` says and write it
    to `output` (a path, or a file open for writing).

    `report` is told each stage as it is done: "decoded", "resized", "encoded".
    """
    with Image.open(source) as image:
        with _decoding():
            turned = image.getexif().get(ExifTags.Base.Orientation, 1) in SWAPPING_ORIENTATIONS
            upright = (image.height, image.width) if turned else image.size
            layout = plan(upright, spec)
            shrink_on_load(image, layout, turned)
            image.load()  # a GIF stays on its first frame
        report("decoded")
        ImageOps.exif_transpose(image, in_place=True)
        icc_profile = image.info.get("icc_profile")
        pixels = _working_mode(image, keep_alpha=spec.format != "jpeg")
    del image  # often the same image as `pixels`: freed once scaled, not held while encoding
    pixels = _scale(pixels, layout, upright)
    report("resized")
    pixels, icc_profile = _output_colours(pixels, icc_profile)
    options = ENCODER_OPTIONS[spec.format](spec.quality)
    if icc_profile:
        options["icc_profile"] = icc_profile
    pixels.info.clear()  # no EXIF, XMP, comments or other metadata
    pixels.save(output, PILLOW_FORMATS[spec.format], **options)
    report("encoded")
    size = os.path.getsize(output) if isinstance(output, str) else output.tell()
    return Resized(pixels.width, pixels.height, size)


def shrink_on_load(image: Image.Image, layout: Plan, turned: bool) -> None:
    """Ask a JPEG decoder for the smallest scale that still leaves DRAFT_GAP × the pixels
    the output needs (other formats ignore `draft`); `image.size` becomes the decoded size.
    Public for bench/resize.py, which finds with it the outputs each gap treats worst."""
    scale_x, scale_y = layout.scale
    if turned:
        scale_x, scale_y = scale_y, scale_x
    needed = (int(image.width * scale_x * DRAFT_GAP) + 1, int(image.height * scale_y * DRAFT_GAP) + 1)
    image.draft(None, needed)


@contextmanager
def _decoding() -> Iterator[None]:
    """Pillow decodes when first asked to (`load`, or a PNG's `getexif`): a decoder's
    failure is the photo's fault, damage the upload's structural checks let through."""
    try:
        yield
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise CorruptImage(str(exc) or type(exc).__name__) from exc


def _working_mode(image: Image.Image, keep_alpha: bool) -> Image.Image:
    """Pixels in a mode Pillow resizes well: RGBA when the alpha is kept, otherwise flattened
    on white; 16-bit grey scaled to 8 bits; palettes expanded; L, RGB and CMYK as they are."""
    if image.has_transparency_data:
        rgba = image if image.mode == "RGBA" else image.convert("RGBA")
        if keep_alpha:
            return rgba
        flat = Image.new("RGB", rgba.size, WHITE)
        flat.paste(rgba, mask=rgba)
        return flat
    if image.mode in SIXTEEN_BIT_MODES:
        return image.convert("I").point(lambda value: value / 256).convert("L")
    if image.mode in ("L", "RGB", "CMYK"):
        return image
    return image.convert("L" if image.mode == "1" else "RGB")


def _scale(pixels: Image.Image, layout: Plan, upright: tuple[int, int]) -> Image.Image:
    """Lanczos to the output size, from the planned region of the (maybe already shrunk)
    pixels, after shrinking by whole factors while that keeps REDUCING_GAP × the output (what
    Pillow's `reducing_gap` does, done here once for the whole image)."""
    mode = pixels.mode
    if mode in PREMULTIPLIED:  # once here, not by Pillow in every band
        pixels = pixels.convert(PREMULTIPLIED[mode])
    to_x, to_y = pixels.width / upright[0], pixels.height / upright[1]
    left, top, right, bottom = layout.box
    width, height = layout.size
    factors = (int((right - left) * to_x / width / REDUCING_GAP) or 1,
               int((bottom - top) * to_y / height / REDUCING_GAP) or 1)
    if factors != (1, 1):
        pixels = pixels.reduce(factors)
        to_x, to_y = to_x / factors[0], to_y / factors[1]
    box = (left * to_x, top * to_y, right * to_x, bottom * to_y)
    scaled = _in_bands(pixels, layout.size, box)
    return scaled.convert(mode) if mode in PREMULTIPLIED else scaled


def _in_bands(pixels: Image.Image, size: tuple[int, int], box: tuple[float, ...]) -> Image.Image:
    """Lanczos in bands of output rows, RESIZE_THREADS of them at once. Pillow resizes across
    first, into an intermediate as tall as the rows it reads (12 MiB for a 1024-wide output of
    a 48 MP JPEG decoded at 1/2): past BANDED_ABOVE the bands are BAND_ROWS tall, so only a few
    bands' worth of it exists at once. A band reads the rows its filter reaches beyond its
    edges, so the bands join without a seam: together they are one whole resize but for
    rounding. Those rows are resized twice (6 output rows' worth a band)."""
    width, height = size
    left, top, right, bottom = box
    step = (bottom - top) / height  # source rows per output row
    rows = BAND_ROWS if width * (bottom - top) > BANDED_ABOVE else -(-height // RESIZE_THREADS)
    if rows >= height:
        return pixels.resize(size, Image.Resampling.LANCZOS, box=box)

    def band(y: int) -> Image.Image:
        end = min(y + rows, height)
        region = (left, top + y * step, right, top + end * step)
        return pixels.resize((width, end - y), Image.Resampling.LANCZOS, box=region)

    scaled = Image.new(pixels.mode, size)
    starts = range(0, height, rows)
    for y, part in zip(starts, _threads().map(band, starts)):
        scaled.paste(part, (0, y))
    return scaled


@cache
def _threads() -> ThreadPoolExecutor:
    """Made on first use, in the process that resizes (never inherited by a fork)."""
    return ThreadPoolExecutor(RESIZE_THREADS, thread_name_prefix="resize")


def _output_colours(pixels: Image.Image, icc_profile: bytes | None) -> tuple[Image.Image, bytes | None]:
    """CMYK (print) becomes RGB for the web: through its ICC profile into sRGB when it has one."""
    if pixels.mode != "CMYK":
        return pixels, icc_profile
    if icc_profile:
        try:
            srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
            source = ImageCms.ImageCmsProfile(io.BytesIO(icc_profile))
            return ImageCms.profileToProfile(pixels, source, srgb, outputMode="RGB"), srgb.tobytes()
        except ImageCms.PyCMSError:
            pass  # a damaged profile: fall back to the plain conversion
    return pixels.convert("RGB"), None
