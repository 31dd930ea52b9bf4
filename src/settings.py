"""All configuration, read once from environment variables into one frozen object.

Each setting is declared once, below: its field, its variable, its default, its bounds and
what it means. `Settings.from_env` reads them all in one loop; the README's settings table
is checked against these declarations (tests/test_docs.py).
"""

from __future__ import annotations

import base64
import binascii
import functools
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

DEFAULT_SCORER_URL = "http://merlinface.com:12345/api/"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


class SettingsError(ValueError):
    """An environment variable holds a value the service cannot use."""


def _text(raw: str) -> str:
    return raw


def _path(raw: str) -> str:
    return os.path.abspath(raw)


def _api_keys(raw: str) -> dict[str, str]:
    """Parse `name:key,name:key` into {key: name}."""
    keys: dict[str, str] = {}
    for pair in filter(None, (part.strip() for part in raw.split(","))):
        name, sep, key = pair.partition(":")
        if not sep or not name.strip() or not key.strip():
            raise SettingsError("API_KEYS must look like name:key,name:key")
        keys[key.strip()] = name.strip()
    return keys


def _webhook_secret(raw: str) -> str:
    """`whsec_` + base64 of 24 to 64 bytes (Standard Webhooks' form), kept as given."""
    try:
        key = base64.b64decode(raw.removeprefix("whsec_"), validate=True)
    except binascii.Error:
        key = b""
    if not raw.startswith("whsec_") or not 24 <= len(key) <= 64:
        raise SettingsError("WEBHOOK_SECRET must be whsec_ followed by the base64 of 24 to 64 random bytes")
    return raw


def _schedule(raw: str) -> tuple[float, ...]:
    """`5,300,1800`: seconds before each further attempt, each 0 or more."""
    try:
        steps = tuple(float(part) for part in raw.split(","))
    except ValueError:
        steps = (-1.0,)
    if any(not 0 <= step < float("inf") for step in steps):
        raise SettingsError(f"WEBHOOK_RETRY_SCHEDULE must be seconds separated by commas, got {raw!r}")
    return steps


