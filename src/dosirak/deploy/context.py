"""The build context of a bento's image: everything the Dockerfile copies, and the Dockerfile.

    >>> context = write_context(dosirak.bentos.get("iris_classifier:latest"), Path("ctx"))
    >>> context.dockerfile            # the text written to ctx/Dockerfile

Layout (paths in the image under /opt/dosirak):

    Dockerfile
    home/bentos/NAME/VERSION/      the bento as stored        -> DOSIRAK_HOME=/opt/dosirak/home
    home/models/NAME/VERSION/      each model it uses, as stored
    env/python/requirements.txt    the bento's lock (dosirak pinned to the wheel beside it)
    env/python/wheels/             dosirak's wheel, the bento's wheels and (unless --no-vendor)
                                   every locked requirement's wheel for the image's platform
    env/system-packages.sh         installs docker.system_packages, given as arguments
    env/setup_script               docker.setup_script, from the bento's sources
"""

from __future__ import annotations

import os
import platform as host_platform
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dosirak.__about__ import __version__
from dosirak.bentos.serving import SOURCE_DIR, check_models
from dosirak.bentos.store import Bento
from dosirak.deploy import wheels
from dosirak.deploy.dockerfile import PORT, DockerfileSpec, render
from dosirak.exceptions import InvalidArgument
from dosirak.serve import LEGACY_PORT
from dosirak.store import model_store
from dosirak.tag import Tag
from dosirak.target import LEGACY_FILE

_SYSTEM_PACKAGES = """\
#!/bin/sh
# Installs docker.system_packages, which arrive as this script's arguments ("$@"), never
# through a shell: a package name cannot run a command.
set -eu
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -q -y --no-install-recommends -- "$@"
apt-get clean
rm -rf /var/lib/apt/lists/*
"""


@dataclass(frozen=True)
class Plan:
    """What a bento's image is made of, before anything is written: the Dockerfile's inputs."""

    bento: Bento
    spec: DockerfileSpec
    python_version: str
    platform: str
    vendor: bool
    requirements: list[str]  # the image's requirements.txt
    pinned: list[str]  # fetched without their dependencies (the lock has them)
    loose: list[str]  # fetched with theirs
    index_options: list[str]

    @property
    def dockerfile(self) -> str:
        return render(self.spec)


def default_platform() -> str:
    """The host's platform (what an engine builds for unless told otherwise)."""
    machine = host_platform.machine().lower()
    return "linux/arm64" if machine in ("aarch64", "arm64") else "linux/amd64"


def plan(bento: Bento, *, vendor: bool = True, platform: str | None = None,
         report: Callable[[str], None] = lambda line: None) -> Plan:
    """Read the bento's environment into a ``Plan``; refuse (``InvalidArgument``) options the
    image cannot honour. Reads only the bento: no network, nothing written."""
    environment: dict[str, Any] = bento.info.get("environment") or {}
    docker: dict[str, Any] = environment.get("docker") or {}
    python_env: dict[str, Any] = environment.get("python") or {}
    platform = platform or default_platform()
    wheels.machine_of(platform)  # refuse an unknown platform before any work
    python_version = _python_version(docker, bento)
    if docker.get("distro") not in (None, "debian"):
        raise InvalidArgument(f"docker.distro {docker['distro']!r} is not supported: dosirak "
                              "images are Debian-based (python:X.Y-slim); remove distro, or "
                              "set docker.base_image to a Debian-based image with Python")
    requirements, pinned, loose = _requirements(python_env, report)
    for name in python_env.get("wheels") or []:
        requirements.append(f"/opt/dosirak/python/wheels/{Path(name).name}")
    index_options = _index_options(python_env)
    template = docker.get("dockerfile_template")
    spec = DockerfileSpec(
        bento_tag=str(bento.tag), bento_digest=bento.digest, dosirak_version=__version__,
        base_image=docker.get("base_image") or f"python:{python_version}-slim",
        system_packages=list(docker.get("system_packages") or []),
        envs=_envs(environment), vendor=vendor, pip_options=index_options,
        template=(_bento_file(bento, template, "docker.dockerfile_template").read_text("utf-8")
                  if template else None),
        # A BentoML 0.x service (svc.save()) serves on 5000 as its 0.x image did; PORT changes it
        port=LEGACY_PORT if (bento.path / SOURCE_DIR / LEGACY_FILE).is_file() else PORT)
    if docker.get("setup_script"):
        script = _bento_file(bento, docker["setup_script"], "docker.setup_script")
        spec.setup_script = "env/setup_script"
        spec.setup_script_shebang = script.read_bytes()[:2] == b"#!"
    plan = Plan(bento, spec, python_version, platform, vendor, requirements, pinned, loose,
                index_options)
    plan.dockerfile  # noqa: B018 (render once: a bad value fails before any copying)
    return plan


