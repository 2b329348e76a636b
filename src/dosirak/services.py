"""Services: a name, the runners that hold the models, and the inference APIs that call them.

    >>> runner = dosirak.sklearn.get("iris_clf:latest").to_runner()
    >>> svc = dosirak.Service("iris_classifier", runners=[runner])
    >>> @svc.api(input=NumpyNdarray(), output=NumpyNdarray())
    ... def classify(input_series: np.ndarray) -> np.ndarray:
    ...     return runner.predict.run(input_series)

A ``Service`` is only a description: the server (``dosirak.server.app.create_app``) turns it into
an HTTP application and calls ``startup()`` / ``shutdown()`` around serving. The class style
(``@dosirak.service`` and ``@dosirak.api``, see ``dosirak.service_class``) builds the same
``Service``, so both styles serve and document alike.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import re
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dosirak import faces
from dosirak.exceptions import InvalidArgument
from dosirak.io.annotations import descriptor_for
from dosirak.io.base import IODescriptor
from dosirak.io.keyed import NO_DEFAULT
from dosirak.io.multipart import Multipart
from dosirak.signature import DEFAULT_MAX_BATCH_SIZE
from dosirak.tag import NAME, lowercase

_API_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_ROUTE = re.compile(r"^(/[A-Za-z0-9._~-]+)+/?$")
#: Paths the server answers itself; an API cannot take them.
RESERVED_ROUTES = frozenset({"/", "/docs.json", "/livez", "/readyz", "/healthz", "/metrics",
                             "/metadata"})
RESERVED_PREFIXES = ("/static/",)


@dataclass(eq=False)
class InferenceAPI:
    """One API of a service: a route, input and output descriptors, and the function to call.

    ``kwargs_input`` is True when the input is ``Multipart`` (the function gets one keyword per
    field). Class-style APIs are bound to the service instance at startup; batchable ones are
    called through an adaptive batching dispatcher.
    """

    name: str
    route: str
    input: IODescriptor
    output: IODescriptor
    function: Callable[..., Any]
    doc: str | None = None
    batchable: bool = False
    batch_dim: tuple[int, int] = (0, 0)
    max_batch_size: int | None = None
    max_latency_ms: float | None = None
    #: The one parameter the input was derived from (class style): its name and default, so
    #: that the 1.2 body ``{"name": value}`` is read too (``dosirak.io.keyed``).
    parameter: str | None = None
    parameter_default: Any = field(default=NO_DEFAULT, repr=False)
    #: True when the body may be keyed by ``parameter`` (input derived from the annotation;
    #: explicit 1.x descriptors keep their bare wire format, where a keyed one could mislead).
    keyed: bool = False
    #: The parameter that receives the request's ``dosirak.Context`` (None: no context is made).
    context_parameter: str | None = None
    #: True for (async) generator functions: each item goes out as it is made (decided here,
    #: once, so that other APIs pay nothing for streaming; see ``dosirak.server.streaming``).
    streaming: bool = False
    #: Set at startup: what the server calls, and whether it must be awaited.
    callable: Callable[..., Any] = field(init=False, repr=False)
    is_async: bool = False

    def __post_init__(self) -> None:
        self.kwargs_input = isinstance(self.input, Multipart)
        self.streaming = self.streaming or is_generator_callable(self.function)
        self.is_async = is_async_callable(self.function)
        self.callable = self.function

    @property
    def func(self) -> Callable[..., Any]:
        """The user's function (BentoML's name for ``function``)."""
        return self.function

    @property
    def description(self) -> str:
        """The text the docs show: ``doc``, else the function's docstring."""
        return self.doc if self.doc is not None else inspect.cleandoc(self.function.__doc__ or "")

    def to_spec(self) -> dict[str, Any]:
        """A plain description; equivalent APIs (whatever their style) have equal specs."""
        return {"name": self.name, "route": self.route, "doc": self.description,
                "input": self.input.to_spec(), "output": self.output.to_spec(),
                "batchable": self.batchable}


