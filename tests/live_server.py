"""A real uvicorn server on 127.0.0.1 (ephemeral port) in a background thread, for HTTP tests.

    with serve(svc) as url:
        httpx.post(f"{url}/classify", json=[[1, 2, 3, 4]])
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any

import uvicorn

from dosirak.server.app import create_app
from dosirak.services import Service


@contextlib.contextmanager
def serve(target: Service | Any, *, startup_timeout: float = 30.0, lifespan: str = "on",
          **options: Any) -> Iterator[str]:
    """Serve a Service (through ``create_app(target, **options)``) or an ASGI app; yield its URL.

    ``lifespan="off"`` serves without running the app's startup (the service never starts).
    """
    app = create_app(target, **options) if isinstance(target, Service) else target
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning",
                            lifespan=lifespan, access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("the test server stopped during startup (see the log above)")
        if time.monotonic() > deadline:
            server.should_exit = True
            raise TimeoutError("the test server did not start in time")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
