"""The serving runtime behind ``dosirak serve``: a supervisor, API workers, reload.

    >>> from dosirak.serve import serve
    >>> serve("service.py:svc", port=3000, workers=2)      # blocks; returns the exit status

Processes (see ARCHITECTURE.md): the supervisor (``supervisor``) binds the socket (``listen``)
and starts API workers (``worker``), each serving HTTP with uvicorn (``http``) and running the
service's runners in itself or in runner worker processes of its own, as each runner's placement
says. ``--development`` serves from the command's own process; ``--reload`` restarts the workers
when the sources change. ``target`` finds the service a target names.
"""

from __future__ import annotations

import gc
import os
from pathlib import Path
from typing import Any

__all__ = ["serve"]



def serve(
    target: str,
    *,
    host: str | None = None,
    port: int | None = None,
    workers: int | None = None,
    reload: bool = False,
    development: bool = False,
    config_file: str | None = None,
    options: dict[str, Any] | None = None,
) -> int:
    """Serve ``target`` until SIGTERM or SIGINT; return the exit status (0: stopped cleanly).

    ``host``, ``port``, ``workers`` and ``options`` (dotted keys: ``{"api_server.timeout":
    5}``) override the configuration (``config_file``, else
    ``$DOSIRAK_CONFIG``, plus ``$DOSIRAK_CONFIG_OPTIONS``). Raises ``ServeTargetError``,
    ``InvalidArgument`` (configuration) or ``ServeError`` (address) before anything starts.
    """
    # Until the first worker starts, the start is imports and the configuration: objects that
    # live as long as the process, which the collector's passes would only walk over.
    collecting = gc.isenabled()
    gc.disable()
    try:
        from dosirak.serve.process_log import setup_process_logging
        from dosirak.serve.worker import WorkerSpec
        from dosirak.target import parse_target

        in_process = development and not reload
        setup_process_logging("dosirak" if in_process else "supervisor")
        overrides: dict[str, Any] = {key: value for key, value in (
            ("api_server.host", host), ("api_server.port", port), ("api_server.workers", workers),
            *(options or {}).items()) if value is not None}
        if development:
            overrides["api_server.workers"] = 1
        # (The configuration is read once the target is found, just before the first worker
        # starts.)
        config_file = config_file or os.environ.get("DOSIRAK_CONFIG") or None
        if config_file is not None:
            config_file = str(Path(config_file).absolute())
        parsed = parse_target(target)  # a missing file is reported before anything starts
        if parsed.legacy and port is None and not _port_configured(config_file):
            overrides["api_server.port"] = LEGACY_PORT  # where 0.x served (seed 004's curl)
        if parsed.bento is not None and reload:
            from dosirak.exceptions import InvalidArgument

            raise InvalidArgument(f"--reload cannot serve the bento {parsed.bento}: a bento's "
                                  "sources are fixed when it is built; serve the project directory "
                                  "with --reload while developing (dosirak serve DIR --reload), or "
                                  "the bento without it")
        if parsed.bento is not None:
            from dosirak.bentos.store import hold

            # Held between worker restarts too: `dosirak delete` refuses it meanwhile.
            hold(parsed.bento)
        # Workers get the bento's full tag: a build landing meanwhile must not change what they
        # serve.
        template = WorkerSpec(target=parsed.bento or target, config_file=config_file,
                              overrides=overrides, development=development)
        if in_process:
            return _serve_here(template)
        return _supervise(template, parsed, reload, collecting)
    finally:
        if collecting:
            gc.enable()


#: BentoML 0.x served on port 5000; its services still do, unless --port or the configuration
#: says otherwise.
LEGACY_PORT = 5000


def _port_configured(config_file: str | None) -> bool:
    """Whether the configuration file or ``DOSIRAK_CONFIG_OPTIONS`` sets ``api_server.port``."""
    from dosirak.config import CONFIG_OPTIONS_ENV, parse_config_options, read_config_file

    options = parse_config_options(os.environ.get(CONFIG_OPTIONS_ENV, ""))
    if any(key.replace(" ", "") == "api_server.port" for key in options):
        return True
    if config_file is None:
        return False
    server = read_config_file(config_file).get("api_server")
    return isinstance(server, dict) and "port" in server


def _serve_here(template: Any) -> int:
    from dosirak.config import load_config
    from dosirak.serve.listen import base_url, bind_listener
    from dosirak.serve.worker import run_worker

    config = load_config(template.config_file, overrides=template.overrides)
    server = config.api_server
    sock = bind_listener(server.host, server.port, server.backlog)
    template.url = base_url(sock, server.host, tls=server.ssl.enabled)
    return run_worker(template, sock=sock, config=config)


def _supervise(template: Any, parsed: Any, reload: bool, collecting: bool = True) -> int:
    import shutil
    import tempfile

    from dosirak.config import load_config
    from dosirak.serve.worker import METRICS_DIRECTORY_ENV, spawn
    from dosirak.server.deployment import DEPLOYMENT_DIR_ENV

    # The first worker is this process forked (no event loop nor thread yet): it starts with
    # dosirak, the command line, the target's lookup and the configuration, validated here once,
    # instead of a fresh interpreter importing and validating them again (both processes did, at
    # once, and the worker's start is the critical path). It imports the service and loads the
    # models while this process binds and sets up its loop.
    config = load_config(template.config_file, overrides=template.overrides)
    # The metrics directory exists before any worker starts, so that each inherits it and
    # /metrics, whichever worker answers, adds up all of them (removed below if the
    # configuration turns metrics off).
    metrics_path = tempfile.mkdtemp(prefix="dosirak-metrics-")
    os.environ[METRICS_DIRECTORY_ENV] = metrics_path
    # Where the workers agree that @svc.on_deployment hooks ran once (server/deployment.py).
    deployment_path = tempfile.mkdtemp(prefix="dosirak-deployment-")
    os.environ[DEPLOYMENT_DIR_ENV] = deployment_path
    first = spawn(template, 0, fork=True, config=config)
    if collecting:
        gc.enable()

    from dosirak.observability.multiprocess import MetricsDirectory
    from dosirak.serve.supervisor import Supervisor

    directory: Any = MetricsDirectory(Path(metrics_path))
    supervisor = Supervisor(template)
    supervisor.adopt(0, *first)
    try:
        from dosirak.serve.listen import base_url, bind_listener

        server = config.api_server
        sock = bind_listener(server.host, server.port, server.backlog)
    except BaseException:
        supervisor.abort()
        directory.close()
        raise
    if not config.metrics.enabled:
        directory.close()
        directory = None
    reload_paths = None
    if reload:
        reload_paths = [parsed.watch_root]
        config_file = template.config_file
        if config_file is not None and not Path(config_file).is_relative_to(parsed.watch_root):
            reload_paths.append(Path(config_file))
    try:
        url = base_url(sock, server.host, tls=server.ssl.enabled)
        return supervisor.run(sock, workers=server.workers, url=url,
                              grace=server.graceful_timeout, reload_paths=reload_paths,
                              metrics_directory=directory)
    finally:
        sock.close()
        shutil.rmtree(deployment_path, ignore_errors=True)
        if directory is not None:
            directory.close()
