"""Real images of the iris bento, built by `dosirak containerize` with docker (dockerd) and with
podman, run with host networking on 127.0.0.1 and a free port.

Each backend builds once (module-scoped, about a minute each); the images and the intermediate
images their builds made are removed at the end; the base image stays.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from engines import Image, exec_python, image_ids, post, run_engine, running, wait

from conftest import HOSTILE_ENV, run_cli

ROW = [[5.9, 3.0, 5.1, 1.8]]
UID = 1034


@pytest.fixture(scope="module", params=["docker", "podman"])
def image(request: pytest.FixtureRequest, container_engines: None,
          hostile_bento: tuple[Path, str]) -> Iterator[Image]:
    engine = request.param
    home, bento = hostile_bento
    before = image_ids(engine)
    tag = f"dosirak-test-iris-{engine}:{uuid.uuid4().hex[:8]}"
    try:
        run_cli("containerize", bento, "-t", tag, "--backend", engine, home=home)
        yield Image(engine, tag, bento)
    finally:
        run_engine(engine, "rmi", "-f", tag, check=False)
        for image_id in image_ids(engine) - before:  # this build's intermediate images
            run_engine(engine, "rmi", "-f", image_id, check=False)


def test_the_image_serves_the_bento_healthy_and_as_a_non_root_user(image: Image) -> None:
    with running(image, "--health-interval", "1s") as (name, port):
        assert post(port, "/classify", ROW) == (200, [2])
        if image.engine == "docker":
            wait(lambda: run_engine("docker", "inspect", "-f", "{{.State.Health.Status}}",
                                    name).stdout.strip() == "healthy", 60, "docker health healthy")
        else:  # podman runs health checks from systemd timers; run the image's check itself
            assert run_engine("podman", "healthcheck", "run", name, check=False).returncode == 0
        status = exec_python(image, name, "print(open('/proc/1/status').read())")
        uids = next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1:]
        assert uids == [str(UID)] * 4
        config = json.loads(run_engine(image.engine, "image", "inspect", image.tag).stdout)[0]
        labels = config["Config"]["Labels"]
        assert labels["dev.dosirak.bento.tag"] == image.bento
        assert len(labels["dev.dosirak.bento.digest"]) == 64
        assert labels["org.opencontainers.image.title"] == "iris_classifier"
        assert config["Config"]["User"] == f"{UID}:{UID}"
        assert "3000/tcp" in config["Config"]["ExposedPorts"]
        # docker keeps it in Config, podman beside Config
        healthcheck = config["Config"].get("Healthcheck") or config["Healthcheck"]
        assert healthcheck["Test"][-1] == "dosirak.deploy.healthcheck"


def test_hostile_bentofile_values_arrive_verbatim_and_run_nothing(image: Image) -> None:
    with running(image) as (name, _port):
        names = [*HOSTILE_ENV, "FROM_DOCKER_ENV"]
        seen = json.loads(exec_python(image, name, "import json, os; print(json.dumps("
                                       f"{{k: os.environ.get(k) for k in {names!r}}}))"))
        assert seen == {**HOSTILE_ENV, "FROM_DOCKER_ENV": "docker env"}
        found = json.loads(exec_python(image, name, (
            "import glob, json, os; print(json.dumps({"
            "'pwned': glob.glob('/tmp/pwned*') + glob.glob('/pwned*'),"
            "'sl': os.path.exists('/usr/games/sl'),"
            "'setup': open('/opt/dosirak/setup-ran').read(),"
            "'templated': open('/opt/dosirak/templated').read()}))")))
        assert found == {"pwned": [], "sl": True, "setup": "setup ran as 0\n",
                         "templated": "templated\n"}


def test_stop_under_load_answers_every_accepted_request_and_exits_0(image: Image) -> None:
    with running(image) as (name, port):
        results: list[tuple[float, object]] = []
        stop = threading.Event()

        def client(keep_alive: bool) -> None:
            connection = None
            while not stop.is_set():
                sent = time.monotonic()
                try:
                    if keep_alive and connection is None:
                        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                    outcome: object = post(port, "/classify", ROW, connection)
                except (OSError, http.client.HTTPException) as error:
                    outcome = type(error).__name__
                    if connection is not None:
                        connection.close()
                    connection = None
                    time.sleep(0.01)
                results.append((sent, outcome))

        threads = [threading.Thread(target=client, args=(keep,), daemon=True)
                   for keep in (True, True, False, False)]
        for thread in threads:
            thread.start()
        time.sleep(1.5)
        stopped = time.monotonic()
        run_engine(image.engine, "stop", "-t", "30", name, timeout=60)
        stop.set()
        for thread in threads:
            thread.join(15)
        assert run_engine(image.engine, "inspect", "-f", "{{.State.ExitCode}}",
                           name).stdout.strip() == "0"
        before = [outcome for sent, outcome in results if sent < stopped]
        assert len(before) > 20
        lost = [outcome for outcome in before if outcome != (200, [2])]
        assert not lost, f"{len(lost)} of {len(before)} requests sent before the stop failed"
        logs = run_engine(image.engine, "logs", name)
        assert "received SIGTERM" in logs.stdout + logs.stderr
