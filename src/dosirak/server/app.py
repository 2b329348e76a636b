"""The ASGI application of a service, on Starlette.

    >>> app = create_app(svc, max_request_size=32 * 1024 * 1024)
    >>> uvicorn.run(app, host="127.0.0.1", port=3000)

Routes: one ``POST`` route per API, ``/docs.json`` (OpenAPI), ``/`` (Swagger UI, served from the
installed ``swagger-ui-bundle`` package, so it works offline), ``/livez`` and ``/healthz``
(liveness), ``/readyz`` (200 only once every runner is ready). The app's lifespan starts the
service (runners, class-style instance, startup hooks) and stops it. Errors of every kind are JSON
bodies (``dosirak.server.errors``).
"""

from __future__ import annotations

import contextlib
import gc
import os
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, PlainTextResponse, Response
from starlette.routing import Route

from dosirak.exceptions import InvalidArgument, MissingDependency
from dosirak.io.encoding import dumps
from dosirak.server.endpoint import APIEndpoint
from dosirak.server.errors import status_body
from dosirak.server.openapi import build_openapi
from dosirak.services import Service

DEFAULT_MAX_REQUEST_SIZE = 64 * 1024 * 1024
#: Sync API functions block a thread while a batch forms, so allow many; idle ones cost little.
DEFAULT_SYNC_THREADS = 64
# The Swagger UI files the docs page loads; nothing else of the package is served.
_SWAGGER_FILES = {
    "swagger-ui.css": "text/css",
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui-standalone-preset.js": "text/javascript",
    "favicon-32x32.png": "image/png",
    "favicon-16x16.png": "image/png",
}
# The docs page may talk to this server only: a browser refuses any other request.
_DOCS_POLICY = ("default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
                "script-src 'self'; connect-src 'self'; object-src 'none'; "
                "frame-ancestors 'self'")


class _State:
    """What endpoints share with the lifespan: the thread pool for sync API functions."""

    def __init__(self, threads: int) -> None:
        self.threads = threads
        self.executor: ThreadPoolExecutor | None = None

    def get_executor(self) -> ThreadPoolExecutor | None:
        return self.executor


