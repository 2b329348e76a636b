"""Run synchronous functions on the event loop, letting them wait for coroutines without a thread.

    >>> call = OnLoop(classify, executor=pool)       # classify(x) calls runner.predict.run(x)
    >>> await call(x)

A sync API function such as the seeds' ``classify`` spends microseconds of its own and waits on
a runner. In a thread pool each call pays two thread handoffs for the function and two more for
the runner call inside it (with the GIL passed back and forth each time): about 90 us of CPU per
request, more than the rest of the request path. Here the function runs in a greenlet on the
loop's thread instead; when it calls ``runner.method.run()``, the runner sees it is in such a
greenlet (``can_wait``) and hands the coroutine to ``wait``, which switches back to the loop; the
loop awaits it and switches the result back in. No thread, no lock, no copy.

A function that keeps the loop busy would stall every other request, so each call's time on the
loop is measured: once one call holds it more than ``BLOCKING_CALL`` seconds, or ``SLOW_CALLS``
calls in a row more than ``SLOW_CALL`` each, the function runs in the thread pool from then on
(its calls to runners then go through the loop as from any thread). "In a row", because a call
of a quick function is sometimes slow only because the machine paused the process; a function
that blocks is slow every time. Without the ``greenlet`` package every call runs in the thread
pool.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from typing import Any

try:
    import greenlet
except ImportError:  # optional: without it, sync functions run in threads
    greenlet = None

logger = logging.getLogger("dosirak.server")

#: One call holding the loop this long (seconds) moves the function to the thread pool.
BLOCKING_CALL = 0.25
#: So do ``SLOW_CALLS`` calls in a row of more than ``SLOW_CALL`` seconds each.
SLOW_CALL = 0.005
SLOW_CALLS = 3
#: Idle greenlets kept per thread for the next calls (one per call in progress is needed).
MAX_IDLE = 256


class _Wait:
    __slots__ = ("awaitable",)

    def __init__(self, awaitable: Awaitable[Any]) -> None:
        self.awaitable = awaitable


class _Done:
    __slots__ = ("ok", "value")

    def __init__(self, ok: bool, value: Any) -> None:
        self.ok = ok
        self.value = value


if greenlet is not None:
    class _LoopGreenlet(greenlet.greenlet):  # type: ignore[misc]
        """A greenlet on the loop's thread that runs sync functions, one after another.

        Reused rather than made per call: a new greenlet allocates (and its death frees) a
        stack for its Python frames, an mmap and munmap of its own, on every request.
        """

        def __init__(self) -> None:
            super().__init__(self._serve)

        def _serve(self, job: tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]) -> None:
            while True:
                function, args, kwargs = job
                try:
                    done = _Done(True, function(*args, **kwargs))
                except greenlet.GreenletExit:
                    raise
                except BaseException as error:  # the awaiting task raises it
                    done = _Done(False, error)
                del function, args, kwargs, job
                job = self.parent.switch(done)
else:  # pragma: no cover - only without greenlet
    _LoopGreenlet = None  # type: ignore[assignment,misc]

_idle = threading.local()  # per thread: a greenlet can only run on the thread that made it


def available() -> bool:
    """Whether sync functions can run on the loop (the ``greenlet`` package is installed)."""
    return greenlet is not None


def can_wait() -> bool:
    """True inside a function run by ``OnLoop`` on the loop: ``wait`` may be called."""
    return greenlet is not None and isinstance(greenlet.getcurrent(), _LoopGreenlet)


def wait(awaitable: Awaitable[Any]) -> Any:
    """From a function run by ``OnLoop``: let the loop await ``awaitable``; return its result."""
    current = greenlet.getcurrent()
    if not isinstance(current, _LoopGreenlet):
        raise RuntimeError("wait() is only for functions run on the loop by OnLoop")
    return current.parent.switch(_Wait(awaitable))


class OnLoop:
    """An async callable that runs the sync ``function`` on the loop; see the module docstring.

    ``executor`` returns the pool that takes the function over when it blocks the loop.
    """

    def __init__(self, function: Callable[..., Any], *, name: str,
                 executor: Callable[[], Executor | None]) -> None:
        self.function = function
        self.name = name
        self.executor = executor
        self.threaded = greenlet is None
        self._slow_calls = 0

    async def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.threaded:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self.executor(), _call, self.function, args,
                                              kwargs)
        idle = getattr(_idle, "greenlets", None)
        if idle is None:
            idle = _idle.greenlets = []
        child = idle.pop() if idle else _LoopGreenlet()
        child.gr_context = contextvars.copy_context()  # the request's id and the like
        held = 0.0
        step: Any = None
        try:
            start = time.perf_counter()
            try:
                step = child.switch((self.function, args, kwargs))
            finally:
                held += time.perf_counter() - start
            while type(step) is _Wait:
                try:
                    value = await step.awaitable
                except BaseException as error:  # the runner's error, or a cancellation
                    start = time.perf_counter()
                    try:
                        step = child.throw(error)
                    finally:
                        held += time.perf_counter() - start
                    continue
                start = time.perf_counter()
                try:
                    step = child.switch(value)
                finally:
                    held += time.perf_counter() - start
        finally:
            if held > SLOW_CALL:
                self._held_too_long(held)
            else:
                self._slow_calls = 0
            if type(step) is _Done and len(idle) < MAX_IDLE:
                idle.append(child)  # finished its call: ready for the next one
        if step.ok:
            return step.value
        raise step.value

    def _held_too_long(self, held: float) -> None:
        self._slow_calls += 1
        if held > BLOCKING_CALL or self._slow_calls >= SLOW_CALLS:
            self.threaded = True
            logger.warning("API %r held the event loop for %.1f ms in a call; its calls run in "
                           "the thread pool from now on (make it async, or set "
                           "api_server.sync_apis: threads to start it there)", self.name,
                           held * 1000)


def _call(function: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    return function(*args, **kwargs)
