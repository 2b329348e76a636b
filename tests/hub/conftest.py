"""Real hubs for the hub tests: ``dosirak hub serve`` processes on 127.0.0.1 (ephemeral ports),
stopped by pid; a real PostgreSQL server (initdb/pg_ctl as the ``postgres`` user) for the tests
that need one; the iris model and bento saved in the test's home."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hub_process import DOSIRAK, HubProcess  # noqa: F401 - DOSIRAK for the tests here

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def start_hub(tmp_path: Path) -> Iterator[Any]:
    """``start_hub(*args, data=None)`` starts a hub; every one is stopped after the test."""
    started: list[HubProcess] = []

    def start(*args: str, data: Path | None = None, **options: Any) -> HubProcess:
        hub = HubProcess(data or tmp_path / "hub", *args, **options)
        started.append(hub)
        return hub

    yield start
    for hub in started:
        hub.stop()


@pytest.fixture
def hub(start_hub: Any) -> HubProcess:
    """A hub on SQLite and local files, with a small chunk size so transfers have many chunks."""
    return start_hub("--chunk-size", str(256 << 10))


def save_iris(name: str = "iris_clf", labels: dict[str, str] | None = None,
              extra_bytes: int = 0) -> Any:
    """The seeds' iris classifier saved in the current home (plus ``extra_bytes`` of random
    custom-object bytes, to make transfers of many chunks)."""
    from sklearn import datasets
    from sklearn.linear_model import LogisticRegression

    import dosirak

    iris = datasets.load_iris()
    clf = LogisticRegression(max_iter=1000, random_state=0).fit(iris.data, iris.target)
    custom = {"blob": os.urandom(extra_bytes)} if extra_bytes else None
    return dosirak.sklearn.save_model(name, clf, labels=labels or {},
                                      signatures={"predict": {"batchable": True}},
                                      custom_objects=custom)


def build_iris_bento(tmp_path: Path) -> Any:
    """examples/iris built into the current home's bento store (the iris model saved first)."""
    import dosirak

    project = tmp_path / "iris-project"
    shutil.copytree(REPO / "examples" / "iris", project,
                    ignore=shutil.ignore_patterns("__pycache__"))
    return dosirak.bentos.build(str(project))


def archive_of(model: Any) -> tuple[bytes, str]:
    """A stored model's push archive (what the client sends) and its digest."""
    from dosirak.bentos.build import manifest_digest
    from dosirak.hub.layout import archive_parts, read_range
    from dosirak.store.versioned_store import dump_yaml

    info = model.info.to_dict()
    parts = archive_parts("model.yaml", dump_yaml(info).encode(), info["manifest"],
                          lambda name, _entry: str(model.path / name))
    data = b"".join(read_range(parts, lambda path: open(path, "rb")))  # noqa: SIM115
    return data, manifest_digest(info["manifest"])


def chunks_sha256(data: bytes, chunk_size: int) -> dict[str, str]:
    """The body of a push's ``complete``: the sha256 of its chunks' sha256 digests, computed
    here from the bytes (not with the client's own helper)."""
    import hashlib

    digests = b"".join(hashlib.sha256(data[start:start + chunk_size]).digest()
                       for start in range(0, len(data), chunk_size))
    return {"chunks_sha256": hashlib.sha256(digests).hexdigest()}


def use_home(monkeypatch: pytest.MonkeyPatch, home: Path) -> Path:
    monkeypatch.setenv("DOSIRAK_HOME", str(home))
    return home


# ----- PostgreSQL --------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _pg_bin() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not found:
        pytest.fail("PostgreSQL is not installed; scripts/test installs it (apt-get install "
                    "postgresql)")
    return found[-1].parent


@pytest.fixture(scope="session")
def postgres() -> Iterator[str]:
    """A PostgreSQL server for the session (initdb refuses root: it runs as ``postgres``);
    yields its URL without a database (``pg_url`` makes one per test)."""
    # Not under pytest's folder: that one is private to root, and the server runs as postgres.
    root = Path(tempfile.mkdtemp(prefix="dosirak-hub-pg-"))
    bin_dir = _pg_bin()
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if as_postgres:
        shutil.chown(root, "postgres")
    port = _free_port()
    subprocess.run([*as_postgres, str(bin_dir / "initdb"), "-D", str(root / "data"), "-U",
                    "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"],
                   check=True, capture_output=True)
    subprocess.run([*as_postgres, str(bin_dir / "pg_ctl"), "-D", str(root / "data"), "-l",
                    str(root / "pg.log"), "-w", "-o",
                    f"-c listen_addresses=127.0.0.1 -p {port} -k {root} -c fsync=off "
                    "-c max_connections=200", "start"], check=True, capture_output=True)
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}"
    finally:
        subprocess.run([*as_postgres, str(bin_dir / "pg_ctl"), "-D", str(root / "data"), "-m",
                        "immediate", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def pg_url(postgres: str) -> str:
    """A fresh, empty database on the session's PostgreSQL server."""
    import psycopg

    name = f"hub_{os.urandom(6).hex()}"
    with psycopg.connect(f"{postgres}/postgres", autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    return f"{postgres}/{name}"
