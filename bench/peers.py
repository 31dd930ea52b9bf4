"""Our service side by side with its peers: thumbor and a stand-in for drf_img_resize (issue 18).

Three systems, each started once and left running, on the same cores (bench/peers/: one
module each):

- **ours**: this checkout as `make run` starts it (`python -m src.local.launcher`, 2 workers,
  the embedded valkey), through bench/task_cost.py's clients;
- **drf**: a Django 3.0 + DRF + Celery 5.0 stand-in for overload127/drf_img_resize
  (bench/peers/drf_standin/): gunicorn with 2 sync workers, a Celery prefork pool of 2, a
  private valkey as broker and result backend;
- **thumbor**: thumbor 7.8.0, PIL engine, 2 processes, originals read from a local folder.

The peers' venvs are made under var/peers/ on first use from bench/peers/requirements-*.txt.
The photos are bench/resize.py's real photograph at 2 MP (1600×1200) and 12 MP (4000×3000),
each request's made distinct by a JPEG comment so nothing dedupes, fitted in 800×800 as
JPEG (quality 85, baseline, for all three). Round by round, the systems taking turns (their
order rotates), each measures:

- **one client**: upload → resized bytes in hand, 2 MP and 12 MP (--singles each, median):
  ours POST, GET every 10 ms until ready, GET of the result (and, a row of its own, one POST
  with `Prefer: wait`, then the GET of the result); drf POST, its check route every 10 ms,
  GET of the file; thumbor the photo written to its folder, one GET;
- **burst**: --burst resizes from --clients clients at once, 2 MP and 12 MP: tasks/s from the
  first request until the last task is done (ours, drf: the server's own record) or the last
  answer is in (thumbor); the CPU time per 2 MP task of all the system's processes (from
  /proc, reaped children included), and the peak of the sum of their RSS during the 12 MP one;
- **GET** of a ready task (ours `/?task_id=N`, drf its check route) and **POST** create of a
  ~200 KB JPEG (bench/http_load.py's body, a new photo each request): wrk, --connections
  connections, --seconds; after a POST run, until the system is idle again (its tasks done).

At the end, the PSNR of a PNG output of the 12 MP photo (ours, thumbor) against a full-size
Lanczos of the decoded photo. The table gives medians across rounds (min–max when more than
one) and the ratios ours/drf and ours/thumbor.

    make bench-peers     # = .venv/bin/python bench/peers.py --rounds 5
    .venv/bin/python bench/peers.py --rounds 1 --burst 40              # a quick check
    .venv/bin/python bench/peers.py --only ours,thumbor --rounds 3
"""

from __future__ import annotations

import argparse
import collections
import io
import os
import secrets
import shutil
import statistics
import sys
import time

import encoder  # bench/encoder.py: PSNR
import http_load  # bench/http_load.py: wrk with its Lua script
import resize as resize_bench  # bench/resize.py: the photos
from peers import BOX  # bench/peers/: the systems
from peers.common import VAR, PeakMemory, cpu_seconds, settle
from PIL import Image
from task_cost import PHOTOS, tagged

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SYSTEMS = ("ours", "drf", "thumbor")
MiB = 1024 * 1024


def start(name: str, tmp: str, workers: int):
    folder = os.path.join(tmp, name)
    os.makedirs(folder)
    if name == "ours":
        from peers.ours import Ours
        return Ours(ROOT, folder, workers)
    if name == "drf":
        from peers.drf import Drf
        return Drf(folder, web_workers=2, concurrency=workers)
    from peers.thumbor import Thumbor
    return Thumbor(folder, processes=2)


def wrk(url: str, expected: str, args: list[str], seconds: int, connections: int) -> dict:
    result = http_load.wrk(url, seconds, connections, args)
    wrong = {answer: count for answer, count in result["answers"].items() if answer != expected}
    assert not wrong and not result["socket_errors"], (url, expected, result)
    return result


def turn(system, jpegs: dict[str, bytes], args, results, tmp: str) -> None:
    """One round of every measurement on one system."""
    def keep(what: str, value: float) -> None:
        results[what][system.name].append(value)

    settle(system.processes)
    for name, jpeg in jpegs.items():
        times = [system.one_client(tagged(jpeg, f"one-{secrets.token_hex(6)}")) for _ in range(args.singles)]
        keep(f"one client {name}, ms", statistics.median(times))
        if hasattr(system, "one_client_waiting"):  # ours: one POST with `Prefer: wait`
            photos = [tagged(jpeg, f"wait-{secrets.token_hex(6)}") for _ in range(args.singles)]
            times = [system.one_client_waiting(photo) for photo in photos]
            keep(f"one client {name}, Prefer: wait, ms", statistics.median(times))
    for name, jpeg in jpegs.items():
        before = cpu_seconds(system.processes())
        with PeakMemory(system.processes) as memory:
            keep(f"{args.burst} from {args.clients} clients {name}, tasks/s",
                 system.burst(jpeg, args.burst, args.clients))
        if name == "2mp":
            keep("CPU per 2mp task, ms", (cpu_seconds(system.processes()) - before) / args.burst * 1000)
        if name == "12mp":
            keep("peak memory, 12mp burst, MiB", memory.peak / MiB)
    if args.seconds and (target := system.get_target()):
        url, expected = target
        result = wrk(url, expected, ["get"], args.seconds, args.connections)
        keep(f"GET ready task, {args.connections} conns, req/s", result["rate"])
        keep("GET ready task, p50 ms", result["p50_ms"])
    folder = os.path.join(tmp, f"body-{system.name}")
    os.makedirs(folder, exist_ok=True)
    if args.seconds and (target := system.post_target(folder)):
        url, body, expected = target
        result = wrk(url, expected, body.wrk_args("new", http_load.run_tag()), args.seconds, args.connections)
        keep(f"POST create 200 KB, {args.connections} conns, req/s", result["rate"])
        keep("POST create, p50 ms", result["p50_ms"])
        keep("after POST, s until idle", settle(system.processes))


