"""The ASGI application of a service, on Starlette.

    >>> app = create_app(svc, max_request_size=32 * 1024 * 1024)
    >>> uvicorn.run(app, host="127.0.0.1", port=3000)

Routes: one ``POST`` route per API, ``/docs.json`` (OpenAPI), ``/`` (Swagger UI, served from the
installed ``swagger-ui-bundle`` package, so it works offline), ``/livez`` and ``/healthz``
(liveness), ``/readyz`` (200 only once every runner is ready), ``/metrics`` (Prometheus) and
``/metadata`` (the service, its APIs, runners and models). The app's lifespan starts the service
(each runner where its placement says, the class-style instance, startup hooks) and stops it.
Errors of every kind are JSON bodies (``dosirak.server.errors``).

A serving configuration (``dosirak.config.ServingConfig``) sets the limits (body size, timeout,
concurrency), CORS, metrics, and each runner's placement, workers and batching; without one the
built-in defaults apply. Every request passes through ``dosirak.server.traffic.Traffic`` (request
id, limits, metrics, access log) before its route.
"""

from __future__ import annotations

import contextlib
import contextvars
import gc
import os
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from importlib import resources
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route

from dosirak.config import DEFAULT_PLACEMENT, ServingConfig
from dosirak.exceptions import InvalidArgument, MissingDependency
from dosirak.io.encoding import dumps
from dosirak.monitoring import configure as configure_monitoring
from dosirak.observability.access_log import AccessLog
from dosirak.observability.metrics import CONTENT_TYPE, metrics_from_config
from dosirak.observability.prediction_log import PredictionLog
from dosirak.observability.request_id import current_request_id
from dosirak.server.context_endpoint import ContextEndpoint
from dosirak.server.deployment import run_deployment_hooks_once
from dosirak.server.endpoint import APIEndpoint
from dosirak.server.errors import status_body
from dosirak.server.metadata import build_metadata
from dosirak.server.openapi import build_openapi
from dosirak.server.runner_metrics import RunnerMetrics
from dosirak.server.streaming import StreamEndpoint
from dosirak.server.traffic import Traffic
from dosirak.services import InferenceAPI, Service

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