def write_context(plan: Plan, dest: Path, *, link: bool = False,
                  report: Callable[[str], None] = lambda line: None) -> Path:
    """Write the build context of ``plan`` into ``dest`` (missing or empty); return ``dest``.

    ``link`` hardlinks the bento's and models' files instead of copying them (for a temporary
    context: stored files are never modified in place). Raises ``ContainerBuildFailed`` when a
    wheel cannot be fetched.
    """
    bento = plan.bento
    if dest.exists() and any(dest.iterdir()):
        raise InvalidArgument(f"{dest} is not empty; give --output a new or empty directory")
    check_models(bento)
    dest.mkdir(parents=True, exist_ok=True)
    _copy_tree(bento.path, dest / "home" / "bentos" / bento.tag.name / bento.tag.version, link)
    store = model_store()
    for model in bento.models:
        tag = store.resolve(Tag.parse(model["tag"]))
        _copy_tree(store.path(tag), dest / "home" / "models" / tag.name / tag.version, link)

    python_dir = dest / "env" / "python"
    wheel_dir = python_dir / "wheels"
    wheels.dosirak_wheel(wheel_dir)
    python_env = (bento.info.get("environment") or {}).get("python") or {}
    for name in python_env.get("wheels") or []:
        shutil.copyfile(bento.path / "env" / "python" / name, wheel_dir / Path(name).name)
    if plan.vendor:
        report(f"fetching {len(plan.pinned) + len(plan.loose)} wheels for {plan.platform}, "
               f"Python {plan.python_version} on this machine (the image build needs no "
               "network)")
        for requirements, deps in ((plan.pinned, False), (plan.loose, True)):
            wheels.download(requirements, wheel_dir, python=plan.python_version,
                            platform=plan.platform, index_options=plan.index_options,
                            deps=deps)
    (python_dir / "requirements.txt").write_text(
        "".join(f"{line}\n" for line in plan.requirements), "utf-8")
    if plan.spec.system_packages:
        (dest / "env" / "system-packages.sh").write_text(_SYSTEM_PACKAGES, "utf-8")
    docker = (bento.info.get("environment") or {}).get("docker") or {}
    if plan.spec.setup_script:
        target = dest / plan.spec.setup_script
        shutil.copyfile(_bento_file(bento, docker["setup_script"], "docker.setup_script"),
                        target)
        target.chmod(0o755)
    (dest / "Dockerfile").write_text(plan.dockerfile, "utf-8")
    return dest


def _python_version(docker: dict[str, Any], bento: Bento) -> str:
    wanted = str(docker.get("python_version") or bento.info.get("python_version") or "3.11")
    match = re.fullmatch(r"(3\.\d+)(\.\d+)?", wanted)
    if not match:
        raise InvalidArgument(f"docker.python_version {wanted!r} is not a Python version such "
                              "as 3.11")
    return match.group(1)


def _requirements(python_env: dict[str, Any],
                  report: Callable[[str], None]) -> tuple[list[str], list[str], list[str]]:
    """(the image's requirements.txt lines, pinned ones to fetch without dependencies, loose
    ones to fetch with theirs). dosirak is pinned to the running version, whose wheel is made
    here: it is on no index."""
    lines = python_env.get("lock") or python_env.get("requirements") or []
    requirements, pinned, loose = [], [], []
    for line in lines:
        text = line.split("#")[0].strip()
        name = re.split(r"[\s\[<>=!~;@]", text, maxsplit=1)[0].lower().replace("_", "-")
        if name == "dosirak":
            if text != f"dosirak=={__version__}":
                report(f"the bento was built with {text}; the image gets the running dosirak "
                       f"{__version__}")
            continue
        requirements.append(text)
        (pinned if "==" in text and "#" not in line else loose).append(text)
    requirements.append(f"dosirak=={__version__}")
    return requirements, pinned, loose


def _index_options(python_env: dict[str, Any]) -> list[str]:
    options = []
    if python_env.get("index_url"):
        options += ["--index-url", str(python_env["index_url"])]
    for url in python_env.get("extra_index_url") or []:
        options += ["--extra-index-url", str(url)]
    for url in python_env.get("find_links") or []:
        options += ["--find-links", str(url)]
    return options


def _envs(environment: dict[str, Any]) -> list[tuple[str, str]]:
    """docker.env then envs (the later wins), as ENV lines set them."""
    merged = {str(k): str(v) for k, v in (environment.get("docker") or {}).get("env", {}).items()}
    for entry in environment.get("envs") or []:
        merged[str(entry["name"])] = str(entry.get("value", ""))
    return list(merged.items())


def _bento_file(bento: Bento, relative: str, what: str) -> Path:
    path = (bento.path / SOURCE_DIR / relative).resolve()
    source = (bento.path / SOURCE_DIR).resolve()
    if not path.is_relative_to(source) or not path.is_file():
        raise InvalidArgument(f"{what} {relative!r} is not among the bento's files; add it to "
                              "`include:` in the bentofile and build the bento again")
    return path


def _copy_tree(source: Path, target: Path, link: bool) -> None:
    """Copy (or hardlink) a stored version; everything readable by the image's non-root user."""

    def copy(src: str, dst: str) -> None:
        if link and os.stat(src).st_mode & 0o044 == 0o044:
            try:
                os.link(src, dst)
                return
            except OSError:
                pass
        shutil.copyfile(src, dst)
        os.chmod(dst, 0o644)

    shutil.copytree(source, target, copy_function=copy)
    for directory, _, _ in os.walk(target):
        os.chmod(directory, 0o755)
