"""Runner worker processes: child processes that each hold a built runnable and run its methods.

    >>> pool = WorkerPool(RunnableSpec.for_class(MyRunnable, {}), workers=2, name="my_runner")
    >>> await pool.start()                  # spawn, build the runnable in each child, wait
    >>> await pool.call("predict", (x,), {})
    >>> await pool.stop()                   # let in-flight calls finish, then end the children

``pool.prelaunch()``, called from plain synchronous code before the event loop runs, spawns the
children and sends them their spec at once; ``start`` then adopts them. A server calls it as
soon as it knows where its runners run, so the children import the framework and load the model
while the server is still setting itself up (about a quarter of a second of a cold start).

Each child is ``sys.executable`` started with one end of a ``socket.socketpair()`` (passed with
``pass_fds``): the channel has no name, so nothing outside the service can reach it. The spec
travels once, parent to child, cloudpickled (the parent's own data to its own child); everything
a child sends back is a ``transport`` frame, never pickle.

Calls go to the live worker with the fewest calls in flight; a worker runs its calls in order,
so several may be queued on it and the next one starts without waiting for a round trip. When a
worker dies (seen at once through EOF on its socket and its pidfd), the call it was running runs
once more on another worker when that is safe, else fails with ``RunnerUnavailable`` (503, see
``WorkerPool``); the calls queued behind it (never started) go to another worker, and it is
restarted with backoff. Children die with the parent (``PR_SET_PDEATHSIG``, and EOF). Linux
sends that signal when the *thread* that spawned the child ends, so start the pool on the thread
that runs the event loop for the service's lifetime (which ``await pool.start()`` does).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections import deque
from collections.abc import Collection
from typing import Any

import cloudpickle

from dosirak.backoff import STABLE_AFTER, restart_delay
from dosirak.exceptions import InvalidArgument, RunnerError, RunnerUnavailable
from dosirak.exit_status import describe_exit
from dosirak.runner.runnable import RunnableSpec, bound_method
from dosirak.runner.transport import (
    IOV_MAX,
    Packer,
    Payload,
    Receiver,
    advance,
    decode_call,
    decode_reply,
    encode_call,
    encode_error,
    encode_result,
    frame,
    frame_size,
    remote_error,
    send_all,
    tune,
)

logger = logging.getLogger("dosirak.runner")

_BOOT = "import sys; from dosirak.runner.worker import child_main; child_main(*sys.argv[1:])"
_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
# Deaths the call itself may have caused (a native crash on its input): running it again would
# take down a second worker. Other signals come from outside (the OOM killer, an operator).
_FAULTS = frozenset(-int(sig) for sig in (signal.SIGSEGV, signal.SIGBUS, signal.SIGILL,
                                          signal.SIGFPE, signal.SIGABRT))


class _Call:
    __slots__ = ("future", "method", "parts", "repeatable")

    def __init__(self, method: str, parts: list[Any], future: asyncio.Future[Any],
                 repeatable: bool) -> None:
        self.method = method
        self.parts = parts
        self.future = future
        self.repeatable = repeatable  # may run once more when its worker dies under it


class _Worker:
    """One child process, its socket, and the calls sent to it (answered in order)."""

    def __init__(self, pool: WorkerPool, index: int, process: subprocess.Popen[bytes],
                 sock: socket.socket) -> None:
        self.pool = pool
        self.index = index
        self.process = process
        self.pid = process.pid
        self.sock = sock
        self.fd = sock.fileno()
        self.receiver = Receiver(sock)
        self.pending: deque[_Call] = deque()
        self.outbox: list[memoryview] = []
        self.loop = pool._loop
        self.ready: asyncio.Future[None] = self.loop.create_future()
        self.exited: asyncio.Future[int] = self.loop.create_future()
        self.live = False
        self.reading = True
        self.born = time.monotonic()
        self.pidfd = -1
        self.loop.add_reader(self.fd, self._on_readable)
        with contextlib.suppress(AttributeError, OSError):  # pidfds: Linux 5.3+
            self.pidfd = os.pidfd_open(self.pid)
            self.loop.add_reader(self.pidfd, self._on_exit)

    def __repr__(self) -> str:
        return f"worker {self.index} (pid {self.pid}) of runner {self.pool.name!r}"

    # ----- writing ------------------------------------------------------------------------

    def send(self, call: _Call) -> None:
        self.pending.append(call)
        self.write(call.parts)

    def write(self, parts: list[Any]) -> None:
        if self.outbox:
            self.outbox += [memoryview(part).cast("B") for part in parts]
            return
        sent = 0
        try:
            if len(parts) <= IOV_MAX:
                sent = self.sock.sendmsg(parts)
                if sent == frame_size(parts):
                    return
        except BlockingIOError:
            pass
        except OSError:
            return  # the child is gone; its exit is handled by _on_exit / EOF
        self.outbox = advance([memoryview(part).cast("B") for part in parts], sent)
        self.loop.add_writer(self.fd, self._on_writable)

    def _on_writable(self) -> None:
        try:
            sent = self.sock.sendmsg(self.outbox[:IOV_MAX])
        except BlockingIOError:
            return
        except OSError:
            sent = -1
        if sent < 0:
            self.outbox = []
        else:
            self.outbox = advance(self.outbox, sent)
        if not self.outbox:
            self.loop.remove_writer(self.fd)

    # ----- reading ------------------------------------------------------------------------

    def _on_readable(self) -> None:
        try:
            frames = self.receiver.receive()
        except BlockingIOError:
            return
        except (EOFError, OSError):
            self._stop_reading()
            self.pool._lost(self)
            return
        except Exception as error:  # a frame we cannot parse: this channel cannot be trusted
            logger.error("%s sent a malformed frame (%s); killing it", self, error)
            self.kill()
            return
        for header, payload in frames:
            self._answer(header, payload)

    def _answer(self, header: dict[str, Any], payload: Payload) -> None:
        if not self.live:
            if not self.ready.done():
                if "e" in header:
                    self.ready.set_exception(remote_error(header["e"]))
                else:
                    self.live = True
                    self.ready.set_result(None)
            return
        if not self.pending:
            logger.error("%s answered a call it was never sent; killing it", self)
            self.kill()
            return
        future = self.pending.popleft().future
        if future.done():  # the caller gave up (cancelled); the answer has nobody to go to
            return
        try:
            future.set_result(decode_reply(header, payload))
        except RunnerError as error:  # the method raised, or the frame was malformed
            future.set_exception(error)

    def _stop_reading(self) -> None:
        if self.reading:
            self.reading = False
            self.loop.remove_reader(self.fd)

    def _drain(self) -> None:
        """Collect the answers a dead child wrote before it died."""
        if not self.reading:
            return
        with contextlib.suppress(Exception):
            while True:
                for header, payload in self.receiver.receive():
                    self._answer(header, payload)
        self._stop_reading()

    # ----- exit ---------------------------------------------------------------------------

    def _on_exit(self) -> None:
        self.loop.remove_reader(self.pidfd)
        os.close(self.pidfd)
        self.pidfd = -1
        self._exited()

    def _poll_exit(self) -> None:
        """Where pidfds are missing: poll for the exit the EOF announced."""
        if self.process.poll() is None:
            self.loop.call_later(0.002, self._poll_exit)
        else:
            self._exited()

    def _exited(self) -> None:
        if self.exited.done():
            return
        code = self.process.wait()
        self._drain()
        self.live = False
        if self.outbox:
            self.loop.remove_writer(self.fd)
            self.outbox = []
        self.sock.close()
        self.exited.set_result(code)
        self.pool._died(self, code)

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(signal.SIGKILL)


class WorkerPool:
    """Worker processes that build a runnable from ``spec`` and run its methods on request.

    ``workers`` processes are started; ``call`` sends to the one with the fewest calls in
    flight. Use it from one event loop (the one ``start`` ran on).

    A call whose worker dies under it fails with ``RunnerUnavailable`` (HTTP 503 with
    ``Retry-After``: the worker is being restarted), except that a call of a ``repeatable``
    method runs once more on another live worker when the death came from outside (SIGKILL
    from the OOM killer or an operator), not from a native fault the input may have caused.
    """

    def __init__(self, spec: RunnableSpec, *, workers: int = 1, name: str = "runner",
                 start_timeout: float = 300.0, grace_period: float = 30.0,
                 repeatable: Collection[str] = ()) -> None:
        if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
            raise InvalidArgument(
                f"runner {name!r}: workers must be an int >= 1, got {workers!r}")
        self.spec = spec
        self.workers = workers
        self.name = name
        self.start_timeout = start_timeout
        self.grace_period = grace_period
        self.repeatable = frozenset(repeatable)
        self._start_seconds = 1.0  # how long the last worker took to build its runnable
        self._pickled_spec = cloudpickle.dumps(spec)
        self._loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]
        self._slots: list[_Worker | None] = [None] * workers
        self._live: list[_Worker] = []
        self._waiting: deque[_Call] = deque()
        self._crashes = [0] * workers
        self._restarts: set[asyncio.Task[None]] = set()
        self._started = False
        self._stopping = False
        # Spawned by prelaunch() and not yet adopted by start(): index -> (process, socket).
        self._prelaunched: dict[int, tuple[subprocess.Popen[bytes], socket.socket]] = {}
        #: Set by ``trace``: the caller's trace context for each call, and what the workers
        #: need to make a span per call (``dosirak.observability.tracing.WorkerTracing``).
        self._tracing: Any = None

    def __repr__(self) -> str:
        return f"WorkerPool({self.name!r}, workers={self.workers}, pids={self.pids})"

    @property
    def ready(self) -> bool:
        """True once started and while at least one worker can take calls."""
        return self._started and not self._stopping and bool(self._live)

    @property
    def pids(self) -> list[int]:
        """Process ids of the live workers."""
        return [worker.pid for worker in self._live]

    def prelaunch(self) -> None:
        """Spawn the workers and send them the spec now, without an event loop; ``start``
        adopts them (and waits for them) instead of spawning its own.

        Call it on the thread that will run the event loop: children die with that thread.
        """
        if self._started or self._stopping:
            return
        for index in range(self.workers):
            if index not in self._prelaunched:
                process, sock = self._spawn(index)
                # Blocking: the child reads it first. If the child died at once, start() sees
                # its exit and reports it.
                with contextlib.suppress(OSError):
                    send_all(sock, self._hello(index))
                self._prelaunched[index] = (process, sock)

    def abandon(self) -> None:
        """End the prelaunched workers that ``start`` never adopted (the server gave up)."""
        while self._prelaunched:
            _, (process, sock) = self._prelaunched.popitem()
            sock.close()  # EOF: the child's loop ends; SIGKILL in case it is still loading
            with contextlib.suppress(OSError):
                process.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=5)

    async def start(self) -> None:
        """Spawn the workers (or adopt the prelaunched ones) and wait until each has built its
        runnable."""
        if self._started:
            return
        self._loop = asyncio.get_running_loop()
        results = await asyncio.gather(*(self._launch(index) for index in range(self.workers)),
                                       return_exceptions=True)
        failure = next((result for result in results if isinstance(result, BaseException)), None)
        if failure is not None:
            await asyncio.gather(*(self._retire(result) for result in results
                                   if isinstance(result, _Worker)))
            raise failure
        for worker in results:
            self._adopt(worker)  # type: ignore[arg-type]
        self._started = True
        logger.info("runner %r started %d worker process(es): pids %s", self.name,
                    self.workers, self.pids)

    def trace(self, tracing: Any) -> None:
        """Make a span per call in the workers, a child of the caller's span.

        ``tracing`` has ``traceparent()`` (the W3C ``traceparent`` of the current span, or None
        when it is not sampled), ``factory`` (``"module:name"`` of what a worker builds from
        the settings: ``name(settings, index)``, with ``call(traceparent, method, function,
        args, kwargs)`` and ``shutdown()``) and ``settings`` (JSON-able). Every live worker,
        and every worker adopted later (a restart), is sent them once; a call then carries its
        ``traceparent``. The runner layer thus knows nothing of the tracing library.
        """
        self._tracing = tracing
        for worker in self._live:
            worker.write(self._tracing_frame())

    def _tracing_frame(self) -> list[Any]:
        return frame({"tracing": {"factory": self._tracing.factory, "runner": self.name,
                                  "settings": self._tracing.settings}})

    async def call(self, method: str, args: Any = (), kwargs: dict[str, Any] | None = None) -> Any:
        """Run ``method(*args, **kwargs)`` in a worker; return its result.

        Raises ``InvalidArgument`` for arguments without a wire form and ``RunnerError`` when
        the method raised (``error_type`` is the exception's type name) or its worker died.
        """
        if not self._started or self._stopping:
            raise RunnerError(f"runner {self.name!r} is not running: start its worker pool first")
        trace = None if self._tracing is None else self._tracing.traceparent()
        call = _Call(method, encode_call(method, args, kwargs or {}, trace),
                     self._loop.create_future(), method in self.repeatable)
        self._dispatch(call)
        return await call.future

    async def stop(self, grace_period: float | None = None) -> None:
        """Let in-flight calls finish, end the children, and SIGKILL those that linger."""
        if self._stopping:
            return
        self._stopping = True
        self.abandon()
        grace = self.grace_period if grace_period is None else grace_period
        deadline = time.monotonic() + grace
        for task in self._restarts:
            task.cancel()
        await asyncio.gather(*self._restarts, return_exceptions=True)
        self._fail_waiting(RunnerError(f"runner {self.name!r} is stopping", "RunnerStopped"))
        in_flight = [call.future for worker in self._live for call in worker.pending]
        if in_flight:
            await asyncio.wait(in_flight, timeout=grace)
        workers = [worker for worker in self._slots if worker is not None]
        for worker in workers:
            with contextlib.suppress(OSError):
                worker.sock.shutdown(socket.SHUT_WR)  # EOF: the child's loop ends and it exits
        await asyncio.gather(*(self._retire(worker, deadline) for worker in workers))
        self._live.clear()
        self._slots = [None] * self.workers
        logger.info("runner %r stopped its worker processes", self.name)

    # ----- dispatching --------------------------------------------------------------------

    def _dispatch(self, call: _Call) -> None:
        best = None
        fewest = 1 << 62
        for worker in self._live:
            load = len(worker.pending)
            if load < fewest:
                best, fewest = worker, load
        if best is not None:
            best.send(call)
        elif self._stopping:
            call.future.set_exception(RunnerError(f"runner {self.name!r} is stopping",
                                                  "RunnerStopped"))
        else:
            self._waiting.append(call)  # every worker is restarting; the next live one takes it

    def _adopt(self, worker: _Worker) -> None:
        self._slots[worker.index] = worker
        self._live.append(worker)
        if self._tracing is not None:  # a restarted worker: before any call reaches it
            worker.write(self._tracing_frame())
        while self._waiting:
            call = self._waiting.popleft()
            if not call.future.done():
                self._dispatch(call)

    def _fail_waiting(self, error: RunnerError) -> None:
        while self._waiting:
            future = self._waiting.popleft().future
            if not future.done():
                future.set_exception(error)

    # ----- processes ----------------------------------------------------------------------

    def _spawn(self, index: int) -> tuple[subprocess.Popen[bytes], socket.socket]:
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        tune(parent)
        tune(child)
        try:
            process = subprocess.Popen(
                [sys.executable, "-c", _BOOT, str(child.fileno()), str(os.getpid())],
                pass_fds=(child.fileno(),), stdin=subprocess.DEVNULL, env=self._child_env(),
            )
        except BaseException:
            parent.close()
            raise
        finally:
            child.close()
        return process, parent

    def _hello(self, index: int) -> list[Any]:
        spec = Packer()
        spec.buffer(self._pickled_spec, len(self._pickled_spec))
        # The child imports the runnable's module the way this process did: same sys.path.
        path = [entry for entry in sys.path if isinstance(entry, str)]
        return frame({"hello": {"index": index, "sys_path": path}}, spec)

    async def _launch(self, index: int) -> _Worker:
        prelaunched = self._prelaunched.pop(index, None)
        if prelaunched is not None:
            process, parent = prelaunched
        else:
            process, parent = self._spawn(index)
        parent.setblocking(False)
        worker = _Worker(self, index, process, parent)
        if prelaunched is None:
            worker.write(self._hello(index))
        def not_ready(_: Any) -> None:
            if not worker.ready.done():
                worker.ready.set_exception(RunnerError(
                    f"{worker} exited ({describe_exit(worker.process.returncode)}) before it "
                    "was ready; see its output above", "WorkerDied"))

        worker.exited.add_done_callback(not_ready)
        try:
            await asyncio.wait_for(asyncio.shield(worker.ready), self.start_timeout)
        except RunnerError as error:
            await self._retire(worker)
            message = (f"runner {self.name!r} could not start worker {index}: {error}. Make sure "
                       "the runnable builds in a fresh process (an importable class, a stored "
                       "model that exists in DOSIRAK_HOME)")
            if error.remote_traceback:
                logger.error("runner %r worker %d failed to build its runnable:\n%s",
                             self.name, index, error.remote_traceback)
            raise RunnerError(message, error.error_type) from None
        except TimeoutError:
            await self._retire(worker)
            raise RunnerError(f"runner {self.name!r} worker {index} was not ready after "
                              f"{self.start_timeout:g} s; loading the model takes too long, or "
                              "it hangs (raise start_timeout if it is just slow)",
                              "Timeout") from None
        except BaseException:
            await self._retire(worker)
            raise
        self._start_seconds = time.monotonic() - worker.born
        return worker

    def _child_env(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.workers > 1:
            # Several workers each using every core would fight over them: share the cores out.
            cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
            for variable in _THREAD_VARIABLES:
                env.setdefault(variable, str(max(1, cores // self.workers)))
        return env

    async def _retire(self, worker: _Worker, deadline: float | None = None) -> None:
        """Wait for a worker to exit (SIGKILL it at the deadline) and release its resources."""
        if deadline is None:
            worker.kill()
            deadline = time.monotonic() + 5.0
        if worker.pidfd < 0 and not worker.exited.done():
            worker._poll_exit()
        try:
            await asyncio.wait_for(asyncio.shield(worker.exited),
                                   max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            logger.warning("%s did not exit in time; killing it", worker)
            worker.kill()
            await worker.exited
        with contextlib.suppress(asyncio.CancelledError, RunnerError):
            if worker.ready.done():
                worker.ready.exception()  # read it, so asyncio does not log it as lost

    @staticmethod
    def _kill_unless_exited(worker: _Worker) -> None:
        if not worker.exited.done():
            worker.kill()

    def _lost(self, worker: _Worker) -> None:
        """EOF on a worker's socket: it exited or is exiting."""
        if worker.pidfd < 0:
            worker._poll_exit()
        # A child that closed its socket but lingers is of no use: make sure it goes.
        self._loop.call_later(2.0, self._kill_unless_exited, worker)

    def _died(self, worker: _Worker, code: int) -> None:
        """A worker exited: fail its running call, move queued calls, restart it."""
        was_live = worker in self._live
        if was_live:
            self._live.remove(worker)
        running = worker.pending.popleft() if worker.pending else None
        queued = list(worker.pending)
        worker.pending.clear()
        if not was_live or (self._stopping and running is None):
            return
        reason = describe_exit(code)
        delay = 0.0
        if self._stopping:
            what = f"{worker} exited ({reason}) while the runner was stopping"
            logger.warning("%s", what)
        else:
            lived = time.monotonic() - worker.born
            self._crashes[worker.index] = 1 if lived > STABLE_AFTER else \
                self._crashes[worker.index] + 1
            delay = restart_delay(self._crashes[worker.index])
            doing = f"while running {running.method!r}" if running else "while idle"
            logger.error("%s died (%s) %s; restarting it in %.1f s", worker, reason, doing, delay)
            what = f"{worker} died ({reason}) while running {running.method if running else ''}"
            self._schedule_restart(worker.index, delay)
        if running is not None and not running.future.done():
            self._rescue(running, code, what, delay)
        for call in queued:  # never started, so another worker can run them safely
            if not call.future.done():
                self._dispatch(call)

    def _rescue(self, call: _Call, code: int, what: str, delay: float) -> None:
        """The worker running ``call`` died: run it once more on another live worker when that
        is safe, else fail it with ``RunnerUnavailable``."""
        if call.repeatable and code not in _FAULTS and self._live and not self._stopping:
            call.repeatable = False  # once: a second death under it is answered 503
            logger.warning("%s; running its call once more on another worker", what)
            self._dispatch(call)
            return
        if code in _FAULTS:
            why = "the call may have caused the crash, so it is not run again"
        elif not call.repeatable:
            why = "the call was not run again: it ran once more already, or its method is " \
                  "not batchable and so may not be safe to repeat"
        else:
            why = "no other worker was live to run it again"
        call.future.set_exception(RunnerUnavailable(
            f"{what}; {why}. The worker is being restarted: retry the request shortly. A native "
            "crash, running out of memory or a kill stops a worker: check the service's log",
            retry_after=delay + self._start_seconds))

    def _schedule_restart(self, index: int, delay: float) -> None:
        task = self._loop.create_task(self._restart(index, delay))
        self._restarts.add(task)
        task.add_done_callback(self._restarts.discard)

    async def _restart(self, index: int, delay: float) -> None:
        await asyncio.sleep(delay)
        self._slots[index] = None
        try:
            worker = await self._launch(index)
        except Exception as error:  # a build failure, or no process could be spawned (EMFILE...)
            self._crashes[index] += 1
            delay = restart_delay(self._crashes[index])
            logger.error("runner %r could not restart worker %d: %s; retrying in %.1f s",
                         self.name, index, error, delay)
            if not self._live:
                self._fail_waiting(RunnerUnavailable(
                    f"runner {self.name!r} has no live worker: restarting one failed (the "
                    f"service's log says why); it tries again in {delay:.1f} s",
                    retry_after=delay + self._start_seconds))
            if not self._stopping:
                self._schedule_restart(index, delay)
            return
        if self._stopping:
            await self._retire(worker)
            return
        self._adopt(worker)
        logger.info("runner %r restarted worker %d: pid %d", self.name, index, worker.pid)


# ----- the child side ---------------------------------------------------------------------


def child_main(fd: str, parent_pid: str) -> None:
    """Entry point of a worker process: build the runnable, then answer calls until EOF."""
    # Stopping is the parent's job (EOF on the socket, SIGKILL past the grace period): a SIGINT
    # or SIGTERM sent to the whole process group (Ctrl-C, systemd's control-group stop) must
    # not end a worker before its API worker has answered the calls in flight.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _die_with_parent()
    if os.getppid() != int(parent_pid):
        return  # the parent died before we could ask to die with it
    sock = socket.socket(fileno=int(fd))
    sock.set_inheritable(False)
    receiver = Receiver(sock)
    frames: list[Any] = []
    while not frames:
        try:
            frames = receiver.receive()
        except EOFError:
            return
    header, payload = frames[0]
    sys.path[:] = header["hello"]["sys_path"] + [p for p in sys.path
                                                 if p not in header["hello"]["sys_path"]]
    try:
        spec = cloudpickle.loads(payload)  # from our own parent, over a private socketpair
        runnable = spec.build()
    except Exception as error:
        send_all(sock, encode_error(error))
        sys.exit(1)
    # The model's objects live as long as the process: keep the collector from rescanning them.
    gc.collect()
    gc.freeze()
    send_all(sock, frame({"ready": os.getpid()}))
    _serve(sock, receiver, runnable, header["hello"]["index"])


def _serve(sock: socket.socket, receiver: Receiver, runnable: Any, index: int) -> None:
    """The hot loop: read a call, run it, write the answer."""
    methods: dict[str, Any] = {}
    receive = receiver.receive
    spans: Any = None  # a span per call, once the parent sent its tracing settings
    try:
        while True:
            try:
                frames = receive()
            except EOFError:
                return
            for header, payload in frames:
                if "tracing" in header:  # not a call: answered by nothing
                    spans = _worker_tracing(header["tracing"], index)
                    continue
                try:
                    name, args, kwargs = decode_call(header, payload)
                    function = methods.get(name)
                    if function is None:
                        function = methods[name] = bound_method(runnable, name)
                    if spans is None or "t" not in header:
                        result = function(*args, **kwargs)
                    else:
                        result = spans.call(header["t"], name, function, args, kwargs)
                    parts = encode_result(result)
                except Exception as error:
                    parts = encode_error(error)
                send_all(sock, parts)
    finally:
        if spans is not None:
            spans.shutdown()  # export the spans still buffered


def _worker_tracing(setup: dict[str, Any], index: int) -> Any:
    """The span maker of this worker, or None (and a line on stderr) when it cannot be built:
    tracing must never stop a worker from answering."""
    try:
        import importlib

        module, name = setup["factory"].split(":")
        factory = getattr(importlib.import_module(module), name)
        return factory({**setup["settings"], "runner": setup["runner"]}, index)
    except Exception as error:
        print(f"dosirak runner worker {index}: tracing is off in this worker: {error}",
              file=sys.stderr, flush=True)
        return None


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when its parent dies."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
