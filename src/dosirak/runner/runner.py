"""Runners: how a service calls a model, in-process or in worker processes, batched or not.

    >>> runner = dosirak.sklearn.get("iris_clf:latest").to_runner()
    >>> runner.init_local()                 # development: the model runs in this process
    >>> runner.predict.run([[5.9, 3.0, 5.1, 1.8]])

Serving starts runners with ``await runner.start(mode="process")``: the model then runs in
worker processes, and each batchable method gets an adaptive batching dispatcher in the calling
process, so batches are formed before the process hop (one hop per batch, not per call).
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from dosirak.exceptions import InvalidArgument, RunnerError, ServiceCodeError
from dosirak.runner import loop_bridge
from dosirak.runner.runnable import Runnable, RunnableSpec, bound_method
from dosirak.signature import DEFAULT_MAX_BATCH_SIZE, Signature
from dosirak.tag import NAME

#: A local method whose calls typically take less (seconds) runs on the event loop itself: the
#: hop to the runner's thread and back costs 30-50 us of CPU, as much as such a call (measured:
#: a batch of iris predictions, 15% of the CPU per request). Slower calls keep the loop free.
INLINE_BELOW = 0.0005
CALL_TIME_WEIGHT = 0.2
_MODES = ("local", "process")
# Runner attributes a signature may not shadow; such methods stay reachable via runner.methods.
_RESERVED = {"name", "methods", "mode", "spec", "workers", "models", "ready", "concurrency",
             "start", "stop", "init_local", "runnable_class", "runnable_init_params",
             "from_model", "async_run", "async_stream", "embedded", "__call__"}


class RunnerMethod:
    """One method of a runner: ``run`` from sync code, ``async_run`` from async code.

    ``max_batch_size`` and ``max_latency_ms`` are the limits in force (what the serving
    configuration made of them); ``coded_max_batch_size`` and ``coded_max_latency_ms`` what the
    runner's code asked for, ``None`` where it asked nothing, which the configuration's order of
    precedence needs to know (``dosirak.config.RunnersConfig``).
    """

    def __init__(self, runner: Runner, name: str, signature: Signature,
                 max_batch_size: int | None, max_latency_ms: float | None) -> None:
        self.runner = runner
        self.name = name
        self.signature = signature
        self.coded_max_batch_size = max_batch_size
        self.coded_max_latency_ms = max_latency_ms
        self.max_batch_size = max_batch_size if max_batch_size is not None else \
            DEFAULT_MAX_BATCH_SIZE
        self.max_latency_ms = max_latency_ms
        self._dispatcher: Any = None
        # Checked here, in the calling process, for every placement and before batching.
        self._check_input = runner.runnable_class.input_check(name)

    def __repr__(self) -> str:
        return f"RunnerMethod({self.runner.name}.{self.name}, batchable={self.signature.batchable})"

    @property
    def dispatcher(self) -> Any:
        """The batching dispatcher (None when the method is not batchable)."""
        return self._dispatcher

    def _start(self) -> None:
        if not self.signature.batchable or self.max_batch_size <= 1:
            self._dispatcher = None
            return
        from dosirak.runner.dispatcher import Dispatcher

        options: dict[str, Any] = {
            "max_batch_size": self.max_batch_size,
            "batch_dim": self.signature.batch_dim,
            "max_in_flight": self.runner.concurrency,
            "name": f"{self.runner.name}.{self.name}",
        }
        if self.max_latency_ms is not None:
            options["max_latency_ms"] = self.max_latency_ms
        self._dispatcher = Dispatcher(self._execute, **options)

    async def _execute(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        return await self.runner._execute(self.name, args, kwargs)

    async def async_run(self, *args: Any, **kwargs: Any) -> Any:
        """Run the method; concurrent calls of a batchable method are merged into batches."""
        runner = self.runner
        if runner._loop is not asyncio.get_running_loop():
            runner._ensure_started()
            runner._bind_loop()
        if self._check_input is not None and (empty := self._check_input(args)) is not None:
            return empty
        if self._dispatcher is not None:
            return await self._dispatcher(*args, **kwargs)
        return await self.runner._execute(self.name, args, kwargs)

    async def async_stream(self, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        """Iterate over what a generator method yields, as it yields it (tokens of a language
        model). A sync generator makes each item in the runner's thread; closing the iterator
        (a client that left) closes the generator. Runs where the model is loaded in this
        process (``local`` placement, the default)."""
        runner = self.runner
        runner._ensure_started()
        if runner._runnable is None:
            raise RunnerError(f"{runner.name}.{self.name}.async_stream() needs the runner in the "
                              "API worker: streaming does not cross to runner processes yet; "
                              f"set runners.{runner.name}.placement: local")
        generator = bound_method(runner._runnable, self.name)(*args, **kwargs)
        if hasattr(generator, "__anext__"):
            try:
                async for item in generator:
                    yield item
            finally:
                await generator.aclose()
            return
        loop = asyncio.get_running_loop()
        iterator = iter(generator)
        done = object()
        try:
            while (item := await loop.run_in_executor(runner._executor, next, iterator,
                                                      done)) is not done:
                yield item
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                await loop.run_in_executor(runner._executor, close)

    def run(self, *args: Any, **kwargs: Any) -> Any:
        """Run the method from synchronous code (a sync API, a script, a notebook)."""
        runner = self.runner
        runner._ensure_started()
        loop = runner._loop
        if loop is None or not loop.is_running():
            # Nothing to batch with: call the model directly, the fastest path there is.
            if runner._runnable is None:
                raise RunnerError(f"runner {runner.name!r} runs in worker processes; call "
                                  "it from the service (sync APIs may use .run())")
            if self._check_input is not None and (empty := self._check_input(args)) is not None:
                return empty
            return bound_method(runner._runnable, self.name)(*args, **kwargs)
        if threading.get_ident() == runner._loop_thread:
            if loop_bridge.can_wait():  # a sync API the server runs on the loop: no thread hop
                return loop_bridge.wait(self.async_run(*args, **kwargs))
            raise ServiceCodeError(f"{runner.name}.{self.name}.run() was called on the event loop, "
                                  "where it would block every request; in an async function "
                                  f"write `await {runner.name}.{self.name}.async_run(...)`")
        future = asyncio.run_coroutine_threadsafe(self.async_run(*args, **kwargs), loop)
        return future.result()


class Runner:
    """Runs a runnable's methods for a service; built by ``Model.to_runner()`` or directly.

    ``dosirak.Runner(MyRunnable, name="my_runner", runnable_init_params={...})``
    """

    def __init__(
        self,
        runnable_class: type[Runnable],
        *,
        name: str | None = None,
        runnable_init_params: dict[str, Any] | None = None,
        models: list[Any] | None = None,
        max_batch_size: int | None = None,
        max_latency_ms: float | None = None,
        method_configs: dict[str, dict[str, Any]] | None = None,
        signatures: dict[str, Any] | None = None,
        workers: int | None = None,
        spec: RunnableSpec | None = None,
        embedded: bool = False,
    ) -> None:
        if not (isinstance(runnable_class, type) and issubclass(runnable_class, Runnable)):
            raise InvalidArgument(
                f"Runner needs a dosirak.Runnable subclass, got {runnable_class!r}")
        self.name = _runner_name(name or runnable_class.__name__)
        self.runnable_class = runnable_class
        self.runnable_init_params = dict(runnable_init_params or {})
        self.models = list(models or [])
        self.spec = spec or RunnableSpec.for_class(runnable_class, self.runnable_init_params)
        if workers is not None and (not isinstance(workers, int) or workers < 1):
            raise InvalidArgument(
                f"runner {self.name!r}: workers must be an int >= 1, got {workers!r}")
        #: Worker processes the runner's code asked for (None: none asked; see RunnerMethod).
        self.coded_workers = workers
        #: Runs in the API worker whatever the configuration places (BentoML's embedded runner).
        self.embedded = embedded
        self.workers = workers or default_workers(runnable_class)
        base = runnable_class.signatures()
        if signatures:
            base = {**base, **{k: Signature.parse(k, v) for k, v in signatures.items()}}
        if not base:
            raise InvalidArgument(f"{runnable_class.__name__} has no methods marked with "
                                  "@dosirak.Runnable.method")
        configs = method_configs or {}
        if unknown := set(configs) - set(base):
            raise InvalidArgument(f"method_configs names unknown methods {sorted(unknown)}; "
                                  f"runner {self.name!r} has {sorted(base)}")
        self.methods: dict[str, RunnerMethod] = {}
        for method_name, signature in base.items():
            config = configs.get(method_name, {})
            batch_size = config.get("max_batch_size", max_batch_size)
            latency = config.get("max_latency_ms", max_latency_ms)
            _check_limits(self.name, method_name, batch_size, latency)
            self.methods[method_name] = RunnerMethod(self, method_name, signature, batch_size,
                                                     latency)
        # Signature methods win over Runner's own attributes, so an ONNX model's ``run``
        # signature is ``runner.run.run(...)`` as in BentoML.
        for method_name, method in self.methods.items():
            if method_name.isidentifier() and method_name not in _RESERVED:
                setattr(self, method_name, method)
        self.mode: str | None = None
        self._runnable: Any = None
        self._pool: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._executor: ThreadPoolExecutor | None = None
        # Typical seconds per local call, by method (see INLINE_BELOW).
        self._call_seconds: dict[str, float] = {}

    def __repr__(self) -> str:
        return f"Runner(name={self.name!r}, methods={sorted(self.methods)}, mode={self.mode})"

    def __getattr__(self, name: str) -> RunnerMethod:
        methods = self.__dict__.get("methods", {})
        if name in methods:
            return methods[name]
        raise AttributeError(f"runner {self.__dict__.get('name')!r} has no method {name!r}; "
                             f"its methods: {sorted(methods)} (see the model's signatures)")

    # ``runner.run(x)`` calls the ``__call__`` signature, as in the seeds, or the only method
    # of a runner that has one (as BentoML does).
    def run(self, *args: Any, **kwargs: Any) -> Any:
        return self._call_method().run(*args, **kwargs)

    async def async_run(self, *args: Any, **kwargs: Any) -> Any:
        return await self._call_method().async_run(*args, **kwargs)

    def async_stream(self, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        return self._call_method().async_stream(*args, **kwargs)

    def _call_method(self) -> RunnerMethod:
        if "__call__" not in self.methods:
            if len(self.methods) == 1:
                return next(iter(self.methods.values()))
            raise ServiceCodeError(f"runner {self.name!r} has no '__call__' signature and several "
                                  f"methods; call one of them instead: {sorted(self.methods)}")
        return self.methods["__call__"]

    @property
    def concurrency(self) -> int:
        """How many batches may run at once: one per worker process."""
        return self.workers if self.mode == "process" else 1

    @property
    def ready(self) -> bool:
        if self.mode == "local":
            return self._runnable is not None
        return self._pool is not None and bool(self._pool.ready)

    # ----- lifecycle ---------------------------------------------------------------------

    def init_local(self) -> None:
        """Load the model into this process (development, tests, notebooks)."""
        if self.mode is not None:
            return
        self._runnable = self.runnable_class(**self.runnable_init_params)
        self.mode = "local"
        self._executor = ThreadPoolExecutor(
            max_workers=1 if not self.runnable_class.SUPPORTS_CPU_MULTI_THREADING else 4,
            thread_name_prefix=f"runner-{self.name}",
        )
        self._bind_loop()

    async def start(self, mode: str = "process") -> None:
        """Start for serving: ``process`` runs the model in worker processes."""
        if mode not in _MODES:
            raise InvalidArgument(f"runner mode must be one of {_MODES}, got {mode!r}")
        if mode == "local":
            if self.mode is None and self._pool is not None:  # prelaunched, never started
                self._pool.abandon()
                self._pool = None
            self.init_local()
            self._bind_loop()
            return
        if self._pool is None:
            self._prelaunch_pool()
        assert self._pool is not None
        await self._pool.start()
        self.mode = "process"
        self._bind_loop()

    def prelaunch(self) -> None:
        """Spawn the worker processes now, from synchronous code, so that they load the model
        while the caller sets up the rest; ``start("process")`` adopts them. A server calls it
        on the thread that will run its event loop (children die with that thread)."""
        if self.mode is None and self._pool is None:
            self._prelaunch_pool()
            assert self._pool is not None
            self._pool.prelaunch()

    def _prelaunch_pool(self) -> None:
        from dosirak.runner.worker import WorkerPool

        # A batchable method's rows may be merged and split freely: its answer depends on its
        # input only, so a call lost with its worker can safely run once more.
        repeatable = [name for name, method in self.methods.items()
                      if method.signature.batchable]
        self._pool = WorkerPool(self.spec, workers=self.workers, name=self.name,
                                repeatable=repeatable)

    def trace_workers(self, tracing: Any) -> None:
        """A span per call inside this runner's worker processes (placement ``process``), a
        child of the caller's span; see ``WorkerPool.trace``. Nothing for ``local``."""
        if self._pool is not None:
            self._pool.trace(tracing)

    def _bind_loop(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is not None and loop is not self._loop:
            self._loop = loop
            self._loop_thread = threading.get_ident()
            for method in self.methods.values():
                method._start()

    async def stop(self) -> None:
        """Stop worker processes and dispatchers."""
        for method in self.methods.values():
            if method._dispatcher is not None:
                await method._dispatcher.aclose()
                method._dispatcher = None
        if self._pool is not None:
            await self._pool.stop()
            self._pool = None
        if self._executor is not None:
            self._executor.shutdown(wait=False)
            self._executor = None
        self._runnable = None
        self._loop = None
        self.mode = None

    def _ensure_started(self) -> None:
        if self.mode is None:
            raise RunnerError(f"runner {self.name!r} is not started: call runner.init_local() "
                              "for local use, or serve it with a service")

    async def _execute(self, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if self._pool is not None:
            return await self._pool.call(method, args, kwargs)
        function = bound_method(self._runnable, method)
        typical = self._call_seconds.get(method)
        if typical is not None and typical < INLINE_BELOW:
            # Cheaper than the hop to the runner's thread and back: run it right here.
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self._timed(method, time.perf_counter() - start)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._call_timed, method, function,
                                          args, kwargs)

    def _call_timed(self, method: str, function: Callable[..., Any], args: tuple[Any, ...],
                    kwargs: dict[str, Any]) -> Any:
        start = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            self._timed(method, time.perf_counter() - start)

    def _timed(self, method: str, seconds: float) -> None:
        typical = self._call_seconds.get(method)
        self._call_seconds[method] = seconds if typical is None else \
            typical + CALL_TIME_WEIGHT * (seconds - typical)


def default_workers(runnable_class: type[Runnable]) -> int:
    """One process when the runnable uses every core itself, else one per core."""
    if runnable_class.SUPPORTS_CPU_MULTI_THREADING:
        return 1
    return max(1, len(os.sched_getaffinity(0)))


def _runner_name(name: str) -> str:
    lowered = name.lower()
    if not NAME.fullmatch(lowered):
        raise InvalidArgument(f"runner name {name!r} must be lowercase letters, digits, '-', '_' "
                              "and '.', starting and ending with a letter or digit")
    return lowered


def _check_limits(runner: str, method: str, batch_size: Any, latency: Any) -> None:
    if batch_size is not None and (not isinstance(batch_size, int)
                                   or isinstance(batch_size, bool) or batch_size < 1):
        raise InvalidArgument(f"runner {runner!r} method {method!r}: max_batch_size must be an "
                              f"int >= 1 (rows per batch), got {batch_size!r}")
    if latency is not None and (not isinstance(latency, (int, float)) or latency <= 0):
        raise InvalidArgument(f"runner {runner!r} method {method!r}: max_latency_ms must be a "
                              f"positive number of milliseconds, got {latency!r}")