def setting(env: str, default: Any, meaning: str, *, parse: Callable[[str], Any] = int,
            minimum: float | None = 0, shown: str | None = None) -> Any:
    """A field read from the variable `env` by `parse` (`int`, `float` or text), at least
    `minimum` when it is a number; `shown` is how the README writes its default, when not
    as the value itself."""
    meta = {"env": env, "meaning": meaning, "parse": parse, "minimum": minimum, "shown": shown}
    if isinstance(default, dict):
        return field(default_factory=dict, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class Settings:
    # Loopback: `make run` serves this machine only; a container sets HOST=0.0.0.0.
    host: str = setting("HOST", "127.0.0.1", "address the web server binds: `0.0.0.0` for every interface "
                        "(the Docker image sets it)", parse=_text)
    port: int = setting("PORT", 8000, "HTTP port of the entry point", minimum=1)
    redis_url: str = setting("REDIS_URL", DEFAULT_REDIS_URL, "Redis to use, e.g. `redis://127.0.0.1:6379/0`",
                             parse=_text, shown="embedded server under `make run`")
    upload_dir: str = setting("UPLOAD_DIR", "uploads", "where photos and resized images are kept", parse=_path,
                              shown="`uploads/`")
    scorer_url: str = setting("SCORER_URL", DEFAULT_SCORER_URL, "the remote scoring API", parse=_text,
                              shown=f"`{DEFAULT_SCORER_URL}`; the simulator under `make run`")
    scorer_retry_delay: float = setting("SCORER_RETRY_DELAY", 2.0, "seconds between polls of a task the scorer "
                                        "answered `wait`", parse=float)
    scorer_timeout: float = setting("SCORER_TIMEOUT", 10.0, "seconds for one HTTP call to the scorer (connect "
                                    "and read, each)", parse=float, minimum=0.001)
    scorer_deadline: float = setting("SCORER_DEADLINE", 300.0, "seconds after its creation when a scoring task "
                                     "not yet ready fails with `scorer_timeout`", parse=float)
    api_keys: dict[str, str] = setting("API_KEYS", {}, "`name:key,name:key`; when set, every request needs "
                                       "`Authorization: Bearer <key>`", parse=_api_keys, shown="unset")
    max_upload_bytes: int = setting("MAX_UPLOAD_BYTES", 20 * 1024 * 1024, "larger request bodies get 413",
                                    minimum=1)
    max_image_pixels: int = setting("MAX_IMAGE_PIXELS", 50_000_000, "larger images (width × height) get 422",
                                    minimum=1)
    resize_max_side: int = setting("RESIZE_MAX_SIDE", 4096, "largest `width` / `height` a resize may ask for",
                                   minimum=1)
    workers: int = setting("WORKERS", 2, "worker processes started by `make run`", minimum=1)
    task_ttl: int = setting("TASK_TTL", 7 * 24 * 3600, "seconds a finished task (and its dedupe entry and "
                            "files) is kept", minimum=1)
    trusted_proxies: int = setting("TRUSTED_PROXIES", 0, "how many reverse proxies in front may set "
                                   "`X-Forwarded-For`")
    var_dir: str = setting("VAR_DIR", "var", "where `make run` keeps its own state: the embedded Redis's data "
                           "(`redis/`) and `run/redis.url`", parse=_path, shown="`var/`")
    dashboard_port: int = setting("DASHBOARD_PORT", 9181, "port of `make dashboard` (on 127.0.0.1)", minimum=1)
    sweep_interval: float = setting("SWEEP_INTERVAL", 5.0, "seconds between sweeps for lost jobs, overdue tasks "
                                    "and orphan files; a lost job runs again within about 5× this",
                                    parse=float, minimum=0.1)
    orphan_grace: float = setting("ORPHAN_GRACE", 3600.0, "seconds a stored photo or result that no task names "
                                  "is kept before the sweep removes it (looked for every tenth of this)",
                                  parse=float)
    wait_max: int = setting("WAIT_MAX", 60, "longest `Prefer: wait` in seconds; a longer one is cut to this")
    wait_slots: int = setting("WAIT_SLOTS", 64, "how many answers one web process holds at once for `Prefer: "
                              "wait` (it has this many threads more); past that the header is ignored")
    # --- callbacks (src/callbacks/, docs/results-pushed.md) ---
    webhook_secret: str = setting("WEBHOOK_SECRET", "", "`whsec_` + base64 of 24 to 64 random bytes: signs "
                                  "callbacks; without it `callback_url` is refused", parse=_webhook_secret,
                                  shown="unset")
    callback_allow_private: int = setting("CALLBACK_ALLOW_PRIVATE", 0, "1 lets `callback_url` name loopback and "
                                          "private addresses (tests, one private network)")
    webhook_timeout: float = setting("WEBHOOK_TIMEOUT", 15.0, "seconds one callback attempt may take",
                                     parse=float, minimum=0.001)
    webhook_retry_schedule: tuple[float, ...] = setting(
        "WEBHOOK_RETRY_SCHEDULE", (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0),
        "seconds before each further attempt after a failed one", parse=_schedule,
        shown="`5,300,1800,7200,18000,36000,36000`")
    # -- where files live (src/storage/): unset, files under UPLOAD_DIR
    storage_url: str = setting("STORAGE_URL", "", "`s3://BUCKET/PREFIX`: photos and results are objects in an "
                               "S3-compatible store", parse=_text, shown="unset (files under `UPLOAD_DIR`)")
    s3_endpoint_url: str = setting("S3_ENDPOINT_URL", "", "the store's endpoint, e.g. `http://127.0.0.1:8333`; "
                                   "credentials and region from the usual `AWS_ACCESS_KEY_ID`, "
                                   "`AWS_SECRET_ACCESS_KEY`, `AWS_REGION`", parse=_text, shown="unset (AWS)")
    # -- end of where files live
    # Sharing the service fairly (docs/fair-sharing.md); 0 turns a limit off.
    user_max_waiting: int = setting("USER_MAX_WAITING", 1000, "waiting tasks one user may have at once")
    user_rate: float = setting("USER_RATE", 20.0, "task-creating POSTs per second one user may send, sustained",
                               parse=float)
    user_burst: int = setting("USER_BURST", 100, "task-creating POSTs one user may send in a burst")
    user_max_stored_bytes: int = setting("USER_MAX_STORED_BYTES", 5 * 1024 ** 3, "bytes of photos and results "
                                         "one user's tasks may hold")
    queue_max: int = setting("QUEUE_MAX", 50_000, "waiting tasks the whole service takes before it answers 503 "
                             "`overloaded`")
    min_free_bytes: int = setting("MIN_FREE_BYTES", 256 * 1024 ** 2, "free bytes the upload file system keeps; "
                                  "below it, POST answers 507 `insufficient_storage`")
    # --- the cost of a task (issue 18) ---
    web_processes: int = setting("WEB_PROCESSES", os.cpu_count() or 1, "web processes started by `make run`, "
                                 "sharing the port", minimum=1,
                                 shown="the machine's cores")
    web_threads: int = setting("WEB_THREADS", 4, "threads of each web process, each answering one request at "
                               "a time", minimum=1)
    worker_max_jobs: int = setting("WORKER_MAX_JOBS", 1000, "jobs after which a worker replaces itself with a "
                                   "fresh process (0: never)")
    worker_max_memory: int = setting("WORKER_MAX_MEMORY", 300, "MiB of resident memory past which a worker, "
                                     "once its job is done, replaces itself with a fresh process (0: no bound)")
    # The variables that were set, for the settings whose default means "start one":
    # `make run` starts the embedded Redis and the simulator only when theirs are unset.
    given: frozenset[str] = frozenset()

    @property
    def redis_url_given(self) -> bool:
        return "REDIS_URL" in self.given

    @property
    def scorer_url_given(self) -> bool:
        return "SCORER_URL" in self.given

    @property
    def webhook_key(self) -> bytes:
        """The secret's decoded bytes: the HMAC key callbacks are signed with."""
        return base64.b64decode(self.webhook_secret.removeprefix("whsec_"))

    @property
    def lease(self) -> float:
        """How long a waiting task may go unchanged before the sweep checks on its job; a
        worker's liveness key lives as long. A lost job runs again within about
        2 leases + 1 sweep interval (25 s by default)."""
        return 2 * self.sweep_interval

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        given = set()
        for declared in declarations():
            meta = declared.metadata
            raw = env.get(meta["env"], "").strip()
            if raw:
                values[declared.name] = _read(meta, raw)
                given.add(meta["env"])
            elif meta["parse"] is _path:  # a default path is taken from where the service starts
                values[declared.name] = _path(declared.default)
        return cls(**values, given=frozenset(given))

def declarations() -> list:
    """The declared settings (dataclass fields with a variable), in their order."""
    return [f for f in fields(Settings) if "env" in f.metadata]


def _read(meta: Mapping[str, Any], raw: str) -> Any:
    parse, name = meta["parse"], meta["env"]
    if parse not in (int, float):
        return parse(raw)
    try:
        value = parse(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number, got {raw!r}") from None
    if meta["minimum"] is not None and value < meta["minimum"]:
        raise SettingsError(f"{name} must be at least {meta['minimum']}, got {raw!r}")
    return value


@functools.cache
def current_settings() -> Settings:
    """The settings of this process, for code that is not handed them (RQ job functions)."""
    return Settings.from_env()
