"""Which S3 client: what each costs a worker to import and hold, and per call on loopback.

    python3 -m venv /tmp/s3-clients
    /tmp/s3-clients/bin/pip install boto3==1.44.8 minio==7.2.20 obstore==0.12.1 \\
        pillow==13.0.0 redis==8.1.0 rq==2.12.0 requests==2.34.2
    /tmp/s3-clients/bin/python bench/s3_clients.py --runs 3

(a scratch venv: the candidates not chosen stay out of the project's). It starts a `weed`
(SeaweedFS, .venv/bin/weed from requirements-dev.txt, on free loopback ports), then, for each
client, in a fresh process that has imported what a worker holds already (Pillow, redis, rq,
requests): the import time, the client's creation, the first call, the mean of 30 PUTs and of
30 GETs of 200 KB, and the growth of RSS after import, after the client's creation and after
the calls. Medians over --runs processes per client, interleaved.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLIENTS = ["none", "boto3", "botocore", "minio", "obstore"]
KEY, SECRET, BUCKET = "bench", "bench-secret", "clients"

# One client's figures, in a fresh process: argv = client, endpoint, key, secret, bucket.
PROBE = r'''
import json, os, sys, time
def rss():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmRSS"))
import PIL.Image, redis, rq, requests  # what a worker holds already
which, endpoint, key, secret, bucket = sys.argv[1:6]
r0, t0 = rss(), time.perf_counter()
if which in ("boto3", "botocore"):
    import botocore.session
    if which == "boto3":
        import boto3
elif which == "minio":
    import minio
elif which == "obstore":
    import obstore
    from obstore.store import S3Store
t1, r1 = time.perf_counter(), rss()
data = os.urandom(200_000)
if which in ("boto3", "botocore"):
    make = boto3.client if which == "boto3" else botocore.session.get_session().create_client
    c = make("s3", endpoint_url=endpoint, aws_access_key_id=key, aws_secret_access_key=secret, region_name="us-east-1")
    put = lambda k: c.put_object(Bucket=bucket, Key=k, Body=data)
    get = lambda k: c.get_object(Bucket=bucket, Key=k)["Body"].read()
elif which == "minio":
    import io
    c = minio.Minio(endpoint.removeprefix("http://"), access_key=key, secret_key=secret, secure=False,
                    region="us-east-1")
    put = lambda k: c.put_object(bucket, k, io.BytesIO(data), len(data))
    def get(k):
        r = c.get_object(bucket, k); body = r.read(); r.close(); r.release_conn(); return body
elif which == "obstore":
    c = S3Store(bucket, endpoint=endpoint, access_key_id=key, secret_access_key=secret, region="us-east-1",
                client_options={"allow_http": True})
    put = lambda k: obstore.put(c, k, data)
    get = lambda k: bytes(obstore.get(c, k).bytes())
else:
    put = get = lambda k: None
t2, r2 = time.perf_counter(), rss()
put(f"{which}-warm"); get(f"{which}-warm")
t3 = time.perf_counter()
for i in range(30): put(f"{which}-{i}")
t4 = time.perf_counter()
for i in range(30): get(f"{which}-{i}")
t5, r3 = time.perf_counter(), rss()
print(json.dumps({"import_ms": 1000 * (t1 - t0), "client_ms": 1000 * (t2 - t1), "first_call_ms": 1000 * (t3 - t2),
                  "put_ms": 1000 * (t4 - t3) / 30, "get_ms": 1000 * (t5 - t4) / 30,
                  "rss_import_mb": r1 - r0, "rss_client_mb": r2 - r0, "rss_used_mb": r3 - r0}))
'''


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_weed(weed: str, tmp: str) -> tuple[subprocess.Popen, str]:
    ports = {name: free_port() for name in ("master.port", "master.port.grpc", "volume.port", "volume.port.grpc",
                                            "filer.port", "filer.port.grpc", "s3.port", "s3.port.grpc")}
    config = os.path.join(tmp, "s3.json")
    with open(config, "w") as file:
        json.dump({"identities": [{"name": "bench", "credentials": [{"accessKey": KEY, "secretKey": SECRET}],
                                   "actions": ["Admin", "Read", "Write", "List"]}]}, file)
    os.makedirs(os.path.join(tmp, "data"))
    command = [weed, "server", f"-dir={tmp}/data", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-filer", "-s3",
               f"-s3.config={config}", "-s3.port.iceberg=0", "-s3.port.lance=0", "-volume.max=0",
               "-master.volumeSizeLimitMB=64", *(f"-{name}={port}" for name, port in ports.items())]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{ports['s3.port']}"
    return process, endpoint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--weed", default=os.path.join(ROOT, ".venv", "bin", "weed"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        weed, endpoint = start_weed(args.weed, tmp)
        try:
            import urllib3
            from minio import Minio

            client = Minio(endpoint.removeprefix("http://"), access_key=KEY, secret_key=SECRET, secure=False,
                           region="us-east-1", http_client=urllib3.PoolManager(retries=urllib3.Retry(0)))
            deadline = time.monotonic() + 60
            while True:
                try:
                    client.make_bucket(BUCKET)
                    break
                except Exception:
                    assert time.monotonic() < deadline, "weed did not answer"
                    time.sleep(0.3)
            time.sleep(2)  # a fresh weed sets up its first volumes
            figures: dict[str, list[dict]] = {name: [] for name in CLIENTS}
            for _ in range(args.runs + 1):
                for name in CLIENTS:
                    probe = [sys.executable, "-c", PROBE, name, endpoint, KEY, SECRET, BUCKET]
                    out = subprocess.run(probe, capture_output=True, text=True, check=True).stdout
                    figures[name].append(json.loads(out))
        finally:
            weed.kill()
            weed.wait()
    print(f"median of {args.runs} processes each (the first round dropped); RSS growth over a worker's imports")
    print(f"{'client':9} {'import':>8} {'client':>8} {'1st call':>9} {'PUT':>7} {'GET':>7} "
          f"{'RSS +import':>12} {'+client':>8} {'+used':>7}")
    for name, runs in figures.items():
        m = {key: statistics.median(run[key] for run in runs[1:]) for key in runs[0]}
        print(f"{name:9} {m['import_ms']:6.1f}ms {m['client_ms']:6.1f}ms {m['first_call_ms']:7.1f}ms "
              f"{m['put_ms']:5.2f}ms {m['get_ms']:5.2f}ms {m['rss_import_mb']:9.1f} MB {m['rss_client_mb']:5.1f} MB "
              f"{m['rss_used_mb']:4.1f} MB")


if __name__ == "__main__":
    main()
