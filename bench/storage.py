"""What the object store costs next to local disk: per resize task, end to end, and in the
work horse's memory.

    make bench-storage    # = .venv/bin/python bench/storage.py --rounds 9
    .venv/bin/python bench/storage.py --rounds 3 --skip-memory

Two copies of the service run side by side, each with one worker (and the dispatcher), on
one private valkey (a database each): one keeps files under UPLOAD_DIR, the other in a real
SeaweedFS `weed` on loopback (STORAGE_URL, tests/harness.py's WeedServer). Each round posts
the same kind of resize to both, in alternating order, and times POST to `ready` (GETs every
2 ms): the web storing the photo, the job reading it and storing its result. Photos of 2 MP
and 12 MP (JPEG q90 with grain), each round a new output width so nothing is deduplicated;
a new photo each round (its own grain), so the photo is always uploaded; medians over the
rounds after one untimed warm-up round, and their difference.

The same, without the resize: what the storage itself adds per task, in this process, each
backend's calls timed in turn (interleaved, medians of --ops-rounds): the web's put_photo (of
a copy of the upload, as a spool), the job's open_photo read through, its write_result of a
200 KB result, and the removal of both.

Memory: for each backend, 6 resizes (12 MP to 1024 wide) are queued, then run by
bench/memory_worker.py (our TaskWorker in burst mode, set up as `python -m
src.runners.worker` is, the S3 client preloaded when STORAGE_URL is set), which reports its
peak RSS.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time

from PIL import Image

from harness import Backend, Service, WeedServer
from src.local.embedded_redis import EmbeddedRedis
from src.settings import Settings
from src.storage import open_storage

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SIZES = {"2 MP": (1632, 1224), "12 MP": (4000, 3000)}
MIB = 1024 * 1024


def photo(size: tuple[int, int], seed: int) -> bytes:
    """A gradient with seeded grain: about a real photo's bytes per pixel at q90."""
    rng = random.Random(seed)
    grain = Image.effect_noise(size, 24).convert("RGB")
    base = Image.linear_gradient("L").resize(size).convert("RGB")
    image = Image.blend(base, grain, 0.35 + rng.random() * 0.1)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def end_to_end(service: Service, data: bytes, width: int) -> float:
    started = time.perf_counter()
    answer = service.post(data, width=width)
    assert answer.status_code == 202, answer.text
    task = answer.json()["task"]
    while True:
        body = service.get(task).json()
        if body["status"] != "wait":
            break
        time.sleep(0.002)
    assert body["status"] == "ready", body
    return time.perf_counter() - started


def env_for(redis_url: str, db: int, upload_dir: str, backend: Backend) -> dict[str, str]:
    os.makedirs(upload_dir, exist_ok=True)
    return {"REDIS_URL": f"{redis_url}/{db}", "UPLOAD_DIR": upload_dir, "SCORER_URL": "http://127.0.0.1:9/",
            "MAX_UPLOAD_BYTES": str(100 * MIB), "SWEEP_INTERVAL": "1", **backend.env}


def timings(services: dict[str, Service], rounds: int) -> dict[tuple[str, str], list[float]]:
    times: dict[tuple[str, str], list[float]] = {}
    for round_ in range(rounds + 1):
        order = list(services.items()) if round_ % 2 == 0 else list(services.items())[::-1]
        for number, (label, size) in enumerate(SIZES.items()):
            data = photo(size, 100 * round_ + number)
            for kind, service in order:
                seconds = end_to_end(service, data, 1000 + round_)
                if round_:  # the first round warms both up
                    times.setdefault((kind, label), []).append(seconds)
    return times


def storage_ops(envs: dict[str, dict[str, str]], rounds: int, tmp: str) -> dict[tuple[str, str], list[float]]:
    storages = {kind: open_storage(Settings.from_env(env)) for kind, env in envs.items()}
    result = os.urandom(200_000)
    times: dict[tuple[str, str], list[float]] = {}
    for label, size in SIZES.items():
        data = photo(size, 7)
        digest = f"{len(data):064x}"
        for round_ in range(rounds + 1):
            for kind, storage in storages.items():
                spool = os.path.join(tmp, f"spool-{kind}")
                with open(spool, "wb") as file:
                    file.write(data)
                started = time.perf_counter()
                storage.put_photo(digest, spool)
                with storage.open_photo(digest) as stored:
                    while stored.read(1 << 20):
                        pass
                with storage.write_result(f"bench{round_}.jpg") as output:
                    output.write(result)
                storage.remove_result(f"bench{round_}.jpg")
                storage.remove_photo(digest)
                if round_:
                    times.setdefault((kind, label), []).append(time.perf_counter() - started)
    return times


def worker_memory(env: dict[str, str], count: int = 6) -> dict:
    """Queue `count` resizes with no worker, then run them in bench/memory_worker.py."""
    service = Service(env)
    try:
        data = photo(SIZES["12 MP"], 99)
        for i in range(count):
            assert service.post(data, width=1024 - i).status_code == 202
        report = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "memory_worker.py")], cwd=ROOT,
                                env={**os.environ, **env}, capture_output=True, text=True, check=True)
        return json.loads(report.stdout.strip().splitlines()[-1])
    finally:
        service.stop()


def report(times: dict[tuple[str, str], list[float]]) -> None:
    for label in SIZES:
        local = statistics.median(times[("local", label)]) * 1000
        s3 = statistics.median(times[("s3", label)]) * 1000
        print(f"  {label:6}  local {local:7.1f}   s3 {s3:7.1f}   s3 - local {s3 - local:+6.1f}"
              f"   ratio {s3 / local:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--ops-rounds", type=int, default=21)
    parser.add_argument("--skip-memory", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        redis = EmbeddedRedis(os.path.join(tmp, "valkey"), appendonly=False).start()
        weed = WeedServer(os.path.join(tmp, "weed")).start()
        os.environ.update(weed.credentials)
        backends = {"local": Backend("local"), "s3": Backend("s3", weed, "bench")}
        try:
            envs = {kind: env_for(redis.url, db, os.path.join(tmp, kind), backend)
                    for db, (kind, backend) in enumerate(backends.items(), start=1)}
            services = {kind: Service(env) for kind, env in envs.items()}
            for service in services.values():
                service.start_workers(1)
                service.wait_for_workers(1)
            try:
                times = timings(services, args.rounds)
            finally:
                for service in services.values():
                    service.stop()
            print(f"per resize task, POST to ready, median of {args.rounds} interleaved rounds (ms):")
            report(times)
            print(f"the storage's own calls per task, median of {args.ops_rounds} interleaved rounds (ms):")
            report(storage_ops(envs, args.ops_rounds, tmp))
            if not args.skip_memory:
                print("worker peak RSS, 6 resizes of 12 MP to 1024 wide (MiB):")
                for db, kind in enumerate(backends, start=3):
                    env = {**envs[kind], "REDIS_URL": f"{redis.url}/{db}"}
                    peaks = worker_memory(env)
                    print(f"  {kind:6}  worker {peaks['own_peak_rss'] / MIB:6.1f}")
        finally:
            weed.stop()
            redis.stop()


if __name__ == "__main__":
    main()
