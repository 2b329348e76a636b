"""Step 6 of the 0.x walk-through (seed 001): `dosirak containerize IrisClassifier:latest -t
iris-classifier` for the IrisClassifier the seed's own bento_packer.py saved with `svc.save()`,
built with docker and run on 127.0.0.1; and a 0.x service whose `@env` names pip packages, a base
image and a setup script, built with `--no-vendor` (pip inside the build fetches every package
from the index, as the host reaches it).

Each image is built once (module scope); images and the intermediate images of their builds are
removed at the end; the base image stays.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from engines import Image, exec_python, image_ids, post, run_engine, running, wait

from conftest import run_cli
from legacy.seed import SEED_PACKER, SEED_SERVICE, renamed, write_project

ROW = [[5.1, 3.5, 1.4, 0.2]]  # setosa: class 0
LEGACY_PORT = 5000  # where a 0.x service's image listens, as BentoML 0.x's did
SETUP_SH = 'echo "setup_sh ran as $(id -u)" > /opt/dosirak/setup-sh-ran'


def _saved_bento(root: Path, service: str) -> tuple[Path, str]:
    """(home, bento tag) after the seed's `python bento_packer.py` saved ``service``."""
    home = root / "home"
    project = write_project(root / "project", service, renamed(SEED_PACKER))
    done = subprocess.run([sys.executable, "bento_packer.py"], cwd=project, capture_output=True,
                          text=True, timeout=300, check=False,
                          env={**os.environ, "DOSIRAK_HOME": str(home)})
    assert done.returncode == 0, done.stderr
    info = json.loads(run_cli("get", "IrisClassifier:latest", "-o", "json", home=home).stdout)
    return home, f"{info['name']}:{info['version']}"


def _remove(tags: list[str], before: set[str]) -> None:
    for tag in tags:
        run_engine("docker", "rmi", "-f", tag, check=False)
    for image_id in image_ids("docker") - before:  # intermediate images of these builds
        run_engine("docker", "rmi", "-f", image_id, check=False)


@pytest.fixture(scope="module")
def seed_image(container_engines: None, tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[Image]:
    """The seed's IrisClassifier (its code as written, `bentoml` renamed), containerized as the
    seed says, with wheels fetched on the host (the default)."""
    home, bento = _saved_bento(tmp_path_factory.mktemp("legacy-seed"), renamed(SEED_SERVICE))
    before = image_ids("docker")
    tag = f"iris-classifier:test-{uuid.uuid4().hex[:8]}"
    try:
        run_cli("containerize", "IrisClassifier:latest", "-t", tag, "--backend", "docker",
                home=home)
        yield Image("docker", tag, bento)
    finally:
        _remove([tag], before)


def test_the_seed_s_image_serves_predict_on_5000_healthy_as_a_non_root_user(
        seed_image: Image) -> None:
    config = json.loads(run_engine("docker", "image", "inspect", seed_image.tag).stdout)[0]
    assert list(config["Config"]["ExposedPorts"]) == [f"{LEGACY_PORT}/tcp"]
    assert f"PORT={LEGACY_PORT}" in config["Config"]["Env"]
    assert config["Config"]["User"] == "1034:1034"
    assert config["Config"]["Labels"]["dev.dosirak.bento.tag"] == seed_image.bento
    # As 0.x's image: `docker run -p 5000:5000 iris-classifier`, then curl .../predict
    with running(seed_image, "--health-interval", "1s", published=LEGACY_PORT) as (name, port):
        assert post(port, "/predict", ROW) == (200, [0])
        records = [{"0": 6.7, "1": 3.0, "2": 5.2, "3": 2.3}]  # 0.x's JSON records shape
        assert post(port, "/predict", records) == (200, [2])
        wait(lambda: run_engine("docker", "inspect", "-f", "{{.State.Health.Status}}",
                                name).stdout.strip() == "healthy", 60, "docker health healthy")
        status = exec_python(seed_image, name, "print(open('/proc/1/status').read())")
        assert next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1:] \
            == ["1034"] * 4


def test_port_moves_the_seed_s_image_and_its_health_check(seed_image: Image) -> None:
    with running(seed_image, "--health-interval", "1s") as (name, port):  # PORT=port, host net
        assert port != LEGACY_PORT
        assert post(port, "/predict", ROW) == (200, [0])
        wait(lambda: run_engine("docker", "inspect", "-f", "{{.State.Health.Status}}",
                                name).stdout.strip() == "healthy", 60, "docker health healthy")


@pytest.fixture(scope="module")
def env_image(container_engines: None, tmp_path_factory: pytest.TempPathFactory
              ) -> Iterator[tuple[Image, str, str]]:
    """(image, base image, the build's output) of the seed's service with `@env` options,
    built with --no-vendor."""
    base = f"dosirak-test-base:{uuid.uuid4().hex[:8]}"  # the local base under another name
    run_engine("docker", "tag", "python:3.11-slim", base)
    service = renamed(SEED_SERVICE).replace(
        "@env(infer_pip_packages=True)",
        f"@env(infer_pip_packages=True, pip_packages=['termcolor'], docker_base_image={base!r}, "
        f"setup_sh={SETUP_SH!r})")
    assert service != renamed(SEED_SERVICE)
    before = image_ids("docker")
    tag = f"dosirak-test-legacy-env:{uuid.uuid4().hex[:8]}"
    try:
        home, bento = _saved_bento(tmp_path_factory.mktemp("legacy-env"), service)
        context = tmp_path_factory.mktemp("legacy-env-context") / "context"
        run_cli("containerize", "IrisClassifier:latest", "--no-vendor", "--output", str(context),
                home=home)
        wheels = sorted(path.name for path in (context / "env" / "python" / "wheels").iterdir())
        assert len(wheels) == 1 and wheels[0].startswith("dosirak-"), wheels
        built = run_cli("containerize", "IrisClassifier:latest", "-t", tag, "--backend", "docker",
                        "--no-vendor", home=home)
        yield Image("docker", tag, bento), base, built.stderr
    finally:
        _remove([tag, base], before)


def test_env_options_reach_an_image_built_from_the_index(env_image: tuple[Image, str, str]
                                                         ) -> None:
    image, base, build_output = env_image
    # --no-vendor: the context held only dosirak's own wheel; pip in the build fetched the rest
    assert "Downloading scikit_learn-" in build_output or "Downloading scikit-learn-" in \
        build_output, build_output[-3000:]
    config = json.loads(run_engine("docker", "image", "inspect", image.tag).stdout)[0]
    assert config["Config"]["Labels"]["org.opencontainers.image.base.name"] == base
    with running(image) as (name, port):
        assert post(port, "/predict", ROW) == (200, [0])
        found = json.loads(exec_python(image, name, (
            "import json, importlib.metadata as m; print(json.dumps({"
            "'termcolor': m.version('termcolor'),"
            "'setup': open('/opt/dosirak/setup-sh-ran').read()}))")))
        assert found["setup"] == "setup_sh ran as 0\n"
        assert found["termcolor"]
