"""The supervisor: owns the listening socket, runs the API workers, restarts them, stops them.

    >>> supervisor = Supervisor(template)
    >>> supervisor.adopt(0, *spawn(template, 0, fork=True, config=config))  # loads the service
    >>> sock = bind_listener(...)             # meanwhile, the address bound
    >>> exit_code = supervisor.run(sock, workers=2, url="http://127.0.0.1:3000", grace=30.0)

The socket is bound once, here, and handed to every API worker over its private channel; all of
them accept on it (the kernel spreads connections among them). The supervisor imports no
service, no model and no web framework: it stays small, and its first worker (this process
forked once the configuration is validated) imports the service and loads the models while the
supervisor binds and starts its loop.

- **Startup.** Workers report on a private pipe when they serve. If one cannot start (bad target,
  bad configuration, missing model) before the service was ever up, its message is printed once
  and the supervisor stops the others and exits 1: a broken service is not restarted in a loop.
- **Crashes.** A worker that dies afterwards is restarted at once the first time, then with a
  doubling delay (up to 10 s) while it keeps dying young; each death is one log line saying
  which worker, which pid and why (exit status or signal).
- **Stopping.** SIGTERM or SIGINT: workers are told to stop (SIGTERM), finish the requests they
  hold within the grace period and stop their runners; stragglers are killed after it. Exit 0.
  A second SIGINT kills at once.
- **Reload** (``--reload``): a change to the sources restarts the workers; a broken edit is
  reported and the next change is awaited, while the supervisor answers requests 503 with the
  error's summary (``dosirak.serve.unavailable``) instead of leaving them in the backlog.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import time
from pathlib import Path
from typing import Any

from dosirak.backoff import STABLE_AFTER, restart_delay
from dosirak.exit_status import describe_exit
from dosirak.serve.worker import STARTUP_FAILURE, WorkerProcess, WorkerSpec, spawn
from dosirak.server.deployment import DEPLOYMENT_DIR_ENV, MARKER

logger = logging.getLogger("dosirak.serve")

_KILL_MARGIN = 10.0  # beyond the grace period, for the runners to stop, before SIGKILL


class _Worker:
    """One API worker process as the supervisor sees it."""

    def __init__(self, index: int, process: WorkerProcess, channel: socket.socket) -> None:
        self.index = index
        self.process = process
        self.pid = process.pid
        self.channel = channel
        self.status_fd = channel.fileno()
        self.pidfd = -1
        self.buffer = b""
        self.ready = False
        self.error: str | None = None
        self.info: dict[str, Any] = {}
        self.born = time.monotonic()
        self.exited = False

    def __str__(self) -> str:
        return f"API worker {self.index} (pid {self.pid})"


class Supervisor:
    """Runs ``workers`` API workers built from ``template``; see the module docstring."""

    def __init__(self, template: WorkerSpec) -> None:
        self.template = template
        self.sock: socket.socket = None  # type: ignore[assignment]
        self.count = 1
        self.url = ""
        self.grace = 30.0
        self.reload_paths: list[Path] | None = None
        self.metrics_directory: Any = None
        self.workers: dict[int, _Worker] = {}
        self._crashes: list[int] = []
        self._restarts: dict[int, asyncio.TimerHandle] = {}
        self._loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]
        self._done: asyncio.Future[int] = None  # type: ignore[assignment]
        self._stopping = False
        self._was_up = False  # every worker has been ready at least once
        self._announced = False
        self._broken = False  # reload mode: the current sources fail to start
        self._reloading = False
        self._refusing: str | None = None  # reload mode: why the supervisor answers 503
        self._answers: set[asyncio.Task[None]] = set()

    # ----- running ------------------------------------------------------------------------

    def adopt(self, index: int, process: WorkerProcess, channel: socket.socket) -> None:
        """Take over API worker ``index``, started by ``worker.spawn`` before ``run`` (it gets
        the listening socket once ``run`` has it)."""
        self.workers[index] = _Worker(index, process, channel)

    def abort(self) -> None:
        """Kill the workers launched so far (the configuration or the address was refused)."""
        for worker in self.workers.values():
            _kill(worker.pid, signal.SIGKILL)
            worker.process.wait()
            worker.channel.close()
        self.workers.clear()

    def run(self, sock: socket.socket, *, workers: int, url: str, grace: float,
            reload_paths: list[Path] | None = None, metrics_directory: Any = None) -> int:
        """Serve on ``sock`` with ``workers`` API workers until stopped; return the exit status.
        """
        self.sock = sock
        self.count = workers
        self.url = url
        self.grace = grace
        self.reload_paths = reload_paths
        self.metrics_directory = metrics_directory
        self._crashes = [0] * workers
        return asyncio.run(self._main())

    async def _main(self) -> int:
        self._loop = asyncio.get_running_loop()
        self._done = self._loop.create_future()
        for signum in (signal.SIGTERM, signal.SIGINT):
            self._loop.add_signal_handler(signum, self._on_signal, signum)
        for worker in list(self.workers.values()):  # launched early: adopt them
            if worker.index >= self.count:
                _kill(worker.pid, signal.SIGKILL)
            self._watch_worker(worker)
        for index in range(self.count):
            if index not in self.workers:
                self._spawn(index)
        watcher = None
        if self.reload_paths:
            watcher = self._loop.create_task(self._watch())
        try:
            code = await self._done
            logger.info("stopped" if code == 0 else "stopped: the service could not start")
            return code
        finally:
            if watcher is not None:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher

    def _spawn(self, index: int) -> None:
        self._restarts.pop(index, None)
        try:
            process, channel = spawn(self.template, index)
        except OSError as error:  # out of processes or file descriptors: try again later
            logger.error("cannot start API worker %d: %s; retrying", index, error)
            self._schedule_restart(index, self._next_delay(None, index))
            return
        worker = _Worker(index, process, channel)
        self.workers[index] = worker
        if self._loop is not None:
            self._watch_worker(worker)

    def _watch_worker(self, worker: _Worker) -> None:
        """Hand the worker the listening socket and follow what it says and when it exits."""
        with contextlib.suppress(OSError):  # if it is gone already, its exit is handled below
            socket.send_fds(worker.channel, [b"listen"], [self.sock.fileno()])
        worker.channel.setblocking(False)
        self._loop.add_reader(worker.status_fd, self._on_status, worker)
        try:
            worker.pidfd = os.pidfd_open(worker.pid)
            self._loop.add_reader(worker.pidfd, self._on_exit, worker)
        except (AttributeError, OSError):  # no pidfds (old kernel): poll
            self._loop.call_later(0.05, self._poll_exit, worker)

    # ----- what workers say -----------------------------------------------------------------

    def _on_status(self, worker: _Worker) -> None:
        try:
            chunk = os.read(worker.status_fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if not chunk:
            self._loop.remove_reader(worker.status_fd)
            return
        worker.buffer += chunk
        *lines, worker.buffer = worker.buffer.split(b"\n")
        for line in lines:
            with contextlib.suppress(ValueError):
                self._on_message(worker, json.loads(line))

    def _on_message(self, worker: _Worker, message: dict[str, Any]) -> None:
        if "error" in message:
            worker.error = str(message["error"])
        elif "ready" in message:
            worker.ready = True
            worker.info = message
            if self._stopping:
                return
            if self._broken:
                logger.info("the service starts again after the change")
                self._broken = False
            if self._was_up:
                logger.info("%s is serving again", worker)
            elif all(w.ready for w in self.workers.values()) and \
                    len(self.workers) == self.count:
                self._was_up = True
                if not self._announced:
                    self._announce(message)

    def _announce(self, message: dict[str, Any]) -> None:
        self._announced = True
        placements = message.get("placements") or {}
        runners = ", ".join(f"{name} {where}" for name, where in placements.items())
        logger.info("%s is ready at %s with %d API worker(s)%s; Swagger UI: %s/",
                    message.get("service", "the service"), self.url, self.count,
                    f" (runners: {runners})" if runners else "", self.url)

    # ----- exits and restarts ---------------------------------------------------------------

    def _poll_exit(self, worker: _Worker) -> None:
        if worker.process.poll() is None:
            self._loop.call_later(0.05, self._poll_exit, worker)
        else:
            self._on_exit(worker)

    def _on_exit(self, worker: _Worker) -> None:
        if worker.exited:
            return
        worker.exited = True
        if worker.pidfd >= 0:
            self._loop.remove_reader(worker.pidfd)
            os.close(worker.pidfd)
            worker.pidfd = -1
        code = worker.process.wait()
        self._on_status(worker)  # whatever it said before it went
        with contextlib.suppress(OSError):
            self._loop.remove_reader(worker.status_fd)
        worker.channel.close()
        if self.workers.get(worker.index) is worker:
            del self.workers[worker.index]
        if self.metrics_directory is not None:
            self.metrics_directory.process_exited(worker.pid)
        if self._stopping:
            if not self.workers and not self._done.done():
                self._done.set_result(0 if not self._broken or self._was_up else 1)
            return
        if self._reloading:
            return
        if not worker.ready:
            self._failed_to_start(worker, code)
            return
        delay = self._next_delay(worker)
        logger.error("%s died (%s); restarting it in %.1f s", worker, describe_exit(code), delay)
        self._schedule_restart(worker.index, delay)

    def _failed_to_start(self, worker: _Worker, code: int) -> None:
        reason = worker.error or f"it exited ({describe_exit(code)}) before it could serve"
        if self.reload_paths:
            if not self._broken:
                logger.error("the service cannot start: %s", reason)
                logger.info("waiting for a change to the sources to try again")
            self._broken = True
            if not any(w.ready for w in self.workers.values()):
                self._refuse(reason)
            return
        if not self._was_up:
            if code == STARTUP_FAILURE or worker.error:
                logger.error("the service cannot start: %s", reason)
            else:
                logger.error("%s failed while starting: %s", worker, reason)
            self._broken = True
            self.stop()
            return
        delay = self._next_delay(worker)
        logger.error("%s could not start again: %s; retrying in %.1f s", worker, reason, delay)
        self._schedule_restart(worker.index, delay)

    def _next_delay(self, worker: _Worker | None, index: int | None = None) -> float:
        """Seconds before restarting: none after the first death, then 0.1 s doubling."""
        index = worker.index if worker is not None else index
        assert index is not None
        lived = time.monotonic() - worker.born if worker is not None else 0.0
        crashes = self._crashes[index] = 1 if lived > STABLE_AFTER else self._crashes[index] + 1
        # The first death restarts at once: the replacement must serve within a couple of seconds.
        return 0.0 if crashes == 1 else restart_delay(crashes - 1)

    def _schedule_restart(self, index: int, delay: float) -> None:
        self._restarts[index] = self._loop.call_later(max(delay, 0.0), self._spawn, index)

    # ----- stopping -------------------------------------------------------------------------

    def _on_signal(self, signum: int) -> None:
        if self._stopping:
            if signum == signal.SIGINT:
                logger.warning("second interrupt: killing the workers now")
                for worker in list(self.workers.values()):
                    _kill(worker.pid, signal.SIGKILL)
            return
        logger.info("received %s: stopping (requests in flight get up to %.0f s)",
                    signal.Signals(signum).name, self.grace)
        self.stop()

    def stop(self) -> None:
        """Stop accepting, let the workers finish their requests and stop, then return."""
        if self._stopping:
            return
        self._stopping = True
        self._stop_refusing()
        for handle in self._restarts.values():
            handle.cancel()
        self._restarts.clear()
        # The workers keep their own copies of the socket until they have taken its backlog.
        self.sock.close()
        for worker in list(self.workers.values()):
            _kill(worker.pid, signal.SIGTERM)
        if not self.workers:
            self._done.set_result(1 if self._broken and not self._was_up else 0)
            return
        self._loop.call_later(self.grace + _KILL_MARGIN, self._kill_stragglers)

    def _kill_stragglers(self) -> None:
        for worker in list(self.workers.values()):
            logger.warning("%s did not stop within the grace period; killing it", worker)
            _kill(worker.pid, signal.SIGKILL)

    # ----- reloading ------------------------------------------------------------------------

    async def _watch(self) -> None:
        import watchfiles

        watch_filter = watchfiles.PythonFilter(extra_extensions=(".yaml", ".yml"))
        paths = [str(path) for path in self.reload_paths or []]
        logger.info("watching %s for changes", ", ".join(paths))
        async for changes in watchfiles.awatch(*paths, watch_filter=watch_filter,
                                               debounce=200, step=50):
            if self._stopping:
                return
            changed = sorted({os.path.relpath(path) for _, path in changes})
            logger.info("reloading: %s changed", ", ".join(changed[:5]) +
                        (f" and {len(changed) - 5} more" if len(changed) > 5 else ""))
            await self._restart_all()

    def _refuse(self, reason: str) -> None:
        """Answer connections 503 with ``reason`` until the sources change (reload mode)."""
        if self._refusing is None and not self._stopping:
            self.sock.setblocking(False)  # the workers' asyncio servers set it too
            self._loop.add_reader(self.sock.fileno(), self._accept_refused)
        self._refusing = reason.splitlines()[0][:500] if reason else "it failed to start"

    def _stop_refusing(self) -> None:
        if self._refusing is not None:
            self._refusing = None
            with contextlib.suppress(OSError, ValueError):
                self._loop.remove_reader(self.sock.fileno())

    def _accept_refused(self) -> None:
        from dosirak.serve import unavailable

        try:
            connection, _ = self.sock.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return  # a worker took it, or the client left
        except OSError:
            self._stop_refusing()
            return
        task = self._loop.create_task(unavailable.answer(connection, self._refusing or ""))
        self._answers.add(task)
        task.add_done_callback(self._answers.discard)

    async def _restart_all(self) -> None:
        self._stop_refusing()  # requests now wait for the new workers, as in a normal start
        # New sources, a new deployment: @svc.on_deployment hooks run again.
        deployment = os.environ.get(DEPLOYMENT_DIR_ENV)
        if deployment:
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(deployment, MARKER))
        self._reloading = True
        try:
            old = list(self.workers.values())
            for worker in old:
                _kill(worker.pid, signal.SIGTERM)
            deadline = time.monotonic() + self.grace + _KILL_MARGIN
            while any(not worker.exited for worker in old):
                if time.monotonic() > deadline:
                    for worker in old:
                        _kill(worker.pid, signal.SIGKILL)
                await asyncio.sleep(0.02)
            for handle in self._restarts.values():
                handle.cancel()
            self._restarts.clear()
        finally:
            self._reloading = False
        if self._stopping:
            return
        self._crashes = [0] * self.count
        for index in range(self.count):
            self._spawn(index)


def _kill(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)
