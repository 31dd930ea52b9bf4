"""All configuration, read once from environment variables into one frozen object."""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

DEFAULT_SCORER_URL = "http://merlinface.com:12345/api/"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
# Loopback: `make run` serves this machine only; a container sets HOST=0.0.0.0 (see README).
DEFAULT_HOST = "127.0.0.1"


class SettingsError(ValueError):
    """An environment variable holds a value the service cannot use."""


def _number(env: Mapping[str, str], name: str, default, kind=int, minimum=0):
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number, got {raw!r}") from None
    if value < minimum:
        raise SettingsError(f"{name} must be at least {minimum}, got {raw!r}")
    return value


def _api_keys(raw: str) -> dict[str, str]:
    """Parse `name:key,name:key` into {key: name}."""
    keys: dict[str, str] = {}
    for pair in filter(None, (part.strip() for part in raw.split(","))):
        name, sep, key = pair.partition(":")
        if not sep or not name.strip() or not key.strip():
            raise SettingsError("API_KEYS must look like name:key,name:key")
        keys[key.strip()] = name.strip()
    return keys


@dataclass(frozen=True)
class Settings:
    host: str = DEFAULT_HOST
    port: int = 8000
    redis_url: str = DEFAULT_REDIS_URL
    redis_url_given: bool = False
    upload_dir: str = "uploads"
    scorer_url: str = DEFAULT_SCORER_URL
    scorer_url_given: bool = False
    scorer_retry_delay: float = 2.0
    scorer_timeout: float = 10.0
    scorer_deadline: float = 300.0
    api_keys: dict[str, str] = field(default_factory=dict)
    max_upload_bytes: int = 20 * 1024 * 1024
    max_image_pixels: int = 50_000_000
    resize_max_side: int = 4096
    workers: int = 2
    task_ttl: int = 7 * 24 * 3600
    trusted_proxies: int = 0
    var_dir: str = "var"
    dashboard_port: int = 9181
    sweep_interval: float = 5.0
    orphan_grace: float = 3600.0

    @property
    def lease(self) -> float:
        """How long a waiting task may go unchanged before the sweep checks on its job; a
        worker's liveness key lives as long. A lost job runs again within about
        2 leases + 1 sweep interval (25 s by default)."""
        return 2 * self.sweep_interval

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        redis_url = env.get("REDIS_URL", "").strip()
        scorer_url = env.get("SCORER_URL", "").strip()
        return cls(
            host=env.get("HOST", "").strip() or DEFAULT_HOST,
            port=_number(env, "PORT", 8000, minimum=1),
            redis_url=redis_url or DEFAULT_REDIS_URL,
            redis_url_given=bool(redis_url),
            upload_dir=os.path.abspath(env.get("UPLOAD_DIR", "").strip() or "uploads"),
            scorer_url=scorer_url or DEFAULT_SCORER_URL,
            scorer_url_given=bool(scorer_url),
            scorer_retry_delay=_number(env, "SCORER_RETRY_DELAY", 2.0, float),
            scorer_timeout=_number(env, "SCORER_TIMEOUT", 10.0, float, minimum=0.001),
            scorer_deadline=_number(env, "SCORER_DEADLINE", 300.0, float),
            api_keys=_api_keys(env.get("API_KEYS", "")),
            max_upload_bytes=_number(env, "MAX_UPLOAD_BYTES", 20 * 1024 * 1024, minimum=1),
            max_image_pixels=_number(env, "MAX_IMAGE_PIXELS", 50_000_000, minimum=1),
            resize_max_side=_number(env, "RESIZE_MAX_SIDE", 4096, minimum=1),
            workers=_number(env, "WORKERS", 2, minimum=1),
            task_ttl=_number(env, "TASK_TTL", 7 * 24 * 3600, minimum=1),
            trusted_proxies=_number(env, "TRUSTED_PROXIES", 0),
            var_dir=os.path.abspath(env.get("VAR_DIR", "").strip() or "var"),
            sweep_interval=_number(env, "SWEEP_INTERVAL", 5.0, float, minimum=0.1),
            orphan_grace=_number(env, "ORPHAN_GRACE", 3600.0, float),
            dashboard_port=_number(env, "DASHBOARD_PORT", 9181, minimum=1),
        )


@functools.cache
def current_settings() -> Settings:
    """The settings of this process, for code that is not handed them (RQ job functions)."""
    return Settings.from_env()
