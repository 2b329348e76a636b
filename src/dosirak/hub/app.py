"""``dosirak hub serve``: the Starlette app (REST API, ``/docs.json``, the dashboard, its
assets) and the uvicorn server that runs it, bound to 127.0.0.1:3333 unless told otherwise."""

from __future__ import annotations

import contextlib
import logging
import socket
import sys
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from dosirak.hub import api
from dosirak.hub.hub import Hub, HubSettings

_log = logging.getLogger("dosirak.hub")


def create_app(hub: Hub) -> Starlette:
    """The hub's ASGI app; ``hub.start()`` runs at startup (schema, first admin token)."""
    from dosirak.hub import dashboard
    from dosirak.hub.openapi import document

    schema = document()

    async def docs(_request: Request) -> Response:
        return JSONResponse(schema)

    async def healthz(_request: Request) -> Response:
        return Response("ok\n", media_type="text/plain")

    async def not_found(request: Request, _error: Exception) -> Response:
        if request.url.path.startswith(api.PREFIX):
            return JSONResponse({"error": "NotFound", "message": f"no route {request.method} "
                                 f"{request.url.path}; see /docs.json"}, 404)
        return await dashboard.not_found(request)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        yield
        hub.close()

    routes = [Route("/docs.json", docs), Route("/healthz", healthz), *api.routes(hub),
              *dashboard.routes(hub)]
    return Starlette(routes=routes, lifespan=lifespan, exception_handlers={404: not_found})


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        from dosirak.exceptions import InvalidArgument

        raise InvalidArgument(f"cannot listen on {host}:{port}: {error.strerror}; pick another "
                              "port with --port") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def serve(settings: HubSettings, host: str = "127.0.0.1", port: int = 3333,
          log_level: str = "info", forwarded_allow_ips: str = "127.0.0.1") -> None:
    """Run one hub process until SIGINT or SIGTERM. Requests from ``forwarded_allow_ips``
    (a load balancer) are taken to come from the client their X-Forwarded-For names."""
    import uvicorn

    keep_freed_memory()
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(name)s %(message)s",
                        stream=sys.stderr)
    hub = Hub(settings)
    token_file = hub.start()
    sock = bind(host, port)
    url = f"http://{host}:{sock.getsockname()[1]}"
    config = uvicorn.Config(create_app(hub), log_level=log_level, access_log=False,
                            lifespan="on", timeout_graceful_shutdown=30, proxy_headers=True,
                            forwarded_allow_ips=forwarded_allow_ips)
    server = uvicorn.Server(config)
    where: dict[str, Any] = {"database": _safe_url(hub.db.url),
                             "storage": settings.storage_url}
    print(f"dosirak hub is ready at {url} (database {where['database']}, storage "
          f"{where['storage']})", file=sys.stderr, flush=True)
    if token_file is not None:
        print(f"first start: the admin token is in {token_file} (mode 0600); sign in with "
              f"`dosirak hub login {url} --token $(cat {token_file})`", file=sys.stderr,
              flush=True)
    server.run(sockets=[sock])


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters


def keep_freed_memory() -> None:
    """Keep the heap's freed memory for the next chunk instead of handing it back at once.

    A pushed chunk arrives as pieces of up to 256 KiB that live until the assembly takes them.
    glibc's thresholds follow the largest block freed, so it trims the heap (or unmaps the
    pieces) after every chunk and the next chunk's pieces fault fresh pages in: about 250,000
    page faults a GiB pushed, a tenth of the hub's CPU. Fixed thresholds (blocks up to 4 MiB
    from the heap; up to 64 MiB of free heap kept) remove them. A no-op without glibc."""
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    mallopt(_M_MMAP_THRESHOLD, 4 << 20)
    mallopt(_M_TRIM_THRESHOLD, 64 << 20)


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)
