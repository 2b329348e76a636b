"""Running images in the deploy tests: engine commands, a container on 127.0.0.1 and a free
port (host network), HTTP on it."""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Image:
    engine: str
    tag: str
    bento: str


def run_engine(name: str, *args: str, check: bool = True,
               timeout: float = 120) -> subprocess.CompletedProcess[str]:
    executable = "/usr/bin/docker" if name == "docker" and Path("/usr/bin/docker").exists() \
        else name
    result = subprocess.run([executable, *args], capture_output=True, text=True,
                            timeout=timeout, check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"{name} {' '.join(args)}: {result.stderr.strip()[-2000:]}")
    return result


def image_ids(engine: str) -> set[str]:
    return set(run_engine(engine, "images", "-a", "-q", "--no-trunc").stdout.split())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def post(port: int, path: str, body: object, keep: http.client.HTTPConnection | None = None
         ) -> tuple[int, object]:
    connection = keep or http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("POST", path, json.dumps(body), {"content-type": "application/json"})
    response = connection.getresponse()
    data = response.read()
    if keep is None:
        connection.close()
    return response.status, json.loads(data) if data else None


def ready(port: int) -> bool:
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        connection.request("GET", "/readyz")
        return connection.getresponse().status == 200
    except OSError:
        return False


def wait(condition: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not within {timeout} s")
        time.sleep(0.1)


@contextlib.contextmanager
def running(image: Image, *extra: str, published: int | None = None
            ) -> Iterator[tuple[str, int]]:
    """The image's container serving 127.0.0.1:PORT, a free port; yields (name, PORT). On the
    host network with PORT and DOSIRAK_HOST set; or, given ``published`` (the port the image
    listens on by itself), on the engine's bridge network with 127.0.0.1:PORT published to it.
    Removed at the end."""
    port = free_port()
    name = f"dosirak-test-{uuid.uuid4().hex[:10]}"
    network = (["--net=host", "-e", f"PORT={port}", "-e", "DOSIRAK_HOST=127.0.0.1"]
               if published is None else ["-p", f"127.0.0.1:{port}:{published}"])
    run_engine(image.engine, "run", "-d", "--name", name, *network, *extra, image.tag)
    try:
        wait(lambda: ready(port) or state(image.engine, name) != "running", 90,
             "the server answering /readyz")
        assert ready(port), run_engine(image.engine, "logs", name, check=False).stderr
        yield name, port
    finally:
        run_engine(image.engine, "rm", "-f", name, check=False)


def state(engine: str, name: str) -> str:
    return run_engine(engine, "inspect", "-f", "{{.State.Status}}", name,
                      check=False).stdout.strip()


def exec_python(image: Image, name: str, code: str) -> str:
    return run_engine(image.engine, "exec", name, "python", "-c", code).stdout
