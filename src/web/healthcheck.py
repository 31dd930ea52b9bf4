"""`python -m src.web.healthcheck`: exits 0 when the web process of this container answers
`GET /healthz` on $PORT with 200, else 1. The health check of the container image and of
docker-compose.yml (a slim image has no curl)."""

import sys
import urllib.request

from src.settings import current_settings


def main() -> int:
    url = f"http://127.0.0.1:{current_settings().port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=4) as answer:
            return 0 if answer.status == 200 else 1
    except OSError as exc:  # refused, timed out, or an HTTP error status
        print(f"{url}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
