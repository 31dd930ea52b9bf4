"""How fast, how lean and how faithful our resize is, next to naive Pillow and to libvips.

Each image is fitted within 800×800 and written as a JPEG q85 on one thread, by four
pipelines: naive Pillow (open, resize LANCZOS, flatten any alpha on white, save), Pillow's
draft to twice the output + `thumbnail(reducing_gap=2)` (a baseline JPEG), libvips
(`thumbnail`, one thread, no operation cache) and ours (`src.jobs.resizer.resize`). Times
are medians of --runs interleaved runs of the whole call (open to file written), after one
untimed warm-up round; peak memory is the growth of peak RSS over the RSS just before the
call, in a fresh child process per pipeline and image; PSNR is of each output against naive.

The inputs are made once into var/bench/ from a real photograph, "Path" by Risto Saukonpää
(Olympus E-M1, 2560×1600), from Debian's plasma-workspace-wallpapers 4:5.27.5-2, which is
fetched with `apt-get download` and checked by SHA-256 when missing: cropped to 4:3, scaled
up with LANCZOS to 12 MP and 48 MP plus seeded Gaussian grain (JPEG q90), and a 6 MP RGBA
PNG with a radial alpha.

With --gaps, it measures instead how faithful our JPEG resize stays for each DRAFT_GAP (and
REDUCING_GAP, the same; src/jobs/resizer.py) given: at the outputs each gap treats worst,
the widest decoded at each libjpeg scale (there the decoded image is the least larger than
the output), PSNR against naive, on the 12 MP and 48 MP inputs and on the source
photograph itself (2560×1600, its native detail, not scaled up).

    make bench-resize     # = .venv/bin/python bench/resize.py --runs 11
    .venv/bin/python bench/resize.py --runs 3 --only 12mp,png
    .venv/bin/python bench/resize.py --gaps 2.0,1.9,1.8 --widths 800,1024
"""

from __future__ import annotations

import argparse
import hashlib
import math
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

os.environ["VIPS_CONCURRENCY"] = "1"  # read by libvips when it starts

import pyvips
from PIL import Image, ImageChops

from src.jobs import resizer
from src.jobs.geometry import plan
from src.jobs.resizer import resize as our_resize
from src.tasks.resize_spec import ResizeSpec

pyvips.cache_set_max(0)  # every call does all its work

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = os.path.join(ROOT, "var", "bench")

DEB_PACKAGE = "plasma-workspace-wallpapers=4:5.27.5-2"
DEB_SHA256 = "32cd18b71c8c938a18b3b351f217c02ac590e323caa3cf322fbb875ce8892f8b"
PHOTO_IN_DEB = "usr/share/wallpapers/Path/contents/images/2560x1600.jpg"
PHOTO_SHA256 = "7477457d7f17b736259f1b021864778ad4ba802cf3214e6728181ff29126bba8"
PHOTO = os.path.join(CACHE, "path-2560x1600.jpg")

BOX = 800
QUALITY = 85
GRAIN_SIGMA = 4.0  # levels of 255
IMAGES = {  # name: (file, size); 4:3 sizes that fit 800×600 exactly, so outputs compare pixel for pixel
    "12mp": ("photo-12mp.jpg", (4000, 3000)),
    "48mp": ("photo-48mp.jpg", (8000, 6000)),
    "png": ("photo-6mp-rgba.png", (2800, 2100)),
    "2mp": ("photo-2mp.jpg", (1600, 1200)),  # a phone photo sent at 2 MP (bench/task_cost.py)
}


