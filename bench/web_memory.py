"""How much memory an upload costs the web process, and a resize costs a worker.

Web: a fresh `python wsgi.py` per run (with a private valkey-server and no workers); after a
warm-up request, --uploads concurrent resize uploads (--width 1024) of a 45 MP PNG, each a
few hundred KB on the wire; the figure is how far they raise the process's peak RSS
(VmHWM). The baseline, in the same run: the same number of uploads of a 0.3 MP PNG.

Worker: a 48 MP JPEG resized to width 1024 by our worker in burst mode (bench/memory_worker.py;
the job runs in the worker process: no work horse); the figure is the worker's peak RSS
(and its RSS once the job is done, after it gave the freed memory back). The
baseline: a 0.5 MP JPEG, the same way. With --warm ROUNDS, each worker first makes ROUNDS
batches of scorer calls, as a worker that has been scoring has, against the bundled scorer
simulator (started here, in a process of its own).

    make bench-memory     # = .venv/bin/python bench/web_memory.py --runs 3 --uploads 8
    .venv/bin/python bench/web_memory.py --runs 3 --width 1999 --warm 50
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from concurrent.futures import ThreadPoolExecutor

import requests
from PIL import Image

from src.local.embedded_redis import EmbeddedRedis, free_port
from src.local.launcher import _listening_on

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

LARGE_PNG = (7800, 5800)  # 45.2 MP
SMALL_PNG = (640, 480)
LARGE_JPEG = (8000, 6000)  # 48 MP
SMALL_JPEG = (800, 600)
MIB = 1024 * 1024


def png(size: tuple[int, int]) -> bytes:
    """Smooth colour ramps: compress to little, as a screenshot or a flat graphic does."""
    ramp = Image.linear_gradient("L").resize(size)
    image = Image.merge("RGB", (ramp, ramp.transpose(Image.Transpose.FLIP_TOP_BOTTOM), ramp.point(lambda v: v // 2)))
    buffer = io.BytesIO()
    image.save(buffer, "PNG", compress_level=9)
    return buffer.getvalue()


def jpeg(size: tuple[int, int]) -> bytes:
    """Ramps plus grain, at q90: a photograph's weight on the wire."""
    ramp = Image.linear_gradient("L").resize(size)
    noise = Image.effect_noise(size, 24)
    image = Image.merge("RGB", (ramp, noise, ramp.transpose(Image.Transpose.ROTATE_180)))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def tagged(png_bytes: bytes, tag: int) -> bytes:
    """The same pixels with a tEXt chunk after IHDR (8 + 25 bytes), so each upload is a
    distinct photo."""
    body = b"Comment\0upload %d" % tag
    chunk = struct.pack(">I", len(body)) + b"tEXt" + body + struct.pack(">I", zlib.crc32(b"tEXt" + body))
    return png_bytes[:33] + chunk + png_bytes[33:]


def peak_rss(pid: int) -> int:
    """The process's peak resident set size (VmHWM), in bytes."""
    with open(f"/proc/{pid}/status") as status:
        line = next(line for line in status if line.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024


class Web:
    """`python wsgi.py`, as `make run` starts it, on a free loopback port."""

    def __init__(self, env: dict[str, str], width: int):
        self.width = width
        port = free_port()
        self.url = f"http://127.0.0.1:{port}/"
        self.process = subprocess.Popen([sys.executable, "wsgi.py"], cwd=ROOT, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL, env={**os.environ, **env, "PORT": str(port)})
        deadline = time.monotonic() + 20
        while True:
            try:
                requests.get(self.url, params={"task_id": 1}, timeout=1)
                return
            except requests.ConnectionError:
                if time.monotonic() > deadline:
                    raise RuntimeError("the web process did not start") from None
                time.sleep(0.1)

    def post(self, photo: bytes) -> requests.Response:
        return requests.post(self.url, files={"photo": ("photo", photo), "width": (None, str(self.width))}, timeout=120)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait()


def web_growth(env: dict[str, str], width: int, photo: bytes, uploads: int, first_tag: int) -> int:
    """How far `uploads` concurrent uploads of `photo` raise a fresh web process's peak RSS."""
    web = Web(env, width)
    try:
        assert web.post(tagged(png(SMALL_PNG), -first_tag)).status_code == 202  # warm-up: each code path once
        before = peak_rss(web.process.pid)
        with ThreadPoolExecutor(max_workers=uploads) as pool:
            answers = pool.map(web.post, [tagged(photo, first_tag + i) for i in range(uploads)])
            codes = [answer.status_code for answer in answers]
        assert codes == [202] * uploads, codes
        return peak_rss(web.process.pid) - before
    finally:
        web.stop()


def worker_peaks(env: dict[str, str], width: int, photo: bytes, warm: int) -> dict[str, int]:
    """Peak RSS of the worker that resizes `photo`: the task is posted to the web, then
    bench/memory_worker.py runs it and reports."""
    web = Web(env, width)
    try:
        answer = web.post(photo)
        assert answer.status_code == 202, answer.text
        report = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "memory_worker.py"), "--warm", str(warm)],
                                cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True, check=True)
        done = requests.get(web.url, params={"task_id": answer.json()["task"]}, timeout=10).json()
        assert done["status"] == "ready", done
        return json.loads(report.stdout.strip().splitlines()[-1])
    finally:
        web.stop()


