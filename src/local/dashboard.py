"""`make dashboard`: rq-dashboard on 127.0.0.1:$DASHBOARD_PORT, showing the service's Redis.

Runs in its own venv (.venv-dashboard, from requirements-dashboard.txt), so it imports
nothing of the service but its settings. The Redis it shows is REDIS_URL or, when that is
unset, the embedded one of a `make run` of this checkout with the same VAR_DIR, whose
launcher writes its URL to $VAR_DIR/run/redis.url (var/run/redis.url by default). Basic auth
is on when DASHBOARD_USERNAME and DASHBOARD_PASSWORD are set.
"""

from __future__ import annotations

import os
import sys
from urllib.parse import urlsplit

from src.settings import Settings, SettingsError


class DashboardError(Exception):
    """Something an operator must fix before the dashboard can start."""


def url_file(settings: Settings) -> str:
    """Where `make run` writes its embedded Redis's URL: under VAR_DIR, as src/local/launcher.py does."""
    return os.path.join(settings.var_dir, "run", "redis.url")


def redis_url(settings: Settings) -> str:
    """REDIS_URL, or the URL a running `make run` with the same VAR_DIR wrote down."""
    if settings.redis_url_given:
        return settings.redis_url
    try:
        with open(url_file(settings)) as file:
            url = file.readline().strip()
    except FileNotFoundError:
        url = ""
    if not url:
        raise DashboardError(f"no Redis to show: REDIS_URL is unset and no `make run` of this checkout has "
                             f"written {url_file(settings)} (VAR_DIR). Start `make run` first, or set REDIS_URL.")
    return url


def credentials(env) -> dict[str, str]:
    """rq-dashboard's basic-auth settings: both of username and password, or neither."""
    username, password = env.get("DASHBOARD_USERNAME", ""), env.get("DASHBOARD_PASSWORD", "")
    if bool(username) != bool(password):
        raise DashboardError("set both DASHBOARD_USERNAME and DASHBOARD_PASSWORD, or neither")
    return {"RQ_DASHBOARD_USERNAME": username, "RQ_DASHBOARD_PASSWORD": password} if username else {}


def _check_reachable(url: str) -> None:
    import redis

    try:
        redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2).ping()
    except redis.RedisError as exc:
        raise DashboardError(f"Redis at {_shown(url)} does not answer ({exc}); is `make run` still running?") from None


def _shown(url: str) -> str:
    """The URL without its password, for messages."""
    parts = urlsplit(url)
    return url.replace(f":{parts.password}@", ":***@") if parts.password else url


def main() -> int:
    try:
        settings = Settings.from_env()
        url = redis_url(settings)
        auth = credentials(os.environ)
        _check_reachable(url)
    except (SettingsError, DashboardError) as exc:
        print(f"[make dashboard] {exc}", file=sys.stderr)
        return 1
    print(f"[make dashboard] rq-dashboard on http://127.0.0.1:{settings.dashboard_port}/ for Redis at "
          f"{_shown(url)}{' (basic auth on)' if auth else ''}", flush=True)
    # Through the environment, so no password shows in the process list.
    os.environ.update(RQ_DASHBOARD_BIND="127.0.0.1", RQ_DASHBOARD_PORT=str(settings.dashboard_port),
                      RQ_DASHBOARD_REDIS_URL=url, **auth)
    from rq_dashboard.cli import main as run_dashboard

    sys.argv = sys.argv[:1]
    return run_dashboard()


if __name__ == "__main__":
    sys.exit(main())
