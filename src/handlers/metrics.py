"""GET /metrics: Prometheus text format (OpenMetrics when the scraper asks for it); no API
key, and no user data in it."""

from __future__ import annotations

from werkzeug.wrappers import Request, Response

from src.web.context import Context


def handle(ctx: Context, request: Request) -> Response:
    body, content_type = ctx.metrics.exposition(request.headers.get("Accept"))
    return Response(body, content_type=content_type, headers={"Cache-Control": "no-store"})
