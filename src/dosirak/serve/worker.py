"""An API worker: one process that imports the service, starts its runners and serves HTTP.

The supervisor starts each worker as ``python -c BOOT SPEC`` with one end of a private
socketpair inherited (``pass_fds``); ``SPEC`` is JSON: the target, the config file and overrides,
the channel's fd, the worker's index. The worker imports the service and loads its models while
the supervisor reads the configuration and binds the listening socket, which then arrives on the
channel (``SCM_RIGHTS``): the two slow starts overlap. The worker reports on the channel, one
JSON line each: ``{"ready": pid, "service": name, "placements": {...}}`` once it serves, or
``{"error": message}`` when it cannot start (a bad target, config or model), before exiting with
``STARTUP_FAILURE``. ``--development`` runs the same code in the command's own process.

The first worker of a start is the supervisor forked (``spawn(..., fork=True)``) rather than a
fresh interpreter: it begins with what the supervisor has imported and validated so far
(dosirak, the command line, the target's lookup, the configuration) instead of paying the
interpreter's start and that work again on the cold start's critical path; it imports the
service and loads its models while the supervisor binds. The fork happens before the
supervisor has an event loop or a thread; the child then looks like an executed worker (stdin
from ``/dev/null``, none of the supervisor's exit handlers, not its end of the channel) and
never returns into the supervisor's code. Later workers and restarts are executed as before
(``python -c BOOT``) and read the configuration themselves.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import gc
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from dosirak.serve.process_log import setup_process_logging

if TYPE_CHECKING:
    from dosirak.config import ServingConfig

logger = logging.getLogger("dosirak.serve")

BOOT = "import sys; from dosirak.serve.worker import main; main(sys.argv[1])"
#: Exit status of a worker that could not start (the supervisor does not restart it in a loop).
STARTUP_FAILURE = 3
#: prometheus_client's variable naming the directory where processes write their metrics.
METRICS_DIRECTORY_ENV = "PROMETHEUS_MULTIPROC_DIR"


@dataclass
class WorkerSpec:
    """What a worker needs to know; travels as JSON on its command line."""

    target: str
    index: int = 0
    channel_fd: int = -1
    config_file: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    development: bool = False
    url: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> WorkerSpec:
        return cls(**json.loads(text))


class WorkerProcess(Protocol):
    """What the supervisor asks of a worker's process (a ``subprocess.Popen`` is one)."""

    pid: int

    def poll(self) -> int | None: ...

    def wait(self) -> int: ...