class _ContextExecutor(ThreadPoolExecutor):
    """A pool whose tasks see the submitter's context variables (the request id), which a
    plain pool drops; used only when the prediction log needs them, as it costs a copy."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        return super().submit(contextvars.copy_context().run, fn, *args, **kwargs)


def create_app(
    svc: Service,
    *,
    max_request_size: int | None = None,
    runner_mode: str | None = None,
    sync_threads: int = DEFAULT_SYNC_THREADS,
    config: ServingConfig | None = None,
    placement: str | None = None,
    prelaunch: bool = False,
) -> ServiceApp:
    """The ASGI application serving ``svc`` (Starlette, with a direct path to the APIs).

    ``config`` is the serving configuration (the built-in defaults when ``None``).
    ``max_request_size`` caps request bodies in bytes (413 past it, before the rest is read;
    default ``api_server.max_request_size``); ``runner_mode`` is where runners run unless the
    configuration places them (``"local"`` in this process, ``"process"`` in worker processes);
    ``sync_threads`` sizes the pool that runs sync API functions. ``placement`` puts every
    runner there whatever the configuration says (``dosirak serve --development``: ``"local"``).
    ``prelaunch`` spawns the worker processes of runners placed ``process`` at once, so they
    load their models while the server sets itself up (the lifespan then adopts them); call
    from the thread that will run the event loop.
    """
    if not isinstance(svc, Service):
        raise InvalidArgument(f"create_app needs a dosirak.Service, got {svc!r}")
    config = config if config is not None else ServingConfig()
    if max_request_size is None:
        max_request_size = int(config.api_server.max_request_size)
    if not isinstance(max_request_size, int) or max_request_size < 1:
        raise InvalidArgument(f"max_request_size must be a positive number of bytes, got "
                              f"{max_request_size!r}")
    if not svc.apis:
        raise InvalidArgument(f"service {svc.name!r} has no APIs; declare one with @svc.api")
    placements = configure_runners(svc, config, runner_mode or DEFAULT_PLACEMENT)
    if placement is not None:
        placements = dict.fromkeys(placements, placement)
    if prelaunch:
        for runner in svc.runners:
            if placements[runner.name] == "process":
                runner.prelaunch()
    _apply_input_limits(svc, config)
    state = _State(sync_threads)
    prediction_log = PredictionLog()
    monitoring = config.monitoring
    configure_monitoring(monitoring.log_path, int(monitoring.max_bytes), monitoring.backup_count)
    tracing = _tracing(config, svc)
    metadata = dumps(build_metadata(svc, placements))
    gate = _auth_gate(config)
    document = build_openapi(svc)
    if gate is not None:
        gate.document(document)
    openapi = dumps(document)
    docs_page = _docs_page(svc.name)
    swagger_dir = _swagger_ui_dir()

    routes: list[Any] = [
        Route(api.route, _endpoint(api, svc, max_request_size=max_request_size,
                                   executor=state.get_executor),
              methods=["POST"], name=f"api:{api.name}")
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

    async def metrics_page(request: Request) -> Response:
        if not metrics.enabled:
            raise HTTPException(404, "metrics are disabled (metrics.enabled: false)")
        runner_metrics.sample_now()
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    async def metadata_page(request: Request) -> Response:
        return Response(metadata, media_type="application/json")

    routes += [
        Route("/docs.json", docs_json),
        Route("/", index),
        Route("/static/swagger-init.js", swagger_init),
        Route("/static/swagger-ui/{name}", swagger_asset),
        Route("/livez", livez),
        Route("/healthz", livez),
        Route("/readyz", readyz),
        Route("/metrics", metrics_page),
        Route("/metadata", metadata_page),
    ]
    oip = None
    if config.api_server.oip.enabled:
        from dosirak.server.oip.routes import OpenInference

        # After every other route: matching /v2 costs them nothing.
        oip = OpenInference(svc, max_request_size=max_request_size,
                            executor=state.get_executor)
        routes += oip.routes
    # Apps mounted by the service come last: every route of the service wins over theirs.
    mounts = _mounted_apps(svc)
    # Every path this app answers gets its own metric series; any other is "__unknown__".
    known_paths = [route.path for route in routes if "{" not in route.path]
    known_paths += oip.paths if oip is not None else []
    known_paths += [f"/static/swagger-ui/{name}" for name in _SWAGGER_FILES]
    static = getattr(svc, "static_content", None)
    if static is not None:  # a 0.x service's @web_static_content: its files at /, docs at /docs
        from starlette.routing import Mount
        from starlette.staticfiles import StaticFiles

        routes = [Route("/docs", index) if getattr(r, "path", None) == "/" else r
                  for r in routes]
        known_paths = [*(path for path in known_paths if path != "/"), "/docs"]
        routes.append(Mount("/", StaticFiles(directory=str(static), html=True)))
    metrics = metrics_from_config(config.metrics, endpoints=known_paths)
    runner_metrics = RunnerMetrics(metrics)

    # Every endpoint that calls an API: its own route, and its Open Inference Protocol one.
    api_endpoints: list[APIEndpoint] = [route.endpoint for route in routes[:len(svc.apis)]]
    if oip is not None:
        api_endpoints += list(oip.endpoints.values())

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        executor_class = _ContextExecutor if prediction_log.enabled or tracing is not None \
            else ThreadPoolExecutor
        state.executor = executor_class(max_workers=state.threads,
                                        thread_name_prefix=f"{svc.name}-api")
        try:
            await run_deployment_hooks_once(svc)  # before anything starts, once in all
            # Each runner starts where its placement says. The service's own startup then finds
            # them started (starting a started runner does nothing) and does the rest.
            for runner in svc.runners:
                await runner.start(mode=placements[runner.name])
            await svc.startup(runner_mode="local")
            if metrics.enabled:
                _observe_batching(svc, runner_metrics)
                runner_metrics.start()
            # Each API's callable as this server runs it, shared by the API's endpoints.
            calls = {name: _server_call(api, state.get_executor,
                                        on_loop=config.api_server.sync_apis == "auto",
                                        log=prediction_log if prediction_log.enabled else None)
                     for name, api in svc.apis.items()}
            if tracing is not None:
                calls = {name: (tracing.api_span(name, *call), call[1])
                         for name, call in calls.items()}
                tracing.instrument_batches(svc)
            for endpoint in api_endpoints:
                endpoint.use(*calls[endpoint.api.name])
            # Everything loaded so far (modules, models) lives as long as the server: move it
            # out of the garbage collector's generations so full collections stop rescanning
            # it, which is where long request-latency tails come from with big models in memory.
            # No collection first: startup leaves about a thousand garbage objects behind (with
            # scikit-learn), and a full collection over everything imported costs ~70 ms of
            # cold start.
            gc.freeze()
            yield
        finally:
            gc.unfreeze()  # let cycles made before startup be collected again once we stop
            runner_metrics.stop()
            await svc.shutdown()
            for endpoint in api_endpoints:  # back to the API's own, as before startup
                endpoint.use(endpoint.api.callable, endpoint.api.is_async)
            state.executor.shutdown(wait=False, cancel_futures=True)
            state.executor = None
            if tracing is not None:
                tracing.shutdown()

    starlette = Starlette(routes=routes + mounts, lifespan=lifespan,
                          exception_handlers={HTTPException: _http_error})
    starlette.state.service = svc
    starlette.state.openapi = openapi
    starlette.state.config = config
    starlette.state.metrics = metrics
    starlette.state.placements = placements
    starlette.state.tracing = tracing
    endpoints = {route.path: route.endpoint for route in routes[:len(svc.apis)]}
    if oip is not None:  # an API's own route wins over an infer path it happens to take
        endpoints = {**oip.endpoints, **endpoints}
    app = ServiceApp(starlette, endpoints)
    inner: Any = app.route if gate is None else gate.wrap(app.route)
    direct = endpoints if gate is None else {path: gate.wrap(endpoint)
                                             for path, endpoint in endpoints.items()}
    cors = config.api_server.cors
    if cors.enabled:
        from starlette.middleware.cors import CORSMiddleware

        inner = CORSMiddleware(inner, allow_origins=cors.allow_origins,
                               allow_methods=cors.allow_methods,
                               allow_headers=cors.allow_headers,
                               allow_credentials=cors.allow_credentials,
                               expose_headers=cors.expose_headers, max_age=cors.max_age)
    for middleware, options in reversed(svc.middlewares):  # the first added is outermost
        inner = middleware(inner, **options)
    app.handler = Traffic(inner, metrics=metrics,
                          access_log=AccessLog() if tracing is None else tracing.access_log(),
                          api_routes=endpoints, timeout=config.api_server.timeout,
                          max_concurrency=admission_limit(svc, config, sync_threads),
                          track_request_id=prediction_log.enabled,
                          # With CORS between, API calls must pass through it.
                          direct=None if cors.enabled or svc.middlewares else direct)
    if tracing is not None:  # outside the traffic layer: the access line is written in the span
        app.handler = tracing.http(app.handler)
    return app


def _tracing(config: ServingConfig, svc: Service) -> Any:
    """The tracer of ``tracing:``; None when off, and then OpenTelemetry is not imported."""
    if not config.tracing.enabled:
        return None
    from dosirak.observability.tracing import Tracing

    return Tracing(config.tracing, service_name=svc.name)


def _auth_gate(config: ServingConfig) -> Any:
    """The bearer-token gate of ``api_server.auth``; None when authentication is off."""
    from dosirak.server.auth import AuthGate, load_tokens

    tokens = load_tokens(config.api_server.auth)
    return AuthGate(tokens, config.api_server.auth.public_routes) if tokens else None


def _mounted_apps(svc: Service) -> list[Mount]:
    """The routes of the ASGI and WSGI apps the service mounted (``svc.mount_asgi_app``)."""
    # The longest paths first: "/" must not take what "/flask" is for.
    ordered = sorted(svc.mounted, key=lambda mount: -len(mount[1]))
    return [Mount(path, app=mounted, name=name) for mounted, path, name in ordered]


def _endpoint(api: Any, svc: Service, **options: Any) -> APIEndpoint:
    """The endpoint of ``api``: chosen here, once, so that an API pays only for what it uses
    (a generator streams, a ``dosirak.Context`` parameter gets a context per request)."""
    if api.streaming:
        return StreamEndpoint(api, state=svc.state, **options)
    if api.context_parameter is not None:
        return ContextEndpoint(api, state=svc.state, **options)
    return APIEndpoint(api, **options)


def _apply_input_limits(svc: Service, config: ServingConfig) -> None:
    """Give every API's input the configuration's bounds on what a body may declare (before
    the OpenAPI document is built: the schemas state them)."""
    from dosirak.io.limits import InputLimits

    limits = InputLimits(**config.api_server.input_limits.model_dump())
    for api in svc.apis.values():
        api.input.apply_limits(limits)


def admission_limit(svc: Service, config: ServingConfig, sync_threads: int) -> int | None:
    """How many API calls one API worker admits at once (``api_server.max_concurrency``).

    ``auto``: ``sync_threads`` (the pool that runs sync APIs: beyond it calls only queue),
    unless a runner method or API of ``svc`` batches, whose batcher refuses what it cannot
    answer within its latency budget: then no limit. Call after ``configure_runners``.
    """
    setting = config.api_server.max_concurrency
    if setting != "auto":
        return setting
    batches = any(api.batchable for api in svc.apis.values()) or any(
        method.signature.batchable and method.max_batch_size > 1
        for runner in svc.runners for method in runner.methods.values())
    return None if batches else sync_threads


def configure_runners(svc: Service, config: ServingConfig, default_placement: str
                      ) -> dict[str, str]:
    """Apply the configuration's batching limits and workers to ``svc``'s runners; return
    where each runner runs (``"local"`` or ``"process"``), by name.

    What the runner's code set (``coded_*``, ``None`` where it set nothing, even when it asked
    for the built-in value) keeps its rank in the configuration's order of precedence (see
    ``dosirak.config.RunnersConfig``); configuring again starts from the code, not from what an
    earlier configuration made of it.
    """
    from dosirak.runner.runner import default_workers

    config.check_runners({runner.name: list(runner.methods) for runner in svc.runners})
    placements = {}
    for runner in svc.runners:
        runners = config.runners
        # An embedded runner (to_runner(embedded=True)) stays in the API worker.
        placements[runner.name] = "local" if runner.embedded else \
            runners.placement_for(runner.name, default_placement)
        workers = runners.workers_for(runner.name, runner.coded_workers)
        runner.workers = workers if workers is not None else \
            default_workers(runner.runnable_class)
        for name, method in runner.methods.items():
            options = runners.batching_for(runner.name, name,
                                           max_batch_size=method.coded_max_batch_size,
                                           max_latency_ms=method.coded_max_latency_ms)
            method.max_batch_size = options.max_batch_size if options.enabled else 1
            method.max_latency_ms = options.max_latency_ms
    return placements


def _observe_batching(svc: Service, runner_metrics: RunnerMetrics) -> None:
    for runner in svc.runners:
        for name, method in runner.methods.items():
            if method.dispatcher is not None:
                runner_metrics.observe(method.dispatcher, runner=runner.name, method=name)
    # Batchable APIs of class-style services batch in the service itself.
    apis = [api for api in svc.apis.values() if api.batchable]
    for api, dispatcher in zip(apis, getattr(svc, "_dispatchers", []), strict=False):
        runner_metrics.observe(dispatcher, runner=svc.name, method=api.name)


def _server_call(api: InferenceAPI, executor: Callable[[], ThreadPoolExecutor | None], *,
                 on_loop: bool, log: PredictionLog | None) -> tuple[Callable[..., Any], bool]:
    """What the server calls for ``api``, and whether it is awaited: the API's callable, run on
    the event loop when sync (``on_loop``: ``dosirak.runner.loop_bridge``, so that its runner
    calls cost no thread handoffs), its predictions logged (``log``). Streaming APIs keep
    theirs: a generator is iterated in the pool, and its items are not a value to log."""
    function, is_async = api.callable, api.is_async
    if api.streaming:
        return function, is_async
    if on_loop and not is_async:
        from dosirak.runner import loop_bridge

        if loop_bridge.available():
            function, is_async = loop_bridge.OnLoop(function, name=api.name,
                                                    executor=executor), True
    if log is not None:
        function = _logged(function, is_async, api.name, log)
    return function, is_async


def _logged(function: Callable[..., Any], is_async: bool, name: str,
            log: PredictionLog) -> Callable[..., Any]:
    """``function`` with its input and output summaries logged."""
    if is_async:
        async def logged_async(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            result = await function(*args, **kwargs)
            log.record(current_request_id.get(), name, args[0] if args else kwargs, result,
                       (time.perf_counter() - start) * 1000)
            return result

        return logged_async

    def logged(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        result = function(*args, **kwargs)
        log.record(current_request_id.get(), name, args[0] if args else kwargs, result,
                   (time.perf_counter() - start) * 1000)
        return result

    return logged


class ServiceApp:
    """The ASGI application: API calls go straight to their endpoint, the rest to Starlette.

    Starlette's middleware stack and route scan cost about 10 microseconds of CPU per request,
    a third of the whole request path here, so a ``POST`` to an API route skips them with one
    dict lookup. Everything else (docs, health, 404, 405, redirects, lifespan) is Starlette's.
    Requests first pass ``handler`` (``Traffic``: request ids, limits, metrics, access log;
    CORS when configured), which then calls ``route``.
    """

    def __init__(self, starlette: Starlette, endpoints: dict[str, APIEndpoint]) -> None:
        self.starlette = starlette
        self.endpoints = endpoints
        self.state = starlette.state
        self.handler: Any = self.route

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.handler(scope, receive, send)

    def lifespan(self) -> contextlib.AbstractAsyncContextManager[Any]:
        """The service's startup and shutdown as a context manager, for servers that run them
        themselves (``dosirak serve`` does, to report a failed startup in a clear line) rather
        than through the ASGI lifespan protocol."""
        return self.starlette.router.lifespan_context(self.starlette)

    async def route(self, scope: Any, receive: Any, send: Any) -> None:
        """Send the request to its API endpoint, or to Starlette."""
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