def psnr_row(systems: dict, jpeg: bytes, path: str) -> dict[str, float]:
    """PSNR of each system's PNG of the 12 MP photo against a full-size Lanczos of its decode."""
    with Image.open(path) as photo:
        reference = photo.resize(resize_bench.fitted(photo.size), Image.Resampling.LANCZOS)
    row = {}
    for name, system in systems.items():
        png = system.png(tagged(jpeg, f"psnr-{secrets.token_hex(6)}"))
        if png is not None:
            with Image.open(io.BytesIO(png)) as image:
                assert image.format == "PNG" and image.size == reference.size, (name, image.format, image.size)
                row[name] = encoder.psnr(image, reference)
    return row


def cell(values: list[float]) -> str:
    if not values:
        return "–"
    median = statistics.median(values)
    digits = 0 if median >= 100 else 1
    if len(values) == 1:
        return f"{median:.{digits}f}"
    return f"{median:.{digits}f} ({min(values):.{digits}f}–{max(values):.{digits}f})"


PSNR = "PSNR of the 12mp PNG vs full-size Lanczos, dB"


def ratio(what: str, results: dict[str, list[float]], a: str, b: str) -> str:
    if not results.get(a) or not results.get(b):
        return "–"
    ours, theirs = statistics.median(results[a]), statistics.median(results[b])
    if what == PSNR:  # decibels: a difference, not a ratio
        return f"{ours - theirs:+.1f} dB"
    return f"{ours / theirs:.2f}×"


def table(results: dict, names: list[str]) -> None:
    print("\nours/drf and ours/thumbor: ours ÷ theirs (for times and memory lower is better for ours, "
          "for rates higher)")
    print(f"\n| medians of the rounds (min–max) | {' | '.join(names)} | ours/drf | ours/thumbor |")
    print("| --- |" + " --- |" * (len(names) + 2))
    for what, by_system in results.items():
        cells = [cell(by_system.get(name, [])) for name in names]
        print(f"| {what} | {' | '.join(cells)} | {ratio(what, by_system, 'ours', 'drf')} "
              f"| {ratio(what, by_system, 'ours', 'thumbor')} |")
        if what.startswith("GET ready task") and what.endswith("req/s"):
            spread = [f"{max(v) / min(v):.2f}" if len(v := by_system.get(name, [])) > 1 else "–" for name in names]
            print(f"| GET req/s, max/min across rounds | {' | '.join(spread)} | | |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--only", default=",".join(SYSTEMS), help="systems, comma-separated")
    parser.add_argument("--singles", type=int, default=5, help="one-client resizes per photo per round")
    parser.add_argument("--burst", type=int, default=200, help="resizes per burst")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=int, default=5, help="of each wrk run (0: none)")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2, help="our WORKERS, and the stand-in's Celery pool")
    args = parser.parse_args()
    names = [name for name in args.only.split(",") if name]
    assert set(names) <= set(SYSTEMS), f"--only takes {', '.join(SYSTEMS)}"
    if args.seconds and not shutil.which("wrk"):
        sys.exit("wrk is not installed: `make bench-peers` installs it (apt-get install wrk)")
    resize_bench.prepare(["2mp", "12mp"])
    paths = {name: os.path.join(resize_bench.CACHE, PHOTOS[name]) for name in ("2mp", "12mp")}
    jpegs = {name: open(path, "rb").read() for name, path in paths.items()}
    load = os.getloadavg()
    print(f"{os.cpu_count()} cores, load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} at the start; "
          f"{', '.join(names)}; {args.rounds} rounds, bursts of {args.burst} from {args.clients} clients, "
          f"fit in {BOX}×{BOX}", flush=True)
    started = time.monotonic()
    tmp = os.path.join(VAR, "run")  # the systems' folders and logs: kept if the run fails
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    systems: dict = {}
    try:
        for name in names:
            systems[name] = start(name, tmp, args.workers)
            systems[name].one_client(tagged(jpegs["2mp"], f"warm-up-{secrets.token_hex(6)}"))
        results: dict = collections.defaultdict(lambda: collections.defaultdict(list))
        for round_number in range(args.rounds):
            shift = round_number % len(names)
            for name in names[shift:] + names[:shift]:
                turn(systems[name], jpegs, args, results, tmp)
            print(f"round {round_number + 1} done at {time.monotonic() - started:.0f} s, "
                  f"load average {os.getloadavg()[0]:.1f}", flush=True)
        for name, value in psnr_row(systems, jpegs["12mp"], paths["12mp"]).items():
            results[PSNR][name].append(value)
        table(results, names)
    except BaseException:
        print(f"\nthe systems' folders and logs are kept in {tmp}", file=sys.stderr)
        raise
    finally:
        for system in systems.values():
            system.stop()
    shutil.rmtree(tmp, ignore_errors=True)
    load = os.getloadavg()
    print(f"\n{time.monotonic() - started:.0f} s in all; load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} "
          "at the end")


if __name__ == "__main__":
    main()