def create_app(
    svc: Service,
    *,
    max_request_size: int = DEFAULT_MAX_REQUEST_SIZE,
    runner_mode: str = "local",
    sync_threads: int = DEFAULT_SYNC_THREADS,
) -> ServiceApp:
    """The ASGI application serving ``svc`` (Starlette, with a direct path to the APIs).

    ``max_request_size`` caps request bodies in bytes (413 past it, before the rest is read);
    ``runner_mode`` is how the lifespan starts runners (``"local"`` in this process,
    ``"process"`` in worker processes); ``sync_threads`` sizes the pool that runs sync API
    functions.
    """
    if not isinstance(svc, Service):
        raise InvalidArgument(f"create_app needs a dosirak.Service, got {svc!r}")
    if not isinstance(max_request_size, int) or max_request_size < 1:
        raise InvalidArgument(f"max_request_size must be a positive number of bytes, got "
                              f"{max_request_size!r}")
    if not svc.apis:
        raise InvalidArgument(f"service {svc.name!r} has no APIs; declare one with @svc.api")
    state = _State(sync_threads)
    openapi = dumps(build_openapi(svc))
    docs_page = _docs_page(svc.name)
    swagger_dir = _swagger_ui_dir()

    routes: list[Any] = [
        Route(api.route, APIEndpoint(api, max_request_size=max_request_size,
                                     executor=state.get_executor), methods=["POST"],
              name=f"api:{api.name}")
        for api in svc.apis.values()
    ]

    async def docs_json(request: Request) -> Response:
        return Response(openapi, media_type="application/json")

    async def index(request: Request) -> Response:
        return HTMLResponse(docs_page, headers={"content-security-policy": _DOCS_POLICY})

    async def swagger_init(request: Request) -> Response:
        return FileResponse(_STATIC / "swagger-init.js", media_type="text/javascript")

    async def swagger_asset(request: Request) -> Response:
        name = request.path_params["name"]
        media_type = _SWAGGER_FILES.get(name)
        if media_type is None:
            raise HTTPException(404)
        return FileResponse(swagger_dir / name, media_type=media_type,
                            headers={"cache-control": "public, max-age=86400"})

    async def livez(request: Request) -> Response:
        return PlainTextResponse("ok")

    async def readyz(request: Request) -> Response:
        if svc.ready:
            return PlainTextResponse("ready")
        waiting = [r.name for r in svc.runners if not r.ready]
        message = f"not ready: waiting for runners {waiting}" if waiting and svc.started \
            else "not ready: the service is starting"
        return PlainTextResponse(message, status_code=503)

    routes += [
        Route("/docs.json", docs_json),
        Route("/", index),
        Route("/static/swagger-init.js", swagger_init),
        Route("/static/swagger-ui/{name}", swagger_asset),
        Route("/livez", livez),
        Route("/healthz", livez),
        Route("/readyz", readyz),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        state.executor = ThreadPoolExecutor(max_workers=state.threads,
                                            thread_name_prefix=f"{svc.name}-api")
        try:
            await svc.startup(runner_mode=runner_mode)
            # Everything loaded so far (modules, models) lives as long as the server: move it
            # out of the garbage collector's generations so full collections stop rescanning
            # it, which is where long request-latency tails come from with big models in memory.
            gc.collect()
            gc.freeze()
            yield
        finally:
            gc.unfreeze()  # let cycles made before startup be collected again once we stop
            await svc.shutdown()
            state.executor.shutdown(wait=False, cancel_futures=True)
            state.executor = None

    starlette = Starlette(routes=routes, lifespan=lifespan,
                          exception_handlers={HTTPException: _http_error})
    starlette.state.service = svc
    starlette.state.openapi = openapi
    endpoints = {route.path: route.endpoint for route in routes[:len(svc.apis)]}
    return ServiceApp(starlette, endpoints)


class ServiceApp:
    """The ASGI application: API calls go straight to their endpoint, the rest to Starlette.

    Starlette's middleware stack and route scan cost about 10 microseconds of CPU per request,
    a third of the whole request path here, so a ``POST`` to an API route skips them with one
    dict lookup. Everything else (docs, health, 404, 405, redirects, lifespan) is Starlette's.
    Middleware (metrics, access logs) must wrap this object, not ``starlette``, to see API calls.
    """

    def __init__(self, starlette: Starlette, endpoints: dict[str, APIEndpoint]) -> None:
        self.starlette = starlette
        self.endpoints = endpoints
        self.state = starlette.state

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and not scope.get("root_path"):
            endpoint = self.endpoints.get(scope["path"])
            if endpoint is not None:
                await endpoint(scope, receive, send)
                return
        await self.starlette(scope, receive, send)


async def _http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    if error.status_code == 404:
        message = f"no route {request.url.path!r}; see /docs.json for this service's routes"
    elif error.status_code == 405:
        allowed = (error.headers or {}).get("Allow", "")
        message = f"{request.method} is not allowed on {request.url.path}; use {allowed}"
    else:
        message = error.detail
    return Response(status_body(error.status_code, message), status_code=error.status_code,
                    headers=error.headers, media_type="application/json")


_STATIC = Path(str(resources.files("dosirak.server") / "static"))


def _docs_page(title: str) -> str:
    template = (_STATIC / "swagger.html").read_text(encoding="utf-8")
    return template.format(title=f"{title} - dosirak")


def _swagger_ui_dir() -> Path:
    try:
        import swagger_ui_bundle
    except ImportError:
        raise MissingDependency("the docs page needs swagger-ui-bundle: pip install "
                                "swagger-ui-bundle") from None
    path = Path(os.fspath(swagger_ui_bundle.swagger_ui_path))
    if not (path / "swagger-ui-bundle.js").is_file():
        raise MissingDependency(f"swagger-ui-bundle is installed but has no Swagger UI files "
                                f"at {path}; reinstall it")
    return path
