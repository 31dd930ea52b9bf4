"""The S3 storage: photos and results are objects in an S3-compatible store
(STORAGE_URL=s3://BUCKET/PREFIX, S3_ENDPOINT_URL; AWS S3, Cloudflare R2, MinIO, SeaweedFS).

    PREFIX/photos/<sha256>   a stored photo, shared by every task that sent the same bytes
    PREFIX/results/<name>    a result, served by the web at /files/<name>

The client is MinIO's Python SDK, chosen by measurement (docs/performance.md, "Object
store"): pure Python on urllib3 (which requests brings already), about 7 MB in a worker
against boto3's 25, and a few ms per call on loopback. This module, and so the SDK, is
imported only when STORAGE_URL is set. Credentials and region come from the usual
AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY (AWS_SESSION_TOKEN) and AWS_REGION.

Every call is short: a store that does not answer within a few seconds, or answers 5xx
after one retry, raises StoreUnavailable.
"""

from __future__ import annotations

import io
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import BinaryIO
from urllib.parse import urlsplit

import certifi
import urllib3
from minio import Minio
from minio.error import InvalidResponseError, MinioException, S3Error, ServerError
from werkzeug.wrappers import Response
from werkzeug.wsgi import FileWrapper

from src.settings import Settings, SettingsError
from src.storage import StoreUnavailable
from src.tasks import results

LIST_BATCH = 1000
MIN_PART = 5 * 1024 * 1024  # S3's smallest part: a part this large or larger makes one PUT
CHUNK = 64 * 1024
CONNECT_TIMEOUT = 3.0
READ_TIMEOUT = 30.0
# Codes a store answers when it is busy or broken, not when the request is wrong; and those
# of a store set up wrong (no bucket, credentials refused): nothing a user did, so answered
# 503 too, and jobs wait until an operator puts it right.
RETRYABLE_CODES = ("InternalError", "ServiceUnavailable", "SlowDown", "RequestTimeout",
                   "NoSuchBucket", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch")
MISSING_CODES = ("NoSuchKey", "NoSuchObject", "ResourceNotFound")


def parse_storage_url(url: str) -> tuple[str, str]:
    """`s3://BUCKET/PREFIX` -> (bucket, key prefix ending in '/' or empty)."""
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc:
        raise ValueError(f"STORAGE_URL must look like s3://BUCKET/PREFIX, got {url!r}")
    prefix = parts.path.strip("/")
    return parts.netloc, prefix + "/" if prefix else ""


class S3Store:
    kind = "s3"

    def __init__(self, client: Minio, bucket: str, prefix: str, temp_dir: str, endpoint: str):
        self.client = client
        self.bucket = bucket
        self.prefix = prefix
        self.temp_dir = temp_dir
        self.endpoint = endpoint

    @classmethod
    def from_settings(cls, settings: Settings, env=None) -> S3Store:
        env = os.environ if env is None else env
        try:
            bucket, prefix = parse_storage_url(settings.storage_url)
        except ValueError as exc:
            raise SettingsError(str(exc)) from None
        endpoint = urlsplit(settings.s3_endpoint_url or "https://s3.amazonaws.com")
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=CONNECT_TIMEOUT, read=READ_TIMEOUT), maxsize=16,
            cert_reqs="CERT_REQUIRED", ca_certs=env.get("SSL_CERT_FILE") or certifi.where(),
            retries=urllib3.Retry(total=1, connect=1, read=0, backoff_factor=0.1,
                                  status_forcelist=[500, 502, 503, 504]))
        client = Minio(endpoint.netloc, access_key=env.get("AWS_ACCESS_KEY_ID") or None,
                       secret_key=env.get("AWS_SECRET_ACCESS_KEY") or None,
                       session_token=env.get("AWS_SESSION_TOKEN") or None,
                       secure=endpoint.scheme == "https",
                       region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1",
                       http_client=http)
        return cls(client, bucket, prefix, os.path.join(settings.upload_dir, "tmp"), endpoint.geturl())

    def _photo_key(self, digest: str) -> str:
        return f"{self.prefix}photos/{digest}"

    def _result_key(self, name: str) -> str:
        return f"{self.prefix}results/{name}"

    # -- photos

    def put_photo(self, digest: str, spool_path: str) -> None:
        """Uploaded unless the store holds these bytes already (another task's photo, which
        this task now shares: lifecycle.keep_photo makes sure no release removes it meanwhile)."""
        size = os.path.getsize(spool_path)
        if self._size_of(self._photo_key(digest)) != size:
            with open(spool_path, "rb") as photo, _calls():
                self.client.put_object(self.bucket, self._photo_key(digest), photo, size, part_size=_one_part(size))
        os.unlink(spool_path)

    def _size_of(self, key: str) -> int | None:
        try:
            with _calls():
                return self.client.stat_object(self.bucket, key).size
        except FileNotFoundError:
            return None

    @contextmanager
    def open_photo(self, digest: str) -> Iterator[BinaryIO]:
        """The photo downloaded to an unnamed temporary file (gone with this process, however
        it ends), so the decoder can seek in it."""
        with self._temp_file() as copy:
            with _calls():
                response = self.client.get_object(self.bucket, self._photo_key(digest))
            try:
                with _calls():
                    for chunk in response.stream(CHUNK):
                        copy.write(chunk)
            finally:
                response.close()
                response.release_conn()
            copy.seek(0)
            yield copy

    def remove_photo(self, digest: str) -> None:
        with _calls():
            self.client.remove_object(self.bucket, self._photo_key(digest))

    # -- results

    @contextmanager
    def write_result(self, name: str) -> Iterator[BinaryIO]:
        """Written to a temporary file, then stored in one PUT: a result is whole or absent."""
        with self._temp_file() as output:
            yield output
            size = output.tell()
            output.seek(0)
            with _calls():
                self.client.put_object(self.bucket, self._result_key(name), output, size,
                                       content_type=results.mime_type(name), part_size=_one_part(size))

    def serve_result(self, name: str, environ: dict) -> Response | None:
        """One HEAD for the size and ETag; the body is fetched only if it is sent (not for a
        304 or a 416), from the first byte of its range, and streamed in chunks."""
        key = self._result_key(name)
        try:
            with _calls():
                stat = self.client.stat_object(self.bucket, key)
        except FileNotFoundError:
            return None
        reader = _ObjectReader(self.client, self.bucket, key, stat.size)
        # werkzeug's own wrapper (not the server's), whose seek reaches the reader: a range is
        # fetched from its first byte, not read through from the object's.
        response = Response(FileWrapper(reader, CHUNK), mimetype=results.mime_type(name), direct_passthrough=True)
        response.content_length = stat.size
        if stat.last_modified is not None:
            response.last_modified = stat.last_modified
        response.cache_control.max_age = results.CACHE_SECONDS
        response.expires = int(time.time() + results.CACHE_SECONDS)
        response.set_etag((stat.etag or "").strip('"') or f"{stat.size}-{name}")
        try:
            return response.make_conditional(environ, accept_ranges=True, complete_length=stat.size)
        except Exception:
            reader.close()
            raise

    def remove_result(self, name: str) -> None:
        with _calls():
            self.client.remove_object(self.bucket, self._result_key(name))

    # -- the orphan sweep

    def old_photos(self, cutoff: float) -> Iterator[list[str]]:
        return self._old(self.prefix + "photos/", cutoff)

    def old_results(self, cutoff: float) -> Iterator[list[str]]:
        return self._old(self.prefix + "results/", cutoff)

    def _old(self, prefix: str, cutoff: float) -> Iterator[list[str]]:
        batch: list[str] = []
        with _calls():
            for item in self.client.list_objects(self.bucket, prefix=prefix, recursive=True):
                if item.last_modified is None or item.last_modified.timestamp() >= cutoff:
                    continue
                batch.append(item.object_name[len(prefix):])
                if len(batch) == LIST_BATCH:
                    yield batch
                    batch = []
        if batch:
            yield batch

    def check(self) -> dict:
        """A HEAD of a key under the prefix that is never written: "not found" means the
        store answers and lets us read there (with only the rights docs/storage.md lists);
        a missing bucket or refused credentials are reported as the store unavailable."""
        started = time.perf_counter()
        try:
            with _calls():
                self.client.stat_object(self.bucket, self.prefix + "readyz-probe")
        except FileNotFoundError:
            pass
        ms = round((time.perf_counter() - started) * 1000, 2)
        return {"kind": self.kind, "status": "ok", "bucket": self.bucket, "ping_ms": ms}

    @contextmanager
    def _temp_file(self) -> Iterator[BinaryIO]:
        os.makedirs(self.temp_dir, exist_ok=True)
        with tempfile.TemporaryFile(dir=self.temp_dir) as file:
            yield file