def sha256(path: str) -> str:
    with open(path, "rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def fetch_photo() -> None:
    """The source photograph, out of the pinned Debian package."""
    with tempfile.TemporaryDirectory() as tmp:
        if subprocess.run(["apt-get", "download", DEB_PACKAGE], cwd=tmp).returncode:
            sys.exit(f"could not download {DEB_PACKAGE} (Debian only; try `apt-get update` first)")
        deb = os.path.join(tmp, next(name for name in os.listdir(tmp) if name.endswith(".deb")))
        if sha256(deb) != DEB_SHA256:
            sys.exit(f"{deb}: SHA-256 is not the pinned {DEB_SHA256}")
        subprocess.run(["dpkg-deb", "-x", deb, os.path.join(tmp, "x")], check=True)
        shutil.copyfile(os.path.join(tmp, "x", PHOTO_IN_DEB), PHOTO)
    if sha256(PHOTO) != PHOTO_SHA256:
        sys.exit(f"{PHOTO}: SHA-256 is not the pinned {PHOTO_SHA256}")


def grainy(photo: Image.Image, size: tuple[int, int], seed: int) -> Image.Image:
    """`photo` scaled to `size` with LANCZOS, plus Gaussian grain of GRAIN_SIGMA per channel:
    seeded random bytes mapped through the normal distribution's quantiles."""
    quantiles = [round(128 + GRAIN_SIGMA * statistics.NormalDist().inv_cdf((i + 0.5) / 256)) for i in range(256)]
    noise_bytes = random.Random(seed).randbytes(size[0] * size[1] * 3)
    noise = Image.frombytes("RGB", size, noise_bytes).point(quantiles * 3)
    return ImageChops.add(photo.resize(size, Image.Resampling.LANCZOS), noise, scale=1.0, offset=-128)


def with_radial_alpha(image: Image.Image) -> Image.Image:
    """Opaque in the middle, fading to fully transparent at the edges."""
    alpha = ImageChops.invert(Image.radial_gradient("L").resize(image.size, Image.Resampling.BILINEAR))
    return Image.merge("RGBA", (*image.split(), alpha))


def prepare(names: list[str]) -> None:
    """Make the inputs that var/bench/ lacks; each is written under a temporary name first."""
    os.makedirs(CACHE, exist_ok=True)
    if not os.path.exists(PHOTO):
        fetch_photo()
    with Image.open(PHOTO) as photo:
        left = (photo.width - photo.height * 4 // 3) // 2
        photo = photo.crop((left, 0, left + photo.height * 4 // 3, photo.height))
    for seed, (name, (file, size)) in enumerate(IMAGES.items()):  # the same seed whatever --only says
        path = os.path.join(CACHE, file)
        if name not in names or os.path.exists(path):
            continue
        print(f"making {path}", file=sys.stderr)
        image = grainy(photo, size, seed)
        if name == "png":
            with_radial_alpha(image).save(path + ".part", "PNG")
        else:
            image.save(path + ".part", "JPEG", quality=90)
        os.replace(path + ".part", path)


def fitted(size: tuple[int, int]) -> tuple[int, int]:
    scale = min(BOX / size[0], BOX / size[1], 1.0)
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


def naive(source: str, output: str, size: tuple[int, int] | None = None) -> None:
    image = Image.open(source)
    save_flat(image.resize(size or fitted(image.size), Image.Resampling.LANCZOS), output)


def thumbnail(source: str, output: str) -> None:
    """The Pillow shortcut the issue measured: draft to twice the output, then `thumbnail`
    with reducing_gap=2, and a baseline JPEG."""
    image = Image.open(source)
    width, height = fitted(image.size)
    image.draft("RGB", (2 * width, 2 * height))
    image.thumbnail((BOX, BOX), Image.Resampling.LANCZOS, reducing_gap=2.0)
    save_flat(image, output)


def save_flat(image: Image.Image, output: str) -> None:
    """A baseline JPEG, any alpha flattened on white."""
    if image.mode == "RGBA":
        flat = Image.new("RGB", image.size, "white")
        flat.paste(image, mask=image)
        image = flat
    image.save(output, "JPEG", quality=QUALITY)


def libvips(source: str, output: str) -> None:
    image = pyvips.Image.thumbnail(source, BOX, height=BOX)
    if image.hasalpha():
        image = image.flatten(background=255)
    image.write_to_file(output, Q=QUALITY)


# Where our time goes: ms per stage, per source, told by the pipeline's own progress reports.
OUR_STAGES: dict[str, dict[str, list[float]]] = {}


def ours(source: str, output: str) -> None:
    stages = OUR_STAGES.setdefault(source, {"decode": [], "resize": [], "encode": []})
    times = [time.perf_counter()]

    def report(stage: str) -> None:
        times.append(time.perf_counter())

    our_resize(source, ResizeSpec(width=BOX, height=BOX, fit="contain", enlarge=False,
                                  format="jpeg", quality=QUALITY), output, report)
    for stage, start, end in zip(stages, times, times[1:]):
        stages[stage].append((end - start) * 1000)


PIPELINES = {"naive": naive, "thumbnail": thumbnail, "libvips": libvips, "ours": ours}


def run(pipeline: str, source: str, output: str) -> float:
    """Milliseconds of one whole call."""
    started = time.perf_counter()
    PIPELINES[pipeline](source, output)
    return (time.perf_counter() - started) * 1000


def memory_kb(field: str) -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field + ":"))


def peak_mb(pipeline: str, source: str, output: str) -> float:
    """In a fresh process: how far one call raises the peak RSS above the RSS before it.
    (Not ru_maxrss: it keeps the forking parent's peak across exec.)"""
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")  # VmHWM := VmRSS
    rss_before = memory_kb("VmRSS")
    run(pipeline, source, output)
    return (memory_kb("VmHWM") - rss_before) / 1024


def in_fresh_process(pipeline: str, source: str, output: str) -> float:
    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
        return pool.submit(peak_mb, pipeline, source, output).result()


def psnr(path: str, reference: str) -> str:
    with Image.open(path) as image, Image.open(reference) as expected:
        if image.size != expected.size:
            return f"n/a: {image.width}×{image.height} vs {expected.width}×{expected.height}"
        histogram = ImageChops.difference(image.convert("RGB"), expected.convert("RGB")).histogram()
        squares = sum((level % 256) ** 2 * count for level, count in enumerate(histogram))
        mse = squares / (image.width * image.height * 3)
    return "∞" if mse == 0 else f"{10 * math.log10(255 ** 2 / mse):.1f}"


def measure(name: str, runs: int) -> dict[str, dict]:
    """Per pipeline: median ms, peak MB and the output's path."""
    source = os.path.join(CACHE, IMAGES[name][0])
    outputs = {p: os.path.join(CACHE, "out", f"{name}-{p}.jpg") for p in PIPELINES}
    times: dict[str, list[float]] = {p: [] for p in PIPELINES}
    for round_ in range(runs + 1):  # round 0 warms up and is not counted
        for pipeline in PIPELINES:
            elapsed = run(pipeline, source, outputs[pipeline])
            if round_:
                times[pipeline].append(elapsed)
    return {p: {"ms": statistics.median(times[p]), "mb": in_fresh_process(p, source, outputs[p]),
                "output": outputs[p]} for p in PIPELINES}


def rows(name: str, results: dict[str, dict]) -> Iterator[str]:
    naive_ms, vips_ms = results["naive"]["ms"], results["libvips"]["ms"]
    for pipeline, result in results.items():
        quality = psnr(result["output"], results["naive"]["output"])
        yield (f"| {name} | {pipeline} | {result['ms']:.0f} | {naive_ms / result['ms']:.2f}× "
               f"| {result['ms'] / vips_ms:.2f}× | {result['mb']:.0f} | {quality} |")


def width_spec(width: int) -> ResizeSpec:
    return ResizeSpec(width=width, height=None, fit="contain", enlarge=False, format="jpeg", quality=QUALITY)


def decoded_width(source: str, width: int) -> int:
    """How wide our resizer decodes `source` for an output `width` wide, at the DRAFT_GAP set."""
    with Image.open(source) as image:
        resizer.shrink_on_load(image, plan(image.size, width_spec(width)), turned=False)
        return image.width


def worst_widths(source: str, full_width: int) -> dict[int, int]:
    """{output width: decoded width} for the widest output decoded at each scale below full
    size: the least room the gap leaves the final Lanczos at that scale."""
    widest = {}
    for width in range(1, full_width):
        decoded = decoded_width(source, width)
        if decoded < full_width:
            widest[decoded] = width  # widths ascend: the last one kept is the widest
    return {width: decoded for decoded, width in widest.items()}


def sweep(names: list[str], gaps: list[float], widths: list[int]) -> None:
    """PSNR against naive of our JPEG outputs, for each gap, at its worst widths and `widths`."""
    sources = {"photo": PHOTO} | {name: os.path.join(CACHE, IMAGES[name][0])
                                  for name in names if IMAGES[name][0].endswith(".jpg")}
    print("| image | DRAFT_GAP | output width | decoded width | decoded ÷ output | PSNR dB vs naive |")
    print("| --- | --- | --- | --- | --- | --- |")
    references: dict[tuple[str, int], str] = {}  # naive's output per image and width
    for name, source in sources.items():
        with Image.open(source) as image:
            size = image.size
        for gap in gaps:
            resizer.DRAFT_GAP = resizer.REDUCING_GAP = gap
            points = worst_widths(source, size[0]) | {width: decoded_width(source, width) for width in widths}
            for width, decoded in sorted(points.items()):
                if (name, width) not in references:
                    references[name, width] = os.path.join(CACHE, "out", f"{name}-naive-{width}.jpg")
                    naive(source, references[name, width], plan(size, width_spec(width)).size)
                output = os.path.join(CACHE, "out", f"{name}-ours-{width}.jpg")
                our_resize(source, width_spec(width), output)
                print(f"| {name} {size[0]}×{size[1]} | {gap} | {width} | {decoded} | {decoded / width:.2f} "
                      f"| {psnr(output, references[name, width])} |", flush=True)


def cpu_model() -> str:
    with open("/proc/cpuinfo") as cpuinfo:
        models = [line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")]
    return f"{models[0] if models else platform.processor()} ({os.cpu_count()} cores)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=11, help="timed runs per pipeline and image")
    parser.add_argument("--only", default=",".join(IMAGES), help="comma-separated: " + ",".join(IMAGES))
    parser.add_argument("--gaps", help="comma-separated DRAFT_GAPs: measure PSNR per gap instead of speed")
    parser.add_argument("--widths", default="", help="with --gaps: output widths to measure besides the worst")
    args = parser.parse_args()
    names = args.only.split(",")
    if unknown := set(names) - set(IMAGES):
        parser.error(f"unknown images: {', '.join(sorted(unknown))}")
    prepare(names)
    os.makedirs(os.path.join(CACHE, "out"), exist_ok=True)
    print(f"$ {' '.join([os.path.relpath(sys.executable, ROOT)] + sys.argv)}\n")
    if args.gaps:
        return sweep(names, [float(gap) for gap in args.gaps.split(",")],
                     [int(width) for width in args.widths.split(",") if width])
    print(f"Python {platform.python_version()}, Pillow {Image.__version__}, "
          f"libvips {pyvips.version(0)}.{pyvips.version(1)}.{pyvips.version(2)} (pyvips {pyvips.__version__}), "
          f"{cpu_model()}; medians of {args.runs} runs\n")
    print("| image | pipeline | median ms | × naive (speed-up) | × libvips (time) | peak MB | PSNR dB vs naive |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name in names:
        for line in rows(f"{name} {IMAGES[name][1][0]}×{IMAGES[name][1][1]}", measure(name, args.runs)):
            print(line, flush=True)
    print("\nOurs, median ms per stage (open + decode, resize, encode + write):\n")
    print("| image | decode | resize | encode |\n| --- | --- | --- | --- |")
    for name in names:
        stages = OUR_STAGES[os.path.join(CACHE, IMAGES[name][0])]
        print(f"| {name} | " + " | ".join(f"{statistics.median(ms):.0f}" for ms in stages.values()) + " |")


if __name__ == "__main__":
    main()