def mib(values: list[int]) -> str:
    return f"{statistics.median(values) / MIB:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--uploads", type=int, default=8)
    parser.add_argument("--width", type=int, default=1024, help="of every resize asked for")
    parser.add_argument("--warm", type=int, default=0, help="batches of scorer calls each worker makes first")
    args = parser.parse_args()

    photos = {"large png": png(LARGE_PNG), "small png": png(SMALL_PNG),
              "large jpeg": jpeg(LARGE_JPEG), "small jpeg": jpeg(SMALL_JPEG)}
    for name, photo in photos.items():
        print(f"{name}: {len(photo) / 1024:.0f} KiB", file=sys.stderr)
    with tempfile.TemporaryDirectory() as tmp:
        redis = EmbeddedRedis(os.path.join(tmp, "valkey"), appendonly=False).start()
        env = {"REDIS_URL": redis.url, "HOST": "127.0.0.1", "MAX_UPLOAD_BYTES": str(100 * MIB),
               "UPLOAD_DIR": os.path.join(tmp, "uploads"), "SCORER_URL": "http://127.0.0.1:9/"}
        figures: dict[str, list[int]] = {name: [] for name in (*photos, "worker")}
        scorer = None
        try:
            if args.warm:
                port = free_port()
                scorer = subprocess.Popen([sys.executable, "-m", "src.local.simulator", "--port", str(port)], cwd=ROOT,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                _listening_on(port, "the scorer simulator")(scorer)
                env.update(SCORER_URL=f"http://127.0.0.1:{port}/api/", WARM_PHOTO=os.path.join(tmp, "warm.jpg"))
                with open(env["WARM_PHOTO"], "wb") as file:
                    file.write(photos["small jpeg"])
            for run in range(args.runs):
                for number, name in enumerate(("small png", "large png")):
                    first_tag = (2 * run + number) * args.uploads + 1  # every upload a new photo
                    figures[name].append(web_growth(env, args.width, photos[name], args.uploads, first_tag))
                for name in ("small jpeg", "large jpeg"):
                    redis_flush(redis)  # the uploads above queued jobs: this worker runs only ours
                    peaks = worker_peaks(env, args.width, photos[name], args.warm)
                    figures[name].append(peaks["own_peak_rss"])
                    if name == "large jpeg":
                        figures["worker"].append(peaks["own_rss_after"])
                print(f"run {run + 1}: " + ", ".join(f"{name} {value[-1] / MIB:.1f} MiB"
                                                  for name, value in figures.items()), file=sys.stderr)
        finally:
            redis.stop()
            if scorer:
                scorer.terminate()
                scorer.wait()

    small_png, large_png = statistics.median(figures["small png"]), statistics.median(figures["large png"])
    print(f"\nmedians of {args.runs} runs\n")
    print("| measure | baseline | measured | ratio |")
    print("| --- | --- | --- | --- |")
    print(f"| web peak RSS growth, {args.uploads} concurrent uploads | {mib(figures['small png'])} MiB (0.3 MP PNG) "
          f"| {mib(figures['large png'])} MiB (45 MP PNG) | {large_png / max(small_png, 1):.2f}× |")
    print(f"| worker peak RSS, one resize | {mib(figures['small jpeg'])} MiB (0.5 MP JPEG) "
          f"| {mib(figures['large jpeg'])} MiB (48 MP JPEG) "
          f"| {statistics.median(figures['large jpeg']) / statistics.median(figures['small jpeg']):.2f}× |")
    print(f"\nThe worker's RSS once its last job (the 48 MP one) was done: {mib(figures['worker'])} MiB"
          f"{f', after {args.warm} batches of scorer calls' if args.warm else ''}. Every resize: width {args.width}.")


def redis_flush(redis: EmbeddedRedis) -> None:
    """Our private server: start each worker measurement from an empty queue."""
    import redis as redis_py

    client = redis_py.Redis.from_url(redis.url)
    client.flushall()
    client.close()


if __name__ == "__main__":
    main()