def _one_part(size: int) -> int:
    """A part size that makes the upload one PUT, never a multipart upload (which a killed
    process would leave unfinished, and which needs more rights): photos are at most
    MAX_UPLOAD_BYTES. The SDK reads the part into memory to sign it."""
    return max(size, MIN_PART)


class _ObjectReader(io.RawIOBase):
    """An object's bytes, fetched on the first read from where it was sought to, so that
    werkzeug's range handling (which seeks) asks the store for the range only."""

    def __init__(self, client: Minio, bucket: str, key: str, size: int):
        self._client, self._bucket, self._key, self._size = client, bucket, key, size
        self._offset = 0
        self._response = None

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        offset += {io.SEEK_SET: 0, io.SEEK_CUR: self._offset, io.SEEK_END: self._size}[whence]
        if offset != self._offset:
            self._drop()
            self._offset = offset
        return offset

    def tell(self) -> int:
        return self._offset

    def read(self, size: int = -1) -> bytes:
        if self._response is None:
            with _calls():
                self._response = self._client.get_object(self._bucket, self._key, offset=self._offset)
        with _calls():
            data = self._response.read(None if size < 0 else size)
        self._offset += len(data)
        return data

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def _drop(self) -> None:
        if self._response is not None:
            self._response.close()
            self._response.release_conn()
            self._response = None

    def close(self) -> None:
        self._drop()
        super().close()


@contextmanager
def _calls() -> Iterator[None]:
    """The client's errors as ours: missing is FileNotFoundError, a store that does not
    answer or answers 5xx is StoreUnavailable; anything else is a bug or a setting to fix."""
    try:
        yield
    except S3Error as exc:
        if exc.code in MISSING_CODES:
            raise FileNotFoundError(exc.code) from None
        if exc.code in RETRYABLE_CODES or (exc.response is not None and exc.response.status >= 500):
            raise StoreUnavailable(f"the object store answered {exc.code}") from exc
        raise
    except ServerError as exc:
        if exc.status_code == 404:
            raise FileNotFoundError("no such object") from None
        raise StoreUnavailable(f"the object store answered HTTP {exc.status_code}") from exc
    except InvalidResponseError as exc:  # an answer that is not S3's XML: a proxy's, say
        status = getattr(exc, "_code", 0)
        if status == 404:
            raise FileNotFoundError("no such object") from None
        if status >= 500:
            raise StoreUnavailable(f"the object store answered HTTP {status}") from exc
        raise
    except urllib3.exceptions.HTTPError as exc:  # refused, reset, timed out, retries exhausted
        raise StoreUnavailable(f"the object store does not answer ({type(exc).__name__})") from exc
    except MinioException:
        raise