class ForkedProcess:
    """A worker forked from this process, seen as a ``Popen`` (exit code, or -N for signal N)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            self._reap(os.WNOHANG)
        return self.returncode

    def wait(self) -> int:
        while self.returncode is None:
            self._reap(0)
        return self.returncode

    def _reap(self, options: int) -> None:
        try:
            pid, status = os.waitpid(self.pid, options)
        except ChildProcessError:  # reaped elsewhere: its status is lost, as Popen says
            self.returncode = 0
            return
        if pid == self.pid:
            self.returncode = os.waitstatus_to_exitcode(status)


def spawn(template: WorkerSpec, index: int, *, fork: bool = False,
          config: ServingConfig | None = None) -> tuple[WorkerProcess, socket.socket]:
    """Start API worker ``index``; return its process and the supervisor's end of its channel.

    ``fork``: the worker is this very process forked (see the module's docstring); only while
    the process has a single thread and no event loop. A forked worker serves with ``config``,
    the configuration this process loaded from the template's sources, when given.
    """
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    spec = dataclasses.replace(template, index=index, channel_fd=theirs.fileno())
    if fork:
        try:
            pid = _fork(spec, ours, config)
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        return ForkedProcess(pid), ours
    try:
        process = subprocess.Popen([sys.executable, "-c", BOOT, spec.to_json()],
                                   pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL)
    except BaseException:
        ours.close()
        raise
    finally:
        theirs.close()
    return process, ours


def _fork(spec: WorkerSpec, ours: socket.socket, config: ServingConfig | None) -> int:
    """Fork; in the child, run worker ``spec`` and exit with its status (never return)."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()  # or both processes would write what is buffered
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        ours.close()
        _as_if_executed()
        main(spec.to_json(), config)
        code = 0
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    except BaseException:
        traceback.print_exc()
    finally:
        with contextlib.suppress(BaseException):
            atexit._run_exitfuncs()  # the worker's own (tracing's flush), as at a normal exit
            for stream in (sys.stdout, sys.stderr):
                stream.flush()
        os._exit(code)


def _as_if_executed() -> None:
    """Give a forked worker what ``Popen`` gives an executed one: stdin from /dev/null, and no
    exit handler of the supervisor's (they clean up after the supervisor). Descriptors the
    supervisor opened stay open (objects of this process may still use them; its lease of the
    bento, the one such descriptor, is held a little longer at worst: the worker dies with it)."""
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    atexit._clear()
    atexit.register(logging.shutdown)  # what `import logging` registered in a fresh process


def main(spec_json: str, config: ServingConfig | None = None) -> None:
    """Entry point of a worker process (``config``: already loaded from the spec's sources)."""
    # Importing frameworks makes millions of objects and no garbage worth collecting; the
    # collector's passes over them cost a tenth of the start. It is back on once serving.
    gc.disable()
    spec = WorkerSpec.from_json(spec_json)
    _die_with_parent()
    # Ctrl-C reaches every process of the terminal's group: the supervisor decides what it
    # means, so a worker that is still loading its model is not torn down with a traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    setup_process_logging(f"worker {spec.index}")
    channel = Channel(socket.socket(fileno=spec.channel_fd))
    try:
        code = run_worker(spec, channel, config=config)
    except KeyboardInterrupt:
        code = 0
    sys.exit(code)


class Channel:
    """The worker's end of its private channel to the supervisor."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def report(self, message: dict[str, Any]) -> None:
        """Send one JSON line (ready, error)."""
        with contextlib.suppress(OSError):
            self.sock.sendall(json.dumps(message).encode() + b"\n")

    def listener(self, timeout: float = 300.0) -> socket.socket:
        """The listening socket the supervisor sends once it has bound it."""
        self.sock.settimeout(timeout)
        try:
            _, fds, _, _ = socket.recv_fds(self.sock, 16, 1)
        except TimeoutError:
            raise ServeStartupError("the supervisor sent no listening socket in time") from None
        if not fds:
            raise ServeStartupError("the supervisor closed the channel before sending the "
                                    "listening socket")
        return socket.socket(fileno=fds[0])


class ServeStartupError(Exception):
    """The worker cannot get what it needs from the supervisor (it is going away)."""


def run_worker(spec: WorkerSpec, channel: Channel | None = None,
               sock: socket.socket | None = None, config: ServingConfig | None = None) -> int:
    """Build the app and serve until told to stop.

    The listening socket is ``sock`` (in-process, ``--development``) or comes on ``channel``;
    ``config`` is loaded from the spec's sources unless given. Returns the exit status: 0 after
    a graceful stop, ``STARTUP_FAILURE`` when the service could not start (the reason is logged
    and sent on ``channel``).
    """
    import asyncio

    started = time.monotonic()
    try:
        app, config = build_app(spec, config)
    except Exception as error:
        return _startup_failed(error, channel)
    from dosirak.observability.log_setup import configure_logging
    from dosirak.serve.http import HTTPServer
    from dosirak.serve.log_stream import BatchedLogStream
    from dosirak.serve.protocol import connection_limits

    server = HTTPServer(app, grace=config.api_server.graceful_timeout,
                        backlog=config.api_server.backlog,
                        limits=connection_limits(config.api_server.http),
                        ssl=config.api_server.ssl,
                        # dosirak's own routes serve no websocket: only apps or middleware the
                        # service adds could.
                        websockets=bool(app.state.service.mounted
                                        or app.state.service.middlewares))
    # Configured after uvicorn's Config, which resets loggers; lines go out in batches.
    stream = BatchedLogStream(fd=2)
    configure_logging(config.logging, stream=stream)
    runner = asyncio.Runner(loop_factory=server.config.get_loop_factory())
    try:
        return runner.run(_serve(app, server, sock, spec, channel, started, stream))
    except _StartupError as error:
        return _startup_failed(error.__cause__ or error, channel)
    finally:
        runner.close()
        stream.close()


class _StartupError(Exception):
    pass


async def _serve(app: Any, server: Any, sock: socket.socket | None, spec: WorkerSpec,
                 channel: Channel | None, started: float, stream: Any) -> int:
    import asyncio

    lifespan = app.lifespan()
    try:
        await lifespan.__aenter__()
        if sock is None:
            assert channel is not None
            sock = channel.listener()
    except Exception as error:
        raise _StartupError() from error
    gc.enable()
    stream.start(asyncio.get_running_loop())
    svc = app.state.service
    if channel is not None:
        channel.report({"ready": os.getpid(), "service": svc.name,
                        "placements": app.state.placements,
                        "seconds": round(time.monotonic() - started, 3)})
    else:  # in the command's own process (--development): nobody else announces
        logger.info("%s is ready at %s (development: one process, runners in it); Swagger UI: "
                    "%s/", svc.name, spec.url, spec.url)
    # uvicorn restores the handlers it found, then raises the signal that stopped it again:
    # with these harmless ones in place, that second delivery cannot kill the worker before
    # the service (and its runners) stop below.
    signal.signal(signal.SIGTERM, _ignore)
    signal.signal(signal.SIGINT, _ignore)
    try:
        await server.serve(sockets=[sock])
    finally:
        sock.close()
        await lifespan.__aexit__(None, None, None)
    return 0


def build_app(spec: WorkerSpec, config: ServingConfig | None = None) -> tuple[Any, ServingConfig]:
    """Load the configuration (unless given) and the service; return its ASGI app and the
    configuration."""
    from dosirak.config import load_config
    from dosirak.server.app import create_app
    from dosirak.target import load_service

    if config is None:
        config = load_config(spec.config_file, overrides=spec.overrides)
    if config.api_server.workers == 1:
        # One API worker has nothing to add up: its metrics stay in its own memory, where a
        # request updates them for a sixth of what the shared files cost (about 6 us). A
        # restart starts the counts over, which Prometheus reads as a counter reset.
        os.environ.pop(METRICS_DIRECTORY_ENV, None)
    svc = load_service(spec.target)
    # Development runs every runner in this process, whatever the configuration places.
    # Runner processes start loading their models now, while this worker sets up uvicorn.
    app = create_app(svc, config=config, placement="local" if spec.development else None,
                     prelaunch=not spec.development)
    return app, config


def _startup_failed(error: BaseException, channel: Channel | None) -> int:
    from dosirak.exceptions import DosirakError

    if isinstance(error, (DosirakError, ServeStartupError)):
        message = str(error)
    else:  # not one of ours: the traceback is the only useful description
        message = "".join(traceback.format_exception(error)).rstrip()
    if channel is not None:
        channel.report({"error": message})
    else:
        logger.error("the service cannot start: %s", message)
    return STARTUP_FAILURE


def _ignore(signum: int, frame: Any) -> None:
    pass


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this worker when the supervisor dies (no orphans on the port)."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