class Service:
    """A prediction service: ``Service(name, runners=[...])`` plus ``@svc.api`` functions."""

    def __init__(self, name: str, runners: list[Any] | None = None,
                 models: list[Any] | None = None) -> None:
        if isinstance(name, str):
            name = lowercase(name, "service name")  # as BentoML: IrisClassifier works
        if not isinstance(name, str) or not NAME.fullmatch(name):
            raise InvalidArgument(f"service name {name!r} must be lowercase letters, digits, "
                                  "'-', '_' and '.', starting and ending with a letter or digit "
                                  "(e.g. 'iris_classifier')")
        self.name = name
        self.runners: list[Any] = []
        for runner in runners or []:
            self.add_runner(runner)
        self.models: list[Any] = list(models or [])
        self.apis: dict[str, InferenceAPI] = {}
        #: The user's class, for class-style services (see ``dosirak.service_class``).
        self.inner: type | None = None
        self.instance: Any = None
        self.config: dict[str, Any] = {}
        self._startup_hooks: list[Callable[..., Any]] = []
        self._shutdown_hooks: list[Callable[..., Any]] = []
        self._deployment_hooks: list[Callable[..., Any]] = []
        #: Shared by the APIs that take a ``dosirak.Context`` and the startup/shutdown hooks.
        self.state: dict[str, Any] = {}
        #: ASGI apps served beside the APIs: (app, path, name); see ``mount_asgi_app``.
        self.mounted: list[tuple[Any, str, str | None]] = []
        #: ASGI middleware around the whole server: (class, options); see ``add_asgi_middleware``.
        self.middlewares: list[tuple[Any, dict[str, Any]]] = []
        self._asgi_app: Any = None
        self._dispatchers: list[Any] = []
        self.started = False

    def __repr__(self) -> str:
        return f"Service(name={self.name!r}, apis={sorted(self.apis)}, " \
               f"runners={[r.name for r in self.runners]})"

    def add_runner(self, runner: Any) -> None:
        """Serve ``runner`` with this service (started and stopped with it)."""
        if not all(hasattr(runner, attr) for attr in ("name", "start", "stop", "ready")):
            raise InvalidArgument(f"{runner!r} is not a runner; pass runners built with "
                                  "model.to_runner() or dosirak.Runner(...)")
        if any(other.name == runner.name for other in self.runners):
            raise InvalidArgument(f"service {self.name!r} has two runners named "
                                  f"{runner.name!r}; give one another name with "
                                  "to_runner(name=...)")
        self.runners.append(runner)

    # ----- declaring APIs -----------------------------------------------------------------

    def api(
        self,
        input: IODescriptor | None = None,
        output: IODescriptor | None = None,
        *,
        route: str | None = None,
        name: str | None = None,
        doc: str | None = None,
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Declare an inference API; missing descriptors come from the function's annotations.

        The route defaults to ``/<function name>``; the docstring (or ``doc``) becomes the API's
        description. Sync functions run in a thread pool, async ones on the event loop.
        """

        def decorate(function: Callable[..., Any]) -> Callable[..., Any]:
            self.add_api(build_api(function, input=input, output=output, route=route,
                                   name=name, doc=doc))
            return function

        return decorate

    def add_api(self, api: InferenceAPI) -> None:
        """Add a built API, refusing a second API with the same name or route."""
        if api.name in self.apis:
            raise InvalidArgument(f"service {self.name!r} already has an API named "
                                  f"{api.name!r}; pass name= to tell them apart")
        for other in self.apis.values():
            if other.route == api.route:
                raise InvalidArgument(f"APIs {other.name!r} and {api.name!r} both use route "
                                      f"{api.route!r}; pass route= to one of them")
        self.apis[api.name] = api

    def on_startup(self, function: Callable[..., Any]) -> Callable[..., Any]:
        """Run ``function`` (sync or async) when each API worker starts, after the runners;
        a hook with a parameter gets a ``dosirak.Context`` whose ``state`` the APIs share."""
        self._startup_hooks.append(function)
        return function

    def on_shutdown(self, function: Callable[..., Any]) -> Callable[..., Any]:
        """Run ``function`` (sync or async) when each API worker stops, before the runners
        (a hook with a parameter gets the ``dosirak.Context``, as ``on_startup``)."""
        self._shutdown_hooks.append(function)
        return function

    def on_deployment(self, function: Callable[..., Any]) -> Callable[..., Any]:
        """Run ``function`` (sync or async, no arguments) once per deployment, before any API
        worker starts its runners: once for ``dosirak serve --workers N``, not once per worker
        nor again when a worker is restarted (download a model, warm a cache)."""
        self._deployment_hooks.append(function)
        return function

    async def run_deployment_hooks(self) -> None:
        """Run the ``on_deployment`` hooks (the server makes sure it happens once)."""
        for hook in self._deployment_hooks:
            result = hook()
            if inspect.isawaitable(result):
                await result

    # ----- other web apps and middleware -------------------------------------------------

    def mount_asgi_app(self, app: Any, path: str = "/", name: str | None = None) -> None:
        """Serve the ASGI ``app`` (FastAPI, Starlette...) under ``path`` beside the APIs.

        The service's own routes (APIs, docs, health, metrics) win over the mounted app's; at
        ``path="/"`` the app gets every other path. Its lifespan events do not run: start what
        it needs in ``@svc.on_startup``.
        """
        if not callable(app):
            raise InvalidArgument(f"mount_asgi_app needs an ASGI application, got {app!r}")
        self.mounted.append((app, _mount_path(path), name))

    def mount_wsgi_app(self, app: Any, path: str = "/", name: str | None = None) -> None:
        """Serve the WSGI ``app`` (Flask, Django...) under ``path``; it runs in a thread pool
        (needs ``pip install 'dosirak[wsgi]'``)."""
        try:
            from a2wsgi import WSGIMiddleware
        except ImportError:
            from dosirak.exceptions import MissingDependency

            raise MissingDependency("mount_wsgi_app needs a2wsgi: pip install "
                                    "'dosirak[wsgi]'") from None
        if not callable(app):
            raise InvalidArgument(f"mount_wsgi_app needs a WSGI application, got {app!r}")
        self.mount_asgi_app(WSGIMiddleware(app), path=path, name=name)

    def add_asgi_middleware(self, middleware_cls: Any, **options: Any) -> None:
        """Wrap the whole server in ``middleware_cls(app, **options)`` (Starlette style). The
        request id, limits, metrics and access log stay outermost; each API call then passes
        through the middleware, which costs what the middleware costs."""
        if not callable(middleware_cls):
            raise InvalidArgument(f"add_asgi_middleware needs a middleware class, got "
                                  f"{middleware_cls!r}")
        self.middlewares.append((middleware_cls, options))

    @property
    def asgi_app(self) -> Any:
        """The whole service as one ASGI application (built once, with the default
        configuration): ``starlette.testclient.TestClient(svc.asgi_app)`` or any ASGI server.
        Its lifespan starts and stops the runners."""
        if self._asgi_app is None:
            # The server's create_app, above this layer: dosirak/__init__.py provides it.
            self._asgi_app = faces.get("dosirak.services", "create_app")(self)
        return self._asgi_app

    # ----- lifecycle ----------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """True when startup has finished and every runner is ready to take calls."""
        return self.started and all(runner.ready for runner in self.runners)

    async def startup(self, runner_mode: str = "local") -> None:
        """Start the runners, create the class-style instance, run the startup hooks."""
        if self.started:
            return
        for runner in self.runners:
            await runner.start(mode=runner_mode)
        if self.inner is not None:
            loop = asyncio.get_running_loop()
            # Loading models can take seconds: keep the loop free for health checks meanwhile.
            self.instance = await loop.run_in_executor(None, self.inner)
            self._bind_methods(self.instance)
        await self._run_hooks(self._startup_hooks)
        self.started = True

    async def _run_hooks(self, hooks: list[Callable[..., Any]]) -> None:
        for hook in hooks:
            if _takes_argument(hook):
                from dosirak.context import Context

                result = hook(Context(state=self.state))
            else:
                result = hook()
            if inspect.isawaitable(result):
                await result

    async def shutdown(self) -> None:
        """Run the shutdown hooks, stop batching dispatchers and runners."""
        self.started = False
        await self._run_hooks(self._shutdown_hooks)
        for dispatcher in self._dispatchers:
            await dispatcher.aclose()
        self._dispatchers.clear()
        for runner in self.runners:
            await runner.stop()
        if self.instance is not None:  # unbind what startup bound to the instance
            for api in self.apis.values():
                api.callable, api.is_async = api.function, is_async_callable(api.function)
        self.instance = None

    def _bind_methods(self, instance: Any) -> None:
        for api in self.apis.values():
            method = getattr(instance, api.function.__name__)
            api.callable = method
            api.is_async = is_async_callable(method)
            if api.batchable:
                api.callable = self._dispatcher_for(api, method)
                api.is_async = True

    def _dispatcher_for(self, api: InferenceAPI, method: Callable[..., Any]) -> Any:
        from dosirak.runner.dispatcher import Dispatcher

        if inspect.iscoroutinefunction(method):
            async def execute(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
                return await method(*args, **kwargs)
        else:
            async def execute(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
                loop = asyncio.get_running_loop()
                return await loop.run_in_executor(None, lambda: method(*args, **kwargs))

        options: dict[str, Any] = {"max_batch_size": api.max_batch_size or DEFAULT_MAX_BATCH_SIZE,
                                   "batch_dim": api.batch_dim, "max_in_flight": 1,
                                   "name": f"{self.name}.{api.name}"}
        if api.max_latency_ms is not None:
            options["max_latency_ms"] = api.max_latency_ms
        dispatcher = Dispatcher(execute, **options)
        self._dispatchers.append(dispatcher)
        return dispatcher

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """For class-style services: an instance of the class (tests, notebooks)."""
        if self.inner is None:
            raise InvalidArgument(f"service {self.name!r} is not class-based; call its API "
                                  "functions directly, or serve it")
        return self.inner(*args, **kwargs)

    def to_spec(self) -> dict[str, Any]:
        """A plain description of the service and its APIs (for comparisons and clients)."""
        return {"name": self.name, "runners": [r.name for r in self.runners],
                "apis": [api.to_spec() for api in self.apis.values()]}


def build_api(
    function: Callable[..., Any],
    *,
    input: IODescriptor | None = None,
    output: IODescriptor | None = None,
    route: str | None = None,
    name: str | None = None,
    doc: str | None = None,
    skip_self: bool = False,
    **options: Any,
) -> InferenceAPI:
    """An ``InferenceAPI`` for ``function``, with descriptors from its annotations if not given."""
    if not callable(function):
        raise InvalidArgument(f"@api decorates functions, got {function!r}")
    api_name = name or function.__name__
    if not _API_NAME.match(api_name):
        raise InvalidArgument(f"API name {api_name!r} must be a Python identifier")
    api_route = route if route is not None else f"/{api_name}"
    if isinstance(api_route, str) and api_route and not api_route.startswith("/"):
        api_route = f"/{api_route}"  # BentoML accepts route="classify"
    check_route(api_route)
    signature = inspect.signature(function)
    parameters = list(signature.parameters.values())
    if skip_self:
        parameters = parameters[1:]
    hints = _type_hints(function)
    context = _context_parameter(parameters, hints, named_ctx=not skip_self)
    if context is not None:
        if options.get("batchable"):
            raise InvalidArgument(f"API {api_name!r}: a batchable API cannot take a "
                                  "dosirak.Context (its calls are merged into batches); read "
                                  "what you need of the request in a non-batchable API")
        options["context_parameter"] = context
        parameters = [p for p in parameters if p.name != context]
    derived = input is None
    if input is None:
        input = input_descriptor(parameters, hints)
    usable = _usable(parameters)
    if not isinstance(input, Multipart) and usable:
        options["parameter"] = usable[0].name
        options["keyed"] = derived
        if usable[0].default is not inspect.Parameter.empty:
            options["parameter_default"] = usable[0].default
    if output is None:
        returns = hints.get("return", inspect.Signature.empty)
        if is_generator_callable(function) or _yielded(returns) is not None:
            options["streaming"] = True
            output = descriptor_for(_yielded(returns) or str, output=True)
        else:
            output = descriptor_for(returns, output=True)
    for descriptor, role in ((input, "input"), (output, "output")):
        if not isinstance(descriptor, IODescriptor):
            raise InvalidArgument(f"API {api_name!r}: {role}= must be an IO descriptor such as "
                                  f"NumpyNdarray(), got {descriptor!r}")
    _check_call_shape(api_name, signature, input, skip_self, context)
    return InferenceAPI(name=api_name, route=api_route, input=input, output=output,
                        function=function, doc=doc, **options)


def input_descriptor(parameters: list[inspect.Parameter], hints: dict[str, Any]) -> IODescriptor:
    """One parameter: its descriptor; several: a Multipart (parameters with defaults optional)."""
    usable = _usable(parameters)
    if not usable:
        raise InvalidArgument("an API function needs at least one parameter for its input")
    if len(usable) == 1:
        return descriptor_for(hints.get(usable[0].name, usable[0].annotation))
    fields = {p.name: descriptor_for(hints.get(p.name, p.annotation)) for p in usable}
    optional = {p.name for p in usable if p.default is not inspect.Parameter.empty}
    return Multipart(**fields).with_optional(optional)


def _usable(parameters: list[inspect.Parameter]) -> list[inspect.Parameter]:
    return [p for p in parameters
            if p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)]


def is_generator_callable(function: Any) -> bool:
    """True for generator and async generator functions (and partials of them)."""
    while isinstance(function, functools.partial):
        function = function.func
    return inspect.isgeneratorfunction(function) or inspect.isasyncgenfunction(function)


def _yielded(annotation: Any) -> Any:
    """What a ``Generator[str, ...]`` / ``AsyncIterator[str]``... return annotation yields."""
    import collections.abc as abc

    origin = typing.get_origin(annotation)
    if origin in (abc.Generator, abc.AsyncGenerator, abc.Iterator, abc.AsyncIterator):
        arguments = typing.get_args(annotation)
        return arguments[0] if arguments else str
    return None


def is_async_callable(function: Any) -> bool:
    """True for ``async def`` functions, partials of them and objects with ``async __call__``."""
    while isinstance(function, functools.partial):
        function = function.func
    return inspect.iscoroutinefunction(function) or (
        callable(function) and inspect.iscoroutinefunction(type(function).__call__))


def check_route(route: str) -> None:
    """Refuse routes the server cannot serve or has taken for itself."""
    if not isinstance(route, str) or not _ROUTE.match(route):
        raise InvalidArgument(f"route {route!r} must be a path like '/classify' or "
                              "'/v2/models/my_model/versions/v0/infer' (letters, digits, "
                              "'.', '_', '~', '-' between slashes)")
    if route in RESERVED_ROUTES or route.startswith(RESERVED_PREFIXES):
        raise InvalidArgument(f"route {route!r} is used by the server itself "
                              f"({sorted(RESERVED_ROUTES)}, /static/...); choose another")


def _type_hints(function: Callable[..., Any]) -> dict[str, Any]:
    try:
        return typing.get_type_hints(function, include_extras=True)
    except Exception:  # unresolvable string annotations: fall back to the raw ones
        return dict(getattr(function, "__annotations__", {}))


def _mount_path(path: str) -> str:
    if not isinstance(path, str) or not path.startswith("/") or "{" in path:
        raise InvalidArgument(f"mount path {path!r} must start with '/' (e.g. '/v1' or '/')")
    return path.rstrip("/") or "/"


def _context_parameter(parameters: list[inspect.Parameter], hints: dict[str, Any],
                       named_ctx: bool) -> str | None:
    """The parameter that asks for a ``dosirak.Context``: annotated so, or (``@svc.api``)
    named ``ctx`` without another annotation."""
    from dosirak.context import is_context_annotation

    for parameter in parameters:
        annotation = hints.get(parameter.name, parameter.annotation)
        if is_context_annotation(annotation) or (
                named_ctx and parameter.name == "ctx" and
                annotation is inspect.Parameter.empty):
            return parameter.name
    return None


def _takes_argument(hook: Callable[..., Any]) -> bool:
    """Whether a lifecycle hook has a parameter (for the ``dosirak.Context``)."""
    try:
        parameters = inspect.signature(hook).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)
               for p in parameters)


def _check_call_shape(name: str, signature: inspect.Signature, descriptor: IODescriptor,
                      skip_self: bool, context: str | None = None) -> None:
    leading = (None,) if skip_self else ()
    extra = {context: None} if context is not None else {}
    try:
        if isinstance(descriptor, Multipart):
            required = {field: None for field in descriptor.fields
                        if field not in descriptor.optional}
            signature.bind(*leading, **required, **extra)
            signature.bind(*leading, **dict.fromkeys(descriptor.fields), **extra)
        else:
            signature.bind(*leading, None, **extra)
    except TypeError as error:
        expected = (f"keyword parameters {list(descriptor.fields)}"
                    if isinstance(descriptor, Multipart) else "one input parameter")
        raise InvalidArgument(f"API {name!r}: the function's parameters {signature} do not fit "
                              f"its input, which passes {expected} ({error})") from None
