"""The hub's web dashboard (filled in below)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute

from dosirak.hub.hub import Hub


def routes(hub: Hub) -> list[BaseRoute]:
    return []


async def not_found(request: Request) -> Response:
    return JSONResponse({"error": "NotFound", "message": f"no page {request.url.path}"}, 404)
